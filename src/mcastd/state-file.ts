// vmm-mcastd's state file: what it holds on the host (proxy joins, relays,
// MDB entries it added, migrations under way), rewritten atomically on every
// change. vmm-agentx serves it (schema version 1 in README: proxyJoins and
// relays; the other lists are this daemon's own, which the agent ignores),
// and a restarted vmm-mcastd reads its predecessor's to undo what it left.
import { promises as fs } from 'fs';
import * as path from 'path';
import { removeStaleTempFiles, writeFileAtomic } from '../state/atomic-file';

export interface ProxyJoinState {
  group: string;
  bridge: string;
  /** The VM's UUID. */
  vm: string;
  since: number;
  reason: 'incoming-migration' | 'awaiting-report';
  migration: string;
}

export interface RelayState {
  group: string;
  server: string;
  port: number;
  state: 'requested' | 'active' | 'failed';
  bridge: string;
  migration: string;
}

/** A temporary MDB entry this daemon added for a migrated VM's port. */
export interface PortEntryState {
  bridge: string;
  port: string;
  group: string;
  vm: string;
}

export interface MigrationState {
  id: string;
  vm: { uuid: string; name: string };
  role: 'source' | 'destination';
  /** The other host's agent, as "address port". */
  peer: string;
  phase: 'signalling' | 'migrating' | 'awaiting-vm' | 'awaiting-report' | 'done' | 'failed';
  since: number;
  /** Groups and how the destination receives them. */
  groups: { group: string; via: 'direct' | 'relay' | 'pending' }[];
}

/** A stream this host relays (relay server role), per subscriber. */
export interface RelaySubscriberState {
  group: string;
  subscriber: string;
  expires: number;
}

export interface McastdState {
  proxyJoins: ProxyJoinState[];
  relays: RelayState[];
  portEntries: PortEntryState[];
  migrations: MigrationState[];
  relaySubscribers: RelaySubscriberState[];
}

export function emptyState(): McastdState {
  return { proxyJoins: [], relays: [], portEntries: [], migrations: [], relaySubscribers: [] };
}

export function serializeState(state: McastdState, pid: number): string {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return `${JSON.stringify({
    version: 1,
    pid,
    proxyJoins: state.proxyJoins.map((j) => ({ ...j, since: iso(j.since) })),
    relays: state.relays,
    portEntries: state.portEntries,
    migrations: state.migrations.map((m) => ({ ...m, since: iso(m.since) })),
    relaySubscribers: state.relaySubscribers.map((r) => ({ ...r, expires: iso(r.expires) })),
  }, null, 2)}\n`;
}

/** What a predecessor left that may need undoing: the lists it held, leniently read. */
export interface LeftBehind {
  pid: number | null;
  portEntries: PortEntryState[];
  relays: { group: string; server: string; port: number }[];
}

export function parseLeftBehind(text: string): LeftBehind {
  const d = JSON.parse(text) as Record<string, unknown>;
  if (typeof d !== 'object' || d === null || d.version !== 1) throw new Error('not a version 1 state file');
  const list = (k: string): Record<string, unknown>[] =>
    (Array.isArray(d[k]) ? (d[k] as unknown[]) : []).filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null);
  const s = (v: unknown): v is string => typeof v === 'string' && v !== '';
  return {
    pid: typeof d.pid === 'number' ? d.pid : null,
    portEntries: list('portEntries')
      .filter((e) => s(e.bridge) && s(e.port) && s(e.group))
      .map((e) => ({ bridge: e.bridge as string, port: e.port as string, group: e.group as string, vm: s(e.vm) ? e.vm : '' })),
    relays: list('relays')
      .filter((r) => s(r.group) && s(r.server) && typeof r.port === 'number')
      .map((r) => ({ group: r.group as string, server: r.server as string, port: r.port as number })),
  };
}

/**
 * Writes the state on each change, at most one write at a time: changes made
 * while a write is under way are written together right after it.
 */
export class StateFile {
  private writing: Promise<void> | null = null;
  private dirty = false;

  constructor(
    readonly file: string,
    private readonly current: () => McastdState,
    private readonly log: (level: 'error' | 'info', message: string) => void,
  ) {}

  /** The file a previous process left, or null if there is none (or it is unreadable: logged). */
  async readLeftBehind(): Promise<LeftBehind | null> {
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o755 });
    await removeStaleTempFiles(this.file);
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      this.log('error', `cannot read ${this.file}: ${(err as Error).message}; what a previous run left is not undone — remove the file`);
      return null;
    }
    try {
      return parseLeftBehind(text);
    } catch (err) {
      this.log('error', `${this.file} is not a state file (${(err as Error).message}); it is replaced — check what else writes there`);
      return null;
    }
  }

  changed(): void {
    this.dirty = true;
    if (this.writing === null) this.writing = this.flush();
  }

  /** Resolves once everything changed so far is on disk. */
  async settled(): Promise<void> {
    while (this.writing !== null) await this.writing;
  }

  /** Removes the file: no agent publishes a state any more. */
  async remove(): Promise<void> {
    await this.settled();
    await fs.rm(this.file, { force: true });
  }

  private async flush(): Promise<void> {
    try {
      while (this.dirty) {
        this.dirty = false;
        try {
          // Readable by all: vmm-agentx runs as its own user and serves it.
          await writeFileAtomic(this.file, serializeState(this.current(), process.pid), { mode: 0o644 });
        } catch (err) {
          this.log('error', `cannot write ${this.file}: ${(err as Error).message}; vmm-agentx shows a stale state until it can — check the directory`);
        }
      }
    } finally {
      this.writing = null;
    }
  }
}
