// A hypervisor in a directory, for benchmarks that need many real QEMU guests
// (bench/refresh-cost.ts): one rootless qemu:///session libvirtd, run as
// nobody with private XDG dirs under `workDir` (as the migration lab's source
// side, migration-notes §1), serving N small TCG guests. Each guest is the
// churn image (test/fixtures/guest/churn.c) in its idle mode ("idle=1
// fill=1": it fills 1 MiB, then halts with interrupts off, so its QEMU
// sleeps) in 16 MiB of RAM, defined (persistent) and started, and looks like
// a VM to libvirt's bulk stats: 2 vCPUs, one virtio disk (a sparse raw file
// of the daemon's user, which the guest never touches), one NIC (user-mode
// networking: no host interface, no privileges) and a virtio balloon.
//
// The daemon is started with spawnManaged and stopped by PID; the guests'
// QEMUs, which daemonise away from it, are stopped by the PIDs in the
// daemon's pid files (only processes of the daemon's user). The QEMU driver
// logs to files (stdio_handler = "file"): no virtlogd. Nothing is ever
// killed by name.
//
// By hand: npm run build && node dist/bench/qemu-host-lab.js 50
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { churnGuestImage, guestImageMissing } from '../test/harness/guest-image';
import { LIBVIRTD_BINARY, pidFilesIn, QEMU_BINARY, qemuSessionMissing, readPid } from '../test/harness/libvirtd';
import { capsCacheDir, saveCaps, savedCapsFiles } from '../test/harness/migration-lab';
import { unixSocketAccepts } from '../test/harness/ports';
import { CommandResult, isPidAlive, ManagedProcess, ownerUid, reaper, runCommand, sleep, spawnManaged, stopProcess } from '../test/harness/process';
import { firstReason, missingTools, needsRoot } from '../test/harness/prereq';

export interface QemuHostLab {
  /** URI the agent (running as root) connects to, e.g. qemu+unix:///session?socket=... (or qemu:///session?socket=...) */
  uri: string;
  /** Running guests */
  vms: number;
  /** Stops every guest and the daemon, by PID; removes its files. */
  stop(): Promise<void>;
  /** Domain names, in start order (vm001, vm002, …). */
  readonly names: readonly string[];
  /** PID of the libvirtd. */
  readonly daemonPid: number;
  /** PIDs of the guests' QEMUs (from the daemon's pid files, read now). */
  qemuPids(): number[];
  /** virsh -c uri ARGS (as root); a non-zero exit rejects unless allowFailure. */
  virsh(args: readonly string[], opts?: { allowFailure?: boolean; timeoutMs?: number }): Promise<CommandResult>;
  /** Where the time of startQemuHost() went. */
  readonly timings: QemuHostTimings;
}

export interface QemuHostTimings {
  /** libvirtd spawned until its socket accepts. */
  daemonMs: number;
  /** First connection (the QEMU capabilities probe when no saved cache was warm). */
  firstConnectMs: number;
  capsCache: 'warm' | 'cold';
  /** Every guest defined and started (virsh start returned). */
  guestsMs: number;
  /** Until every guest had printed "churn: idle" on its serial port. */
  bootedMs: number;
  totalMs: number;
}

export interface QemuHostOptions {
  /** Guests to define and start (50 if not a positive integer). */
  vms: number;
  /** The lab lives in a new directory under this one (created when missing), removed by stop(). */
  workDir: string;
  log?: (msg: string) => void;
  /** Guest RAM (default 16 MiB; the churn guest needs 5 MiB above its fill). */
  memoryMiB?: number;
  /** vCPUs per guest (default 2). */
  vcpus?: number;
  /** Size of each guest's sparse raw disk (default 8 MiB). */
  diskMiB?: number;
  /**
   * 0 (default): idle guests (~0.2 % of a CPU each: 50 use ~8-10 % of one).
   * Otherwise each guest keeps dirtying 1 MiB at this many pages/s, paced by
   * a 1 kHz PIT: its QEMU then wakes 1000 times a second and uses ~6 % of a
   * CPU under TCG, so 50 of them would want 3 CPUs.
   */
  dirtyPagesPerSecond?: number;
  /** Guests started at once (default: the number of CPUs, at least 2). */
  concurrency?: number;
}

const NOBODY = { uid: 65534, gid: 65534 };
const DEFAULT_VMS = 50;
/** sun_path holds 108 bytes; libvirt puts each guest's monitor socket under XDG_CONFIG_HOME. */
const SUN_PATH_MAX = 107;
const MONITOR_SUFFIX = '/libvirt/qemu/lib/domain-9999-vm9999/monitor.sock';

/** null when it can run here, else the reason (missing qemu-system-x86, libvirtd qemu driver, gcc/ld, not root...) */
export function qemuHostMissing(): string | null {
  return firstReason(
    needsRoot('the session libvirtd and its guests run as nobody (setpriv)'),
    qemuSessionMissing(),
    missingTools('setpriv'),
    guestImageMissing(),
  );
}

/**
 * Defines and starts `opts.vms` guests on a fresh session libvirtd; always
 * stop() the result (try/finally): the daemon is our child, and Node does not
 * exit while it runs. (Should the process exit anyway, the guests' QEMUs are
 * SIGKILLed by PID from an 'exit' handler.)
 */
export async function startQemuHost(opts: QemuHostOptions): Promise<QemuHostLab> {
  const missing = qemuHostMissing();
  if (missing) throw new Error(`cannot start the QEMU host lab: ${missing}`);
  const t0 = Date.now();
  const log = opts.log ?? (() => undefined);
  const vms = Number.isInteger(opts.vms) && opts.vms > 0 ? opts.vms : DEFAULT_VMS;
  const memoryMiB = opts.memoryMiB ?? 16;
  const vcpus = opts.vcpus ?? 2;
  const diskMiB = opts.diskMiB ?? 8;
  const rate = opts.dirtyPagesPerSecond ?? 0;
  const concurrency = Math.max(1, opts.concurrency ?? Math.max(2, os.cpus().length));
  const cmdline = rate > 0 ? `fill=1 hot=1 hold_hot=1 rate=${rate}` : 'idle=1 fill=1';
  if (memoryMiB < 6) throw new Error(`memoryMiB ${memoryMiB}: the churn guest needs at least 6 MiB (4 MiB below its fill, 1 MiB fill)`);

  const image = churnGuestImage();
  const workDir = path.resolve(opts.workDir);
  fs.mkdirSync(workDir, { recursive: true });
  reachableByOthers(workDir, log);
  const labDir = fs.mkdtempSync(path.join(workDir, 'qh-'));
  fs.chmodSync(labDir, 0o755);
  const dirs = {
    home: path.join(labDir, 'home'),
    run: path.join(labDir, 'run'),
    config: path.join(labDir, 'cfg'),
    cache: path.join(labDir, 'cache'),
    data: path.join(labDir, 'data'),
    guests: path.join(labDir, 'guests'),
  };
  if ((dirs.config + MONITOR_SUFFIX).length > SUN_PATH_MAX) {
    fs.rmSync(labDir, { recursive: true, force: true });
    throw new Error(
      `workDir ${workDir} is too long: QEMU monitor sockets under ${dirs.config} would exceed the ${SUN_PATH_MAX + 1}-byte unix socket path limit (use a shorter one, e.g. under /tmp)`,
    );
  }

  const lab = new HostLab(labDir, dirs.run, log);
  try {
    const capsFiles = savedCapsFiles(capsCacheDir());
    const capsDir = path.join(dirs.cache, 'libvirt', 'qemu', 'cache', 'capabilities');
    for (const d of [dirs.home, dirs.run, path.join(dirs.config, 'libvirt'), capsDir, dirs.data, dirs.guests]) fs.mkdirSync(d, { recursive: true });
    // Root (the agent) and any other user reach the socket through these (and 0711 on run/libvirt, below).
    fs.chmodSync(dirs.run, 0o755);
    fs.writeFileSync(path.join(dirs.config, 'libvirt', 'libvirtd.conf'), `host_uuid = "${randomUUID()}"\nunix_sock_rw_perms = "0777"\n`);
    // Files instead of virtlogd (which would outlive the daemon by 2 min).
    fs.writeFileSync(path.join(dirs.config, 'libvirt', 'qemu.conf'), 'stdio_handler = "file"\n');
    for (const f of capsFiles) fs.copyFileSync(f, path.join(capsDir, path.basename(f)));
    const xmlFiles: string[] = [];
    for (let i = 1; i <= vms; i++) {
      const name = guestName(i, vms);
      const dir = path.join(dirs.guests, name);
      fs.mkdirSync(dir);
      const disk = path.join(dir, 'disk.img');
      fs.writeFileSync(disk, '');
      fs.truncateSync(disk, diskMiB * 1024 * 1024);
      const xml = path.join(dir, 'domain.xml');
      fs.writeFileSync(xml, domainXml({ name, index: i, image, cmdline, memoryMiB, vcpus, disk, serial: path.join(dir, 'serial.log') }));
      xmlFiles.push(xml);
      lab.names.push(name);
    }
    for (const d of Object.values(dirs)) chownTree(d, NOBODY.uid, NOBODY.gid);

    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: dirs.home,
      XDG_RUNTIME_DIR: dirs.run,
      XDG_CONFIG_HOME: dirs.config,
      XDG_CACHE_HOME: dirs.cache,
      XDG_DATA_HOME: dirs.data,
    };
    const tDaemon = Date.now();
    await lab.startDaemon(env, 15_000);
    lab.timings.daemonMs = Date.now() - tDaemon;
    log(`qemu-host-lab: libvirtd (pid ${lab.daemonPid}) as nobody at ${lab.uri}`);

    const tConnect = Date.now();
    await lab.virsh(['capabilities'], { timeoutMs: 60_000 });
    lab.timings.firstConnectMs = Date.now() - tConnect;
    lab.timings.capsCache = capsFiles.length > 0 ? 'warm' : 'cold';
    if (capsFiles.length === 0) saveCaps(capsDir, capsCacheDir());

    const tGuests = Date.now();
    let started = 0;
    await forEachLimited(lab.names, concurrency, async (name, i) => {
      await lab.virsh(['define', xmlFiles[i]]);
      await lab.virsh(['start', name], { timeoutMs: 120_000 });
      lab.vms = ++started;
      if (started % 10 === 0 || started === vms) log(`qemu-host-lab: ${started}/${vms} guests started (${((Date.now() - tGuests) / 1000).toFixed(1)} s)`);
    });
    lab.timings.guestsMs = Date.now() - tGuests;
    lab.rememberQemuPids();
    await waitForBoots(lab.names.map((n) => path.join(dirs.guests, n, 'serial.log')), rate > 0 ? /^churn: t=1 /m : /^churn: idle$/m, 120_000);
    lab.timings.bootedMs = Date.now() - tGuests;
    lab.timings.totalMs = Date.now() - t0;
    log(
      `qemu-host-lab: ${vms} guests running (${vcpus} vCPU, ${memoryMiB} MiB, ${diskMiB} MiB disk, user NIC) in ${(lab.timings.guestsMs / 1000).toFixed(1)} s, ` +
        `all booted after ${(lab.timings.bootedMs / 1000).toFixed(1)} s; capabilities cache ${lab.timings.capsCache}, total ${(lab.timings.totalMs / 1000).toFixed(1)} s`,
    );
    return lab;
  } catch (err) {
    await lab.stop().catch((e: Error) => log(`qemu-host-lab: clean-up after a failed start: ${e.message}`));
    throw err;
  }
}

class HostLab implements QemuHostLab {
  vms = 0;
  readonly names: string[] = [];
  readonly timings: QemuHostTimings = { daemonMs: 0, firstConnectMs: 0, capsCache: 'cold', guestsMs: 0, bootedMs: 0, totalMs: 0 };
  private daemon: ManagedProcess | null = null;
  /** Every QEMU PID seen in the pid files: a file may be gone by the time we stop. */
  private readonly seenQemuPids = new Set<number>();
  private readonly pidFilesRecord: string | undefined;
  private readonly onExit = (): void => this.killSync();
  private stopping: Promise<void> | null = null;

  constructor(
    private readonly labDir: string,
    private readonly runtimeDir: string,
    private readonly log: (msg: string) => void,
  ) {
    // In a test run, the run's reaper finds the guests through these files
    // if we never reach stop(); outside one this records nothing.
    this.pidFilesRecord = reaper.recordPidFiles({
      dirs: [this.qemuRunDir],
      exclude: ['driver.pid'],
      uid: NOBODY.uid,
      owner: `the QEMU host lab in ${labDir}`,
    });
    // A bench that dies without stop() would leave daemonised QEMUs behind;
    // SIGKILL is all a synchronous 'exit' handler can do (libvirtd, our
    // child, is handled by process.ts).
    process.once('exit', this.onExit);
  }

  get socketPath(): string {
    return path.join(this.runtimeDir, 'libvirt', 'libvirt-sock');
  }

  get uri(): string {
    return `qemu+unix:///session?socket=${this.socketPath}`;
  }

  get daemonPid(): number {
    return this.daemon?.pid ?? -1;
  }

  private get qemuRunDir(): string {
    return path.join(this.runtimeDir, 'libvirt', 'qemu', 'run');
  }

  async startDaemon(env: NodeJS.ProcessEnv, timeoutMs: number): Promise<void> {
    // Foreground, no --timeout: it lives exactly as long as the lab.
    const child = await spawnManaged(
      'setpriv',
      [`--reuid=${NOBODY.uid}`, `--regid=${NOBODY.gid}`, '--clear-groups', LIBVIRTD_BINARY as string],
      { env, cwd: this.labDir, logFile: path.join(this.labDir, 'libvirtd.log') },
    );
    this.daemon = child;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.hasExited()) throw new Error(`libvirtd exited during start-up:\n${child.output().split('\n').slice(-30).join('\n')}`);
      if (fs.existsSync(this.socketPath) && (await unixSocketAccepts(this.socketPath))) {
        // Session libvirtd makes $XDG_RUNTIME_DIR/libvirt 0700.
        fs.chmodSync(path.dirname(this.socketPath), 0o711);
        return;
      }
      await sleep(20);
    }
    throw new Error(`libvirtd did not accept connections on ${this.socketPath} within ${timeoutMs} ms`);
  }

  async virsh(args: readonly string[], opts: { allowFailure?: boolean; timeoutMs?: number } = {}): Promise<CommandResult> {
    const r = await runCommand('virsh', ['-c', this.uri, ...args], { env: process.env, timeoutMs: opts.timeoutMs ?? 30_000 });
    if (r.exitCode !== 0 && !opts.allowFailure) {
      throw new Error(`virsh ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r;
  }

  qemuPids(): number[] {
    const pids: number[] = [];
    for (const file of pidFilesIn(this.qemuRunDir)) {
      const pid = readPid(file);
      if (pid !== null && isPidAlive(pid) && ownerUid(pid) === NOBODY.uid) pids.push(pid);
    }
    return pids;
  }

  rememberQemuPids(): void {
    for (const pid of this.qemuPids()) this.seenQemuPids.add(pid);
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const problems: string[] = [];
    // Read the pid files before the daemon goes.
    this.rememberQemuPids();
    if (this.daemon) {
      await stopProcess(this.daemon, 5000).catch((e: Error) => problems.push(`libvirtd: ${e.message}`));
    }
    this.rememberQemuPids();
    // Only processes of the daemon's user: a recycled PID must not make us kill a stranger.
    const pids = [...this.seenQemuPids].filter((pid) => isPidAlive(pid) && ownerUid(pid) === NOBODY.uid);
    const t0 = Date.now();
    await Promise.all(pids.map((pid) => stopProcess(pid, 3000).catch((e: Error) => problems.push(`QEMU ${pid}: ${e.message}`))));
    if (pids.length > 0) this.log(`qemu-host-lab: stopped libvirtd and ${pids.length} QEMU processes (${Date.now() - t0} ms for the guests)`);
    this.vms = 0;
    reaper.forget(this.pidFilesRecord);
    process.removeListener('exit', this.onExit);
    fs.rmSync(this.labDir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`qemu-host-lab stop: ${problems.join('; ')}`);
  }

  private killSync(): void {
    this.rememberQemuPids();
    for (const pid of this.seenQemuPids) {
      if (!isPidAlive(pid) || ownerUid(pid) !== NOBODY.uid) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** vm01…vm50, vm001…vm100: names sort in start order. */
function guestName(i: number, total: number): string {
  return `vm${String(i).padStart(Math.max(2, String(total).length), '0')}`;
}

interface GuestSpec {
  name: string;
  index: number;
  image: string;
  cmdline: string;
  memoryMiB: number;
  vcpus: number;
  disk: string;
  serial: string;
}

function domainXml(g: GuestSpec): string {
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');
  const mac = `52:54:00:${[(g.index >> 16) & 0xff, (g.index >> 8) & 0xff, g.index & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
  // No graphics, video, USB or input devices: nothing the guest or the stats
  // need. The balloon is there for the balloon stats (the guest has no
  // driver for it); the disk and NIC for the block and interface stats.
  return `<domain type='qemu'>
  <name>${esc(g.name)}</name>
  <uuid>${randomUUID()}</uuid>
  <memory unit='MiB'>${g.memoryMiB}</memory>
  <currentMemory unit='MiB'>${g.memoryMiB}</currentMemory>
  <vcpu>${g.vcpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${esc(g.image)}</kernel>
    <cmdline>${esc(g.cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${esc(QEMU_BINARY as string)}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${esc(g.disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <interface type='user'>
      <mac address='${mac}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='${esc(g.serial)}'/>
      <target port='0'/>
    </serial>
    <memballoon model='virtio'/>
  </devices>
</domain>
`;
}

/** Runs `fn` on every item, at most `limit` at once; rejects with the first failure after the running ones settle. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const i = next++;
      try {
        await fn(items[i], i);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw failure;
}

async function waitForBoots(serialFiles: readonly string[], done: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let pending = [...serialFiles];
  for (;;) {
    const still: string[] = [];
    for (const file of pending) {
      const text = readText(file);
      const error = /^churn: error.*$/m.exec(text);
      if (error) throw new Error(`guest ${path.basename(path.dirname(file))} refused to run: ${error[0]}`);
      if (!done.test(text)) still.push(file);
    }
    pending = still;
    if (pending.length === 0) return;
    if (Date.now() > deadline) {
      const first = pending[0];
      throw new Error(`${pending.length} guests did not print ${done} within ${timeoutMs} ms, e.g. ${path.basename(path.dirname(first))}: ${JSON.stringify(readText(first).slice(-300))}`);
    }
    await sleep(100);
  }
}

/** Other users (nobody) must be able to traverse to the lab: add o+x to workDir if it lacks it, complain about its parents. */
function reachableByOthers(dir: string, log: (msg: string) => void): void {
  const mode = fs.statSync(dir).mode;
  if ((mode & 0o001) === 0) {
    fs.chmodSync(dir, (mode & 0o7777) | 0o001);
    log(`qemu-host-lab: added o+x to ${dir} so that nobody can reach the lab in it`);
  }
  for (let p = path.dirname(dir); ; p = path.dirname(p)) {
    if ((fs.statSync(p).mode & 0o001) === 0) throw new Error(`${p} is not searchable by other users (o+x): the daemon, running as nobody, could not reach ${dir}`);
    if (p === path.dirname(p)) break;
  }
}

function chownTree(p: string, uid: number, gid: number): void {
  fs.lchownSync(p, uid, gid);
  if (!fs.lstatSync(p).isDirectory()) return;
  for (const entry of fs.readdirSync(p)) chownTree(path.join(p, entry), uid, gid);
}

function readText(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------
// By hand: node dist/bench/qemu-host-lab.js [N] [workDir]

async function main(): Promise<void> {
  const missing = qemuHostMissing();
  if (missing) {
    console.error(`qemu-host-lab: cannot run here: ${missing}`);
    process.exitCode = 2;
    return;
  }
  const vms = process.argv[2] !== undefined ? Number(process.argv[2]) : DEFAULT_VMS;
  if (!Number.isInteger(vms) || vms < 1) {
    console.error(`usage: node dist/bench/qemu-host-lab.js [N guests, default ${DEFAULT_VMS}] [workDir, default a temp dir]`);
    process.exitCode = 2;
    return;
  }
  const ownDir = process.argv[3] === undefined;
  const workDir = process.argv[3] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-qhost-'));
  if (ownDir) fs.chmodSync(workDir, 0o711);
  const log = (msg: string): void => console.error(msg);
  let stopRequested: NodeJS.Signals | null = null;
  let wake: (() => void) | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopRequested) {
      log(`qemu-host-lab: ${signal} again: still stopping`);
      return;
    }
    stopRequested = signal;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let lab: QemuHostLab | null = null;
  try {
    lab = await startQemuHost({ vms, workDir, log });
    console.log(lab.uri);
    if (!stopRequested) {
      log(`qemu-host-lab: ${lab.vms} guests; try: virsh -c '${lab.uri}' domstats --raw ${lab.names[0]}`);
      log('qemu-host-lab: Ctrl-C (SIGINT) or SIGTERM stops them');
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
    log(`qemu-host-lab: ${stopRequested ?? 'stop'}: stopping`);
  } finally {
    if (lab) await lab.stop();
    if (ownDir) fs.rmSync(workDir, { recursive: true, force: true });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

if (require.main === module) {
  main().catch((err: Error) => {
    console.error(`qemu-host-lab: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  });
}
