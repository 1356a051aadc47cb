// An immutable, sorted table of MIB instances (OID → value) that answers the
// lookups of Get and GetNext processing (RFC 2741 §7.2.3) in O(log n).
//
// A view may hold hundreds of thousands of instances, so neither names nor
// values are kept as an object each: OIDs are front-coded in one byte array
// (packed-oids.ts), values packed column-wise (packed-values.ts); what that
// saves is in docs/memory.md.
import { ValueType } from './pdu';
import type { Oid, Value, VarBind } from './pdu';
import { compareOids, formatOid, isPrefixOf } from './oid';
import { OidCursor, PackedOids, PackedOidsWriter } from './packed-oids';
import { PackedValues } from './packed-values';
import { MibTableBuilder, type TableShape, type TableSink } from './table-builder';

/** RFC 2741 §5.1: n_subid is 0..128. */
const MAX_OID_LENGTH = 128;
const MAX_SUBID = 0xffffffff;

/** How much a view holds; a builder given the previous view's sizes allocates once and copies nothing at build(). */
export interface MibViewSizes {
  instances: number;
  /** Bytes of all packed instance OIDs together. */
  oidBytes: number;
  /** Bytes of all octet-string values together. */
  octets: number;
  /** Value slots the build needed at most (tables place cells ahead, see table-builder.ts). */
  slots?: number;
  /** Counter64 values (held apart from the 4-byte slots, see packed-values.ts). */
  wide?: number;
}

export class MibView implements Iterable<VarBind> {
  /** Lookups run one at a time (one thread), so they share one cursor. */
  private readonly cursor: OidCursor;

  /** Use MibViewBuilder. `objects` is sorted and no object is a prefix of another. */
  constructor(
    /** @internal read by the next view's builder, to share what did not change */
    readonly oids: PackedOids,
    /** @internal read by the next view's builder, to share what did not change */
    readonly values: PackedValues,
    private readonly declared: readonly Oid[],
    private readonly slots = values.size,
    /** Instance number → value that replaces the packed one (see withValues). */
    private readonly replaced: ReadonlyMap<number, Value> | null = null,
    /** @internal the shapes of its tables, for the next view's builder (table-builder.ts) */
    readonly tables: readonly TableShape[] = [],
  ) {
    this.cursor = oids.cursor();
  }

  /**
   * This view with the values of existing instances replaced, e.g. after a
   * Set of a scalar: the instances are shared, not rebuilt or copied, so the
   * agent needs nothing but the view it serves to apply a Set.
   */
  withValues(changes: readonly VarBind[]): MibView {
    const replaced = new Map(this.replaced ?? []);
    const c = this.oids.cursor();
    const size = this.values.size;
    for (const { oid, ...value } of changes) {
      const i = c.seek(oid);
      if (i >= size || c.compare(oid) !== 0) {
        throw new Error(`MIB view: no instance ${formatOid(oid)} to replace the value of; withValues() replaces, it does not add`);
      }
      if (value.type === ValueType.NoSuchObject || value.type === ValueType.NoSuchInstance || value.type === ValueType.EndOfMibView) {
        throw new Error(`MIB view: instance ${formatOid(oid)} cannot take exception type ${ValueType[value.type]}`);
      }
      replaced.set(i, value as Value);
    }
    return new MibView(this.oids, this.values, this.declared, this.slots, replaced, this.tables);
  }

  /** True once the responder that replaced this view released it: reading it then throws. */
  get released(): boolean {
    return this.values.released;
  }

  /** Number of instances. */
  get size(): number {
    return this.values.size;
  }

  sizes(): MibViewSizes {
    return {
      instances: this.values.size,
      oidBytes: this.oids.byteLength,
      octets: this.values.octets,
      slots: this.slots,
      wide: this.values.wideValues,
    };
  }

  /** Declared objects (scalar and column OIDs), sorted. */
  get objects(): readonly Oid[] {
    return this.declared;
  }

  /** The value of the instance named exactly `oid`. */
  get(oid: Oid): Value | undefined {
    const size = this.values.size;
    const c = this.cursor;
    const i = c.seek(oid);
    if (i >= size || c.compare(oid) !== 0) return undefined;
    return this.replaced?.get(i) ?? this.values.valueAt(i);
  }

  /**
   * The first instance after `start` (or at it, when `include`) and, when
   * `end` is not empty, strictly before `end`: one SearchRange of RFC 2741 §5.2.
   */
  next(start: Oid, include: boolean, end: Oid = []): VarBind | undefined {
    const size = this.values.size;
    const c = this.cursor;
    c.seek(start);
    if (!include && c.index < size && c.compare(start) === 0) c.advance();
    if (c.index >= size) return undefined;
    if (end.length > 0 && c.compare(end) >= 0) return undefined;
    return this.varBindAt(c.index, c.oid());
  }

  private varBindAt(i: number, oid: Oid): VarBind {
    const replaced = this.replaced?.get(i);
    return replaced === undefined ? this.values.varBindAt(i, oid) : Object.assign({ oid }, replaced);
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
    // A cursor of its own: lookups between two steps must not move it.
    const c = this.oids.cursor();
    for (; c.index < this.values.size; c.advance()) yield this.varBindAt(c.index, c.oid());
  }
}

/**
 * Frees a view's values at once, not at whatever later GC finds them dead;
 * reading the view afterwards throws. Only for the responder, which knows
 * when a view it served is replaced and whether another still shares its
 * values (Responder.publish); not part of the library's public surface.
 */
export function releaseView(view: MibView): void {
  view.values.release();
}

/**
 * Collects instances and declared objects, then builds a MibView. Instances
 * added in ascending order (the usual case: views are generated table by
 * table, row by row) are packed as they come and not sorted; after the first
 * one out of order, the rest are kept as arrays and sorted at build().
 */
export class MibViewBuilder {
  private oids: PackedOidsWriter;
  /** Every OID so far, once one came out of order; null while the input is sorted. */
  private loose: Oid[] | null = null;
  private values: PackedValues;
  private declared: Oid[] = [];
  private tableOpen = false;
  /** The most value slots a table reserved (see MibViewSizes.slots). */
  private slotsNeeded = 0;
  /** The tables of the view being replaced, by TableShape.key. */
  private previousTables: ReadonlyMap<string, TableShape>;
  private tables: TableShape[] = [];

  /**
   * `previous`: the view this one will replace, or just its sizes. Its sizes
   * are allocated up front: growing by doubling and trimming at build()
   * would otherwise hold up to three copies of every array at once. Given
   * the view itself, the new one also shares its instance OIDs and its
   * octet-string bytes where they turn out the same (packed-oids.ts,
   * packed-values.ts), which at a steady refresh they usually all are.
   */
  constructor(previous?: MibViewSizes | MibView) {
    const expected = previous instanceof MibView ? previous.sizes() : previous;
    const basis = previous instanceof MibView ? previous : null;
    this.oids = new PackedOidsWriter(expected?.oidBytes ?? 0, expected?.instances ?? 0, basis?.oids ?? null);
    const slots = Math.max(expected?.slots ?? 0, expected?.instances ?? 0, 256);
    this.values = new PackedValues(slots, Math.max(expected?.octets ?? 0, 4096), undefined, basis?.values.pool ?? null,
      expected?.wide ?? Math.ceil(slots / 4));
    this.previousTables = new Map(basis?.tables.map((t) => [t.key, t]) ?? []);
  }

  /** Declares a scalar or column object: Get of a missing instance under it is noSuchInstance. */
  declareObject(oid: Oid): this {
    checkOid(oid, 'object');
    this.declared.push(oid.slice());
    return this;
  }

  /**
   * A builder that adds the table under `entry` row by row (see
   * table-builder.ts); call its end() before build(). `expectedRows` sizes
   * its buffers up front.
   */
  table(entry: Oid, arcs: readonly number[], expectedRows = 0): MibTableBuilder {
    if (this.tableOpen) throw new Error('MIB view: a table is still being added; end() it first');
    this.tableOpen = true;
    const sink: TableSink = {
      nextSlot: () => this.values.size,
      reserve: (slots) => {
        this.values.ensureCapacity(slots);
        if (slots > this.slotsNeeded) this.slotsNeeded = slots;
      },
      place: (slot, value) => this.values.putAt(slot, value),
      move: (from, to, n) => this.values.moveSlots(from, to, n),
      declareObject: (oid) => this.declareObject(oid),
      addPlaced: (oid) => {
        this.addName(oid);
        this.values.countPlaced();
      },
      previousShape: (key) => {
        const shape = this.previousTables.get(key);
        const inPlace = shape !== undefined && this.loose === null && this.values.size === shape.firstInstance &&
          this.oids.repeatsBasisUpTo(shape.firstInstance, shape.firstByte);
        return inPlace ? shape : null;
      },
      addAsBefore: (shape) => {
        this.oids.repeatBasis(shape.instances, shape.endByte);
        this.values.countPlaced(shape.instances);
      },
      nameBytes: () => (this.loose === null ? this.oids.byteOffset : -1),
      close: (shape) => {
        this.tableOpen = false;
        if (shape !== null) this.tables.push(shape);
      },
    };
    return new MibTableBuilder(sink, entry, arcs, expectedRows);
  }

  /** Adds one instance. Throws on an invalid OID, an exception value, or a duplicate of the previous OID. */
  add(oid: Oid, value: Value): this {
    // A table being added has placed cells beyond the last instance; an add would land on them.
    if (this.tableOpen) throw new Error('MIB view: add() while a table is being added; end() it first');
    this.addInstance(oid, value);
    return this;
  }

  private addInstance(oid: Oid, value: Value): void {
    if (value.type === ValueType.NoSuchObject || value.type === ValueType.NoSuchInstance || value.type === ValueType.EndOfMibView) {
      throw new Error(`MIB view: instance ${formatOid(oid)} has exception type ${ValueType[value.type]}; add only real values`);
    }
    this.addName(oid);
    this.values.push(value);
  }

  /** Records the name of the next instance; its value is pushed or placed by the caller. */
  private addName(oid: Oid): void {
    checkOid(oid, 'instance');
    if (this.loose === null) {
      // The O(n) sortedness check of build() happens here, one comparison per add.
      const order = this.oids.compareToLast(oid);
      if (order === 0) throw duplicateError(oid);
      if (order < 0) this.oids.push(oid);
      else this.loose = unpack(this.oids.finish());
    }
    if (this.loose !== null) this.loose.push(oid.slice());
  }

  /** Returns the view and leaves this builder empty. Throws on duplicate instances or nested objects. */
  build(): MibView {
    if (this.tableOpen) throw new Error('MIB view: build() while a table is being added; end() it first');
    const objects = sortObjects(this.declared);
    const count = this.values.size;
    const slots = Math.max(this.slotsNeeded, count);
    // Spare slots are the room tables reserved for absent cells: a few, kept
    // rather than copied away (a copy would briefly hold the values twice).
    let values = this.values.capacity - count > count / 8 ? this.values.trimmed() : this.values;
    let oids: PackedOids;
    if (this.loose === null) {
      oids = this.oids.finish();
    } else {
      const order = sortedOrder(this.loose);
      oids = packInOrder(this.loose, order);
      values = values.permuted(order);
    }
    // Sorted instances lie elsewhere than their tables named them.
    const tables = this.loose === null ? this.tables : [];
    this.reset();
    return new MibView(oids, values, objects, slots, null, tables);
  }

  private reset(): void {
    this.oids = new PackedOidsWriter();
    this.loose = null;
    this.values = new PackedValues();
    this.declared = [];
    this.tableOpen = false;
    this.slotsNeeded = 0;
    this.previousTables = new Map();
    this.tables = [];
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

function unpack(oids: PackedOids): Oid[] {
  const out: Oid[] = [];
  for (const c = oids.cursor(); c.index < oids.count; c.advance()) out.push(c.oid());
  return out;
}

/** Instance indexes in OID order. */
function sortedOrder(oids: readonly Oid[]): Uint32Array {
  const order = new Uint32Array(oids.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  return order.sort((a, b) => compareOids(oids[a], oids[b]));
}

function packInOrder(oids: readonly Oid[], order: Uint32Array): PackedOids {
  const writer = new PackedOidsWriter(0, order.length);
  for (const i of order) {
    if (writer.compareToLast(oids[i]) === 0) throw duplicateError(oids[i]);
    writer.push(oids[i]);
  }
  return writer.finish();
}
