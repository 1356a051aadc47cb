// An immutable, sorted table of MIB instances (OID → value) that answers the
// lookups of Get and GetNext processing (RFC 2741 §7.2.3) in O(log n).
//
// Views of 600,000 instances are realistic (10,000 VMs), so instance OIDs are
// not kept as one JS array each: all sub-identifiers live in one Uint32Array,
// with a second Uint32Array of offsets marking where each instance begins.
// Values are not kept as one object each either (packed-values.ts): a
// Value object per instance cost ~60 bytes of heap and, worse, hundreds of
// thousands of long-lived objects for every major GC to trace.
import { ValueType } from './pdu';
import type { Oid, Value, VarBind } from './pdu';
import { compareOids, formatOid, isPrefixOf } from './oid';
import { PackedValues } from './packed-values';

/** RFC 2741 §5.1: n_subid is 0..128. */
const MAX_OID_LENGTH = 128;
const MAX_SUBID = 0xffffffff;

/** How much a view holds; a builder given the previous view's sizes allocates once and copies nothing at build(). */
export interface MibViewSizes {
  instances: number;
  /** Sub-identifiers of all instance OIDs together. */
  subids: number;
  /** Bytes of all octet-string values together. */
  octets: number;
}

export class MibView implements Iterable<VarBind> {
  /**
   * Use MibViewBuilder. `subids` holds every instance OID in ascending order,
   * instance i spanning subids[offsets[i]] .. subids[offsets[i + 1] - 1];
   * `objects` is sorted and no object is a prefix of another.
   */
  constructor(
    private readonly subids: Uint32Array,
    private readonly offsets: Uint32Array,
    private readonly values: PackedValues,
    private readonly declared: readonly Oid[],
  ) {}

  /** Number of instances. */
  get size(): number {
    return this.values.count;
  }

  sizes(): MibViewSizes {
    return { instances: this.values.count, subids: this.subids.length, octets: this.values.octets };
  }

  /** Declared objects (scalar and column OIDs), sorted. */
  get objects(): readonly Oid[] {
    return this.declared;
  }

  /** The value of the instance named exactly `oid`. */
  get(oid: Oid): Value | undefined {
    const i = this.lowerBound(oid);
    return i < this.values.count && this.compareAt(i, oid) === 0 ? this.values.valueAt(i) : undefined;
  }

  /**
   * The first instance after `start` (or at it, when `include`) and, when
   * `end` is not empty, strictly before `end`: one SearchRange of RFC 2741 §5.2.
   */
  next(start: Oid, include: boolean, end: Oid = []): VarBind | undefined {
    let i = this.lowerBound(start);
    if (!include && i < this.values.count && this.compareAt(i, start) === 0) i++;
    if (i >= this.values.count) return undefined;
    if (end.length > 0 && this.compareAt(i, end) >= 0) return undefined;
    return this.varBindAt(i);
  }

  /** The declared object whose OID is `oid` or a prefix of it. */
  objectOf(oid: Oid): Oid | undefined {
    // Objects never nest, so the only candidate is the greatest object <= oid:
    // any object between that candidate and oid would lie outside its subtree,
    // and therefore after oid as well.
    let lo = 0;
    let hi = this.declared.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareOids(this.declared[mid], oid) <= 0) lo = mid + 1;
      else hi = mid;
    }
    const candidate = lo > 0 ? this.declared[lo - 1] : undefined;
    return candidate !== undefined && isPrefixOf(candidate, oid) ? candidate : undefined;
  }

  *[Symbol.iterator](): Iterator<VarBind> {
    for (let i = 0; i < this.values.count; i++) yield this.varBindAt(i);
  }

  private varBindAt(i: number): VarBind {
    const from = this.offsets[i];
    const to = this.offsets[i + 1];
    const oid: number[] = [];
    for (let k = from; k < to; k++) oid.push(this.subids[k]);
    return this.values.varBindAt(i, oid);
  }

  /**
   * Index of the first instance >= oid (size when there is none). Instance
   * OIDs share long prefixes (1.3.6.1.2.1.236.1.3.1.c...), so the search
   * skips the sub-identifiers that every instance between the two bounds is
   * known to share with oid: an instance between A and B has at least the
   * shorter of lcp(A, oid) and lcp(B, oid) in common with oid.
   */
  private lowerBound(oid: Oid): number {
    const { subids, offsets } = this;
    let lo = 0;
    let hi = this.values.count;
    let loCommon = 0;
    let hiCommon = 0;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const from = offsets[mid];
      const length = offsets[mid + 1] - from;
      const n = length < oid.length ? length : oid.length;
      let k = loCommon < hiCommon ? loCommon : hiCommon;
      while (k < n && subids[from + k] === oid[k]) k++;
      const before = k < n ? subids[from + k] < oid[k] : length < oid.length;
      if (before) {
        lo = mid + 1;
        loCommon = k;
      } else {
        hi = mid;
        hiCommon = k;
      }
    }
    return lo;
  }

  /** compareOids(instance i, oid) without materialising instance i. */
  private compareAt(i: number, oid: Oid): number {
    return comparePacked(this.subids, this.offsets[i], this.offsets[i + 1], oid);
  }
}

function comparePacked(subids: Uint32Array, from: number, to: number, oid: Oid): number {
  const length = to - from;
  const n = length < oid.length ? length : oid.length;
  for (let k = 0; k < n; k++) {
    const d = subids[from + k] - oid[k];
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return length === oid.length ? 0 : length < oid.length ? -1 : 1;
}

/** Like comparePacked, for two instances of the same packed buffer (used while sorting). */
function comparePackedPair(subids: Uint32Array, aFrom: number, aTo: number, bFrom: number, bTo: number): number {
  const aLength = aTo - aFrom;
  const bLength = bTo - bFrom;
  const n = aLength < bLength ? aLength : bLength;
  for (let k = 0; k < n; k++) {
    const d = subids[aFrom + k] - subids[bFrom + k];
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return aLength === bLength ? 0 : aLength < bLength ? -1 : 1;
}

/**
 * Collects instances and declared objects, then builds a MibView. Instances
 * added in ascending order (the usual case: views are generated table by
 * table, row by row) are not sorted again.
 */
export class MibViewBuilder {
  private subids: Uint32Array;
  private subidCount = 0;
  private offsets: Uint32Array;
  private values: PackedValues;
  private declared: Oid[] = [];
  private sorted = true;

  /**
   * `expected`: sizes to allocate for up front (e.g. the previous view's).
   * Growing by doubling and trimming at build() would otherwise hold up to
   * three copies of every array at once: 100+ MB at 10,000 VMs.
   */
  constructor(expected?: MibViewSizes) {
    this.subids = new Uint32Array(Math.max(expected?.subids ?? 0, 4096));
    this.offsets = new Uint32Array(Math.max((expected?.instances ?? 0) + 1, 257));
    this.values = new PackedValues(Math.max(expected?.instances ?? 0, 256), Math.max(expected?.octets ?? 0, 4096));
  }

  /** Declares a scalar or column object: Get of a missing instance under it is noSuchInstance. */
  declareObject(oid: Oid): this {
    checkOid(oid, 'object');
    this.declared.push(oid.slice());
    return this;
  }

  /** Adds one instance. Throws on an invalid OID, an exception value, or a duplicate of the previous OID. */
  add(oid: Oid, value: Value): this {
    checkOid(oid, 'instance');
    if (value.type === ValueType.NoSuchObject || value.type === ValueType.NoSuchInstance || value.type === ValueType.EndOfMibView) {
      throw new Error(`MIB view: instance ${formatOid(oid)} has exception type ${ValueType[value.type]}; add only real values`);
    }
    const index = this.values.count;
    if (this.subidCount + oid.length > this.subids.length) this.subids = grow(this.subids, this.subidCount + oid.length);
    if (index + 2 > this.offsets.length) this.offsets = grow(this.offsets, index + 2);
    // The O(n) sortedness check of build() happens here, one comparison per add.
    if (index > 0 && this.sorted) {
      const order = comparePacked(this.subids, this.offsets[index - 1], this.subidCount, oid);
      if (order === 0) throw duplicateError(oid);
      if (order > 0) this.sorted = false;
    }
    this.subids.set(oid, this.subidCount);
    this.subidCount += oid.length;
    this.offsets[index + 1] = this.subidCount;
    this.values.push(value);
    return this;
  }

  /** Returns the view and leaves this builder empty. Throws on duplicate instances or nested objects. */
  build(): MibView {
    const objects = sortObjects(this.declared);
    const count = this.values.count;
    let subids = this.subids.length === this.subidCount ? this.subids : this.subids.slice(0, this.subidCount);
    let offsets = this.offsets.length === count + 1 ? this.offsets : this.offsets.slice(0, count + 1);
    let values = this.values.trimmed();
    if (!this.sorted) ({ subids, offsets, values } = sortInstances(subids, offsets, values));
    this.reset();
    return new MibView(subids, offsets, values, objects);
  }

  private reset(): void {
    this.subids = new Uint32Array(4096);
    this.subidCount = 0;
    this.offsets = new Uint32Array(257);
    this.values = new PackedValues();
    this.declared = [];
    this.sorted = true;
  }
}

function checkOid(oid: Oid, what: string): void {
  if (oid.length === 0 || oid.length > MAX_OID_LENGTH) {
    throw new Error(`MIB view: ${what} OID "${formatOid(oid)}" has ${oid.length} sub-identifiers; it needs 1 to ${MAX_OID_LENGTH}`);
  }
  for (const subid of oid) {
    if (!Number.isInteger(subid) || subid < 0 || subid > MAX_SUBID) {
      throw new Error(`MIB view: ${what} OID "${formatOid(oid)}" has sub-identifier ${subid}; each must be an integer 0..2^32-1`);
    }
  }
}

function duplicateError(oid: Oid): Error {
  return new Error(`MIB view: instance ${formatOid(oid)} is added twice; each instance OID must be unique`);
}

function grow(array: Uint32Array, needed: number): Uint32Array {
  let capacity = array.length * 2;
  while (capacity < needed) capacity *= 2;
  const bigger = new Uint32Array(capacity);
  bigger.set(array);
  return bigger;
}

/** Sorts and de-duplicates declared objects; a parent/child pair is refused, as libagentx does. */
function sortObjects(declared: Oid[]): Oid[] {
  const sorted = declared.slice().sort(compareOids);
  const unique: Oid[] = [];
  for (const oid of sorted) {
    const previous = unique[unique.length - 1];
    if (previous !== undefined && compareOids(previous, oid) === 0) continue;
    if (previous !== undefined && isPrefixOf(previous, oid)) {
      throw new Error(`MIB view: object ${formatOid(oid)} lies under object ${formatOid(previous)}; declare only scalars and columns`);
    }
    unique.push(oid);
  }
  return unique;
}

function sortInstances(
  subids: Uint32Array,
  offsets: Uint32Array,
  values: PackedValues,
): { subids: Uint32Array; offsets: Uint32Array; values: PackedValues } {
  const count = values.count;
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  order.sort((a, b) => comparePackedPair(subids, offsets[a], offsets[a + 1], offsets[b], offsets[b + 1]));

  const sortedSubids = new Uint32Array(subids.length);
  const sortedOffsets = new Uint32Array(count + 1);
  let used = 0;
  for (let i = 0; i < count; i++) {
    const from = offsets[order[i]];
    const to = offsets[order[i] + 1];
    if (i > 0 && comparePackedPair(subids, offsets[order[i - 1]], offsets[order[i - 1] + 1], from, to) === 0) {
      throw duplicateError(Array.from(subids.subarray(from, to)));
    }
    sortedSubids.set(subids.subarray(from, to), used);
    used += to - from;
    sortedOffsets[i + 1] = used;
  }
  return { subids: sortedSubids, offsets: sortedOffsets, values: values.permuted(order) };
}
