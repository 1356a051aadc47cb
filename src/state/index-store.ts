// Stable SNMP indexes. RFC 7666 asks vmIndex (and the per-VM vCPU, storage
// and network indexes) to stay constant at least until the hypervisor is
// re-initialised; operators expect more: the same VM keeps its row across
// agent restarts. We keep UUID → vmIndex, disk target → storage index and
// MAC → network index in one JSON file in the state directory, written
// atomically. Indexes are never reused while the file lives: a counter
// remembers the highest vmIndex ever handed out.
import { promises as fs } from 'fs';
import * as path from 'path';
import { writeFileAtomic } from './atomic-file';

export type StoreLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

/** One VM as the file stores it (version 1). */
interface VmEntryJson {
  index: number;
  name: string;
  /** ms since the epoch when the agent last saw the VM start running, or null when not running. */
  runningSince: number | null;
  /** libvirt domain id of that run: a new id means the VM was restarted while we were not looking. */
  runId: number;
  disks: Record<string, number>;
  nics: Record<string, number>;
  lastSeen: number;
}

interface StoreFile {
  version: 1;
  lastIndex: number;
  vms: Record<string, VmEntryJson>;
}

export interface DeviceKeys {
  uuid: string;
  name: string;
  running: boolean;
  /** libvirt domain id (-1 when inactive). */
  domainId: number;
  /** Disk target names in XML order. */
  disks: readonly string[];
  /** NIC keys (MAC, or position when a NIC has none) in XML order. */
  nics: readonly string[];
}

/** Shared between refreshes while nothing changes: read-only. */
export interface VmIndexes {
  readonly vmIndex: number;
  readonly runningSince: number | null;
  /** Indexes of the VM's current disks and NICs. */
  readonly disks: DeviceIndexes;
  readonly nics: DeviceIndexes;
}

/**
 * Device key → index pairs of one VM, immutable. A VM has a few devices, so
 * the pairs are one small array ([key, index, key, index, ...]): a Map costs
 * ~280 bytes even for two entries, and 20,000 of them live at 10,000 VMs.
 */
export class DeviceIndexes implements Iterable<[string, number]> {
  static readonly EMPTY = new DeviceIndexes([]);

  private constructor(private readonly pairs: readonly (string | number)[]) {}

  static fromRecord(record: Record<string, number>): DeviceIndexes {
    const pairs: (string | number)[] = [];
    for (const [key, index] of Object.entries(record)) pairs.push(key, index);
    return DeviceIndexes.of(pairs);
  }

  /**
   * Copies `pairs` into an array of exactly their length: one grown by
   * push() keeps room for ~17 elements, which made these 230 bytes each.
   */
  private static of(pairs: readonly (string | number)[]): DeviceIndexes {
    if (pairs.length === 0) return DeviceIndexes.EMPTY;
    const exact = new Array<string | number>(pairs.length);
    for (let i = 0; i < pairs.length; i++) exact[i] = pairs[i];
    return new DeviceIndexes(exact);
  }

  get size(): number {
    return this.pairs.length / 2;
  }

  get(key: string): number | undefined {
    const { pairs } = this;
    for (let i = 0; i < pairs.length; i += 2) if (pairs[i] === key) return pairs[i + 1] as number;
    return undefined;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** These pairs plus one for each key not yet here, numbered on from the highest index; this object when none is new. */
  withKeys(keys: readonly string[]): DeviceIndexes {
    let pairs: (string | number)[] | null = null;
    let highest = 0;
    for (let i = 1; i < this.pairs.length; i += 2) highest = Math.max(highest, this.pairs[i] as number);
    for (const key of keys) {
      if (this.has(key) || (pairs !== null && pairs.includes(key))) continue;
      pairs ??= this.pairs.slice();
      pairs.push(key, ++highest);
    }
    return pairs === null ? this : DeviceIndexes.of(pairs);
  }

  /** The pairs of `keys` (each once, in that order; all must be here); this object when that is exactly what it holds. */
  only(keys: readonly string[]): DeviceIndexes {
    if (this.holdsExactly(keys)) return this;
    const pairs: (string | number)[] = [];
    for (const key of keys) {
      if (pairs.includes(key)) continue;
      const index = this.get(key);
      if (index === undefined) throw new Error(`DeviceIndexes.only: no index for ${key}`);
      pairs.push(key, index);
    }
    return DeviceIndexes.of(pairs);
  }

  /** True when this holds exactly `keys`, in that order. */
  holdsExactly(keys: readonly string[]): boolean {
    if (keys.length !== this.size) return false;
    for (let i = 0; i < keys.length; i++) if (this.pairs[2 * i] !== keys[i]) return false;
    return true;
  }

  toRecord(): Record<string, number> {
    const record: Record<string, number> = {};
    for (const [key, index] of this) record[key] = index;
    return record;
  }

  *[Symbol.iterator](): Iterator<[string, number]> {
    for (let i = 0; i < this.pairs.length; i += 2) yield [this.pairs[i] as string, this.pairs[i + 1] as number];
  }
}

/** One VM in memory: what the file keeps, and the indexes last handed out for it. */
class VmEntry {
  /** What assign() last returned for this VM; handed out again while nothing in it changed. */
  issued: VmIndexes | null = null;

  constructor(
    readonly index: number,
    public name: string,
    public runningSince: number | null,
    public runId: number,
    public lastSeen: number,
    /** Every device the VM ever had: a detached disk re-attached gets its index back. */
    public disks: DeviceIndexes,
    public nics: DeviceIndexes,
  ) {}

  toJSON(): VmEntryJson {
    const { index, name, runningSince, runId, lastSeen } = this;
    return { index, name, runningSince, runId, disks: this.disks.toRecord(), nics: this.nics.toRecord(), lastSeen };
  }
}

const FILE_NAME = 'vm-indexes.json';
/** Entries of VMs not seen for this long are forgotten, so the file cannot grow without bound. */
const FORGET_AFTER_MS = 30 * 24 * 3600 * 1000;
const MAX_INDEX = 2147483647;

export class VmIndexStore {
  private dirty = false;
  /** --dump reads the indexes the daemon uses but must not write them. */
  readOnly = false;

  private constructor(
    private readonly file: string | null,
    private lastIndex: number,
    private readonly vms: Map<string, VmEntry>,
    private readonly log: StoreLog,
  ) {}

  /** An in-memory store, for --dump and tests that need no persistence. */
  static memory(log: StoreLog): VmIndexStore {
    return new VmIndexStore(null, 0, new Map(), log);
  }

  /**
   * Loads the store from stateDir. A missing file starts empty; an unreadable
   * or corrupt one is moved aside (so nothing is lost) and rebuilt.
   */
  static async load(stateDir: string, log: StoreLog): Promise<VmIndexStore> {
    const file = path.join(stateDir, FILE_NAME);
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        log('error', `cannot read state file ${file}: ${(err as Error).message}; starting with new VM indexes — check the permissions of --state-dir`);
      }
      return new VmIndexStore(file, 0, new Map(), log);
    }
    try {
      const data = validate(JSON.parse(text));
      const vms = new Map<string, VmEntry>();
      for (const [uuid, e] of Object.entries(data.vms)) {
        vms.set(uuid, new VmEntry(e.index, e.name, e.runningSince, e.runId, e.lastSeen,
          DeviceIndexes.fromRecord(e.disks), DeviceIndexes.fromRecord(e.nics)));
      }
      return new VmIndexStore(file, data.lastIndex, vms, log);
    } catch (err) {
      const aside = `${file}.corrupt-${Date.now()}`;
      await fs.rename(file, aside).catch(() => undefined);
      log('error', `state file ${file} is corrupt (${(err as Error).message}); moved it to ${aside} and rebuilt the VM index map — VMs may get new vmIndex values once`);
      const store = new VmIndexStore(file, 0, new Map(), log);
      store.dirty = true;
      return store;
    }
  }

  /** Indexes for the VMs of one snapshot; new VMs and devices get the next unused numbers. */
  assign(vms: readonly DeviceKeys[], now = Date.now()): Map<string, VmIndexes> {
    const out = new Map<string, VmIndexes>();
    for (const vm of vms) {
      let e = this.vms.get(vm.uuid);
      if (!e) {
        if (this.lastIndex >= MAX_INDEX) throw new Error('vmIndex space exhausted');
        e = new VmEntry(++this.lastIndex, vm.name, null, -1, now, DeviceIndexes.EMPTY, DeviceIndexes.EMPTY);
        this.vms.set(vm.uuid, e);
        this.dirty = true;
      }
      if (e.name !== vm.name) this.dirty = true;
      // The record's string, so that the store keeps no copy of its own.
      e.name = vm.name;
      if (vm.running && (e.runningSince === null || e.runId !== vm.domainId)) {
        e.runningSince = now;
        e.runId = vm.domainId;
        this.dirty = true;
      } else if (!vm.running && e.runningSince !== null) {
        e.runningSince = null;
        this.dirty = true;
      }
      e.lastSeen = now;
      const disks = e.disks.withKeys(vm.disks);
      const nics = e.nics.withKeys(vm.nics);
      if (disks !== e.disks || nics !== e.nics) this.dirty = true;
      e.disks = disks;
      e.nics = nics;
      const previous = e.issued;
      const unchanged = previous !== null && previous.runningSince === e.runningSince &&
        previous.disks.holdsExactly(vm.disks) && previous.nics.holdsExactly(vm.nics);
      if (!unchanged) {
        e.issued = { vmIndex: e.index, runningSince: e.runningSince, disks: disks.only(vm.disks), nics: nics.only(vm.nics) };
      }
      out.set(vm.uuid, e.issued!);
    }
    return out;
  }

  /** Writes the file if anything changed; errors are logged, never thrown: serving goes on. */
  async save(now = Date.now()): Promise<void> {
    if (!this.dirty || !this.file || this.readOnly) return;
    for (const [uuid, e] of this.vms) {
      if (now - e.lastSeen > FORGET_AFTER_MS) this.vms.delete(uuid);
    }
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const data: StoreFile = { version: 1, lastIndex: this.lastIndex, vms: Object.fromEntries(this.vms) as unknown as Record<string, VmEntryJson> };
      await writeFileAtomic(this.file, JSON.stringify(data));
      this.dirty = false;
    } catch (err) {
      this.log('error', `cannot write state file ${this.file}: ${(err as Error).message}; VM indexes will not survive a restart until --state-dir is writable`);
    }
  }
}

function validate(raw: unknown): StoreFile {
  if (typeof raw !== 'object' || raw === null) throw new Error('not a JSON object');
  const f = raw as Partial<StoreFile>;
  if (f.version !== 1) throw new Error(`unknown version ${String(f.version)}`);
  if (!Number.isInteger(f.lastIndex) || (f.lastIndex as number) < 0) throw new Error('lastIndex is not a non-negative integer');
  if (typeof f.vms !== 'object' || f.vms === null) throw new Error('vms is not an object');
  const seen = new Set<number>();
  for (const [uuid, e] of Object.entries(f.vms)) {
    if (!e || !Number.isInteger(e.index) || e.index < 1 || e.index > (f.lastIndex as number)) {
      throw new Error(`entry ${uuid} has an invalid index`);
    }
    if (seen.has(e.index)) throw new Error(`index ${e.index} is used twice`);
    seen.add(e.index);
    if (typeof e.disks !== 'object' || typeof e.nics !== 'object' || e.disks === null || e.nics === null) {
      throw new Error(`entry ${uuid} lacks device maps`);
    }
    for (const index of [...Object.values(e.disks), ...Object.values(e.nics)]) {
      if (!Number.isInteger(index) || index < 1) throw new Error(`entry ${uuid} has an invalid device index ${JSON.stringify(index)}`);
    }
    if (typeof e.name !== 'string') throw new Error(`entry ${uuid} has no name`);
    if (typeof e.lastSeen !== 'number') e.lastSeen = Date.now();
    if (typeof e.runId !== 'number') e.runId = -1;
    if (e.runningSince !== null && typeof e.runningSince !== 'number') throw new Error(`entry ${uuid} has an invalid runningSince`);
  }
  return f as StoreFile;
}
