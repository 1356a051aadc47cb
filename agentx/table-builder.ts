// Adds a conceptual table to a MibViewBuilder row by row.
//
// A view lists a table column by column (entry.1.*, then entry.2.*, ...),
// but rows are produced one at a time. So each cell is written straight into
// the view's value slot where its column will lie: every column fills a
// stretch of slots reserved for it, `capacity` rows long, the first column's
// stretch starting at the view's next instance. At end() the stretches move
// down over the room left by absent cells, and the instances are named
// column by column. No cell is held anywhere but in the view: column buffers
// of their own would be garbage of every refresh that stays resident until
// the next major GC (docs/memory.md, "Tables").
//
// A view is usually rebuilt with the same rows as the one it replaces, only
// values changed. So a finished table leaves its shape (row indexes and which
// cells exist) with the view, and when the next build of that table has the
// same shape at the same place, its instances are not named again: the view
// builder takes the previous view's names for them as they are.
import { ValueType } from './pdu';
import type { Oid, Value } from './pdu';
import { formatOid } from './oid';

/**
 * What a finished table named in a view: its rows' indexes and which cells
 * exist, and where its instances lie among the view's. Immutable.
 */
export interface TableShape {
  /** The entry OID and the column arcs: which table this is. */
  readonly key: string;
  readonly rows: number;
  /**
   * Row r's index is indexSubids[indexStarts[r] .. indexStarts[r + 1]), or,
   * when every index has `indexLength` sub-ids (indexStarts null),
   * indexSubids[r * indexLength ..]. The narrowest array that holds them.
   */
  readonly indexLength: number;
  readonly indexStarts: Uint32Array | null;
  readonly indexSubids: Uint8Array | Uint16Array | Uint32Array;
  /** Bit (p * rows + r): column p (in OID order) has a cell in row r. */
  readonly present: Uint8Array;
  /** The table's first instance, and how many it has. */
  readonly firstInstance: number;
  readonly instances: number;
  /** Where its names start and end in the view's packed OIDs (packed-oids.ts). */
  readonly firstByte: number;
  readonly endByte: number;
}

/** What a MibTableBuilder may do to the view builder that made it. */
export interface TableSink {
  /** The slot the next added instance's value goes to. */
  nextSlot(): number;
  /** Makes slots 0 .. slots-1 exist. */
  reserve(slots: number): void;
  /** Writes a value into a slot ahead of the instances added so far. */
  place(slot: number, value: Value): void;
  /** Moves n placed values from slot `from` to slot `to`. */
  move(from: number, to: number, n: number): void;
  declareObject(oid: Oid): void;
  /** Adds an instance whose value was placed in nextSlot(). */
  addPlaced(oid: Oid): void;
  /**
   * The shape `key` had in the view being replaced, if the instances named
   * so far are exactly those that came before it there; else null.
   */
  previousShape(key: string): TableShape | null;
  /** Names the next shape.instances instances (their values placed) as the view being replaced did. */
  addAsBefore(shape: TableShape): void;
  /** Where the names added so far end in the packed OIDs; -1 once they are no longer packed in order. */
  nameBytes(): number;
  /** The table is complete; the view builder takes other instances again. */
  close(shape: TableShape | null): void;
}

export class MibTableBuilder {
  /** Column arcs in OID order. */
  private readonly arcs: number[];
  /** position[k]: where the k-th cell of a row() goes in `arcs`. */
  private readonly position: number[];
  /** Slot of the first column's first instance; column p's stretch starts at base + p * capacity. */
  private readonly base: number;
  /** Rows each stretch has room for. */
  private capacity: number;
  /** Cells placed so far, per column in OID order. */
  private readonly filled: number[];
  /** present[p * capacity + row] is 1 when column p has a cell in that row. */
  private present: Uint8Array;
  /** Sub-ids of every row index, back to back; row r spans indexStarts[r] .. indexStarts[r + 1]. */
  private indexSubids: Uint32Array;
  private indexStarts: Uint32Array;
  private rows = 0;
  /** How many sub-ids every row index so far has; -1 once two differ. */
  private indexLength = 0;
  private ended = false;
  private readonly key: string;
  /** The table's shape in the view being replaced, when it lay where this one starts. */
  private readonly before: TableShape | null;
  private readonly firstInstance: number;
  private readonly firstByte: number;

  /**
   * `arcs`: the column numbers, in the order row() receives their cells.
   * `expectedRows`: how many rows are likely; with the right number nothing
   * is moved until end().
   */
  constructor(
    private readonly sink: TableSink,
    private readonly entry: Oid,
    arcs: readonly number[],
    expectedRows = 0,
  ) {
    this.arcs = [...arcs].sort((a, b) => a - b);
    for (let p = 1; p < this.arcs.length; p++) {
      if (this.arcs[p] === this.arcs[p - 1]) throw new Error(`MIB table ${formatOid(entry)}: column ${this.arcs[p]} is named twice`);
    }
    this.position = arcs.map((arc) => this.arcs.indexOf(arc));
    this.base = sink.nextSlot();
    this.capacity = Math.max(expectedRows, 16);
    this.filled = this.arcs.map(() => 0);
    this.present = new Uint8Array(this.arcs.length * this.capacity);
    this.indexSubids = new Uint32Array(2 * this.capacity);
    this.indexStarts = new Uint32Array(this.capacity + 1);
    this.key = `${entry.join('.')}:${this.arcs.join(',')}`;
    this.before = sink.previousShape(this.key);
    this.firstInstance = this.base;
    this.firstByte = sink.nameBytes();
    sink.reserve(this.base + this.arcs.length * this.capacity);
  }

  /** One row: `cells[k]` is the value of column arcs[k], undefined where the instance does not exist. */
  row(index: Oid, cells: readonly (Value | undefined)[]): this {
    if (this.ended) throw new Error('MIB table: row() after end()');
    if (cells.length !== this.position.length) {
      throw new Error(`MIB table: a row has ${cells.length} cells for ${this.position.length} columns`);
    }
    if (this.rows === this.capacity) this.grow();
    const row = this.rows++;
    this.keepIndex(row, index);
    for (let k = 0; k < cells.length; k++) {
      const cell = cells[k];
      if (cell === undefined) continue;
      const p = this.position[k];
      if (cell.type === ValueType.NoSuchObject || cell.type === ValueType.NoSuchInstance || cell.type === ValueType.EndOfMibView) {
        throw new Error(`MIB table ${formatOid(this.entry)}: column ${this.arcs[p]}, index ${formatOid(index)} has exception type ${ValueType[cell.type]}; add only real values`);
      }
      this.sink.place(this.base + p * this.capacity + this.filled[p], cell);
      this.filled[p]++;
      this.present[p * this.capacity + row] = 1;
    }
    return this;
  }

  /** Declares every column and names its instances, columns in OID order; the view builder is free again. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const { base, capacity, filled } = this;
    let to = base + (filled[0] ?? 0);
    for (let p = 1; p < this.arcs.length; p++) {
      // Left to right: a stretch never moves onto one not yet moved.
      this.sink.move(base + p * capacity, to, filled[p]);
      to += filled[p];
    }
    for (const arc of this.arcs) this.sink.declareObject([...this.entry, arc]);
    const present = this.presentBits();
    if (this.before !== null && this.sameShape(this.before, present)) {
      this.sink.addAsBefore(this.before);
      this.sink.close(this.before);
      return;
    }
    for (let p = 0; p < this.arcs.length; p++) {
      const oid = [...this.entry, this.arcs[p]];
      const prefix = oid.length;
      const column = p * capacity;
      for (let r = 0; r < this.rows; r++) {
        if (this.present[column + r] === 0) continue;
        oid.length = prefix;
        for (let s = this.indexStarts[r]; s < this.indexStarts[r + 1]; s++) oid.push(this.indexSubids[s]);
        this.sink.addPlaced(oid);
      }
    }
    const endByte = this.sink.nameBytes();
    this.sink.close(
      this.firstByte < 0 || endByte < 0
        ? null
        : {
            key: this.key,
            rows: this.rows,
            indexLength: this.indexLength,
            indexStarts: this.indexLength < 0 ? this.indexStarts.slice(0, this.rows + 1) : null,
            indexSubids: narrowest(this.indexSubids.subarray(0, this.indexStarts[this.rows])),
            present,
            firstInstance: this.firstInstance,
            instances: to - base,
            firstByte: this.firstByte,
            endByte,
          },
    );
  }

  /** The present cells as bits, column-major (TableShape.present). */
  private presentBits(): Uint8Array {
    const { rows, capacity } = this;
    const bits = new Uint8Array(Math.ceil((this.arcs.length * rows) / 8));
    for (let p = 0; p < this.arcs.length; p++) {
      const column = p * capacity;
      for (let r = 0; r < rows; r++) {
        if (this.present[column + r] === 0) continue;
        const bit = p * rows + r;
        bits[bit >>> 3] |= 1 << (bit & 7);
      }
    }
    return bits;
  }

  /** Whether this table has the rows and cells of `shape` (which lies where this table starts). */
  private sameShape(shape: TableShape, present: Uint8Array): boolean {
    if (shape.rows !== this.rows || shape.firstInstance !== this.firstInstance || shape.indexLength !== this.indexLength) return false;
    const subids = this.indexStarts[this.rows];
    if (shape.indexSubids.length !== subids) return false;
    if (shape.indexStarts !== null && !sameNumbers(shape.indexStarts, this.indexStarts, this.rows + 1)) return false;
    if (!sameNumbers(shape.indexSubids, this.indexSubids, subids)) return false;
    if (shape.present.length !== present.length) return false;
    for (let i = 0; i < present.length; i++) if (shape.present[i] !== present[i]) return false;
    return true;
  }

  private keepIndex(row: number, index: Oid): void {
    const from = this.indexStarts[row];
    if (from + index.length > this.indexSubids.length) {
      const bigger = new Uint32Array(Math.max(2 * this.indexSubids.length, from + index.length));
      bigger.set(this.indexSubids.subarray(0, from));
      this.indexSubids = bigger;
    }
    for (let s = 0; s < index.length; s++) this.indexSubids[from + s] = index[s];
    this.indexStarts[row + 1] = from + index.length;
    if (row === 0) this.indexLength = index.length;
    else if (index.length !== this.indexLength) this.indexLength = -1;
  }

  /** More rows than expected: doubles every stretch, moving them apart (last first, so none lands on another). */
  private grow(): void {
    const old = this.capacity;
    const capacity = 2 * old;
    this.sink.reserve(this.base + this.arcs.length * capacity);
    for (let p = this.arcs.length - 1; p >= 1; p--) this.sink.move(this.base + p * old, this.base + p * capacity, this.filled[p]);
    const present = new Uint8Array(this.arcs.length * capacity);
    for (let p = 0; p < this.arcs.length; p++) present.set(this.present.subarray(p * old, (p + 1) * old), p * capacity);
    this.present = present;
    const starts = new Uint32Array(capacity + 1);
    starts.set(this.indexStarts);
    this.indexStarts = starts;
    this.capacity = capacity;
  }
}

function sameNumbers(a: ArrayLike<number>, b: ArrayLike<number>, n: number): boolean {
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A copy of `subids` in the narrowest unsigned array that holds them: shapes stay with their view. */
function narrowest(subids: Uint32Array): Uint8Array | Uint16Array | Uint32Array {
  let max = 0;
  for (let i = 0; i < subids.length; i++) if (subids[i] > max) max = subids[i];
  if (max <= 0xff) return Uint8Array.from(subids);
  if (max <= 0xffff) return Uint16Array.from(subids);
  return subids.slice();
}
