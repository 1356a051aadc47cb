// A real QEMU live migration on one host, between two rootless
// qemu:///session libvirt daemons running as two users (migration-notes §1):
// the source as nobody, the destination as a dedicated system user
// (MIGRATION_USER, created when missing). Each daemon has private XDG dirs in
// the lab's temp dir, its own host_uuid and VNC port range, logs to files
// (stdio_handler = "file": no virtlogd left behind) and is started with
// spawnManaged and stopped by PID. The guest is the churn image
// (guest-image.ts, test/fixtures/guest/churn.c): it fills 160 MiB with
// non-zero words and keeps dirtying 32 MiB at ~2000 pages/s, so that a
// migration at --bandwidth 40 converges by itself in ~5-6 s after 3-5
// iterations, with a non-zero dirty rate from iteration 2 on.
//
// Holding a migration in progress, then releasing it:
//
//   const run = await lab.migrate({ bandwidth: 40, hold: true });
//   // hold: the guest was switched (virsh send-key KEY_H, before the job:
//   // libvirt refuses send-key during a migration) to dirtying 64 MiB at
//   // ~25000 pages/s. At 40 MiB/s that can never meet the default 300 ms
//   // maximum downtime (64 MiB take 1.6 s), so the job iterates for as long
//   // as the test likes: iteration 1 (~4.5 s, dirty rate 0), then one
//   // migration-iteration event per ~1.6 s, dirty rate ~4000 pages/s at
//   // iteration 2 and ~10000 after, expected downtime ~1600 ms.
//   await run.waitForJob((j) => (j.stats.memory_iteration ?? 0) >= 2, 30_000);
//   await lab.release();                // migrate-setmaxdowntime 10000 ms
//   const result = await run.done;      // exits ~2 s later, downtime ~20-60 ms
//   await lab.setGuestMode('calm');     // the guest, now on the other side, calms down
//
// Instead of release(): lab.abort() (domjobabort), or `timeoutSeconds` in
// migrate() (--timeout N --timeout-suspend) as a fixed upper bound (the
// guest is paused at the timeout and the downtime counts from there: ~3.2 s
// with --timeout 3). A very low `bandwidth` (e.g. 1) also holds a job, but in
// iteration 1 with a dirty rate of 0; `lab.setSpeed(0)` (migrate-setspeed,
// 0 = unlimited) then finishes it in ~2 s.
//
// Failures that start a source job first: migrateWithPortTaken() (the lab
// holds the migration port, so the destination QEMU cannot listen on it:
// the source shows an Unbounded "migration out" job with all data stats 0
// for ~2-3 s, then virsh fails: "unable to execute QEMU command
// 'migrate-incoming': Failed to find an available port: Address already in
// use"), and
// destroyIncoming() during a transfer (the destination domain is destroyed,
// the source QEMU's stream breaks).
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { churnGuestImage, guestImageMissing } from './guest-image';
import { LIBVIRTD_BINARY, pidFilesIn, QEMU_BINARY, QEMU_DRIVER_MODULE, qemuSessionMissing, readPid } from './libvirtd';
import { freeTcpPort, unixSocketAccepts } from './ports';
import { CommandResult, ExitStatus, isPidAlive, ManagedProcess, ownerUid, reaper, runCommand, sleep, spawnManaged, stopProcess } from './process';
import { findTool, firstReason, missingTools, needsRoot } from './prereq';

export type Side = 'src' | 'dst';
export type GuestMode = 'calm' | 'hold';

/** The system user the destination daemon runs as (the source runs as nobody). */
export const MIGRATION_USER = 'vmmagentx-mig';
const NOBODY = { uid: 65534, gid: 65534 };
export const GUEST_NAME = 'churn';
const LOOPBACK = '127.0.0.1';

/** Job types as virsh --rawstats prints them (virDomainJobType). */
export const JOB_TYPE = { none: 0, bounded: 1, unbounded: 2, completed: 3, failed: 4, cancelled: 5 } as const;
/** virDomainJobOperation values in the `operation` stat. */
export const JOB_OPERATION = { migrationIn: 4, migrationOut: 5 } as const;

/** Why a real two-daemon migration cannot run here, or null when it can. */
export function migrationMissing(): string | null {
  return firstReason(
    needsRoot('two session libvirtds under two users (setpriv, useradd)'),
    qemuSessionMissing(),
    missingTools('setpriv'),
    userLookup(MIGRATION_USER) === null && findTool('useradd') === null
      ? `no user ${MIGRATION_USER} and no useradd to create it (apt-get install passwd)`
      : null,
    guestImageMissing(),
  );
}

function userLookup(name: string): { uid: number; gid: number } | null {
  try {
    const line = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const fields = line.trim().split(':');
    return { uid: Number(fields[2]), gid: Number(fields[3]) };
  } catch {
    return null;
  }
}

/** uid/gid of MIGRATION_USER, created as a system user without home or login when missing. */
export function ensureMigrationUser(): { uid: number; gid: number } {
  const found = userLookup(MIGRATION_USER);
  if (found) return found;
  try {
    execFileSync('useradd', ['-r', '-M', '-d', '/nonexistent', '-s', '/usr/sbin/nologin', MIGRATION_USER], { stdio: 'pipe' });
  } catch (err) {
    // A concurrent worker may have created it meanwhile (useradd exits 9).
    const again = userLookup(MIGRATION_USER);
    if (again) return again;
    throw new Error(`useradd ${MIGRATION_USER} failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? err}`);
  }
  const created = userLookup(MIGRATION_USER);
  if (!created) throw new Error(`useradd ${MIGRATION_USER} succeeded but getent does not know the user`);
  return created;
}

// ---------------------------------------------------------------------------
// Job statistics as virsh prints them

export interface JobInfo {
  /** "Job type" as a number (JOB_TYPE), or null when virsh failed. */
  type: number | null;
  /** Every other "key: number" line (--rawstats names: time_elapsed, data_processed, …). */
  stats: Record<string, number>;
  /** virsh's stderr ("error: Operation not supported: …") when it failed, else null. */
  error: string | null;
  /** virsh's stdout. */
  text: string;
}

export function parseRawJobInfo(r: CommandResult): JobInfo {
  if (r.exitCode !== 0) {
    const error = (r.stderr.trim() || r.stdout.trim() || (r.exitCode === null ? 'virsh timed out' : `exit ${r.exitCode}`)).split('\n')[0];
    return { type: null, stats: {}, error, text: r.stdout };
  }
  let type: number | null = null;
  const stats: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^([^:]+):\s*(\S+)\s*$/.exec(line.trim());
    if (!m) continue;
    if (m[1] === 'Job type') type = Number(m[2]);
    else if (!Number.isNaN(Number(m[2]))) stats[m[1]] = Number(m[2]);
  }
  return { type, stats, error: null, text: r.stdout };
}

/** virsh's human form ("Time elapsed" → "5925 ms", "Job type" → "Completed"); {} when virsh failed. */
export function parsePlainJobInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim().replace(/\s+/g, ' ');
  }
  return out;
}

export interface DomState {
  state: string;
  reason: string;
}

// ---------------------------------------------------------------------------
// Migrations

export interface MigrateOptions {
  /** Side the guest leaves (default: where it runs now, `lab.guestSide`). */
  from?: Side;
  /** --bandwidth in MiB/s (default: none, i.e. unlimited: ~150-220 MiB/s, done in ~1-1.5 s). */
  bandwidth?: number;
  /** --timeout N (seconds) … */
  timeoutSeconds?: number;
  /** … with --timeout-suspend (default true when timeoutSeconds is set). */
  timeoutSuspend?: boolean;
  /** --p2p: the source daemon connects to the destination's socket itself. */
  p2p?: boolean;
  /** Switch the guest to hold mode first (see the top of this file). */
  hold?: boolean;
  /** --verbose (progress lines in the output). */
  verbose?: boolean;
  /** Migration stream port (default: the lab's own). */
  port?: number;
  /** Appended to the virsh command line. */
  extraArgs?: readonly string[];
}

export interface MigrationResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** virsh's stdout and stderr, e.g. "error: operation aborted: job 'migration out' canceled by client". */
  output: string;
  ok: boolean;
  /** From spawning virsh to its exit. */
  wallMs: number;
}

export interface JobSample {
  /** ms since the migration was spawned. */
  atMs: number;
  info: JobInfo;
}

export interface MigrationRun {
  readonly from: Side;
  readonly to: Side;
  readonly port: number;
  readonly commandLine: string;
  readonly process: ManagedProcess;
  /** Date.now() just before spawning virsh. */
  readonly startedAt: number;
  /** Settles (never rejects) when virsh has exited. */
  readonly done: Promise<MigrationResult>;
  isDone(): boolean;
  /** Every jobInfo read through waitForJob/sample, in order. */
  readonly samples: JobSample[];
  /** Reads the source's domjobinfo --rawstats once (and keeps it in `samples`). */
  sample(): Promise<JobInfo>;
  /**
   * Polls the source's job until `accept` holds; rejects if virsh migrate
   * exits first or after `timeoutMs`.
   */
  waitForJob(accept: (info: JobInfo) => boolean, timeoutMs?: number, intervalMs?: number): Promise<JobInfo>;
}

// ---------------------------------------------------------------------------
// The lab

export interface MigrationLabOptions {
  /** Multiboot command line for the guest, e.g. "rate=2000 hot=32" (churn.c lists the keys). */
  guestCmdline?: string;
  /** Guest RAM (default 256 MiB; the churn area needs 164 MiB + headroom). */
  memoryMiB?: number;
  /** Define and start the guest on the source (default true; otherwise resetGuest() boots it). */
  startGuest?: boolean;
  /** `virsh event --all --loop --timestamp` on both sides from the start (default true). */
  watchEvents?: boolean;
  /** Per-daemon wait for its socket (default 15 000 ms). */
  startTimeoutMs?: number;
}

export interface LabTimings {
  /** Both daemons spawned until both sockets accept. */
  daemonsMs: number;
  /** First connection to both (the QEMU capabilities probe when the cache is cold). */
  firstConnectMs: number;
  /** Whether a saved capabilities cache was copied in before the start. */
  capsCache: 'warm' | 'cold';
  /** define + start of the guest, and from start until it reported its fill done. */
  guestStartMs?: number;
  guestFillMs?: number;
  /** startMigrationLab() as a whole. */
  totalMs: number;
}

interface Daemon {
  side: Side;
  uid: number;
  gid: number;
  dir: string;
  env: NodeJS.ProcessEnv;
  process: ManagedProcess | null;
  pidFilesRecord: string | undefined;
  events: string[];
  watcher: ManagedProcess | null;
}

export interface MigrationLab {
  readonly labDir: string;
  readonly guestName: string;
  /** Where the guest runs (updated after every successful migration). */
  readonly guestSide: Side;
  /** The guest's current dirtying mode (setGuestMode). */
  readonly guestMode: GuestMode;
  /** qemu+unix:///session?socket=… of each daemon: what an agent watching that side would open (as root). */
  readonly uris: Readonly<Record<Side, string>>;
  readonly uids: Readonly<Record<Side, number>>;
  /** PIDs of the two libvirtds. */
  readonly pids: Readonly<Record<Side, number>>;
  /** The migration stream port of this lab (127.0.0.1). */
  readonly migrationPort: number;
  /** Each daemon's VNC port range [min, min+1]. */
  readonly vncPorts: Readonly<Record<Side, readonly [number, number]>>;
  readonly guestImage: string;
  readonly timings: LabTimings;
  readonly activeMigration: MigrationRun | null;

  virsh(side: Side, args: readonly string[], opts?: { allowFailure?: boolean; timeoutMs?: number }): Promise<CommandResult>;
  /** domjobinfo --rawstats (the current job). */
  jobInfo(side: Side): Promise<JobInfo>;
  /** domjobinfo (human form) as key → text, or { error } when virsh failed. */
  jobInfoText(side: Side, opts?: { completed?: boolean }): Promise<Record<string, string>>;
  /** domjobinfo --completed --keep-completed --rawstats: type 3 and the numbers after a success. */
  completedStats(side: Side): Promise<JobInfo>;
  /** domstate --reason, or null when the side has no such domain. */
  domState(side: Side): Promise<DomState | null>;
  migrate(opts?: MigrateOptions): Promise<MigrationRun>;
  /** A migration whose destination QEMU cannot listen: the lab holds the port. */
  migrateWithPortTaken(opts?: Omit<MigrateOptions, 'port'>): Promise<MigrationRun>;
  /** virsh domjobabort on the source of the active migration (or `side`). */
  abort(side?: Side): Promise<CommandResult>;
  /** migrate-setmaxdowntime on the active migration's source (default 10 000 ms): ends a hold. */
  release(opts?: { maxDowntimeMs?: number }): Promise<void>;
  /** migrate-setspeed (MiB/s) on the active migration's source. */
  setSpeed(mibPerSecond: number): Promise<void>;
  /** virsh destroy of the incoming domain on the active migration's destination. */
  destroyIncoming(): Promise<CommandResult>;
  /** virsh send-key KEY_H / KEY_R; resolves when the guest acknowledged on its serial port. */
  setGuestMode(mode: GuestMode, side?: Side): Promise<void>;
  /** Destroys the guest wherever it runs, undefines it on the destination and boots it afresh on the source. */
  resetGuest(): Promise<void>;
  /** Everything the guest printed on COM1 (all boots, both sides). */
  serialLog(): string;
  waitForSerial(pattern: RegExp, timeoutMs?: number, fromOffset?: number): Promise<string>;
  /** Lines of `virsh event --all --loop --timestamp` on that side so far. */
  events(side: Side): readonly string[];
  /** Resolves with the first event line (at index >= `from`) matching `pattern`. */
  waitForEvent(side: Side, pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /** Each daemon's output (libvirtd logs errors there). */
  daemonLog(side: Side): string;
  /**
   * Ends any migration, destroys and undefines the guest on both sides,
   * stops both daemons and the event watchers by PID, kills leftover QEMU
   * (and virtlogd) from the daemons' pid files, removes the temp dir.
   */
  dispose(): Promise<void>;
}

const other = (side: Side): Side => (side === 'src' ? 'dst' : 'src');

class Lab implements MigrationLab {
  guestSide: Side = 'src';
  guestMode: GuestMode = 'calm';
  activeMigration: MigrationRun | null = null;
  timings: LabTimings = { daemonsMs: 0, firstConnectMs: 0, capsCache: 'cold', totalMs: 0 };
  private readonly blockers = new Set<net.Server>();
  private disposed = false;

  constructor(
    readonly labDir: string,
    private readonly daemons: Record<Side, Daemon>,
    readonly migrationPort: number,
    readonly vncPorts: Record<Side, readonly [number, number]>,
    readonly guestImage: string,
    private readonly guestXmlFile: string,
    private readonly serialFile: string,
    readonly guestName: string,
  ) {}

  get uris(): Record<Side, string> {
    return { src: this.uri('src'), dst: this.uri('dst') };
  }

  get uids(): Record<Side, number> {
    return { src: this.daemons.src.uid, dst: this.daemons.dst.uid };
  }

  get pids(): Record<Side, number> {
    const pid = (d: Daemon): number => d.process?.pid ?? -1;
    return { src: pid(this.daemons.src), dst: pid(this.daemons.dst) };
  }

  socketPath(side: Side): string {
    return path.join(this.daemons[side].env.XDG_RUNTIME_DIR as string, 'libvirt', 'libvirt-sock');
  }

  private uri(side: Side): string {
    return `qemu+unix:///session?socket=${this.socketPath(side)}`;
  }

  async virsh(side: Side, args: readonly string[], opts: { allowFailure?: boolean; timeoutMs?: number } = {}): Promise<CommandResult> {
    const r = await runCommand('virsh', ['-c', this.uri(side), ...args], { env: process.env, timeoutMs: opts.timeoutMs ?? 30_000 });
    if (r.exitCode !== 0 && !opts.allowFailure) {
      throw new Error(`virsh (${side}) ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r;
  }

  async jobInfo(side: Side): Promise<JobInfo> {
    // Per-call timeout: at the end of a migration the source's answer waits
    // for its QEMU to exit (1-2 s, migration-notes §8).
    return parseRawJobInfo(await this.virsh(side, ['domjobinfo', '--rawstats', this.guestName], { allowFailure: true, timeoutMs: 15_000 }));
  }

  async jobInfoText(side: Side, opts: { completed?: boolean } = {}): Promise<Record<string, string>> {
    const args = ['domjobinfo', ...(opts.completed ? ['--completed', '--keep-completed'] : []), this.guestName];
    const r = await this.virsh(side, args, { allowFailure: true, timeoutMs: 15_000 });
    if (r.exitCode !== 0) return { error: (r.stderr.trim() || `exit ${r.exitCode}`).split('\n')[0] };
    return parsePlainJobInfo(r.stdout);
  }

  async completedStats(side: Side): Promise<JobInfo> {
    const args = ['domjobinfo', '--completed', '--keep-completed', '--rawstats', this.guestName];
    return parseRawJobInfo(await this.virsh(side, args, { allowFailure: true, timeoutMs: 15_000 }));
  }

  async domState(side: Side): Promise<DomState | null> {
    const r = await this.virsh(side, ['domstate', '--reason', this.guestName], { allowFailure: true, timeoutMs: 15_000 });
    if (r.exitCode !== 0) return null;
    const m = /^(.*?)\s*\((.*)\)\s*$/.exec(r.stdout.trim());
    return m ? { state: m[1], reason: m[2] } : { state: r.stdout.trim(), reason: '' };
  }

  private requireIdle(): void {
    if (this.disposed) throw new Error('the migration lab is disposed');
    if (this.activeMigration && !this.activeMigration.isDone()) {
      throw new Error(`a migration is still running (${this.activeMigration.commandLine})`);
    }
  }

  async migrate(opts: MigrateOptions = {}): Promise<MigrationRun> {
    this.requireIdle();
    const from = opts.from ?? this.guestSide;
    const to = other(from);
    if (opts.hold) await this.setGuestMode('hold', from);
    const port = opts.port ?? this.migrationPort;
    const args = [
      '-c', this.uri(from), 'migrate', '--live', '--persistent',
      ...(opts.p2p ? ['--p2p'] : []),
      ...(opts.verbose ? ['--verbose'] : []),
      this.guestName, this.uri(to),
      '--migrateuri', `tcp://${LOOPBACK}:${port}`, '--listen-address', LOOPBACK,
      ...(opts.bandwidth !== undefined ? ['--bandwidth', String(opts.bandwidth)] : []),
      ...(opts.timeoutSeconds !== undefined ? ['--timeout', String(opts.timeoutSeconds)] : []),
      ...(opts.timeoutSeconds !== undefined && opts.timeoutSuspend !== false ? ['--timeout-suspend'] : []),
      ...(opts.extraArgs ?? []),
    ];
    const startedAt = Date.now();
    const child = await spawnManaged('virsh', args, { env: process.env });
    let finished = false;
    const done = child.exited.then((status: ExitStatus): MigrationResult => {
      finished = true;
      const ok = status.code === 0;
      if (ok) this.guestSide = to;
      return { exitCode: status.code, signal: status.signal, output: child.output(), ok, wallMs: Date.now() - startedAt };
    });
    const samples: JobSample[] = [];
    const sample = async (): Promise<JobInfo> => {
      const info = await this.jobInfo(from);
      samples.push({ atMs: Date.now() - startedAt, info });
      return info;
    };
    const run: MigrationRun = {
      from, to, port, startedAt, done, samples, sample,
      process: child,
      commandLine: ['virsh', ...args].join(' '),
      isDone: () => finished,
      waitForJob: async (accept, timeoutMs = 30_000, intervalMs = 100) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          if (finished) {
            const r = await done;
            throw new Error(`virsh migrate exited (${r.exitCode}) before the awaited job state; output: ${r.output.trim()}; last sample: ${JSON.stringify(samples.at(-1)?.info.stats ?? null)}`);
          }
          const info = await sample();
          if (accept(info)) return info;
          if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for a job state; last: ${JSON.stringify(info)}`);
          await sleep(intervalMs);
        }
      },
    };
    this.activeMigration = run;
    return run;
  }

  async migrateWithPortTaken(opts: Omit<MigrateOptions, 'port'> = {}): Promise<MigrationRun> {
    this.requireIdle();
    const port = await freeTcpPort();
    // A listener of ours on the port: the destination QEMU's bind fails
    // ("Failed to find an available port: Address already in use").
    const server = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, LOOPBACK, () => resolve());
    });
    this.blockers.add(server);
    const release = async (): Promise<void> => {
      this.blockers.delete(server);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    };
    let run: MigrationRun;
    try {
      run = await this.migrate({ ...opts, port });
    } catch (err) {
      await release();
      throw err;
    }
    void run.done.then(release);
    return run;
  }

  private migrationSource(side?: Side): Side {
    if (side) return side;
    const m = this.activeMigration;
    if (!m || m.isDone()) throw new Error('no migration is running');
    return m.from;
  }

  async abort(side?: Side): Promise<CommandResult> {
    return this.virsh(this.migrationSource(side), ['domjobabort', this.guestName], { allowFailure: true });
  }

  async release(opts: { maxDowntimeMs?: number } = {}): Promise<void> {
    await this.virsh(this.migrationSource(), ['migrate-setmaxdowntime', this.guestName, String(opts.maxDowntimeMs ?? 10_000)]);
  }

  async setSpeed(mibPerSecond: number): Promise<void> {
    await this.virsh(this.migrationSource(), ['migrate-setspeed', this.guestName, String(mibPerSecond)]);
  }

  async destroyIncoming(): Promise<CommandResult> {
    return this.virsh(other(this.migrationSource()), ['destroy', this.guestName], { allowFailure: true });
  }

  async setGuestMode(mode: GuestMode, side: Side = this.guestSide): Promise<void> {
    if (mode === this.guestMode) return;
    const mark = this.serialLog().length;
    // libvirt takes the domain's job lock for send-key: during a migration it
    // waits 30 s and fails ("cannot acquire state change lock").
    await this.virsh(side, ['send-key', this.guestName, mode === 'hold' ? 'KEY_H' : 'KEY_R'], { timeoutMs: 40_000 });
    await this.waitForSerial(mode === 'hold' ? /^churn: hold$/m : /^churn: release$/m, 10_000, mark);
    this.guestMode = mode;
  }

  async resetGuest(): Promise<void> {
    this.requireIdle();
    for (const side of ['src', 'dst'] as const) {
      await this.virsh(side, ['destroy', this.guestName], { allowFailure: true });
    }
    await this.virsh('dst', ['undefine', this.guestName], { allowFailure: true });
    await this.startGuest();
  }

  /** Defines the guest on the source (again) and starts it; resolves once its fill is done. */
  async startGuest(): Promise<void> {
    const t0 = Date.now();
    const mark = this.serialLog().length;
    await this.virsh('src', ['define', this.guestXmlFile]);
    await this.virsh('src', ['start', this.guestName]);
    const t1 = Date.now();
    this.guestSide = 'src';
    this.guestMode = 'calm';
    const filled = await this.waitForSerial(/^churn: (filled .*|error: .*)$/m, 30_000, mark);
    if (filled.startsWith('churn: error')) throw new Error(`the churn guest refused to run: ${filled}`);
    this.timings.guestStartMs = t1 - t0;
    this.timings.guestFillMs = Date.now() - t1;
  }

  serialLog(): string {
    try {
      return fs.readFileSync(this.serialFile, 'utf8');
    } catch {
      return '';
    }
  }

  async waitForSerial(pattern: RegExp, timeoutMs = 10_000, fromOffset = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.serialLog().slice(fromOffset));
      if (m) return m[0];
      if (Date.now() > deadline) {
        throw new Error(`the guest did not print ${pattern} within ${timeoutMs} ms; serial tail: ${this.serialLog().slice(-400)}`);
      }
      await sleep(50);
    }
  }

  events(side: Side): readonly string[] {
    return this.daemons[side].events;
  }

  async waitForEvent(side: Side, pattern: RegExp, timeoutMs = 10_000, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.daemons[side].events.slice(from).find((line) => pattern.test(line));
      if (hit !== undefined) return hit;
      if (Date.now() > deadline) {
        throw new Error(`no ${side} event matching ${pattern} within ${timeoutMs} ms; got: ${this.daemons[side].events.slice(from).join(' | ')}`);
      }
      await sleep(50);
    }
  }

  daemonLog(side: Side): string {
    return this.daemons[side].process?.output() ?? '';
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const problems: string[] = [];
    const attempt = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        problems.push(`${what}: ${(err as Error).message}`);
      }
    };
    const m = this.activeMigration;
    if (m && !m.isDone()) {
      await attempt('domjobabort', () => this.virsh(m.from, ['domjobabort', this.guestName], { allowFailure: true, timeoutMs: 10_000 }));
      await attempt('stopping virsh migrate', () => stopProcess(m.process, 5000));
    }
    for (const side of ['src', 'dst'] as const) {
      await attempt(`destroy (${side})`, () => this.virsh(side, ['destroy', this.guestName], { allowFailure: true, timeoutMs: 15_000 }));
      await attempt(`undefine (${side})`, () => this.virsh(side, ['undefine', this.guestName], { allowFailure: true, timeoutMs: 15_000 }));
    }
    for (const server of [...this.blockers]) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    for (const d of Object.values(this.daemons)) {
      await attempt(`stopping the ${d.side} daemon`, () => stopDaemon(d));
    }
    fs.rmSync(this.labDir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`migration lab dispose: ${problems.join('; ')}`);
  }
}

async function stopDaemon(d: Daemon): Promise<void> {
  if (d.watcher) await stopProcess(d.watcher, 2000);
  // Read the pid files before the daemon goes: QEMU daemonises away from
  // libvirtd's process group, and its pid file is the only handle on it.
  const runtime = d.env.XDG_RUNTIME_DIR as string;
  const files = [...pidFilesIn(path.join(runtime, 'libvirt', 'qemu', 'run')), path.join(runtime, 'libvirt', 'virtlogd.pid')];
  const before = files.map(readPid);
  if (d.process) await stopProcess(d.process, 3000);
  const after = files.map(readPid);
  for (const pid of new Set([...before, ...after])) {
    // Only processes of the daemon's user: a stale file must not make us kill a stranger.
    if (pid !== null && isPidAlive(pid) && ownerUid(pid) === d.uid) await stopProcess(pid, 2000);
  }
  reaper.forget(d.pidFilesRecord);
}

// ---------------------------------------------------------------------------
// QEMU capabilities cache (migration-notes §3): a fresh session daemon probes
// every QEMU binary on its first connection (~3.7 s each). The probe results
// of one lab are kept under os.tmpdir(), keyed by the binaries they describe,
// and copied into the next labs' XDG_CACHE_HOME before their daemons start.
// libvirt still validates each entry and re-probes a stale one.

/** Where one lab's QEMU probe results are kept for the next (also bench/qemu-host-lab.ts). */
export function capsCacheDir(): string {
  const hash = createHash('sha256');
  const binaries = [LIBVIRTD_BINARY, QEMU_DRIVER_MODULE, '/usr/bin/qemu-system-x86_64', '/usr/bin/qemu-system-i386'];
  for (const file of binaries) {
    try {
      const st = fs.statSync(file as string);
      hash.update(`${file}:${st.size}:${st.mtimeMs}:${st.ctimeMs}\n`);
    } catch {
      hash.update(`${file}:-\n`);
    }
  }
  hash.update(os.release());
  return path.join(os.tmpdir(), `vmm-agentx-qemucaps-${hash.digest('hex').slice(0, 20)}`);
}

/** The saved cache's *.xml files when the directory is ours and nobody else may write it. */
export function savedCapsFiles(dir: string): string[] {
  const uid = process.getuid?.();
  try {
    const st = fs.lstatSync(dir);
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) return [];
    return fs.readdirSync(dir).filter((f) => f.endsWith('.xml')).map((f) => path.join(dir, f)).filter((f) => {
      const fst = fs.lstatSync(f);
      return fst.isFile() && (uid === undefined || fst.uid === uid) && (fst.mode & 0o022) === 0;
    });
  } catch {
    return [];
  }
}

export function saveCaps(fromDir: string, cacheDir: string): void {
  let files: string[];
  try {
    files = fs.readdirSync(fromDir).filter((f) => f.endsWith('.xml'));
  } catch {
    return;
  }
  if (files.length === 0) return;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-agentx-qemucaps-new-'));
  try {
    for (const f of files) {
      fs.copyFileSync(path.join(fromDir, f), path.join(tmp, f));
      fs.chmodSync(path.join(tmp, f), 0o644);
    }
    fs.chmodSync(tmp, 0o755);
    fs.renameSync(tmp, cacheDir);
  } catch {
    // Another lab saved it first: keep theirs.
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------
// Start-up

/** A port P on 127.0.0.1 with P+1 free as well (libvirt wants min < max for a range). */
async function freeTcpPortPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await freeTcpPort();
    if (port < 65535 && (await canListen(port + 1))) return port;
  }
  throw new Error('no two adjacent free TCP ports on 127.0.0.1 after 20 attempts');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, LOOPBACK, () => server.close(() => resolve(true)));
  });
}

function chownTree(p: string, uid: number, gid: number): void {
  fs.lchownSync(p, uid, gid);
  if (!fs.lstatSync(p).isDirectory()) return;
  for (const entry of fs.readdirSync(p)) chownTree(path.join(p, entry), uid, gid);
}

function prepareDaemonDir(labDir: string, side: Side, user: { uid: number; gid: number }, vnc: number, capsFiles: string[]): Daemon {
  const dir = path.join(labDir, side);
  const sub = (...p: string[]): string => path.join(dir, ...p);
  for (const d of ['home', 'run', 'config/libvirt', 'cache/libvirt/qemu/cache/capabilities', 'data']) fs.mkdirSync(sub(d), { recursive: true });
  // The other side's user (p2p) and root reach the socket through these.
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(sub('run'), 0o755);
  fs.writeFileSync(sub('config', 'libvirt', 'libvirtd.conf'), `host_uuid = "${randomUUID()}"\nunix_sock_rw_perms = "0777"\n`);
  fs.writeFileSync(
    sub('config', 'libvirt', 'qemu.conf'),
    // Files instead of virtlogd (which would outlive the daemon by 2 min);
    // a VNC range per daemon, so that labs and both sides never collide.
    `stdio_handler = "file"\nremote_display_port_min = ${vnc}\nremote_display_port_max = ${vnc + 1}\n`,
  );
  for (const f of capsFiles) fs.copyFileSync(f, sub('cache', 'libvirt', 'qemu', 'cache', 'capabilities', path.basename(f)));
  chownTree(dir, user.uid, user.gid);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: sub('home'),
    XDG_RUNTIME_DIR: sub('run'),
    XDG_CONFIG_HOME: sub('config'),
    XDG_CACHE_HOME: sub('cache'),
    XDG_DATA_HOME: sub('data'),
  };
  const pidFilesRecord = reaper.recordPidFiles({
    dirs: [path.join(sub('run'), 'libvirt', 'qemu', 'run')],
    files: [path.join(sub('run'), 'libvirt', 'virtlogd.pid')],
    exclude: ['driver.pid'],
    uid: user.uid,
    owner: `the ${side} libvirtd of the migration lab in ${labDir}`,
  });
  return { side, uid: user.uid, gid: user.gid, dir, env, process: null, pidFilesRecord, events: [], watcher: null };
}

async function startDaemon(d: Daemon, timeoutMs: number): Promise<void> {
  const socket = path.join(d.env.XDG_RUNTIME_DIR as string, 'libvirt', 'libvirt-sock');
  // Foreground, no --timeout: it lives exactly as long as the lab.
  const child = await spawnManaged(
    'setpriv',
    [`--reuid=${d.uid}`, `--regid=${d.gid}`, '--clear-groups', LIBVIRTD_BINARY as string],
    { env: d.env, cwd: d.dir, logFile: path.join(d.dir, 'libvirtd.log') },
  );
  d.process = child;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.hasExited()) throw new Error(`the ${d.side} libvirtd exited during start-up:\n${child.output().split('\n').slice(-30).join('\n')}`);
    if (fs.existsSync(socket) && (await unixSocketAccepts(socket))) {
      // Session libvirtd makes $XDG_RUNTIME_DIR/libvirt 0700.
      fs.chmodSync(path.dirname(socket), 0o711);
      return;
    }
    await sleep(20);
  }
  throw new Error(`the ${d.side} libvirtd did not accept connections on ${socket} within ${timeoutMs} ms`);
}

async function startWatcher(d: Daemon, uri: string): Promise<void> {
  const child = await spawnManaged('virsh', ['-c', uri, 'event', '--all', '--loop', '--timestamp'], { env: process.env });
  let partial = '';
  child.onOutput((text) => {
    partial += text;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    // job-completed prints its stats on indented lines: keep them with their event.
    for (const line of lines) {
      if (/^\s/.test(line) && d.events.length > 0) d.events[d.events.length - 1] += ` ${line.trim()}`;
      else if (line.trim() !== '') d.events.push(line);
    }
  });
  d.watcher = child;
}

function guestXml(name: string, image: string, cmdline: string, memoryMiB: number, serialFile: string): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');
  return `<domain type='qemu'>
  <name>${esc(name)}</name>
  <memory unit='MiB'>${memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${esc(image)}</kernel>
    <cmdline>${esc(cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${esc(QEMU_BINARY as string)}</emulator>
    <serial type='file'>
      <source path='${esc(serialFile)}' append='on'/>
      <target port='0'/>
    </serial>
    <graphics type='vnc' autoport='yes' listen='${LOOPBACK}'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/**
 * Starts both daemons (and, by default, the churn guest on the source) and
 * resolves when the guest has filled its memory. Always dispose() it.
 */
export async function startMigrationLab(opts: MigrationLabOptions = {}): Promise<MigrationLab> {
  const missing = migrationMissing();
  if (missing) throw new Error(`cannot start a migration lab: ${missing}`);
  const t0 = Date.now();
  const dstUser = ensureMigrationUser();
  const image = churnGuestImage();
  const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-miglab-'));
  fs.chmodSync(labDir, 0o755);
  let lab: Lab | undefined;
  const daemons: Partial<Record<Side, Daemon>> = {};
  try {
    const cacheDir = capsCacheDir();
    const capsFiles = savedCapsFiles(cacheDir);
    const [migrationPort, srcVnc, dstVnc] = [await freeTcpPort(), await freeTcpPortPair(), await freeTcpPortPair()];
    daemons.src = prepareDaemonDir(labDir, 'src', NOBODY, srcVnc, capsFiles);
    daemons.dst = prepareDaemonDir(labDir, 'dst', dstUser, dstVnc, capsFiles);
    // Both QEMU processes (source, then incoming) append to one file, root's,
    // writable by both users: the guest's output continues across migrations.
    const serialFile = path.join(labDir, 'serial.log');
    fs.writeFileSync(serialFile, '', { mode: 0o666 });
    fs.chmodSync(serialFile, 0o666);
    const xmlFile = path.join(labDir, 'guest.xml');
    fs.writeFileSync(xmlFile, guestXml(GUEST_NAME, image, opts.guestCmdline ?? '', opts.memoryMiB ?? 256, serialFile));

    lab = new Lab(labDir, daemons as Record<Side, Daemon>, migrationPort, { src: [srcVnc, srcVnc + 1], dst: [dstVnc, dstVnc + 1] }, image, xmlFile, serialFile, GUEST_NAME);
    const startTimeout = opts.startTimeoutMs ?? 15_000;
    const tDaemons = Date.now();
    // allSettled: when one fails, the other must have its PID recorded before the clean-up below.
    const started = await Promise.allSettled([startDaemon(daemons.src, startTimeout), startDaemon(daemons.dst, startTimeout)]);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    lab.timings.daemonsMs = Date.now() - tDaemons;
    lab.timings.capsCache = capsFiles.length > 0 ? 'warm' : 'cold';

    const tConnect = Date.now();
    const l = lab;
    await Promise.all((['src', 'dst'] as const).map((side) => l.virsh(side, ['capabilities'], { timeoutMs: 60_000 })));
    lab.timings.firstConnectMs = Date.now() - tConnect;
    if (capsFiles.length === 0) saveCaps(path.join(daemons.src.dir, 'cache', 'libvirt', 'qemu', 'cache', 'capabilities'), cacheDir);

    if (opts.watchEvents !== false) {
      await startWatcher(daemons.src, l.uris.src);
      await startWatcher(daemons.dst, l.uris.dst);
      // virsh event needs a moment to register (migration-notes §8).
      await sleep(500);
    }
    if (opts.startGuest !== false) await lab.startGuest();
    lab.timings.totalMs = Date.now() - t0;
    return lab;
  } catch (err) {
    if (lab) {
      await lab.dispose().catch(() => undefined);
    } else {
      for (const d of Object.values(daemons)) await stopDaemon(d).catch(() => undefined);
      fs.rmSync(labDir, { recursive: true, force: true });
    }
    throw err;
  }
}
