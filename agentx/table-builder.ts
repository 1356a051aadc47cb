// Adds a conceptual table to a MibViewBuilder row by row.
//
// A view lists a table column by column (entry.1.*, then entry.2.*, ...),
// but its rows are naturally produced one at a time. Building every row
// object first and then walking them once per column kept all of them alive
// for the whole table: at 10,000 VMs tens of thousands of row objects per
// refresh, long-lived enough for V8 to promote them to the old generation.
// Here the first column (in OID order) goes to the view builder as each row
// arrives, the other columns' cells are packed (typed arrays, no object per
// cell) and handed over in order at end(). A one-column table, such as the
// 320,000-row vmCpuAffinityTable of 10,000 VMs, is therefore never held.
import { Oid, Value } from './pdu';
import { PackedValues } from './packed-values';
import type { MibViewBuilder } from './view';

interface ColumnCells {
  arc: number;
  values: PackedValues;
  /** rows[k]: the row (order of row() calls) of the k-th value. */
  rows: number[];
}

export class MibTableBuilder {
  /** Per position in row()'s cells: its column's buffer, or null for the first column, added at once. */
  private readonly columns: (ColumnCells | null)[];
  /** entry.firstArc, followed by the index of the row being added. */
  private readonly firstOid: number[];
  /** Whether any column is buffered, and so row indexes must be kept. */
  private readonly buffered: boolean;
  /** Sub-ids of every row index, back to back; row r spans indexStarts[r] .. indexStarts[r + 1]. */
  private indexSubids: number[] = [];
  private indexStarts: number[] = [0];
  private ended = false;

  /**
   * `arcs`: the column numbers, in the order row() receives their cells.
   * `expectedRows`: how many rows are likely, so column buffers are
   * allocated once instead of grown by doubling.
   */
  constructor(
    private readonly view: MibViewBuilder,
    private readonly entry: Oid,
    arcs: readonly number[],
    expectedRows = 0,
  ) {
    const first = arcs.length === 0 ? -1 : arcs.indexOf(Math.min(...arcs));
    const capacity = Math.max(expectedRows, 64);
    this.columns = arcs.map((arc, k) => (k === first ? null : { arc, values: new PackedValues(capacity, 256), rows: [] }));
    this.firstOid = first < 0 ? [] : [...entry, arcs[first]];
    if (first >= 0) view.declareObject(this.firstOid);
    this.buffered = arcs.length > 1;
  }

  /** One row: `cells[k]` is the value of column arcs[k], undefined where the instance does not exist. */
  row(index: Oid, cells: readonly (Value | undefined)[]): this {
    if (this.ended) throw new Error('MIB table: row() after end()');
    if (cells.length !== this.columns.length) {
      throw new Error(`MIB table: a row has ${cells.length} cells for ${this.columns.length} columns`);
    }
    const row = this.indexStarts.length - 1;
    if (this.buffered) {
      for (const subid of index) this.indexSubids.push(subid);
      this.indexStarts.push(this.indexSubids.length);
    }
    for (let k = 0; k < cells.length; k++) {
      const cell = cells[k];
      if (cell === undefined) continue;
      const column = this.columns[k];
      if (column !== null) {
        column.values.push(cell);
        column.rows.push(row);
        continue;
      }
      const oid = this.firstOid;
      oid.length = this.entry.length + 1;
      for (const subid of index) oid.push(subid);
      this.view.add(oid, cell);
    }
    return this;
  }

  /** Declares every column and adds its instances to the view builder, columns in OID order. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const columns = this.columns.filter((c): c is ColumnCells => c !== null).sort((a, b) => a.arc - b.arc);
    for (const column of columns) {
      const oid = [...this.entry, column.arc];
      this.view.declareObject(oid);
      const base = oid.length;
      for (let k = 0; k < column.rows.length; k++) {
        const row = column.rows[k];
        const from = this.indexStarts[row];
        const to = this.indexStarts[row + 1];
        oid.length = base;
        for (let s = from; s < to; s++) oid.push(this.indexSubids[s]);
        this.view.add(oid, column.values.valueAt(k));
      }
    }
    this.indexSubids = [];
    this.indexStarts = [0];
  }
}
