// A private session libvirtd for integration tests (platform-notes §7–§8):
// its own HOME and XDG dirs in a temp dir, running as nobody when we are root
// (as the unprivileged user a session daemon is meant for; nobody also has no
// /dev/kvm, so guests run under TCG), started and stopped by PID. One daemon
// serves both the test driver over RPC (test+unix:///default) — a remote
// code path with events, close callbacks and reconnects but without QEMU —
// and real qemu:///session guests.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CommandResult, isPidAlive, ManagedProcess, ownerUid, reaper, runCommand, sleep, spawnManaged, stopProcess } from './process';
import { unixSocketAccepts } from './ports';
import { findTool, missingTools } from './prereq';

export const LIBVIRTD_BINARY = findTool('libvirtd') ?? undefined;
export const QEMU_BINARY = findTool('qemu-system-x86_64') ?? undefined;
/** The session daemon's QEMU driver is a loadable module (libvirt-daemon-driver-qemu). */
export const QEMU_DRIVER_MODULE = '/usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so';

const NOBODY = 65534;

/** Why the daemon tests cannot run here, or null when they can. */
export function libvirtdMissing(): string | null {
  return missingTools('libvirtd', 'virsh');
}

/** Why real QEMU guests cannot run here, or null when they can. */
export function qemuSessionMissing(): string | null {
  const daemon = libvirtdMissing();
  if (daemon) return daemon;
  if (!fs.existsSync(QEMU_DRIVER_MODULE)) return 'no QEMU driver for libvirtd (apt-get install libvirt-daemon-driver-qemu)';
  return missingTools('qemu-system-x86_64');
}

export interface StartLibvirtdOptions {
  /** How long to wait for the socket to accept connections (default 15 000 ms). */
  startTimeoutMs?: number;
}

export interface SessionLibvirtd {
  /** Temp dir (mode 0755) holding the daemon's home; files for guests can go in `imageDir`. */
  readonly labDir: string;
  /** Owned by the daemon's user, so QEMU can open disk images there. */
  readonly imageDir: string;
  /** HOME and XDG_* of the daemon; virsh with this env and uid reaches it as qemu:///session. */
  readonly env: NodeJS.ProcessEnv;
  /** The uid the daemon and its guests run as. */
  readonly uid: number;
  readonly socketPath: string;
  /**
   * The daemon's shared test:///default, over RPC. It lives while at least one
   * client holds a connection to it: changes made with virsh while nobody else
   * is connected are gone when virsh disconnects.
   */
  readonly testUri: string;
  /** The daemon's qemu:///session driver, reachable from any uid that may open the socket (root). */
  readonly qemuUri: string;
  /** PID of the running daemon (changes on restart). */
  readonly pid: number;
  isRunning(): boolean;
  /** virsh -q -c URI ARGS as the current user; a non-zero exit rejects unless allowFailure. */
  virsh(uri: string, args: readonly string[], opts?: { allowFailure?: boolean }): Promise<CommandResult>;
  /** virt-admin against the daemon's admin socket, run as the daemon's user (the only uid it admits). */
  virtAdmin(args: readonly string[]): Promise<string>;
  /** Signals the daemon by PID without cleaning up after it (SIGKILL: a crash) and waits until it is gone. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the daemon again after stop() or kill(), with the same dirs and socket. */
  start(): Promise<void>;
  /** SIGTERM by PID (SIGKILL after 3 s). Guests keep running: destroy them first or use dispose(). */
  stop(): Promise<void>;
  /** Everything the daemon printed, over all runs. */
  log(): string;
  /**
   * Kills leftover QEMU processes (from their pid files) and virtlogd, stops
   * the daemon and removes the temp dir.
   */
  dispose(): Promise<void>;
}

class LibvirtdLab implements SessionLibvirtd {
  private process: ManagedProcess | null = null;
  private previousRuns = '';

  /** The reaper's record of the guests' and virtlogd's pid files (see dispose). */
  private readonly pidFilesRecord: string | undefined;

  constructor(
    readonly labDir: string,
    readonly imageDir: string,
    readonly env: NodeJS.ProcessEnv,
    readonly uid: number,
    private readonly startTimeoutMs: number,
  ) {
    // QEMU daemonises away from libvirtd's process group; if this suite never
    // reaches dispose(), the run's reaper finds the guests through these files.
    this.pidFilesRecord = reaper.recordPidFiles({
      dirs: [path.join(this.runtimeDir, 'libvirt', 'qemu', 'run')],
      files: [path.join(this.runtimeDir, 'libvirt', 'virtlogd.pid')],
      exclude: ['driver.pid'],
      uid,
      owner: `the session libvirtd in ${labDir}`,
    });
  }

  get runtimeDir(): string {
    return this.env.XDG_RUNTIME_DIR as string;
  }

  get socketPath(): string {
    return path.join(this.runtimeDir, 'libvirt', 'libvirt-sock');
  }

  get testUri(): string {
    return `test+unix:///default?socket=${this.socketPath}`;
  }

  get qemuUri(): string {
    return `qemu+unix:///session?socket=${this.socketPath}`;
  }

  get pid(): number {
    if (this.process === null) throw new Error(`libvirtd in ${this.labDir} is not running`);
    return this.process.pid;
  }

  isRunning(): boolean {
    return this.process !== null && !this.process.hasExited();
  }

  log(): string {
    return this.previousRuns + (this.process?.output() ?? '');
  }

  private asDaemonUser(command: string, args: readonly string[]): [string, string[]] {
    if (this.uid === process.getuid?.()) return [command, [...args]];
    return ['setpriv', [`--reuid=${this.uid}`, `--regid=${this.uid}`, '--clear-groups', command, ...args]];
  }

  async start(): Promise<void> {
    if (this.isRunning()) throw new Error(`libvirtd in ${this.labDir} is already running (pid ${this.pid})`);
    // A socket left by a killed daemon would look ready before the new one listens.
    fs.rmSync(this.socketPath, { force: true });
    // No --timeout: the daemon lives exactly as long as the test wants it; the
    // process harness SIGKILLs it should the test process die first.
    const [cmd, args] = this.asDaemonUser(LIBVIRTD_BINARY as string, []);
    const child = await spawnManaged(cmd, args, { env: this.env, cwd: this.labDir, logFile: path.join(this.labDir, 'libvirtd.log') });
    this.process = child;
    const deadline = Date.now() + this.startTimeoutMs;
    while (Date.now() < deadline) {
      if (child.hasExited()) {
        this.retire(child);
        throw new Error(`libvirtd (${this.labDir}) exited during start-up:\n${tail(child.output(), 30)}`);
      }
      if (fs.existsSync(this.socketPath) && (await unixSocketAccepts(this.socketPath))) return;
      await sleep(20);
    }
    await stopProcess(child);
    this.retire(child);
    throw new Error(`libvirtd (${this.labDir}) did not accept connections on ${this.socketPath} within ${this.startTimeoutMs} ms`);
  }

  private retire(child: ManagedProcess): void {
    this.previousRuns += child.output();
    this.process = null;
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (child === null) return;
    await stopProcess(child, 3000);
    this.retire(child);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.process;
    if (child === null) return;
    if (!child.hasExited()) process.kill(child.pid, signal);
    await child.exited;
    this.retire(child);
  }

  virsh(uri: string, args: readonly string[], opts: { allowFailure?: boolean } = {}): Promise<CommandResult> {
    return runVirsh(['-q', '-c', uri, ...args], process.env, opts.allowFailure ?? false);
  }

  async virtAdmin(args: readonly string[]): Promise<string> {
    const admin = `libvirtd:///session?socket=${path.join(this.runtimeDir, 'libvirt', 'libvirt-admin-sock')}`;
    const [cmd, argv] = this.asDaemonUser('virt-admin', ['-q', '-c', admin, ...args]);
    const r = await runCommand(cmd, argv, { env: this.env, timeoutMs: 30_000 });
    if (r.exitCode !== 0) throw new Error(`virt-admin ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  async dispose(): Promise<void> {
    // A guest's QEMU outlives libvirtd; its pid file is the only handle on it.
    const leftovers = [
      ...pidFilesIn(path.join(this.runtimeDir, 'libvirt', 'qemu', 'run')),
      path.join(this.runtimeDir, 'libvirt', 'virtlogd.pid'),
    ];
    await this.stop();
    for (const file of leftovers) {
      const pid = readPid(file);
      // Only processes of the daemon's user: a stale file must not make us kill a stranger.
      if (pid !== null && isPidAlive(pid) && ownerUid(pid) === this.uid) await stopProcess(pid, 2000);
    }
    reaper.forget(this.pidFilesRecord);
    fs.rmSync(this.labDir, { recursive: true, force: true });
  }
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** The pid files in a libvirt run dir (QEMU guests, virtlogd), not the daemon's own driver.pid. */
export function pidFilesIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((f) => f.endsWith('.pid') && f !== 'driver.pid').map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** The PID a pid file names, or null when it is missing or names none. */
export function readPid(file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 1 ? pid : null;
  } catch {
    return null;
  }
}

async function runVirsh(args: readonly string[], env: NodeJS.ProcessEnv, allowFailure: boolean): Promise<CommandResult> {
  const r = await runCommand('virsh', args, { env, timeoutMs: 30_000 });
  if (r.exitCode !== 0 && !allowFailure) {
    throw new Error(`virsh ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}

/**
 * Starts a session libvirtd in a fresh temp dir and resolves once its socket
 * accepts connections. The QEMU driver logs to files (stdio_handler = "file"),
 * so no virtlogd is spawned behind our back.
 */
export async function startSessionLibvirtd(opts: StartLibvirtdOptions = {}): Promise<SessionLibvirtd> {
  const missing = libvirtdMissing();
  if (missing) throw new Error(`cannot start a session libvirtd: ${missing}`);
  const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-libvirtd-'));
  try {
    const uid = process.getuid?.() === 0 ? NOBODY : (process.getuid?.() ?? NOBODY);
    const home = path.join(labDir, 'home');
    const imageDir = path.join(labDir, 'images');
    const dirs = { run: 'run', config: 'config', cache: 'cache', data: 'data' };
    for (const d of Object.values(dirs)) fs.mkdirSync(path.join(home, d), { recursive: true });
    fs.mkdirSync(path.join(home, 'config', 'libvirt'), { recursive: true });
    fs.writeFileSync(path.join(home, 'config', 'libvirt', 'qemu.conf'), 'stdio_handler = "file"\n');
    fs.mkdirSync(imageDir);
    // mkdtemp makes the lab 0700; the daemon's user must reach its home and images in it.
    fs.chmodSync(labDir, 0o755);
    if (uid !== process.getuid?.()) chownTree(home, uid);
    if (uid !== process.getuid?.()) fs.chownSync(imageDir, uid, uid);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: home,
      XDG_RUNTIME_DIR: path.join(home, dirs.run),
      XDG_CONFIG_HOME: path.join(home, dirs.config),
      XDG_CACHE_HOME: path.join(home, dirs.cache),
      XDG_DATA_HOME: path.join(home, dirs.data),
    };
    const lab = new LibvirtdLab(labDir, imageDir, env, uid, opts.startTimeoutMs ?? 15_000);
    await lab.start();
    return lab;
  } catch (err) {
    fs.rmSync(labDir, { recursive: true, force: true });
    throw err;
  }
}

function chownTree(dir: string, uid: number): void {
  fs.chownSync(dir, uid, uid);
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) chownTree(p, uid);
    else fs.chownSync(p, uid, uid);
  }
}
