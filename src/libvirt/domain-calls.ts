// Typed, promise-returning wrappers around the per-domain libvirt queries.
// Each runs with koffi's `.async` form on the libuv thread pool (see
// calls.ts): with the qemu driver any of them may wait for the domain's job
// lock or its monitor. A failed call rejects with a LibvirtError.
//
// The counter queries also have a form made on the calling thread (…Now),
// for a driver that answers from memory (calls.ts, answersFromMemory); it
// throws the LibvirtError instead.

import {
  BLOCK_INFO,
  DOMAIN_INFO,
  LEGACY_BLOCK_STATS,
  libvirt,
  TYPED_PARAM_SIZE,
  VCPU_INFO_SIZE,
  type DomainPtr,
  type JobInfoStruct,
  type LibvirtApi,
  type NativePtr,
} from './ffi';
import { callAsync, callChecked, checked, checkedNow, nonNegative, takeString } from './calls';
import { errorMark } from './errors';
import type { BlockCounters } from './domain-stats';
import { decodeNativeTypedParams, decodeTypedParams, paramBigInt, type TypedParamValue } from './typed-params';
import { endianness } from 'node:os';

const littleEndian = endianness() === 'LE';
const api = (): LibvirtApi => libvirt().api;
const u64 = (b: Buffer, at: number): bigint => (littleEndian ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at));
const i64 = (b: Buffer, at: number): bigint => (littleEndian ? b.readBigInt64LE(at) : b.readBigInt64BE(at));

/**
 * Out-buffers of the pool-thread forms, reused: a new Buffer per call is a
 * native allocation each, 50,000 a refresh at 10,000 VMs, and the malloc
 * arenas they churn stay resident. A call gives its buffer back once it is
 * read; one that fails or never returns keeps it (the GC frees it).
 */
class OutBuffers {
  private readonly free: Buffer[] = [];

  constructor(private readonly size: number) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.alloc(this.size);
  }

  /** `decode(buf)`, and `buf` back to the list. */
  readAndRelease<T>(buf: Buffer, decode: (buf: Buffer) => T): T {
    const value = decode(buf);
    // As many as calls run at once (a few lanes), and a margin.
    if (this.free.length < 64) this.free.push(buf);
    return value;
  }
}
const infoBuffers = new OutBuffers(DOMAIN_INFO.size);
const blockInfoBuffers = new OutBuffers(BLOCK_INFO.size);
const blockStatsBuffers = new OutBuffers(LEGACY_BLOCK_STATS.size);

/**
 * Out-buffers of the …Now forms, one per layout: those calls are synchronous,
 * so one call's buffer is read before the next call writes it.
 */
const nowBuffers: { info: Buffer; blockInfo: Buffer; blockStats: Buffer; vcpus: Buffer } = {
  info: Buffer.alloc(DOMAIN_INFO.size),
  blockInfo: Buffer.alloc(BLOCK_INFO.size),
  blockStats: Buffer.alloc(LEGACY_BLOCK_STATS.size),
  /** Grown to the most vCPUs asked for. */
  vcpus: Buffer.alloc(VCPU_INFO_SIZE * 64),
};

// --------------------------------------------------- domain driver queries

export function domainState(dom: DomainPtr): Promise<{ state: number; reason: number }> {
  const state: [number] = [0];
  const reason: [number] = [0];
  return callChecked(api().virDomainGetState, [dom, state, reason, 0], nonNegative, 'virDomainGetState', null,
    () => ({ state: state[0], reason: reason[0] }));
}

export interface Info {
  memoryKiB: bigint;
  cpuTimeNs: bigint;
}

const readInfo = (buf: Buffer): Info => ({ memoryKiB: u64(buf, DOMAIN_INFO.memory), cpuTimeNs: u64(buf, DOMAIN_INFO.cpuTime) });

export function domainInfo(dom: DomainPtr): Promise<Info> {
  const buf = infoBuffers.take();
  return callChecked(api().virDomainGetInfo, [dom, buf], nonNegative, 'virDomainGetInfo', null, () => infoBuffers.readAndRelease(buf, readInfo));
}
export function domainInfoNow(dom: DomainPtr): Info {
  const fn = api().virDomainGetInfo;
  const mark = errorMark();
  checkedNow(fn, fn(dom, nowBuffers.info), mark, 'virDomainGetInfo', null);
  return readInfo(nowBuffers.info);
}

const notNull = (p: NativePtr | null): boolean => p !== null;
const xmlText = (p: NativePtr | null): string => takeString(p) ?? '';

export function domainXml(dom: DomainPtr): Promise<string> {
  return callChecked(api().virDomainGetXMLDesc, [dom, 0], notNull, 'virDomainGetXMLDesc', null, xmlText);
}

export interface VcpuInfo {
  number: number;
  state: number;
  cpuTimeNs: bigint;
}

const vcpusBuffer = (maxVcpus: number): Buffer => Buffer.alloc(VCPU_INFO_SIZE * Math.max(maxVcpus, 1));
export function domainVcpus(dom: DomainPtr, maxVcpus: number): Promise<VcpuInfo[]> {
  const buf = vcpusBuffer(maxVcpus);
  return callChecked(api().virDomainGetVcpus, [dom, buf, Math.max(maxVcpus, 1), null, 0], nonNegative, 'virDomainGetVcpus', null,
    (n) => decodeVcpus(buf, n));
}
export function domainVcpusNow(dom: DomainPtr, maxVcpus: number): VcpuInfo[] {
  if (nowBuffers.vcpus.length < VCPU_INFO_SIZE * maxVcpus) nowBuffers.vcpus = vcpusBuffer(maxVcpus);
  const fn = api().virDomainGetVcpus;
  const mark = errorMark();
  const n = fn(dom, nowBuffers.vcpus, Math.max(maxVcpus, 1), null, 0);
  checkedNow(fn, n, mark, 'virDomainGetVcpus', null);
  return decodeVcpus(nowBuffers.vcpus, n);
}

function decodeVcpus(buf: Buffer, n: number): VcpuInfo[] {
  const vcpus = new Array<VcpuInfo>(n);
  for (let i = 0; i < n; i++) {
    const at = i * VCPU_INFO_SIZE;
    vcpus[i] = {
      number: littleEndian ? buf.readUInt32LE(at) : buf.readUInt32BE(at),
      state: littleEndian ? buf.readInt32LE(at + 4) : buf.readInt32BE(at + 4),
      cpuTimeNs: u64(buf, at + 8),
    };
  }
  return vcpus;
}

/** Host CPUs each vCPU may run on (virDomainGetVcpuPinInfo, live state for running domains). */
export function domainVcpuPinning(dom: DomainPtr, maxVcpus: number, hostCpus: number): Promise<number[][]> {
  const maplen = Math.max(1, Math.ceil(hostCpus / 8));
  const ncpumaps = Math.max(maxVcpus, 1);
  const maps = Buffer.alloc(maplen * ncpumaps);
  return callChecked(api().virDomainGetVcpuPinInfo, [dom, ncpumaps, maps, maplen, 0], nonNegative, 'virDomainGetVcpuPinInfo', null, (n) => {
    const result: number[][] = [];
    for (let v = 0; v < n; v++) result.push(cpusInMap(maps, v * maplen, maplen, hostCpus));
    return result;
  });
}

/** CPU numbers whose bit is set in a libvirt cpumap (bit i of byte i/8, least significant first). */
export function cpusInMap(map: Uint8Array, offset: number, maplen: number, hostCpus: number): number[] {
  const cpus: number[] = [];
  for (let cpu = 0; cpu < maplen * 8 && cpu < hostCpus; cpu++) {
    if ((map[offset + (cpu >> 3)] & (1 << (cpu & 7))) !== 0) cpus.push(cpu);
  }
  return cpus;
}

export interface BlockSizes {
  capacity: bigint;
  allocation: bigint;
  physical: bigint;
}

const readBlockInfo = (buf: Buffer): BlockSizes => ({
  capacity: u64(buf, BLOCK_INFO.capacity),
  allocation: u64(buf, BLOCK_INFO.allocation),
  physical: u64(buf, BLOCK_INFO.physical),
});

export function blockInfo(dom: DomainPtr, target: string): Promise<BlockSizes> {
  const buf = blockInfoBuffers.take();
  return callChecked(api().virDomainGetBlockInfo, [dom, target, buf, 0], nonNegative, 'virDomainGetBlockInfo', target,
    () => blockInfoBuffers.readAndRelease(buf, readBlockInfo));
}
export function blockInfoNow(dom: DomainPtr, target: string): BlockSizes {
  const fn = api().virDomainGetBlockInfo;
  const mark = errorMark();
  checkedNow(fn, fn(dom, target, nowBuffers.blockInfo, 0), mark, 'virDomainGetBlockInfo', target);
  return readBlockInfo(nowBuffers.blockInfo);
}

/** Enough slots for every field libvirt 9 defines for block stats (it fills at most this many). */
const BLOCK_STATS_SLOTS = 16;

/** The counters in `buf` (nparams of them), whose strings are then freed. */
function readBlockStatsParams(buf: Buffer, nparams: number): BlockCounters {
  try {
    return countersFromParams(decodeTypedParams(buf, nparams));
  } finally {
    api().virTypedParamsClear(buf, nparams);
  }
}
const blockStatsBuffer = (): Buffer => Buffer.alloc(TYPED_PARAM_SIZE * BLOCK_STATS_SLOTS);

export function blockStats(dom: DomainPtr, target: string): Promise<BlockCounters> {
  const buf = blockStatsBuffer();
  const nparams: [number] = [BLOCK_STATS_SLOTS];
  return callChecked(api().virDomainBlockStatsFlags, [dom, target, buf, nparams, 0], nonNegative, 'virDomainBlockStatsFlags', target,
    () => readBlockStatsParams(buf, nparams[0]));
}
export function blockStatsNow(dom: DomainPtr, target: string): BlockCounters {
  const fn = api().virDomainBlockStatsFlags;
  const buf = blockStatsBuffer();
  const nparams: [number] = [BLOCK_STATS_SLOTS];
  const mark = errorMark();
  checkedNow(fn, fn(dom, target, buf, nparams, 0), mark, 'virDomainBlockStatsFlags', target);
  return readBlockStatsParams(buf, nparams[0]);
}

function countersFromParams(stats: ReadonlyMap<string, TypedParamValue>): BlockCounters {
  return {
    rdReqs: paramBigInt(stats, 'rd_operations'),
    rdBytes: paramBigInt(stats, 'rd_bytes'),
    rdTimes: paramBigInt(stats, 'rd_total_times'),
    wrReqs: paramBigInt(stats, 'wr_operations'),
    wrBytes: paramBigInt(stats, 'wr_bytes'),
    wrTimes: paramBigInt(stats, 'wr_total_times'),
  };
}

const readLegacyBlockStats = (buf: Buffer): BlockCounters => ({
  rdReqs: known(i64(buf, LEGACY_BLOCK_STATS.rdReq)),
  rdBytes: known(i64(buf, LEGACY_BLOCK_STATS.rdBytes)),
  rdTimes: null,
  wrReqs: known(i64(buf, LEGACY_BLOCK_STATS.wrReq)),
  wrBytes: known(i64(buf, LEGACY_BLOCK_STATS.wrBytes)),
  wrTimes: null,
});

/** virDomainBlockStats, for drivers without virDomainBlockStatsFlags: no latency totals. */
export function legacyBlockStats(dom: DomainPtr, target: string): Promise<BlockCounters> {
  const buf = blockStatsBuffers.take();
  return callChecked(api().virDomainBlockStats, [dom, target, buf, LEGACY_BLOCK_STATS.size], nonNegative, 'virDomainBlockStats', target,
    () => blockStatsBuffers.readAndRelease(buf, readLegacyBlockStats));
}
export function legacyBlockStatsNow(dom: DomainPtr, target: string): BlockCounters {
  const fn = api().virDomainBlockStats;
  const mark = errorMark();
  checkedNow(fn, fn(dom, target, nowBuffers.blockStats, LEGACY_BLOCK_STATS.size), mark, 'virDomainBlockStats', target);
  return readLegacyBlockStats(nowBuffers.blockStats);
}

/** -1 means "this driver does not know" in the legacy struct. */
const known = (v: bigint): bigint | null => (v >= 0n ? v : null);

export interface JobState {
  /** virDomainJobType: 0 none, 1 bounded, 2 unbounded. */
  type: number;
  /** virDomainJobOperation (4 incoming, 5 outgoing migration, ...), or null when not reported. */
  operation: number | null;
}

/** The current job (virDomainGetJobStats), which also names the operation. */
export function jobStats(dom: DomainPtr): Promise<JobState> {
  const type: [number] = [0];
  const params: [NativePtr | null] = [null];
  const nparams: [number] = [0];
  return callChecked(api().virDomainGetJobStats, [dom, type, params, nparams, 0], nonNegative, 'virDomainGetJobStats', null, () => {
    let operation: number | null = null;
    if (params[0] !== null) {
      try {
        const op = decodeNativeTypedParams(params[0], nparams[0]).get('operation');
        if (typeof op === 'number') operation = op;
      } finally {
        api().virTypedParamsFree(params[0], nparams[0]);
      }
    }
    return { type: type[0], operation };
  });
}

export interface JobStatistics {
  /** virDomainJobType: 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed, 5 cancelled. */
  type: number;
  /** The VIR_DOMAIN_JOB_* typed parameters ("operation", "time_elapsed", "data_processed", ...). */
  params: ReadonlyMap<string, TypedParamValue>;
}

/**
 * virDomainGetJobStats with all its figures; `flags` (JobStatsFlag) select
 * the last completed job instead of the current one.
 */
export function jobStatistics(dom: DomainPtr, flags: number): Promise<JobStatistics> {
  const type: [number] = [0];
  const params: [NativePtr | null] = [null];
  const nparams: [number] = [0];
  return callChecked(api().virDomainGetJobStats, [dom, type, params, nparams, flags], nonNegative, 'virDomainGetJobStats', null, () => {
    if (params[0] === null) return { type: type[0], params: new Map<string, TypedParamValue>() };
    try {
      return { type: type[0], params: decodeNativeTypedParams(params[0], nparams[0]) };
    } finally {
      api().virTypedParamsFree(params[0], nparams[0]);
    }
  });
}

/** The current job's type (virDomainGetJobInfo), for drivers without virDomainGetJobStats. */
export function jobInfo(dom: DomainPtr): Promise<JobState> {
  const info: Partial<JobInfoStruct> = {};
  return callChecked(api().virDomainGetJobInfo, [dom, info], nonNegative, 'virDomainGetJobInfo', null,
    () => ({ type: info.type ?? 0, operation: null }));
}

export async function autostart(dom: DomainPtr): Promise<boolean> {
  const v: [number] = [0];
  await checked('virDomainGetAutostart', () => callAsync(api().virDomainGetAutostart, dom, v), nonNegative);
  return v[0] !== 0;
}

export async function isPersistent(dom: DomainPtr): Promise<boolean> {
  return (await checked('virDomainIsPersistent', () => callAsync(api().virDomainIsPersistent, dom), nonNegative)) === 1;
}

export async function hasManagedSave(dom: DomainPtr): Promise<boolean> {
  const rc = await checked(
    'virDomainHasManagedSaveImage',
    () => callAsync(api().virDomainHasManagedSaveImage, dom, 0),
    nonNegative,
  );
  return rc === 1;
}
