// The last good DomainRecord of every domain, kept between refreshes so that
// a domain that fails or answers late, or every domain while libvirt is
// down, can still be served with its previous values.
//
// Kept as objects, each refresh's records would live exactly until the next
// refresh replaced them: promoted into the old space beside the generation
// they replace, they raise the RSS peak (docs/memory.md, "Last good
// records"). So at the start of the next collection the records are packed
// into two typed arrays holding only their changing values, 32-bit ones in
// one and 64-bit ones in the other (no value goes through BigInt
// arithmetic); their configuration is the parsed XML facts they were built
// from, which the collector caches anyway. Reading one back (rare: a failing
// domain, or libvirt down) builds an equal record.
//
// Which values are packed, and how, is said once per kind of record: the
// layouts DOMAIN, VCPU and DISK below drive packing, unpacking and the check
// that a record can be packed. The type checker holds them to the record
// types: a field added to DomainRecord, VcpuRecord or DiskRecord must be
// added to its layout.
//
// A record that does not match its facts (except in its name, which is then
// stored: a rename can fall between the domain list and the XML fetch) stays
// a JS object. Packing never changes what get() returns.

import { freeNow } from '../../agentx/free-now';
import type { DiskRecord, DomainRecord, VcpuRecord } from '../snapshot';
import type { DomainXmlFacts, XmlDisk } from './domain-xml';
import { diskRecordFromXml, recordFromFacts } from './libvirt-domain';
import type { DomainValues, PreviousRecord } from './libvirt-domain';

const U64_END = 1n << 64n;

// How a field is held: 32-bit fields take a word, 64-bit ones a wide value.
// A null, and a boolean, is a bit in the flags word that starts each record,
// vCPU and disk; a null takes no other room.
const INT32 = 0;
const UINT32 = 1;
const INT32_OR_NULL = 2;
const U64 = 3;
const U64_OR_NULL = 4;
const BOOL = 5;
const BOOL_OR_NULL = 6;
/** An affinity list, as the id of a list shared by the records packed together. */
const LIST_OR_NULL = 7;

/** The kinds that can hold a value of type V exactly. */
type KindOf<V> =
  [V] extends [number] ? typeof INT32 | typeof UINT32 :
  [V] extends [number | null] ? typeof INT32_OR_NULL :
  [V] extends [bigint] ? typeof U64 :
  [V] extends [bigint | null] ? typeof U64_OR_NULL :
  [V] extends [boolean] ? typeof BOOL :
  [V] extends [boolean | null] ? typeof BOOL_OR_NULL :
  [V] extends [readonly number[] | null] ? typeof LIST_OR_NULL :
  never;

/** Every field of T with its kind, in the order they are packed. */
type Fields<T> = { readonly [K in keyof T]-?: KindOf<T[K]> };

interface Layout {
  readonly keys: readonly string[];
  readonly kinds: readonly number[];
  /** The flag bit of each field (nulls and booleans; BOOL_OR_NULL takes this bit and the next). */
  readonly bits: readonly number[];
}

function layout<T>(fields: Fields<T>): Layout {
  const keys = Object.keys(fields);
  const kinds = keys.map((k) => (fields as Record<string, number>)[k]);
  let bit = 0;
  const bits = kinds.map((kind) => {
    const at = bit;
    if (kind === BOOL_OR_NULL) bit += 2;
    else if (kind !== INT32 && kind !== UINT32 && kind !== U64) bit += 1;
    return at;
  });
  if (bit > 32) throw new Error(`last-good: a layout needs ${bit} flag bits; a flags word has 32`);
  return { keys, kinds, bits };
}

/** What a record holds beyond its XML facts, its UUID, its name (see `names`), its vCPUs and its disks. */
const DOMAIN = layout<Omit<DomainValues, 'uuid' | 'name' | 'vcpus' | 'disks'>>({
  id: INT32,
  state: INT32,
  reason: INT32,
  autostart: BOOL_OR_NULL,
  persistent: BOOL_OR_NULL,
  managedSave: BOOL,
  memoryKiB: U64,
  cpuTimeNs: U64,
  jobType: INT32_OR_NULL,
  jobOperation: INT32_OR_NULL,
});
const VCPU = layout<VcpuRecord>({
  number: UINT32,
  state: INT32_OR_NULL,
  cpuTimeNs: U64_OR_NULL,
  affinity: LIST_OR_NULL,
});
/** A disk's counters; the rest of a DiskRecord is its XML. */
const DISK = layout<Omit<DiskRecord, keyof XmlDisk>>({
  capacity: U64_OR_NULL,
  allocation: U64_OR_NULL,
  physical: U64_OR_NULL,
  rdReq: U64_OR_NULL,
  wrReq: U64_OR_NULL,
  rdBytes: U64_OR_NULL,
  wrBytes: U64_OR_NULL,
  rdTotalTimeNs: U64_OR_NULL,
  wrTotalTimeNs: U64_OR_NULL,
});

type Fieldwise = Record<string, unknown>;

/**
 * Writes records into the arrays and counts the room they take, checking
 * that each value fits its kind. What lies past the end of the arrays is
 * counted, not written (a typed array ignores such a store): the counts then
 * size the arrays for a second go (`filling`). Affinity lists get ids as they
 * are met.
 */
class Packer {
  w = 0;
  x = 0;
  readonly lists: (readonly number[])[] = [];
  private readonly listIds = new Map<readonly number[], number>();

  constructor(
    readonly words: Int32Array<ArrayBuffer>,
    readonly wide: BigUint64Array<ArrayBuffer>,
  ) {}

  /** Whether everything so far was written, not only counted. */
  get written(): boolean {
    return this.w <= this.words.length && this.x <= this.wide.length;
  }

  /** Starts over on other arrays, keeping the list ids given so far. */
  filling(words: Int32Array<ArrayBuffer>, wide: BigUint64Array<ArrayBuffer>): Packer {
    const p = new Packer(words, wide);
    for (const list of this.lists) p.listId(list);
    return p;
  }

  word(value: number): void {
    this.words[this.w++] = value;
  }

  /**
   * Writes the fields of `o` as `l` says, after their flags word. False (and
   * what was written of `o` unusable) at a value its kind cannot hold
   * exactly.
   */
  fields(l: Layout, o: Fieldwise): boolean {
    const flagsAt = this.w++;
    let flags = 0;
    const { keys, kinds, bits } = l;
    for (let i = 0; i < keys.length; i++) {
      const value = o[keys[i]];
      const kind = kinds[i];
      if (!fits(kind, value)) return false;
      if (value === null) {
        flags |= 1 << bits[i];
      } else if (kind === U64 || kind === U64_OR_NULL) {
        this.wide[this.x++] = value as bigint;
      } else if (kind === BOOL || kind === BOOL_OR_NULL) {
        if (value === true) flags |= 1 << (kind === BOOL ? bits[i] : bits[i] + 1);
      } else if (kind === LIST_OR_NULL) {
        this.word(this.listId(value as readonly number[]));
      } else {
        this.word(value as number);
      }
    }
    this.words[flagsAt] = flags;
    return true;
  }

  private listId(list: readonly number[]): number {
    let id = this.listIds.get(list);
    if (id === undefined) {
      id = this.lists.length;
      this.listIds.set(list, id);
      this.lists.push(list);
    }
    return id;
  }
}

/** Reads back what Packer.fields() wrote, from words[w] and wide[x] on. */
class Unpacker {
  constructor(
    private readonly words: Int32Array,
    private readonly wide: BigUint64Array,
    private readonly lists: readonly (readonly number[])[],
    public w: number,
    public x: number,
  ) {}

  word(): number {
    return this.words[this.w++];
  }

  /**
   * Sets the fields of `out` as `l` says; with `wide` false, all but the
   * 64-bit ones (skipped: reading one makes a BigInt).
   */
  fields(l: Layout, out: Fieldwise, wide = true): void {
    const flags = this.words[this.w++];
    const { keys, kinds, bits } = l;
    for (let i = 0; i < keys.length; i++) {
      const kind = kinds[i];
      const bit = 1 << bits[i];
      let value: unknown;
      if (kind === BOOL) value = (flags & bit) !== 0;
      else if (kind === BOOL_OR_NULL) value = flags & bit ? null : (flags & (bit << 1)) !== 0;
      else if (kind !== INT32 && kind !== UINT32 && kind !== U64 && flags & bit) value = null;
      else if (kind === U64 || kind === U64_OR_NULL) {
        if (!wide) {
          this.x++;
          continue;
        }
        value = this.wide[this.x++];
      }
      else if (kind === LIST_OR_NULL) value = this.lists[this.word()];
      else if (kind === UINT32) value = this.word() >>> 0;
      else value = this.word();
      out[keys[i]] = value;
    }
  }
}

/** Whether a field of this kind keeps `value` exactly. */
function fits(kind: number, value: unknown): boolean {
  if (value === null) return kind !== INT32 && kind !== UINT32 && kind !== U64 && kind !== BOOL;
  switch (kind) {
    case INT32:
    case INT32_OR_NULL:
      return isInt32(value);
    case UINT32:
      return isUint32(value);
    case U64:
    case U64_OR_NULL:
      return isU64(value);
    case BOOL:
    case BOOL_OR_NULL:
      return typeof value === 'boolean';
    default:
      return Array.isArray(value);
  }
}

export class LastGoodRecords {
  /**
   * Every domain's last good record: the record itself when set since the
   * last pack() (or when it cannot be packed), else its entry number n, whose
   * values start at words[wordAt[n]] and wide[wideAt[n]]. One map whose keys
   * stay put from refresh to refresh: a record set or packed replaces a
   * value, so the map's table is never rebuilt (at 10,000 domains a table is
   * ~0.5 MB, allocated straight into the old generation).
   */
  private readonly entries = new Map<string, DomainRecord | number>();
  /** How many entries hold a record rather than an entry number. */
  private loose = 0;
  private wordAt = new Uint32Array(0);
  private wideAt = new Uint32Array(0);
  private words = new Int32Array(0);
  private wide = new BigUint64Array(0);
  /** The facts entry n was built from. */
  private facts: DomainXmlFacts[] = [];
  /** Affinity lists by id (they are shared, interned lists: few). */
  private lists: (readonly number[])[] = [];
  /** Names of packed records that differ from their facts' (a rename between the list and the XML fetch): rare. */
  private names = new Map<string, string>();

  /**
   * `factsOf`: the parsed XML a domain's record was built from, when known.
   * `packFrom`: pack() packs only when it holds at least this many records.
   */
  constructor(
    private readonly factsOf: (uuid: string) => DomainXmlFacts | undefined,
    private readonly packFrom = 0,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** How many records are held packed, and in how many bytes. */
  get packed(): { records: number; bytes: number } {
    return { records: this.entries.size - this.loose, bytes: this.words.byteLength + this.wide.byteLength };
  }

  /** Keeps `record` as this domain's last good one. */
  set(uuid: string, record: DomainRecord): void {
    if (typeof this.entries.get(uuid) !== 'object') this.loose++;
    this.entries.set(uuid, record);
  }

  get(uuid: string): DomainRecord | undefined {
    const e = this.entries.get(uuid);
    return typeof e === 'number' ? this.decode(uuid, e) : e;
  }

  /**
   * What queryDomain reads of the domain's last good record: the record
   * itself when it is not packed, else only those values, read without
   * making its counters and disks (a steady refresh asks this of every
   * domain).
   */
  previous(uuid: string): PreviousRecord | undefined {
    const n = this.entries.get(uuid);
    if (typeof n !== 'number') return n;
    const u = new Unpacker(this.words, this.wide, this.lists, this.wordAt[n], this.wideAt[n]);
    const values = {} as Fieldwise;
    u.fields(DOMAIN, values, false);
    const vcpus = new Array<Pick<VcpuRecord, 'number' | 'affinity'>>(u.word());
    for (let i = 0; i < vcpus.length; i++) {
      const vcpu = { number: 0, affinity: null };
      u.fields(VCPU, vcpu, false);
      vcpus[i] = vcpu;
    }
    values.vcpus = vcpus;
    return values as unknown as PreviousRecord;
  }

  has(uuid: string): boolean {
    return this.entries.has(uuid);
  }

  delete(uuid: string): void {
    if (typeof this.entries.get(uuid) === 'object') this.loose--;
    this.entries.delete(uuid);
  }

  uuids(): string[] {
    return [...this.entries.keys()];
  }

  values(): DomainRecord[] {
    return this.uuids().map((uuid) => this.get(uuid) as DomainRecord);
  }

  /**
   * Packs every record that matches its facts. Written straight into the
   * arrays of the last pack, which no entry reads any more once every record
   * is unpacked (at a steady refresh every domain has set a new one): a
   * steady host's records take the same room every time. Only when they do
   * not fit, or leave more than half the room unused, are they written again
   * into new arrays of the size counted, and the old ones freed at once.
   */
  pack(): void {
    const { entries } = this;
    if (this.loose === 0 || entries.size < this.packFrom) return;
    // Records still packed from before (domains that have not answered
    // since: rare) are unpacked, so that one layout holds them all.
    // (Replacing the value of a key does not disturb the iteration.)
    if (this.loose < entries.size) for (const [uuid, e] of entries) if (typeof e === 'number') entries.set(uuid, this.decode(uuid, e));
    this.loose = entries.size;

    // The facts each record is packed against (undefined: it stays loose),
    // for a second go, which meets the records in the same order.
    const against = new Array<DomainXmlFacts | undefined>(entries.size);
    const wordAt = new Uint32Array(entries.size);
    const wideAt = new Uint32Array(entries.size);
    let p = new Packer(this.words, this.wide);
    let count = 0;
    let i = 0;
    for (const [uuid, e] of entries) {
      const r = e as DomainRecord;
      let f = this.factsOf(uuid);
      if (f !== undefined) {
        const { w, x } = p;
        if (matchesFacts(uuid, r, f) && packRecord(p, r)) {
          wordAt[count] = w;
          wideAt[count] = x;
          count++;
        } else {
          // Its values take no room: the next record goes where it began.
          p.w = w;
          p.x = x;
          f = undefined;
        }
      }
      against[i++] = f;
    }

    const old = [this.wordAt.buffer, this.wideAt.buffer];
    if (!p.written || 2 * p.w < this.words.length || 2 * p.x < this.wide.length) {
      old.push(this.words.buffer, this.wide.buffer);
      const again = p.filling(new Int32Array(p.w), new BigUint64Array(p.x));
      i = 0;
      for (const [, e] of entries) if (against[i++] !== undefined) packRecord(again, e as DomainRecord);
      p = again;
      this.words = again.words;
      this.wide = again.wide;
    }
    const facts = new Array<DomainXmlFacts>(count);
    const names = new Map<string, string>();
    let n = 0;
    i = 0;
    for (const [uuid, e] of entries) {
      const f = against[i++];
      if (f === undefined) continue;
      facts[n] = f;
      if ((e as DomainRecord).name !== f.name) names.set(uuid, (e as DomainRecord).name);
      entries.set(uuid, n++);
    }
    this.loose -= count;
    this.wordAt = wordAt;
    this.wideAt = wideAt;
    this.facts = facts;
    this.lists = p.lists;
    this.names = names;
    freeNow(old);
  }

  private decode(uuid: string, n: number): DomainRecord {
    const facts = this.facts[n];
    const u = new Unpacker(this.words, this.wide, this.lists, this.wordAt[n], this.wideAt[n]);
    const values = { uuid, name: this.names.get(uuid) ?? facts.name } as DomainValues;
    u.fields(DOMAIN, values as unknown as Fieldwise);
    const vcpus = new Array<VcpuRecord>(u.word());
    for (let i = 0; i < vcpus.length; i++) {
      const vcpu: VcpuRecord = { number: 0, state: null, cpuTimeNs: null, affinity: null };
      u.fields(VCPU, vcpu as unknown as Fieldwise);
      vcpus[i] = vcpu;
    }
    const disks = new Array<DiskRecord>(facts.disks.length);
    for (let i = 0; i < disks.length; i++) {
      const disk = diskRecordFromXml(facts.disks[i]);
      u.fields(DISK, disk as unknown as Fieldwise);
      disks[i] = disk;
    }
    values.vcpus = vcpus;
    values.disks = disks;
    return recordFromFacts(facts, values);
  }
}

/**
 * The record's values: the domain's, the vCPU count, each vCPU's, each
 * disk's (the disk count is the facts'). While counting, false at a value
 * the layouts cannot hold exactly.
 */
function packRecord(p: Packer, r: DomainRecord): boolean {
  if (!p.fields(DOMAIN, r as unknown as Fieldwise)) return false;
  p.word(r.vcpus.length);
  for (const v of r.vcpus) if (!p.fields(VCPU, v as unknown as Fieldwise)) return false;
  for (const d of r.disks) if (!p.fields(DISK, d as unknown as Fieldwise)) return false;
  return true;
}

/** Whether `record` is `facts` plus its values: what the XML gives is the facts'. */
function matchesFacts(uuid: string, r: DomainRecord, facts: DomainXmlFacts): boolean {
  if (r.uuid !== uuid || r.osType !== facts.osType || r.curVcpus !== facts.curVcpus || r.maxVcpus !== facts.maxVcpus) return false;
  if (r.maxMemoryKiB !== facts.memoryKiB || r.hotplugMemoryKiB !== facts.hotplugMemoryKiB || r.nics !== facts.nics) return false;
  if (r.disks.length !== facts.disks.length) return false;
  for (let i = 0; i < r.disks.length; i++) {
    const d = r.disks[i];
    const x = facts.disks[i];
    if (d.target !== x.target || d.sourceKind !== x.sourceKind || d.device !== x.device || d.format !== x.format ||
      d.source !== x.source || d.readonly !== x.readonly || d.bus !== x.bus) return false;
  }
  return true;
}

const isInt32 = (n: unknown): boolean => typeof n === 'number' && Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff;
const isUint32 = (n: unknown): boolean => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
const isU64 = (n: unknown): boolean => typeof n === 'bigint' && n >= 0n && n < U64_END;
