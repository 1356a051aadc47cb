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

interface VmEntry {
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
  vms: Record<string, VmEntry>;
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
  readonly disks: DeviceIndexes;
  readonly nics: DeviceIndexes;
}

/**
 * One VM's device key → index pairs. Two arrays rather than a Map: a VM has
 * a few devices, and a Map costs ~280 bytes even for two entries (20,000
 * of them at 10,000 VMs, in a heap snapshot).
 */
export class DeviceIndexes implements Iterable<[string, number]> {
  constructor(
    private readonly keys: readonly string[],
    private readonly indexes: readonly number[],
  ) {}

  get size(): number {
    return this.keys.length;
  }

  get(key: string): number | undefined {
    const at = this.keys.indexOf(key);
    return at < 0 ? undefined : this.indexes[at];
  }

  has(key: string): boolean {
    return this.keys.includes(key);
  }

  *[Symbol.iterator](): Iterator<[string, number]> {
    for (let i = 0; i < this.keys.length; i++) yield [this.keys[i], this.indexes[i]];
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

  /**
   * What the last assign() returned: a VM whose indexes did not change gets
   * the same object again, so a refresh of 10,000 VMs does not build 20,000
   * new Maps.
   */
  private issued = new Map<string, VmIndexes>();

  private constructor(private readonly file: string | null, private data: StoreFile, private readonly log: StoreLog) {}

  /** An in-memory store, for --dump and tests that need no persistence. */
  static memory(log: StoreLog): VmIndexStore {
    return new VmIndexStore(null, emptyFile(), log);
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
      return new VmIndexStore(file, emptyFile(), log);
    }
    try {
      return new VmIndexStore(file, validate(JSON.parse(text)), log);
    } catch (err) {
      const aside = `${file}.corrupt-${Date.now()}`;
      await fs.rename(file, aside).catch(() => undefined);
      log('error', `state file ${file} is corrupt (${(err as Error).message}); moved it to ${aside} and rebuilt the VM index map — VMs may get new vmIndex values once`);
      const store = new VmIndexStore(file, emptyFile(), log);
      store.dirty = true;
      return store;
    }
  }

  /** Indexes for the VMs of one snapshot; new VMs and devices get the next unused numbers. */
  assign(vms: readonly DeviceKeys[], now = Date.now()): Map<string, VmIndexes> {
    const out = new Map<string, VmIndexes>();
    for (const vm of vms) {
      let e = this.data.vms[vm.uuid];
      if (!e) {
        if (this.data.lastIndex >= MAX_INDEX) throw new Error('vmIndex space exhausted');
        e = { index: ++this.data.lastIndex, name: vm.name, runningSince: null, runId: -1, disks: {}, nics: {}, lastSeen: now };
        this.data.vms[vm.uuid] = e;
        this.dirty = true;
      }
      if (e.name !== vm.name) {
        e.name = vm.name;
        this.dirty = true;
      }
      if (vm.running && (e.runningSince === null || e.runId !== vm.domainId)) {
        e.runningSince = now;
        e.runId = vm.domainId;
        this.dirty = true;
      } else if (!vm.running && e.runningSince !== null) {
        e.runningSince = null;
        this.dirty = true;
      }
      e.lastSeen = now;
      const previous = this.issued.get(vm.uuid);
      const unchanged = previous !== undefined && previous.vmIndex === e.index && previous.runningSince === e.runningSince &&
        hasExactly(previous.disks, vm.disks) && hasExactly(previous.nics, vm.nics);
      out.set(vm.uuid, unchanged ? previous : {
        vmIndex: e.index,
        runningSince: e.runningSince,
        disks: this.subIndexes(e.disks, vm.disks),
        nics: this.subIndexes(e.nics, vm.nics),
      });
    }
    this.issued = out;
    return out;
  }

  /** Writes the file if anything changed; errors are logged, never thrown: serving goes on. */
  async save(now = Date.now()): Promise<void> {
    if (!this.dirty || !this.file || this.readOnly) return;
    for (const [uuid, e] of Object.entries(this.data.vms)) {
      if (now - e.lastSeen > FORGET_AFTER_MS) delete this.data.vms[uuid];
    }
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      await writeFileAtomic(this.file, JSON.stringify(this.data));
      this.dirty = false;
    } catch (err) {
      this.log('error', `cannot write state file ${this.file}: ${(err as Error).message}; VM indexes will not survive a restart until --state-dir is writable`);
    }
  }

  private subIndexes(known: Record<string, number>, keys: readonly string[]): DeviceIndexes {
    const unique = [...new Set(keys)];
    const indexes: number[] = [];
    let highest = 0;
    for (const v of Object.values(known)) if (v > highest) highest = v;
    for (const key of unique) {
      let idx = known[key];
      if (idx === undefined) {
        idx = ++highest;
        known[key] = idx;
        this.dirty = true;
      }
      indexes.push(idx);
    }
    return new DeviceIndexes(unique, indexes);
  }

}

/** True when `issued` maps exactly `keys` (a device's index never changes once given, so the values still hold). */
function hasExactly(issued: DeviceIndexes, keys: readonly string[]): boolean {
  if (issued.size !== keys.length) return false;
  for (const key of keys) if (!issued.has(key)) return false;
  return true;
}

function emptyFile(): StoreFile {
  return { version: 1, lastIndex: 0, vms: {} };
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
    if (typeof e.lastSeen !== 'number') e.lastSeen = Date.now();
    if (typeof e.runId !== 'number') e.runId = -1;
    if (e.runningSince !== null && typeof e.runningSince !== 'number') throw new Error(`entry ${uuid} has an invalid runningSince`);
  }
  return f as StoreFile;
}
