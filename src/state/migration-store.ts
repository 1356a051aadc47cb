// The last finished migration of each VM, kept in the state dir so that a
// poller that missed a job, or an agent restarted since, still shows how it
// went (vmmMigrationLast*). One small JSON file, replaced atomically at each
// change. Losing it loses only history: a file that cannot be read or parsed
// is reported once and the store starts empty, never replacing a file it
// could not read.
import { promises as fs } from 'fs';
import * as path from 'path';
import { removeStaleTempFiles, writeFileAtomic } from './atomic-file';
import type { StoreLog } from './index-store';
import type { FinishedMigration, MigrationDirection, MigrationResult } from '../snapshot';

const FILE_NAME = 'vm-migrations.json';
const VERSION = 1;
const RESULTS: readonly MigrationResult[] = ['completed', 'failed', 'cancelled'];
const DIRECTIONS: readonly MigrationDirection[] = ['outgoing', 'incoming'];

export class MigrationStore {
  private saving: Promise<void> = Promise.resolve();
  private writeFailure: string | null = null;

  private constructor(
    private readonly file: string | null,
    private readonly records: Map<string, FinishedMigration>,
    /** The file exists but could not be read or parsed: never written over. */
    private readonly untouchable: boolean,
    private readonly log: StoreLog,
  ) {}

  static memory(log: StoreLog): MigrationStore {
    return new MigrationStore(null, new Map(), false, log);
  }

  /** `readOnly` (--dump, --check): read only, never clean up or write. */
  static async load(stateDir: string, log: StoreLog, options: { readOnly?: boolean } = {}): Promise<MigrationStore> {
    const file = path.join(stateDir, FILE_NAME);
    if (!options.readOnly) await removeStaleTempFiles(file).catch(() => []);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return new MigrationStore(file, new Map(), !!options.readOnly, log);
      log('error', `cannot read ${file}: ${e.message}; the last migration of each VM is not shown until it can be read ` +
        `(restart the agent after giving uid ${process.getuid?.() ?? '?'} read and write access to it)`);
      return new MigrationStore(file, new Map(), true, log);
    }
    try {
      return new MigrationStore(file, parse(text), !!options.readOnly, log);
    } catch (err) {
      log('error', `${file} is not a migration history this agent wrote (${(err as Error).message}); ` +
        `starting with none and leaving the file alone — move it away to let the agent record migrations again`);
      return new MigrationStore(file, new Map(), true, log);
    }
  }

  get(uuid: string): FinishedMigration | undefined {
    return this.records.get(uuid);
  }

  entries(): IterableIterator<[string, FinishedMigration]> {
    return this.records.entries();
  }

  /** Records a VM's last migration and writes the file. */
  set(uuid: string, last: FinishedMigration): Promise<void> {
    this.records.set(uuid, last);
    return this.save();
  }

  /** Forgets the VMs not in `present` (undefined from this host); writes only if that changed anything. */
  retainOnly(present: ReadonlySet<string>): Promise<void> {
    let changed = false;
    for (const uuid of this.records.keys()) {
      if (!present.has(uuid)) {
        this.records.delete(uuid);
        changed = true;
      }
    }
    return changed ? this.save() : Promise.resolve();
  }

  /** Resolves once every write asked for so far has been attempted. */
  flushed(): Promise<void> {
    return this.saving;
  }

  private save(): Promise<void> {
    if (this.file === null || this.untouchable) return this.saving;
    const file = this.file;
    this.saving = this.saving.then(async () => {
      try {
        await writeFileAtomic(file, serialize(this.records));
        if (this.writeFailure !== null) this.log('info', `${file} is written again`);
        this.writeFailure = null;
      } catch (err) {
        const message = (err as Error).message;
        if (this.writeFailure === null) {
          this.log('error', `cannot write ${file}: ${message}; the last migrations are kept in memory only ` +
            `— make ${path.dirname(file)} writable by uid ${process.getuid?.() ?? '?'}`);
        }
        this.writeFailure = message;
      }
    });
    return this.saving;
  }
}

interface StoredMigration {
  result: MigrationResult;
  direction: MigrationDirection;
  endedAt: number;
  endedUptimeTicks: number;
  totalTimeMs: number | null;
  downtimeMs: number | null;
  setupTimeMs: number | null;
  /** Decimal text: JSON has no 64-bit integers. */
  dataTransferred: string | null;
}

function serialize(records: ReadonlyMap<string, FinishedMigration>): string {
  const vms: Record<string, StoredMigration> = {};
  for (const [uuid, m] of records) {
    vms[uuid] = {
      result: m.result,
      direction: m.direction,
      endedAt: m.endedAt,
      endedUptimeTicks: m.endedUptimeTicks,
      totalTimeMs: m.totalTimeMs,
      downtimeMs: m.downtimeMs,
      setupTimeMs: m.setupTimeMs,
      dataTransferred: m.dataTransferred === null ? null : m.dataTransferred.toString(),
    };
  }
  return JSON.stringify({ version: VERSION, vms }, null, 1) + '\n';
}

function parse(text: string): Map<string, FinishedMigration> {
  const data = JSON.parse(text) as { version?: unknown; vms?: unknown };
  if (data.version !== VERSION || typeof data.vms !== 'object' || data.vms === null) throw new Error(`not version ${VERSION}`);
  const out = new Map<string, FinishedMigration>();
  for (const [uuid, raw] of Object.entries(data.vms as Record<string, Partial<StoredMigration>>)) {
    const m = raw ?? {};
    const optMs = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
    if (!RESULTS.includes(m.result as MigrationResult) || !DIRECTIONS.includes(m.direction as MigrationDirection) ||
        typeof m.endedAt !== 'number' || typeof m.endedUptimeTicks !== 'number') {
      throw new Error(`entry ${uuid} is malformed`);
    }
    out.set(uuid, {
      result: m.result as MigrationResult,
      direction: m.direction as MigrationDirection,
      endedAt: m.endedAt,
      endedUptimeTicks: m.endedUptimeTicks,
      totalTimeMs: optMs(m.totalTimeMs),
      downtimeMs: optMs(m.downtimeMs),
      setupTimeMs: optMs(m.setupTimeMs),
      dataTransferred: typeof m.dataTransferred === 'string' && /^[0-9]+$/.test(m.dataTransferred) ? BigInt(m.dataTransferred) : null,
    });
  }
  return out;
}
