// Typed, promise-returning wrappers around the per-domain libvirt queries.
// Each runs with koffi's `.async` form on the libuv thread pool (see
// calls.ts): with the qemu driver any of them may wait for the domain's job
// lock or its monitor. A failed call rejects with a LibvirtError.

import {
  libvirt,
  TYPED_PARAM_SIZE,
  VCPU_INFO_SIZE,
  type BlockInfoStruct,
  type DomainInfoStruct,
  type DomainPtr,
  type JobInfoStruct,
  type LegacyBlockStatsStruct,
  type LibvirtApi,
  type NativePtr,
} from './ffi';
import { callAsync, callChecked, checked, nonNegative, takeString, toBigInt } from './calls';
import { decodeNativeTypedParams, decodeTypedParams, type TypedParamValue } from './typed-params';
import { endianness } from 'node:os';

const littleEndian = endianness() === 'LE';
const api = (): LibvirtApi => libvirt().api;

// --------------------------------------------------- domain driver queries

export function domainState(dom: DomainPtr): Promise<{ state: number; reason: number }> {
  const state: [number] = [0];
  const reason: [number] = [0];
  return callChecked(api().virDomainGetState, [dom, state, reason, 0], nonNegative, 'virDomainGetState', null,
    () => ({ state: state[0], reason: reason[0] }));
}

export function domainInfo(dom: DomainPtr): Promise<{ memoryKiB: bigint; cpuTimeNs: bigint }> {
  const info: Partial<DomainInfoStruct> = {};
  return callChecked(api().virDomainGetInfo, [dom, info], nonNegative, 'virDomainGetInfo', null,
    () => ({ memoryKiB: toBigInt(info.memory ?? 0), cpuTimeNs: toBigInt(info.cpuTime ?? 0) }));
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

export function domainVcpus(dom: DomainPtr, maxVcpus: number): Promise<VcpuInfo[]> {
  const buf = Buffer.alloc(VCPU_INFO_SIZE * Math.max(maxVcpus, 1));
  return callChecked(api().virDomainGetVcpus, [dom, buf, Math.max(maxVcpus, 1), null, 0], nonNegative, 'virDomainGetVcpus', null,
    (n) => decodeVcpus(buf, n));
}

function decodeVcpus(buf: Buffer, n: number): VcpuInfo[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const vcpus: VcpuInfo[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * VCPU_INFO_SIZE;
    vcpus.push({
      number: view.getUint32(at, littleEndian),
      state: view.getInt32(at + 4, littleEndian),
      cpuTimeNs: view.getBigUint64(at + 8, littleEndian),
    });
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

export function blockInfo(
  dom: DomainPtr,
  target: string,
): Promise<{ capacity: bigint; allocation: bigint; physical: bigint }> {
  const info: Partial<BlockInfoStruct> = {};
  return callChecked(api().virDomainGetBlockInfo, [dom, target, info, 0], nonNegative, 'virDomainGetBlockInfo', target, () => ({
    capacity: toBigInt(info.capacity ?? 0),
    allocation: toBigInt(info.allocation ?? 0),
    physical: toBigInt(info.physical ?? 0),
  }));
}

/** Enough slots for every field libvirt 9 defines for block stats (it fills at most this many). */
const BLOCK_STATS_SLOTS = 16;

export function blockStats(dom: DomainPtr, target: string): Promise<Map<string, TypedParamValue>> {
  const buf = Buffer.alloc(TYPED_PARAM_SIZE * BLOCK_STATS_SLOTS);
  const nparams: [number] = [BLOCK_STATS_SLOTS];
  return callChecked(api().virDomainBlockStatsFlags, [dom, target, buf, nparams, 0], nonNegative, 'virDomainBlockStatsFlags', target, () => {
    try {
      return decodeTypedParams(buf, nparams[0]);
    } finally {
      api().virTypedParamsClear(buf, nparams[0]);
    }
  });
}

/**
 * virDomainBlockStats, for drivers without virDomainBlockStatsFlags. Returns
 * the same field names as the typed-parameter API; it has no latency totals.
 */
export function legacyBlockStats(dom: DomainPtr, target: string): Promise<Map<string, TypedParamValue>> {
  const s: Partial<LegacyBlockStatsStruct> = {};
  const size = libvirt().protos.legacyBlockStatsStruct.size;
  return callChecked(api().virDomainBlockStats, [dom, target, s, size], nonNegative, 'virDomainBlockStats', target, () => legacyParams(s));
}

function legacyParams(s: Partial<LegacyBlockStatsStruct>): Map<string, TypedParamValue> {
  const params = new Map<string, TypedParamValue>();
  // -1 means "this driver does not know" in the legacy struct.
  const put = (name: string, v: number | bigint | undefined): void => {
    if (v !== undefined && toBigInt(v) >= 0n) params.set(name, toBigInt(v));
  };
  put('rd_operations', s.rd_req);
  put('rd_bytes', s.rd_bytes);
  put('wr_operations', s.wr_req);
  put('wr_bytes', s.wr_bytes);
  put('errs', s.errs);
  return params;
}

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
