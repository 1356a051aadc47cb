// Stable SNMP indexes. RFC 7666 asks vmIndex (and the per-VM vCPU, storage
// and network indexes) to stay constant at least until the hypervisor is
// re-initialised; operators expect more: the same VM keeps its row across
// agent restarts. We keep UUID → vmIndex, disk target → storage index and
// MAC → network index in one JSON file in the state directory, written
// atomically. Indexes are never reused while the file lives: a counter
// remembers the highest vmIndex ever handed out.
import { promises as fs } from 'fs';
import * as path from 'path';
import { removeStaleTempFiles, writeFileAtomic } from './atomic-file';

export type StoreLog = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

/** The highest vmIndex, and device index, the MIB allows (VmIndex and its kin are 1..2147483647). */
export const MAX_INDEX = 2147483647;

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
  /** When the current run started (ms since the epoch), where the host tells; else the first sighting counts. */
  startedAt?: number | null;
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
 * the pairs are one small array ([key, index, key, index, ...]) rather than
 * a Map, which is large even for two entries, and every VM has two (disks,
 * NICs; docs/memory.md, "Index store").
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
   * push() keeps room for more than a VM's few devices.
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

  /**
   * These pairs plus one for each key not yet here, numbered on from the
   * highest index; this object when none is new. A key past MAX_INDEX gets
   * none: `unassignable` is told, and the device has no row.
   */
  withKeys(keys: readonly string[], unassignable?: (key: string) => void): DeviceIndexes {
    let pairs: (string | number)[] | null = null;
    let highest = 0;
    for (let i = 1; i < this.pairs.length; i += 2) highest = Math.max(highest, this.pairs[i] as number);
    for (const key of keys) {
      if (this.has(key) || (pairs !== null && pairs.includes(key))) continue;
      if (highest >= MAX_INDEX) {
        unassignable?.(key);
        continue;
      }
      pairs ??= this.pairs.slice();
      pairs.push(key, ++highest);
    }
    return pairs === null ? this : DeviceIndexes.of(pairs);
  }

  /** The pairs of those `keys` that have an index (each once, in that order); this object when that is exactly what it holds. */
  only(keys: readonly string[]): DeviceIndexes {
    if (this.holdsExactly(keys)) return this;
    const pairs: (string | number)[] = [];
    for (const key of keys) {
      if (pairs.includes(key)) continue;
      const index = this.get(key);
      if (index !== undefined) pairs.push(key, index);
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
/** The version the last save replaced: what a corrupt file is rebuilt from. */
const PREVIOUS_SUFFIX = '.previous';
/** Entries of VMs not seen for this long are forgotten, so the file cannot grow without bound. */
const FORGET_AFTER_MS = 30 * 24 * 3600 * 1000;

export interface LoadOptions {
  /** --dump and --check: read the file the daemon uses, never write, move or clean anything. */
  readOnly?: boolean;
}

/** What load() found, as the store goes on from it. */
interface Loaded {
  lastIndex: number;
  vms: Map<string, VmEntry>;
  /** The file exists but could not be read: nothing may be written over it. */
  unreadable: string | null;
  /** Something was rebuilt or salvaged: write the result at the next save. */
  dirty: boolean;
}

export class VmIndexStore {
  private dirty = false;
  /** Why the file cannot be read (and so must not be replaced), or null. */
  private unreadable: string | null = null;
  /** The error of the last failed write, or null while writes succeed: failures are logged when they start and end. */
  private writeFailure: string | null = null;
  private saving: Promise<void> = Promise.resolve();
  /** UUIDs (and UUID/device keys) already reported as unassignable. */
  private readonly reportedUnassignable = new Set<string>();

  private constructor(
    private readonly file: string | null,
    private lastIndex: number,
    private vms: Map<string, VmEntry>,
    private readonly log: StoreLog,
    private readonly readOnly: boolean,
  ) {}

  /** An in-memory store, for tests that need no persistence. */
  static memory(log: StoreLog): VmIndexStore {
    return new VmIndexStore(null, 0, new Map(), log, false);
  }

  /**
   * Loads the store from stateDir. A missing file starts empty. A file that
   * exists but cannot be read is never replaced: the store serves indexes
   * from memory and reads it again at each save. A corrupt file is moved
   * aside and rebuilt from the version the last save replaced, numbering on
   * after the highest index either still shows.
   */
  static async load(stateDir: string, log: StoreLog, options: LoadOptions = {}): Promise<VmIndexStore> {
    const file = path.join(stateDir, FILE_NAME);
    const readOnly = options.readOnly ?? false;
    if (!readOnly) {
      const removed = await removeStaleTempFiles(file, [file + PREVIOUS_SUFFIX]);
      if (removed.length > 0) log('info', `removed ${removed.length} temp file(s) left in ${stateDir} by an interrupted write: ${removed.join(', ')}`);
    }
    const loaded = await readStoreFile(file, log, readOnly);
    const store = new VmIndexStore(file, loaded.lastIndex, loaded.vms, log, readOnly);
    store.unreadable = loaded.unreadable;
    store.dirty = loaded.dirty;
    return store;
  }

  /**
   * Indexes for the VMs of one snapshot; new VMs and devices get the next
   * unused numbers, new VMs in UUID order (so that a fresh state dir numbers
   * the same VMs the same way on every run, whatever order they come in).
   */
  assign(vms: readonly DeviceKeys[], now = Date.now()): Map<string, VmIndexes> {
    const out = new Map<string, VmIndexes>();
    // The VMs already numbered first, in the order given: only new ones need sorting.
    let fresh: DeviceKeys[] | null = null;
    for (const vm of vms) {
      if (this.vms.has(vm.uuid)) this.assignOne(vm, now, out);
      else (fresh ??= []).push(vm);
    }
    if (fresh !== null) {
      fresh.sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
      for (const vm of fresh) this.assignOne(vm, now, out);
    }
    return out;
  }

  private assignOne(vm: DeviceKeys, now: number, out: Map<string, VmIndexes>): void {
    let e = this.vms.get(vm.uuid);
    if (!e) {
      if (this.lastIndex >= MAX_INDEX) {
        this.reportUnassignable(vm.uuid, `VM ${vm.name} (${vm.uuid}) has no vmIndex: all ${MAX_INDEX} have been handed out; ` +
          `it is not served until ${this.file ?? 'the state file'} is moved aside (every VM is then numbered anew)`);
        return;
      }
      e = new VmEntry(++this.lastIndex, vm.name, null, -1, now, DeviceIndexes.EMPTY, DeviceIndexes.EMPTY);
      this.vms.set(vm.uuid, e);
      this.dirty = true;
    }
    if (e.name !== vm.name) this.dirty = true;
    // The record's string, so that the store keeps no copy of its own.
    e.name = vm.name;
    if (vm.running && (e.runningSince === null || e.runId !== vm.domainId)) {
      e.runningSince = vm.startedAt ?? now;
      e.runId = vm.domainId;
      this.dirty = true;
    } else if (!vm.running && e.runningSince !== null) {
      e.runningSince = null;
      this.dirty = true;
    }
    e.lastSeen = now;
    const disks = e.disks.withKeys(vm.disks, (key) => this.reportDevice(vm, 'disk', key));
    const nics = e.nics.withKeys(vm.nics, (key) => this.reportDevice(vm, 'NIC', key));
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

  /**
   * Whether assign() would take this VM's run as a new one (not seen running
   * before, or under another domain id): the caller may then look up when the
   * run really started and pass it as DeviceKeys.startedAt.
   */
  isNewRun(uuid: string, domainId: number): boolean {
    const e = this.vms.get(uuid);
    return e === undefined || e.runningSince === null || e.runId !== domainId;
  }

  private reportDevice(vm: DeviceKeys, kind: string, key: string): void {
    this.reportUnassignable(`${vm.uuid}/${kind}/${key}`, `${kind} ${key} of VM ${vm.name} (${vm.uuid}) has no index: ` +
      `the VM's ${kind} indexes reached ${MAX_INDEX}; it has no row until ${this.file ?? 'the state file'} is moved aside`);
  }

  private reportUnassignable(key: string, message: string): void {
    if (this.reportedUnassignable.has(key)) return;
    this.reportedUnassignable.add(key);
    this.log('error', message);
  }

  /**
   * Writes the file if anything changed; errors are logged (when writes start
   * failing and when they work again), never thrown: serving goes on. Saves
   * run one at a time.
   */
  save(now = Date.now()): Promise<void> {
    this.saving = this.saving.then(() => this.saveNow(now));
    return this.saving;
  }

  private async saveNow(now: number): Promise<void> {
    if (!this.file || this.readOnly) return;
    if (this.unreadable !== null && !(await this.readAgain(this.file))) return;
    if (!this.dirty) return;
    for (const [uuid, e] of this.vms) {
      if (now - e.lastSeen > FORGET_AFTER_MS) this.vms.delete(uuid);
    }
    try {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const data: StoreFile = { version: 1, lastIndex: this.lastIndex, vms: Object.fromEntries(this.vms) as unknown as Record<string, VmEntryJson> };
      await writeFileAtomic(this.file, JSON.stringify(data), { keepPreviousAs: this.file + PREVIOUS_SUFFIX });
      this.dirty = false;
      if (this.writeFailure !== null) this.log('info', `state file ${this.file} written again; VM indexes are saved`);
      this.writeFailure = null;
    } catch (err) {
      const message = (err as Error).message;
      if (this.writeFailure === null) {
        this.log('error', `cannot write state file ${this.file}: ${message}; VM indexes will not survive a restart until ` +
          `${path.dirname(this.file)} is writable by this user (uid ${process.getuid?.() ?? '?'}) and has space — retrying at each refresh, logged again when it works`);
      }
      this.writeFailure = message;
    }
  }

  /**
   * The file could not be read at start: try again. Once it can be, its
   * indexes replace the ones handed out from memory meanwhile (the file is
   * what other agent runs used; VMs it does not know are numbered after it).
   */
  private async readAgain(file: string): Promise<boolean> {
    const loaded = await readStoreFile(file, this.log, false, true);
    if (loaded.unreadable !== null) return false;
    this.log('info', `state file ${file} can be read again; serving the VM indexes it holds`);
    this.unreadable = null;
    this.vms = loaded.vms;
    this.lastIndex = loaded.lastIndex;
    this.dirty = true;
    return true;
  }
}

/**
 * Reads, validates and (when corrupt) salvages the state file. Never throws.
 * `quiet` leaves out the line about a file that cannot be read or moved aside (said once already).
 */
async function readStoreFile(file: string, log: StoreLog, readOnly: boolean, quiet = false): Promise<Loaded> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // No such file (or no such directory): nothing to lose.
    if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return { lastIndex: 0, vms: new Map(), unreadable: null, dirty: false };
    if (!quiet) {
      log('error', `cannot read state file ${file}: ${e.message}; serving VM indexes from memory and leaving the file ` +
        `untouched until it can be read (tried again at each refresh) — give this user (uid ${process.getuid?.() ?? '?'}) ` +
        `read and write access to it${readOnly ? '' : ' and to its directory'}`);
    }
    return { lastIndex: 0, vms: new Map(), unreadable: e.message, dirty: false };
  }
  let problem: string;
  try {
    const data = validate(JSON.parse(text));
    return { lastIndex: data.lastIndex, vms: entriesOf(data), unreadable: null, dirty: false };
  } catch (err) {
    problem = (err as Error).message;
  }
  // Corrupt: keep the file for the operator, and never hand out again a number it may still hold.
  const salvaged = highestIndexIn(text);
  const previous = await readPrevious(file + PREVIOUS_SUFFIX);
  const lastIndex = Math.max(salvaged, previous?.lastIndex ?? 0);
  const vms = previous ? entriesOf(previous) : new Map<string, VmEntry>();
  const rebuilt = previous
    ? `rebuilt the VM index map from ${file}${PREVIOUS_SUFFIX} (${vms.size} VMs keep their indexes)`
    : 'rebuilt the VM index map (known VMs get new vmIndex values once)';
  const numbering = `new VMs are numbered from ${lastIndex + 1}`;
  if (readOnly) {
    log('error', `state file ${file} is corrupt (${problem}); left as it is (--dump and --check do not write), ` +
      `the agent moves it aside when it starts`);
    return { lastIndex, vms, unreadable: null, dirty: false };
  }
  const aside = `${file}.corrupt-${Date.now()}`;
  try {
    await fs.rename(file, aside);
  } catch (err) {
    if (!quiet) log('error', `state file ${file} is corrupt (${problem}) and cannot be moved aside (${(err as Error).message}); ` +
      `serving VM indexes from memory without writing it — make ${path.dirname(file)} writable by this user, or move the file away`);
    return { lastIndex, vms, unreadable: `corrupt and cannot be moved aside: ${(err as Error).message}`, dirty: false };
  }
  log('error', `state file ${file} is corrupt (${problem}); moved it to ${aside}, ${rebuilt}; ${numbering}`);
  return { lastIndex, vms, unreadable: null, dirty: true };
}

async function readPrevious(file: string): Promise<StoreFile | null> {
  try {
    return validate(JSON.parse(await fs.readFile(file, 'utf8')));
  } catch {
    return null;
  }
}

function entriesOf(data: StoreFile): Map<string, VmEntry> {
  const vms = new Map<string, VmEntry>();
  for (const [uuid, e] of Object.entries(data.vms)) {
    vms.set(uuid, new VmEntry(e.index, e.name, e.runningSince, e.runId, e.lastSeen,
      DeviceIndexes.fromRecord(e.disks), DeviceIndexes.fromRecord(e.nics)));
  }
  return vms;
}

/**
 * The highest vmIndex a damaged file still shows: its lastIndex and every
 * entry's index that lie in the MIB's range, read from the text itself when
 * it is no longer JSON.
 */
function highestIndexIn(text: string): number {
  let highest = 0;
  for (const m of text.matchAll(/"(?:lastIndex|index)"\s*:\s*(\d{1,16})\b/g)) {
    const n = Number(m[1]);
    if (n <= MAX_INDEX) highest = Math.max(highest, n);
  }
  return highest;
}

const isIndex = (n: unknown, max = MAX_INDEX): n is number => Number.isInteger(n) && (n as number) >= 1 && (n as number) <= max;

function validate(raw: unknown): StoreFile {
  if (typeof raw !== 'object' || raw === null) throw new Error('not a JSON object');
  const f = raw as Partial<StoreFile>;
  if (f.version !== 1) throw new Error(`unknown version ${String(f.version)}`);
  if (!(f.lastIndex === 0 || isIndex(f.lastIndex))) throw new Error(`lastIndex ${JSON.stringify(f.lastIndex)} is not an integer from 0 to ${MAX_INDEX}`);
  if (typeof f.vms !== 'object' || f.vms === null) throw new Error('vms is not an object');
  const seen = new Set<number>();
  for (const [uuid, e] of Object.entries(f.vms)) {
    if (!e || !isIndex(e.index, f.lastIndex as number)) throw new Error(`entry ${uuid} has an invalid index (1 to lastIndex)`);
    if (seen.has(e.index)) throw new Error(`index ${e.index} is used twice`);
    seen.add(e.index);
    if (typeof e.disks !== 'object' || typeof e.nics !== 'object' || e.disks === null || e.nics === null) {
      throw new Error(`entry ${uuid} lacks device maps`);
    }
    for (const index of [...Object.values(e.disks), ...Object.values(e.nics)]) {
      if (!isIndex(index)) throw new Error(`entry ${uuid} has an invalid device index ${JSON.stringify(index)} (1 to ${MAX_INDEX})`);
    }
    if (typeof e.name !== 'string') throw new Error(`entry ${uuid} has no name`);
    if (typeof e.lastSeen !== 'number' || !Number.isFinite(e.lastSeen)) e.lastSeen = Date.now();
    if (!Number.isInteger(e.runId)) e.runId = -1;
    if (e.runningSince !== null && (typeof e.runningSince !== 'number' || !Number.isFinite(e.runningSince))) {
      throw new Error(`entry ${uuid} has an invalid runningSince`);
    }
  }
  return f as StoreFile;
}
