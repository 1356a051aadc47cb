// Adds a conceptual table to a MibViewBuilder row by row.
//
// A view lists a table column by column (entry.1.*, then entry.2.*, ...),
// but rows are produced one at a time. So each cell is written straight into
// the view's value slot where its column will lie: the first column (in OID
// order) is added to the view as its row arrives, and every other column
// fills a stretch of slots reserved after it, `capacity` rows long. At end()
// the stretches move down over the room left by absent cells, and the
// instances are named column by column. No cell is held anywhere but in the
// view: column buffers of their own would be garbage of every refresh that
// stays resident until the next major GC (docs/memory.md, "Tables").
import { ValueType } from './pdu';
import type { Oid, Value } from './pdu';
import { formatOid } from './oid';

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
  /** Adds an instance with its value. */
  add(oid: Oid, value: Value): void;
  /** Adds an instance whose value was placed in nextSlot(). */
  addPlaced(oid: Oid): void;
  /** The table is complete; the view builder takes other instances again. */
  close(): void;
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
  /** present[(p - 1) * capacity + row] is 1 when column p (p >= 1) has a cell in that row. */
  private present: Uint8Array;
  /** Sub-ids of every row index, back to back; row r spans indexStarts[r] .. indexStarts[r + 1]. */
  private indexSubids: Uint32Array;
  private indexStarts: Uint32Array;
  private rows = 0;
  /** entry.firstArc, followed by the index of the row being added. */
  private readonly firstOid: number[];
  private ended = false;

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
    const others = Math.max(this.arcs.length - 1, 0);
    this.present = new Uint8Array(others * this.capacity);
    this.indexSubids = new Uint32Array(others > 0 ? 2 * this.capacity : 0);
    this.indexStarts = new Uint32Array(others > 0 ? this.capacity + 1 : 0);
    this.firstOid = this.arcs.length === 0 ? [] : [...entry, this.arcs[0]];
    if (this.arcs.length > 0) sink.declareObject(this.firstOid);
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
    const buffered = this.arcs.length > 1;
    if (buffered) this.keepIndex(row, index);
    for (let k = 0; k < cells.length; k++) {
      const cell = cells[k];
      if (cell === undefined) continue;
      const p = this.position[k];
      if (p === 0) {
        const oid = this.firstOid;
        oid.length = this.entry.length + 1;
        for (const subid of index) oid.push(subid);
        this.sink.add(oid, cell);
        this.filled[0]++;
        continue;
      }
      if (cell.type === ValueType.NoSuchObject || cell.type === ValueType.NoSuchInstance || cell.type === ValueType.EndOfMibView) {
        throw new Error(`MIB table ${formatOid(this.entry)}: column ${this.arcs[p]}, index ${formatOid(index)} has exception type ${ValueType[cell.type]}; add only real values`);
      }
      this.sink.place(this.base + p * this.capacity + this.filled[p], cell);
      this.filled[p]++;
      this.present[(p - 1) * this.capacity + row] = 1;
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
    for (let p = 1; p < this.arcs.length; p++) {
      const oid = [...this.entry, this.arcs[p]];
      this.sink.declareObject(oid);
      const prefix = oid.length;
      const present = (p - 1) * capacity;
      for (let r = 0; r < this.rows; r++) {
        if (this.present[present + r] === 0) continue;
        oid.length = prefix;
        for (let s = this.indexStarts[r]; s < this.indexStarts[r + 1]; s++) oid.push(this.indexSubids[s]);
        this.sink.addPlaced(oid);
      }
    }
    this.sink.close();
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
  }

  /** More rows than expected: doubles every stretch, moving them apart (last first, so none lands on another). */
  private grow(): void {
    const old = this.capacity;
    const capacity = 2 * old;
    this.sink.reserve(this.base + this.arcs.length * capacity);
    for (let p = this.arcs.length - 1; p >= 1; p--) this.sink.move(this.base + p * old, this.base + p * capacity, this.filled[p]);
    const others = Math.max(this.arcs.length - 1, 0);
    const present = new Uint8Array(others * capacity);
    for (let p = 0; p < others; p++) present.set(this.present.subarray(p * old, (p + 1) * old), p * capacity);
    this.present = present;
    if (others > 0) {
      const starts = new Uint32Array(capacity + 1);
      starts.set(this.indexStarts);
      this.indexStarts = starts;
    }
    this.capacity = capacity;
  }
}
