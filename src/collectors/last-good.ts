// The last good DomainRecord of every domain, kept between refreshes so that
// a domain that fails or answers late, or every domain while libvirt is
// down, can still be served with its previous values.
//
// Kept as JS objects, these records were ~13 MB of heap at 10,000 VMs, and
// each refresh's generation lived exactly until the next one replaced it: it
// was promoted into the old space beside the generation it replaced, which
// set the process's RSS peak (measured: 7 MB lower without them). So after
// each collection the records are packed into one buffer holding only their
// changing values (~230 bytes for 2 vCPUs and 2 disks); their configuration
// is the parsed XML facts they were built from, which the collector caches
// anyway. Reading one back (rare: a failing domain, or libvirt down) builds
// an equal record.
//
// A record that does not match its facts (except in its name, which is then
// stored: a rename can fall between the domain list and the XML fetch) stays
// a JS object. Packing never changes what get() returns.

import { freeNow } from '../../agentx';
import type { DiskRecord, DomainRecord, VcpuRecord } from '../snapshot';
import type { DomainXmlFacts } from './domain-xml';

/** Counters of a disk, in the order of their presence bits. */
const DISK_COUNTERS = ['capacity', 'allocation', 'physical', 'rdReq', 'wrReq', 'rdBytes', 'wrBytes', 'rdTotalTimeNs', 'wrTotalTimeNs'] as const;

const U64_END = 1n << 64n;
const NO_LIST = 0xffff;

// Header flags.
const NAME_STORED = 1 << 6;
const JOB_TYPE_NULL = 1 << 7;
const JOB_OPERATION_NULL = 1 << 8;
// vCPU flags.
const VCPU_STATE_NULL = 1;
const VCPU_TIME_NULL = 2;

/** flags u16, id, state, reason, jobType, jobOperation i32, memoryKiB, cpuTimeNs u64, vCPU count u16. */
const HEADER_BYTES = 2 + 5 * 4 + 2 * 8 + 2;
/** number u32, flags u8, state i32, cpuTimeNs u64, affinity list u16. */
const VCPU_BYTES = 4 + 1 + 4 + 8 + 2;

export class LastGoodRecords {
  /** Records set since the last pack(), and those that cannot be packed. */
  private readonly loose = new Map<string, DomainRecord>();
  /** Packed records: UUID → entry number; entry n starts at offsets[n] in bytes and was built from facts[n]. */
  private readonly index = new Map<string, number>();
  private offsets = new Uint32Array(0);
  private facts: DomainXmlFacts[] = [];
  private lists: (readonly number[])[] = [];
  private bytes = Buffer.alloc(0);

  /** `factsOf`: the parsed XML a domain's record was built from, when known. */
  constructor(private readonly factsOf: (uuid: string) => DomainXmlFacts | undefined) {}

  get size(): number {
    return this.loose.size + this.index.size;
  }

  /** How many records are held packed, and in how many bytes. */
  get packed(): { records: number; bytes: number } {
    return { records: this.index.size, bytes: this.bytes.byteLength };
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
   * Packs every record that matches its facts into a new buffer, and frees
   * the old one at once. Two passes over the records (size, then write)
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
    let total = 0;
    let count = 0;
    for (const [uuid, record] of this.loose) {
      const facts = this.factsOf(uuid);
      if (facts === undefined || !packable(uuid, record, facts)) continue;
      total += encodedSize(record, facts);
      count++;
      for (const v of record.vcpus) {
        if (v.affinity !== null && !listIds.has(v.affinity)) {
          listIds.set(v.affinity, lists.length);
          lists.push(v.affinity);
        }
      }
    }
    // Never at real sizes (the lists are interned); then everything stays loose.
    if (lists.length >= NO_LIST) return;

    const old = this.bytes;
    this.bytes = Buffer.allocUnsafeSlow(total);
    this.offsets = new Uint32Array(count);
    this.facts = new Array<DomainXmlFacts>(count);
    this.lists = lists;
    let at = 0;
    let n = 0;
    for (const [uuid, record] of this.loose) {
      const facts = this.factsOf(uuid);
      if (facts === undefined || !packable(uuid, record, facts)) continue;
      this.index.set(uuid, n);
      this.offsets[n] = at;
      this.facts[n] = facts;
      at = encode(this.bytes, at, record, facts, listIds);
      n++;
      this.loose.delete(uuid);
    }
    freeNow([old.buffer]);
  }

  private decode(uuid: string, n: number): DomainRecord {
    const b = this.bytes;
    const facts = this.facts[n];
    let at = this.offsets[n];
    const flags = b.readUInt16LE(at);
    const id = b.readInt32LE(at + 2);
    const state = b.readInt32LE(at + 6);
    const reason = b.readInt32LE(at + 10);
    const jobType = b.readInt32LE(at + 14);
    const jobOperation = b.readInt32LE(at + 18);
    const memoryKiB = b.readBigUInt64LE(at + 22);
    const cpuTimeNs = b.readBigUInt64LE(at + 30);
    const vcpuCount = b.readUInt16LE(at + 38);
    at += HEADER_BYTES;
    let name = facts.name;
    if (flags & NAME_STORED) {
      const length = b.readUInt16LE(at);
      name = b.toString('utf8', at + 2, at + 2 + length);
      at += 2 + length;
    }
    const vcpus = new Array<VcpuRecord>(vcpuCount);
    for (let i = 0; i < vcpuCount; i++) {
      const vflags = b[at + 4];
      const list = b.readUInt16LE(at + 17);
      vcpus[i] = {
        number: b.readUInt32LE(at),
        state: vflags & VCPU_STATE_NULL ? null : b.readInt32LE(at + 5),
        cpuTimeNs: vflags & VCPU_TIME_NULL ? null : b.readBigUInt64LE(at + 9),
        affinity: list === NO_LIST ? null : this.lists[list],
      };
      at += VCPU_BYTES;
    }
    const disks = new Array<DiskRecord>(facts.disks.length);
    for (let i = 0; i < disks.length; i++) {
      const present = b.readUInt16LE(at);
      at += 2;
      const counter = (bit: number): bigint | null => {
        if (!(present & (1 << bit))) return null;
        const value = b.readBigUInt64LE(at);
        at += 8;
        return value;
      };
      const disk = facts.disks[i];
      disks[i] = {
        target: disk.target,
        sourceKind: disk.sourceKind,
        device: disk.device,
        format: disk.format,
        source: disk.source,
        readonly: disk.readonly,
        bus: disk.bus,
        capacity: counter(0),
        allocation: counter(1),
        physical: counter(2),
        rdReq: counter(3),
        wrReq: counter(4),
        rdBytes: counter(5),
        wrBytes: counter(6),
        rdTotalTimeNs: counter(7),
        wrTotalTimeNs: counter(8),
      };
    }
    // Same field order as queryDomain's records, so that both share one hidden class.
    return {
      uuid,
      name,
      id,
      state,
      reason,
      autostart: triState(flags & 3),
      persistent: triState((flags >> 2) & 3),
      managedSave: (flags & 16) !== 0,
      osType: facts.osType,
      curVcpus: facts.curVcpus,
      maxVcpus: facts.maxVcpus,
      memoryKiB,
      maxMemoryKiB: facts.memoryKiB,
      hotplugMemoryKiB: facts.hotplugMemoryKiB,
      cpuTimeNs,
      vcpus,
      disks,
      nics: facts.nics,
      jobType: flags & JOB_TYPE_NULL ? null : jobType,
      jobOperation: flags & JOB_OPERATION_NULL ? null : jobOperation,
    };
  }
}

/** Whether `record` is `facts` plus values the packed form can hold exactly. */
function packable(uuid: string, r: DomainRecord, facts: DomainXmlFacts): boolean {
  if (r.uuid !== uuid || r.osType !== facts.osType || r.curVcpus !== facts.curVcpus || r.maxVcpus !== facts.maxVcpus) return false;
  if (r.maxMemoryKiB !== facts.memoryKiB || r.hotplugMemoryKiB !== facts.hotplugMemoryKiB || r.nics !== facts.nics) return false;
  if (!isInt32(r.id) || !isInt32(r.state) || !isInt32(r.reason)) return false;
  if ((r.jobType !== null && !isInt32(r.jobType)) || (r.jobOperation !== null && !isInt32(r.jobOperation))) return false;
  if (!isU64(r.memoryKiB) || !isU64(r.cpuTimeNs) || r.vcpus.length >= 0x10000) return false;
  if (r.name !== facts.name && Buffer.byteLength(r.name) >= 0x10000) return false;
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
    for (const key of DISK_COUNTERS) {
      const value = d[key];
      if (value !== null && !isU64(value)) return false;
    }
  }
  return true;
}

function encodedSize(r: DomainRecord, facts: DomainXmlFacts): number {
  let size = HEADER_BYTES + r.vcpus.length * VCPU_BYTES;
  if (r.name !== facts.name) size += 2 + Buffer.byteLength(r.name);
  for (const d of r.disks) {
    size += 2;
    for (const key of DISK_COUNTERS) if (d[key] !== null) size += 8;
  }
  return size;
}

function encode(b: Buffer, at: number, r: DomainRecord, facts: DomainXmlFacts, listIds: Map<readonly number[], number>): number {
  const nameStored = r.name !== facts.name;
  const flags = triStateBits(r.autostart) | (triStateBits(r.persistent) << 2) | (r.managedSave ? 16 : 0) |
    (nameStored ? NAME_STORED : 0) | (r.jobType === null ? JOB_TYPE_NULL : 0) | (r.jobOperation === null ? JOB_OPERATION_NULL : 0);
  b.writeUInt16LE(flags, at);
  b.writeInt32LE(r.id, at + 2);
  b.writeInt32LE(r.state, at + 6);
  b.writeInt32LE(r.reason, at + 10);
  b.writeInt32LE(r.jobType ?? 0, at + 14);
  b.writeInt32LE(r.jobOperation ?? 0, at + 18);
  b.writeBigUInt64LE(r.memoryKiB, at + 22);
  b.writeBigUInt64LE(r.cpuTimeNs, at + 30);
  b.writeUInt16LE(r.vcpus.length, at + 38);
  at += HEADER_BYTES;
  if (nameStored) {
    const length = b.write(r.name, at + 2, 'utf8');
    b.writeUInt16LE(length, at);
    at += 2 + length;
  }
  for (const v of r.vcpus) {
    b.writeUInt32LE(v.number, at);
    b[at + 4] = (v.state === null ? VCPU_STATE_NULL : 0) | (v.cpuTimeNs === null ? VCPU_TIME_NULL : 0);
    b.writeInt32LE(v.state ?? 0, at + 5);
    b.writeBigUInt64LE(v.cpuTimeNs ?? 0n, at + 9);
    b.writeUInt16LE(v.affinity === null ? NO_LIST : (listIds.get(v.affinity) as number), at + 17);
    at += VCPU_BYTES;
  }
  for (const d of r.disks) {
    const maskAt = at;
    let present = 0;
    at += 2;
    for (let bit = 0; bit < DISK_COUNTERS.length; bit++) {
      const value = d[DISK_COUNTERS[bit]];
      if (value === null) continue;
      present |= 1 << bit;
      b.writeBigUInt64LE(value, at);
      at += 8;
    }
    b.writeUInt16LE(present, maskAt);
  }
  return at;
}

const isInt32 = (n: number): boolean => Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff;
const isU64 = (n: bigint): boolean => n >= 0n && n < U64_END;
const triStateBits = (v: boolean | null): number => (v === null ? 0 : v ? 2 : 1);
const triState = (bits: number): boolean | null => (bits === 0 ? null : bits === 2);
