// The multicast mobility agent's state file (vmm-mcastd writes it atomically;
// README documents the schema). Watched with inotify (fs.watch on its
// directory): a change is read at once, and every refresh also checks the
// file's identity, in case a watch missed something. No file means no agent;
// a file that does not parse is logged once and the last good state kept.
// While there is no file (no agent on this host: the usual case), a refresh
// looks for none: the watch of its directory, or of the nearest directory
// on the way to it that exists, tells when it appears, and a look once a
// minute covers a watch that missed it.
import { promises as fs, watch, type FSWatcher } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { CollectorLog } from './paths';
import type { McastAgentState, ProxyJoin, Relay } from '../snapshot';

const VERSION = 1;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const REASONS: readonly ProxyJoin['reason'][] = ['incoming-migration', 'awaiting-report'];
const RELAY_STATES: readonly Relay['state'][] = ['requested', 'active', 'failed'];

/** Validates a state file's text; throws with what is wrong. */
export function parseMcastAgentState(text: string): McastAgentState & { pid: number | null } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`);
  }
  if (typeof data !== 'object' || data === null) throw new Error('not a JSON object');
  const d = data as Record<string, unknown>;
  if (d.version !== VERSION) throw new Error(`"version" is ${JSON.stringify(d.version)}, not ${VERSION}`);
  const pid = d.pid === undefined ? null : d.pid;
  if (pid !== null && !(typeof pid === 'number' && Number.isInteger(pid) && pid > 0)) throw new Error('"pid" is not a process id');
  const list = (key: string): Record<string, unknown>[] => {
    const v = d[key] ?? [];
    if (!Array.isArray(v)) throw new Error(`"${key}" is not a list`);
    return v.map((item, i) => {
      if (typeof item !== 'object' || item === null) throw new Error(`${key}[${i}] is not an object`);
      return item as Record<string, unknown>;
    });
  };
  const group = (v: unknown, where: string): string => {
    if (typeof v !== 'string' || !isMulticast(v)) throw new Error(`${where}.group is not a multicast address`);
    return v;
  };
  const proxyJoins = list('proxyJoins').map((j, i): ProxyJoin => {
    const where = `proxyJoins[${i}]`;
    const since = typeof j.since === 'string' ? Date.parse(j.since) : NaN;
    if (typeof j.bridge !== 'string' || j.bridge === '') throw new Error(`${where}.bridge is not an interface name`);
    if (typeof j.vm !== 'string' || !UUID_RE.test(j.vm.toLowerCase())) throw new Error(`${where}.vm is not a UUID`);
    if (Number.isNaN(since)) throw new Error(`${where}.since is not an ISO 8601 time`);
    if (!REASONS.includes(j.reason as ProxyJoin['reason'])) throw new Error(`${where}.reason is not one of ${REASONS.join(', ')}`);
    return { group: group(j.group, where), bridge: j.bridge, vm: j.vm.toLowerCase(), since, reason: j.reason as ProxyJoin['reason'] };
  });
  const relays = list('relays').map((r, i): Relay => {
    const where = `relays[${i}]`;
    if (typeof r.server !== 'string' || net.isIP(r.server) === 0) throw new Error(`${where}.server is not an IP address`);
    if (!(typeof r.port === 'number' && Number.isInteger(r.port) && r.port >= 0 && r.port <= 65535)) {
      throw new Error(`${where}.port is not a port number`);
    }
    if (!RELAY_STATES.includes(r.state as Relay['state'])) throw new Error(`${where}.state is not one of ${RELAY_STATES.join(', ')}`);
    return { group: group(r.group, where), server: r.server, port: r.port, state: r.state as Relay['state'] };
  });
  return { proxyJoins, relays, pid };
}

function isMulticast(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) {
    const first = Number(address.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return family === 6 && /^ff/i.test(address);
}

/** How long a malformed file must stay unchanged before it is reported (a writer may still be at it). */
const SETTLE_MS = 100;
/** How often a refresh looks for a file that is not there while a watch waits for it. */
const ABSENT_LOOK_MS = 60_000;

export class McastAgentStateFile {
  private watcher: FSWatcher | null = null;
  /** The directory watched: the file's, or the nearest existing one on the way to it; null when none is. */
  private watchedDir: string | null = null;
  /** When (performance.now()) the file was last found missing; null while it is there or not looked for. */
  private absentSince: number | null = null;
  private state: McastAgentState | null = null;
  /** inode:size:mtime of what was last read, to notice a change the watch missed. */
  private identity = '';
  /** The problem last logged (so each is logged once), or null. */
  private problem: string | null = null;
  /** Whether that problem is the file's (unreadable or malformed), whose end is worth a line. */
  private fileProblem = false;
  private pid: number | null = null;
  private reading: Promise<void> | null = null;
  /** A check() came while a read was under way. */
  private readAgain = false;
  private closed = false;

  constructor(
    readonly file: string,
    private readonly log: CollectorLog,
    /** Called after a change of the state read (not for a rewrite that changes nothing). */
    private readonly onChange: () => void = () => undefined,
  ) {}

  /** The agent's state, or null when no agent publishes one (no file, or its process is gone). */
  current(): McastAgentState | null {
    if (this.state !== null && this.pid !== null && !processAlive(this.pid)) {
      this.report(`the multicast mobility agent (pid ${this.pid}) that wrote ${this.file} is gone; showing no agent`, 'warn', false);
      return null;
    }
    return this.state;
  }

  /** Starts watching and reads the file once. */
  async start(): Promise<void> {
    this.ensureWatch();
    await this.check();
  }

  /**
   * Reads the file again if it changed since the last read (each refresh
   * calls it). A file found missing is looked for only once a minute while a
   * watch waits for it to appear.
   */
  check(): Promise<void> {
    if (this.absentSince !== null && this.watcher !== null && performance.now() - this.absentSince < ABSENT_LOOK_MS) {
      return Promise.resolve();
    }
    return this.read();
  }

  /** Reads the file if it changed, once at a time (see check()). */
  private async read(): Promise<void> {
    if (this.reading !== null) {
      // The read under way may have opened the file before this change: read once more after it.
      this.readAgain = true;
      return this.reading;
    }
    this.reading = (async () => {
      try {
        do {
          this.readAgain = false;
          await this.readIfChanged();
        } while (this.readAgain && !this.closed);
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }

  close(): void {
    this.closed = true;
    this.unwatch();
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = null;
    this.watchedDir = null;
  }

  /**
   * Watches the file's directory, or while that does not exist the nearest
   * one on the way to it that does, for the next directory down to appear.
   */
  private ensureWatch(): void {
    const dir = path.dirname(this.file);
    if (this.closed || this.watchedDir === dir) return;
    for (let candidate = dir; candidate !== this.watchedDir;) {
      const watcher = this.watchDirectory(candidate, dir);
      if (watcher === 'missing') {
        const parent = path.dirname(candidate);
        if (parent === candidate) return;
        candidate = parent;
        continue;
      }
      this.unwatch();
      if (watcher === null) return;
      this.watcher = watcher;
      this.watchedDir = candidate;
      // A directory made below it before its watch began sends no event: look once more.
      if (candidate !== dir) this.ensureWatch();
      return;
    }
  }

  /**
   * A watch of `dir` on the way to (or being) `target`, the file's
   * directory; 'missing' when `dir` does not exist (or is no directory),
   * null when it cannot be watched (each refresh then reads the file and
   * tries again).
   */
  private watchDirectory(dir: string, target: string): FSWatcher | 'missing' | null {
    // inotify reports an event of the watched directory itself (removed, moved) under the directory's own name.
    const own = path.basename(dir);
    // Below the target: the name of the next directory down, whose appearance matters.
    const next = dir === target ? path.basename(this.file) : path.relative(dir, target).split(path.sep)[0];
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name === own) {
          this.unwatch();
          this.absentSince = null;
          void this.read();
        } else if (name === null || name === next) {
          this.absentSince = null;
          void this.read();
        }
      });
      watcher.on('error', () => {
        if (this.watcher !== watcher) return;
        this.unwatch();
        this.absentSince = null;
      });
      return watcher;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : null;
    }
  }

  private async readIfChanged(): Promise<void> {
    this.ensureWatch();
    let identity: string;
    let text: string | null = null;
    try {
      // A stat, one pool round trip, tells an unchanged file (every refresh's case); only a changed one is opened.
      const seen = await fs.stat(this.file);
      this.absentSince = null;
      identity = `${seen.ino}:${seen.size}:${seen.mtimeMs}`;
      if (identity !== this.identity) {
        const handle = await fs.open(this.file, 'r');
        try {
          const st = await handle.stat();
          identity = `${st.ino}:${st.size}:${st.mtimeMs}`;
          if (identity !== this.identity) text = await handle.readFile('utf8');
        } finally {
          await handle.close();
        }
      }
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') {
        if (this.state !== null) this.log('info', `${this.file} is gone: the multicast mobility agent has stopped`);
        this.absentSince = performance.now();
        this.set(null, null, '');
        this.problem = null;
        this.fileProblem = false;
        return;
      }
      this.report(`cannot read ${this.file}: ${e.message}; keeping the last state read — give uid ` +
        `${process.getuid?.() ?? '?'} read access to it`, 'error', true);
      return;
    }
    if (text === null) return;
    try {
      const parsed = parseMcastAgentState(text);
      if (this.fileProblem) this.log('info', `${this.file} reads well again`);
      this.problem = null;
      this.fileProblem = false;
      this.set({ proxyJoins: parsed.proxyJoins, relays: parsed.relays }, parsed.pid, identity);
    } catch (err) {
      // A writer that does not rename into place is seen mid-write (empty, or
      // cut short): the file is judged only once it has stayed as it is for
      // a moment, so that one bad write is one log line.
      if (!(await this.unchangedFor(identity, SETTLE_MS))) {
        this.readAgain = true;
        return;
      }
      this.report(`${this.file} is not a state file this agent understands (${(err as Error).message}); keeping the last ` +
        'good state — vmm-mcastd writes it atomically, so check what else writes there', 'error', true);
      this.identity = identity;
    }
  }

  private async unchangedFor(identity: string, ms: number): Promise<boolean> {
    await new Promise((resolve) => setTimeout(resolve, ms));
    try {
      const st = await fs.stat(this.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}` === identity;
    } catch {
      return false;
    }
  }

  private set(state: McastAgentState | null, pid: number | null, identity: string): void {
    const changed = JSON.stringify(state) !== JSON.stringify(this.state) || pid !== this.pid;
    this.state = state;
    this.pid = pid;
    this.identity = identity;
    if (changed) this.onChange();
  }

  private report(message: string, level: 'warn' | 'error', aboutFile: boolean): void {
    if (this.problem === message) return;
    this.problem = message;
    this.fileProblem = aboutFile;
    this.log(level, message);
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
