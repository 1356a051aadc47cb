// One domain's virConnectGetAllDomainStats record, reduced to the values the
// collector reads: state, balloon, CPU time, each vCPU's state and time, each
// block device's name, sizes and counters. Read straight from libvirt's
// typed-parameter array: the other fields (cpu.user, vcpu.N.delay,
// block.N.path, ...) are skipped without being decoded, and no map of names
// is built. A name is classified once (FieldNameTable), then recognised by
// its bytes.
//
// domainStatsFromParams gives the same result from a decoded map, so that
// both forms follow the one classification (slotOf).

import { FieldNameTable } from './field-names';
import { TYPED_PARAM_SIZE } from './ffi';
import { asBigInt, asNumber, typedParamValue, type TypedParamValue } from './typed-params';

export interface BulkVcpu {
  /** n of vcpu.<n>.state. */
  readonly number: number;
  /** vcpu.<n>.state. */
  readonly state: number | null;
  /** vcpu.<n>.time. */
  readonly cpuTimeNs: bigint | null;
}

/** A disk's counters, as the bulk record names them; null where the driver does not report one. */
export interface BlockCounters {
  rdReqs: bigint | null;
  rdBytes: bigint | null;
  rdTimes: bigint | null;
  wrReqs: bigint | null;
  wrBytes: bigint | null;
  wrTimes: bigint | null;
}

/** block.<i>.*: null where the record lacks the field (or it is not numeric). */
export interface BulkBlock extends BlockCounters {
  name: string | null;
  capacity: bigint | null;
  allocation: bigint | null;
  physical: bigint | null;
}

/**
 * A block's values, every field set here so that all blocks share one
 * shape: from its sizes and counters, each null when not known.
 */
export function bulkBlock(
  name: string | null,
  sizes: { capacity: bigint; allocation: bigint; physical: bigint } | null,
  c: BlockCounters | null,
): BulkBlock {
  return {
    name,
    capacity: sizes?.capacity ?? null,
    allocation: sizes?.allocation ?? null,
    physical: sizes?.physical ?? null,
    rdReqs: c?.rdReqs ?? null,
    rdBytes: c?.rdBytes ?? null,
    rdTimes: c?.rdTimes ?? null,
    wrReqs: c?.wrReqs ?? null,
    wrBytes: c?.wrBytes ?? null,
    wrTimes: c?.wrTimes ?? null,
  };
}

export interface DomainStats {
  /** state.state */
  readonly state: number | null;
  /** state.reason */
  readonly reason: number | null;
  /** balloon.current */
  readonly balloonKiB: bigint | null;
  /** cpu.time */
  readonly cpuTimeNs: bigint | null;
  /** Whether the vcpu group is present (vcpu.current). */
  readonly vcpuGroup: boolean;
  /** One entry per vcpu.<n>.state, by ascending n. */
  readonly vcpus: readonly BulkVcpu[];
  /** block.count */
  readonly blockCount: number | null;
  /** block.<i>.* by i; a hole where no field of block i came. */
  readonly blocks: readonly (BulkBlock | undefined)[];
}

const NO_ENTRIES: never[] = Object.freeze([]) as unknown as never[];

/** What a driver without bulk stats, or a failed bulk call, gives: nothing. */
export const NO_DOMAIN_STATS: DomainStats = Object.freeze({
  state: null,
  reason: null,
  balloonKiB: null,
  cpuTimeNs: null,
  vcpuGroup: false,
  vcpus: Object.freeze([]),
  blockCount: null,
  blocks: Object.freeze([]),
});

// A field's slot: which value it is, plus (for vcpu.<n>.* and block.<i>.*)
// its index times SLOT_KINDS.
const NONE = 0;
const STATE = 1;
const REASON = 2;
const BALLOON = 3;
const CPU_TIME = 4;
const VCPU_CURRENT = 5;
const VCPU_STATE = 6;
const VCPU_TIME = 7;
const BLOCK_COUNT = 8;
const BLOCK_NAME = 9;
const BLOCK_COUNTERS = ['capacity', 'allocation', 'physical', 'rdReqs', 'rdBytes', 'rdTimes', 'wrReqs', 'wrBytes', 'wrTimes'] as const;
const FIRST_BLOCK_COUNTER = 10;
const SLOT_KINDS = 32;
const BLOCK_FIELDS = new Map<string, number>([
  ['name', BLOCK_NAME],
  ['capacity', FIRST_BLOCK_COUNTER],
  ['allocation', FIRST_BLOCK_COUNTER + 1],
  ['physical', FIRST_BLOCK_COUNTER + 2],
  ['rd.reqs', FIRST_BLOCK_COUNTER + 3],
  ['rd.bytes', FIRST_BLOCK_COUNTER + 4],
  ['rd.times', FIRST_BLOCK_COUNTER + 5],
  ['wr.reqs', FIRST_BLOCK_COUNTER + 6],
  ['wr.bytes', FIRST_BLOCK_COUNTER + 7],
  ['wr.times', FIRST_BLOCK_COUNTER + 8],
]);
/**
 * An index as libvirt prints it (%u, %zu: no leading zero), below a million:
 * vCPU numbers and block indexes are far smaller, and the bound keeps slots
 * within 31 bits and the arrays indexed by them dense.
 */
const INDEX = /^(?:0|[1-9]\d{0,5})$/;

/** The slot of a field name; NONE for a field the collector does not read. */
export function slotOf(name: string): number {
  switch (name) {
    case 'state.state': return STATE;
    case 'state.reason': return REASON;
    case 'balloon.current': return BALLOON;
    case 'cpu.time': return CPU_TIME;
    case 'vcpu.current': return VCPU_CURRENT;
    case 'block.count': return BLOCK_COUNT;
  }
  const group = name.startsWith('vcpu.') ? 5 : name.startsWith('block.') ? 6 : 0;
  if (group === 0) return NONE;
  const dot = name.indexOf('.', group);
  if (dot < 0) return NONE;
  const index = name.slice(group, dot);
  if (!INDEX.test(index)) return NONE;
  const field = name.slice(dot + 1);
  const kind = group === 5
    ? (field === 'state' ? VCPU_STATE : field === 'time' ? VCPU_TIME : NONE)
    : BLOCK_FIELDS.get(field) ?? NONE;
  return kind === NONE ? NONE : kind + Number(index) * SLOT_KINDS;
}

const slots = new FieldNameTable<number>(slotOf);

/** Collects one record's values slot by slot. */
class StatsBuilder {
  state: number | null = null;
  reason: number | null = null;
  balloonKiB: bigint | null = null;
  cpuTimeNs: bigint | null = null;
  vcpuGroup = false;
  blockCount: number | null = null;
  readonly blocks: (BulkBlock | undefined)[] = [];
  /** vcpu.<n>.state and vcpu.<n>.time by n; a state of undefined: no vcpu.<n>.state came. */
  private readonly vcpuStates: (number | null | undefined)[] = [];
  private readonly vcpuTimes: (bigint | null | undefined)[] = [];

  set(slot: number, value: TypedParamValue): void {
    const kind = slot % SLOT_KINDS;
    const index = (slot - kind) / SLOT_KINDS;
    switch (kind) {
      case STATE: this.state = asNumber(value); break;
      case REASON: this.reason = asNumber(value); break;
      case BALLOON: this.balloonKiB = asBigInt(value); break;
      case CPU_TIME: this.cpuTimeNs = asBigInt(value); break;
      case VCPU_CURRENT: this.vcpuGroup = true; break;
      case VCPU_STATE: fill(this.vcpuStates, index, asNumber(value)); break;
      case VCPU_TIME: fill(this.vcpuTimes, index, asBigInt(value)); break;
      case BLOCK_COUNT: this.blockCount = asNumber(value); break;
      case BLOCK_NAME: this.block(index).name = typeof value === 'string' ? value : null; break;
      default: this.block(index)[BLOCK_COUNTERS[kind - FIRST_BLOCK_COUNTER]] = asBigInt(value);
    }
  }

  finish(): DomainStats {
    // A record with no vCPU or block fields (the test driver's: state only)
    // shares one empty list: records live as long as their collection.
    const vcpus: BulkVcpu[] = this.vcpuStates.length === 0 ? NO_ENTRIES : [];
    for (let n = 0; n < this.vcpuStates.length; n++) {
      const state = this.vcpuStates[n];
      if (state !== undefined) vcpus.push({ number: n, state, cpuTimeNs: this.vcpuTimes[n] ?? null });
    }
    return {
      state: this.state,
      reason: this.reason,
      balloonKiB: this.balloonKiB,
      cpuTimeNs: this.cpuTimeNs,
      vcpuGroup: this.vcpuGroup,
      vcpus,
      blockCount: this.blockCount,
      blocks: this.blocks.length === 0 ? NO_ENTRIES : this.blocks,
    };
  }

  private block(i: number): BulkBlock {
    let b = this.blocks[i];
    if (b === undefined) {
      b = bulkBlock(null, null, null);
      fill(this.blocks, i, b);
    }
    return b;
  }
}

/** Sets a[i], growing `a` with undefined up to i first, so that it never has holes V8 would store sparsely. */
function fill<T>(a: (T | undefined)[], i: number, value: T): void {
  while (a.length < i) a.push(undefined);
  a[i] = value;
}

/** The stats of one record's `count` parameters in `bytes` (a view of libvirt's memory). */
export function decodeDomainStats(bytes: Uint8Array, count: number): DomainStats {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const b = new StatsBuilder();
  for (let i = 0; i < count; i++) {
    const slot = slots.lookup(bytes, i * TYPED_PARAM_SIZE);
    if (slot === NONE) continue;
    const value = typedParamValue(view, i);
    if (value !== undefined) b.set(slot, value);
  }
  return b.finish();
}

/** The same from decoded parameters (name → value). */
export function domainStatsFromParams(params: ReadonlyMap<string, TypedParamValue>): DomainStats {
  const b = new StatsBuilder();
  for (const [name, value] of params) {
    const slot = slotOf(name);
    if (slot !== NONE) b.set(slot, value);
  }
  return b.finish();
}

/**
 * The block.<i>.* of the disk named `name`: the first i below block.count
 * with that name (backing images follow their top), or null. A linear
 * search: a domain has a few disks, and a Map of them per domain per
 * refresh cost more.
 */
export function bulkBlockNamed(stats: DomainStats, name: string): BulkBlock | null {
  const count = Math.min(stats.blockCount ?? 0, stats.blocks.length);
  for (let i = 0; i < count; i++) {
    const block = stats.blocks[i];
    if (block !== undefined && block.name === name) return block;
  }
  return null;
}
