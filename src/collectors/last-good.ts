// The last good DomainRecord of every domain, kept between refreshes so that
// a domain that fails or answers late, or every domain while libvirt is
// down, can still be served with its previous values.
//
// Kept as JS objects, these records were ~13 MB of heap at 10,000 VMs, and
// each refresh's generation lived exactly until the next one replaced it: it
// was promoted into the old space beside the generation it replaced, which
// set the process's RSS peak (measured: 7 MB lower without them). So at
// the start of the next collection the records are packed into two typed
// arrays holding only their changing values (~240 bytes for 2 vCPUs and 2
// disks: 32-bit fields in one, 64-bit counters in the other, so that no
// value is converted through BigInt arithmetic); their configuration is the
// parsed XML facts they were built from, which the collector caches anyway.
// Reading one back (rare: a failing domain, or libvirt down) builds an equal
// record.
//
// A record that does not match its facts (except in its name, which is then
// stored: a rename can fall between the domain list and the XML fetch) stays
// a JS object. Packing never changes what get() returns.

import { freeNow } from '../../agentx';
import type { DiskRecord, DomainRecord, VcpuRecord } from '../snapshot';
import type { DomainXmlFacts } from './domain-xml';
import { diskRecordFromXml, recordFromFacts } from './libvirt-domain';

const U64_END = 1n << 64n;
const NO_LIST = -1;

// Header flags; bits 0-1 and 2-3 are autostart and persistent (0 unknown, 1 false, 2 true).
const MANAGED_SAVE = 1 << 4;
const JOB_TYPE_NULL = 1 << 5;
const JOB_OPERATION_NULL = 1 << 6;
// vCPU flags.
const VCPU_STATE_NULL = 1;
const VCPU_TIME_NULL = 2;

/** 32-bit words of a record: flags, id, state, reason, jobType, jobOperation, vCPU count; then per vCPU and per disk. */
const HEADER_WORDS = 7;
/** number (uint32 bits), flags, state, affinity list id. */
const VCPU_WORDS = 4;
/** The disk's bitmask of counters present. */
const DISK_WORDS = 1;
/** 64-bit values: memoryKiB, cpuTimeNs; then a time per vCPU (0 when null), then each disk's present counters. */
const HEADER_WIDE = 2;

export class LastGoodRecords {
  /** Records set since the last pack(), and those that cannot be packed. */
  private readonly loose = new Map<string, DomainRecord>();
  /** Packed records: UUID → entry number n, whose values start at words[wordAt[n]] and wide[wideAt[n]]. */
  private readonly index = new Map<string, number>();
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

  /** `factsOf`: the parsed XML a domain's record was built from, when known. */
  constructor(private readonly factsOf: (uuid: string) => DomainXmlFacts | undefined) {}

  get size(): number {
    return this.loose.size + this.index.size;
  }

  /** How many records are held packed, and in how many bytes. */
  get packed(): { records: number; bytes: number } {
    return { records: this.index.size, bytes: this.words.byteLength + this.wide.byteLength };
  }

  /** Keeps `record` as this domain's last good one. */
  set(uuid: string, record: DomainRecord): void {
    this.index.delete(uuid);
    this.loose.set(uuid, record);
  }

  get(uuid: string): DomainRecord | undefined {
    const loose = this.loose.get(uuid);
    if (loose !== undefined) return loose;
    const n = this.index.get(uuid);
    return n === undefined ? undefined : this.decode(uuid, n);
  }

  delete(uuid: string): void {
    this.loose.delete(uuid);
    this.index.delete(uuid);
  }

  uuids(): string[] {
    return [...this.loose.keys(), ...this.index.keys()];
  }

  values(): DomainRecord[] {
    return this.uuids().map((uuid) => this.get(uuid) as DomainRecord);
  }

  /**
   * Packs every record that matches its facts into new arrays, and frees
   * the old ones at once. Two passes over the records (size, then write)
   * rather than a list of them: at 10,000 VMs every temporary here is
   * megabytes.
   */
  pack(): void {
    if (this.loose.size === 0) return;
    // Records still packed from before (domains that have not answered
    // since: rare) are unpacked, so that one layout holds them all.
    for (const [uuid, n] of this.index) this.loose.set(uuid, this.decode(uuid, n));
    this.index.clear();

    const listIds = new Map<readonly number[], number>();
    const lists: (readonly number[])[] = [];
    let wordCount = 0;
    let wideCount = 0;
    let count = 0;
    for (const [uuid, r] of this.loose) {
      if (this.packableFacts(uuid, r) === undefined) continue;
      wordCount += HEADER_WORDS + r.vcpus.length * VCPU_WORDS + r.disks.length * DISK_WORDS;
      wideCount += HEADER_WIDE + r.vcpus.length;
      for (const d of r.disks) wideCount += presentCounters(d);
      count++;
      for (const v of r.vcpus) {
        if (v.affinity !== null && !listIds.has(v.affinity)) {
          listIds.set(v.affinity, lists.length);
          lists.push(v.affinity);
        }
      }
    }

    const old = [this.words.buffer, this.wide.buffer, this.wordAt.buffer, this.wideAt.buffer];
    const words = new Int32Array(wordCount);
    const wide = new BigUint64Array(wideCount);
    const wordAt = new Uint32Array(count);
    const wideAt = new Uint32Array(count);
    const facts = new Array<DomainXmlFacts>(count);
    const names = new Map<string, string>();
    let w = 0;
    let x = 0;
    let n = 0;
    for (const [uuid, r] of this.loose) {
      const f = this.packableFacts(uuid, r);
      if (f === undefined) continue;
      this.index.set(uuid, n);
      wordAt[n] = w;
      wideAt[n] = x;
      facts[n] = f;
      n++;
      if (r.name !== f.name) names.set(uuid, r.name);
      words[w++] = triStateBits(r.autostart) | (triStateBits(r.persistent) << 2) | (r.managedSave ? MANAGED_SAVE : 0) |
        (r.jobType === null ? JOB_TYPE_NULL : 0) | (r.jobOperation === null ? JOB_OPERATION_NULL : 0);
      words[w++] = r.id;
      words[w++] = r.state;
      words[w++] = r.reason;
      words[w++] = r.jobType ?? 0;
      words[w++] = r.jobOperation ?? 0;
      words[w++] = r.vcpus.length;
      wide[x++] = r.memoryKiB;
      wide[x++] = r.cpuTimeNs;
      for (const v of r.vcpus) {
        words[w++] = v.number;
        words[w++] = (v.state === null ? VCPU_STATE_NULL : 0) | (v.cpuTimeNs === null ? VCPU_TIME_NULL : 0);
        words[w++] = v.state ?? 0;
        words[w++] = v.affinity === null ? NO_LIST : (listIds.get(v.affinity) as number);
        wide[x++] = v.cpuTimeNs ?? 0n;
      }
      for (const d of r.disks) {
        let present = 0;
        const put = (value: bigint | null, bit: number): void => {
          if (value === null) return;
          present |= bit;
          wide[x++] = value;
        };
        put(d.capacity, 1);
        put(d.allocation, 2);
        put(d.physical, 4);
        put(d.rdReq, 8);
        put(d.wrReq, 16);
        put(d.rdBytes, 32);
        put(d.wrBytes, 64);
        put(d.rdTotalTimeNs, 128);
        put(d.wrTotalTimeNs, 256);
        words[w++] = present;
      }
      this.loose.delete(uuid);
    }
    this.words = words;
    this.wide = wide;
    this.wordAt = wordAt;
    this.wideAt = wideAt;
    this.facts = facts;
    this.lists = lists;
    this.names = names;
    freeNow(old);
  }

  private decode(uuid: string, n: number): DomainRecord {
    const { words, wide } = this;
    const facts = this.facts[n];
    let w = this.wordAt[n];
    let x = this.wideAt[n];
    const flags = words[w];
    const id = words[w + 1];
    const state = words[w + 2];
    const reason = words[w + 3];
    const jobType = words[w + 4];
    const jobOperation = words[w + 5];
    const vcpuCount = words[w + 6];
    w += HEADER_WORDS;
    const memoryKiB = wide[x];
    const cpuTimeNs = wide[x + 1];
    x += HEADER_WIDE;
    const vcpus = new Array<VcpuRecord>(vcpuCount);
    for (let i = 0; i < vcpuCount; i++) {
      const vflags = words[w + 1];
      const list = words[w + 3];
      vcpus[i] = {
        number: words[w] >>> 0,
        state: vflags & VCPU_STATE_NULL ? null : words[w + 2],
        cpuTimeNs: vflags & VCPU_TIME_NULL ? null : wide[x],
        affinity: list === NO_LIST ? null : this.lists[list],
      };
      w += VCPU_WORDS;
      x++;
    }
    const disks = new Array<DiskRecord>(facts.disks.length);
    for (let i = 0; i < disks.length; i++) {
      const present = words[w++];
      const counter = (bit: number): bigint | null => (present & bit ? wide[x++] : null);
      const disk = diskRecordFromXml(facts.disks[i]);
      disk.capacity = counter(1);
      disk.allocation = counter(2);
      disk.physical = counter(4);
      disk.rdReq = counter(8);
      disk.wrReq = counter(16);
      disk.rdBytes = counter(32);
      disk.wrBytes = counter(64);
      disk.rdTotalTimeNs = counter(128);
      disk.wrTotalTimeNs = counter(256);
      disks[i] = disk;
    }
    return recordFromFacts(facts, {
      uuid,
      name: this.names.get(uuid) ?? facts.name,
      id,
      state,
      reason,
      autostart: triState(flags & 3),
      persistent: triState((flags >> 2) & 3),
      managedSave: (flags & MANAGED_SAVE) !== 0,
      memoryKiB,
      cpuTimeNs,
      vcpus,
      disks,
      jobType: flags & JOB_TYPE_NULL ? null : jobType,
      jobOperation: flags & JOB_OPERATION_NULL ? null : jobOperation,
    });
  }

  /** The facts `record` can be packed against, or undefined when it must stay as it is. */
  private packableFacts(uuid: string, record: DomainRecord): DomainXmlFacts | undefined {
    const facts = this.factsOf(uuid);
    return facts !== undefined && packable(uuid, record, facts) ? facts : undefined;
  }
}

/** Whether `record` is `facts` plus values the packed form holds exactly. */
function packable(uuid: string, r: DomainRecord, facts: DomainXmlFacts): boolean {
  if (r.uuid !== uuid || r.osType !== facts.osType || r.curVcpus !== facts.curVcpus || r.maxVcpus !== facts.maxVcpus) return false;
  if (r.maxMemoryKiB !== facts.memoryKiB || r.hotplugMemoryKiB !== facts.hotplugMemoryKiB || r.nics !== facts.nics) return false;
  if (!isInt32(r.id) || !isInt32(r.state) || !isInt32(r.reason)) return false;
  if ((r.jobType !== null && !isInt32(r.jobType)) || (r.jobOperation !== null && !isInt32(r.jobOperation))) return false;
  if (!isU64(r.memoryKiB) || !isU64(r.cpuTimeNs)) return false;
  for (const v of r.vcpus) {
    if (!Number.isInteger(v.number) || v.number < 0 || v.number > 0xffffffff) return false;
    if ((v.state !== null && !isInt32(v.state)) || (v.cpuTimeNs !== null && !isU64(v.cpuTimeNs))) return false;
  }
  if (r.disks.length !== facts.disks.length) return false;
  for (let i = 0; i < r.disks.length; i++) {
    const d = r.disks[i];
    const x = facts.disks[i];
    if (d.target !== x.target || d.sourceKind !== x.sourceKind || d.device !== x.device || d.format !== x.format ||
      d.source !== x.source || d.readonly !== x.readonly || d.bus !== x.bus) return false;
    if (!isU64OrNull(d.capacity) || !isU64OrNull(d.allocation) || !isU64OrNull(d.physical) || !isU64OrNull(d.rdReq) ||
      !isU64OrNull(d.wrReq) || !isU64OrNull(d.rdBytes) || !isU64OrNull(d.wrBytes) || !isU64OrNull(d.rdTotalTimeNs) ||
      !isU64OrNull(d.wrTotalTimeNs)) return false;
  }
  return true;
}

function presentCounters(d: DiskRecord): number {
  return (d.capacity !== null ? 1 : 0) + (d.allocation !== null ? 1 : 0) + (d.physical !== null ? 1 : 0) +
    (d.rdReq !== null ? 1 : 0) + (d.wrReq !== null ? 1 : 0) + (d.rdBytes !== null ? 1 : 0) + (d.wrBytes !== null ? 1 : 0) +
    (d.rdTotalTimeNs !== null ? 1 : 0) + (d.wrTotalTimeNs !== null ? 1 : 0);
}

const isInt32 = (n: number): boolean => Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff;
const isU64 = (n: bigint): boolean => n >= 0n && n < U64_END;
const isU64OrNull = (n: bigint | null): boolean => n === null || (n >= 0n && n < U64_END);
const triStateBits = (v: boolean | null): number => (v === null ? 0 : v ? 2 : 1);
const triState = (bits: number): boolean | null => (bits === 0 ? null : bits === 2);
