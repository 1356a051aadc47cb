import { MibView, MibViewBuilder } from '../../agentx/view';
import { ValueType } from '../../agentx/pdu';
import type { Value } from '../../agentx/pdu';
import { compareOids, formatOid } from '../../agentx/oid';
import { mulberry32 } from '../harness/mulberry32';

const int = (value: number): Value => ({ type: ValueType.Integer, value });
const str = (text: string): Value => ({ type: ValueType.OctetString, value: Buffer.from(text) });
const ENTRY = [1, 3, 6, 1, 4, 1, 9, 2, 1];

function walk(b: MibViewBuilder): string[] {
  return [...b.build()].map((vb) => {
    const value = 'value' in vb && Buffer.isBuffer(vb.value) ? vb.value.toString() : String((vb as { value: unknown }).value);
    return `${formatOid(vb.oid)}=${value}`;
  });
}

describe('MibTableBuilder', () => {
  test('rows given one at a time come out column by column, columns in OID order whatever order they were named in', () => {
    const b = new MibViewBuilder();
    const t = b.table(ENTRY, [3, 2]);
    t.row([1], [str('c1'), int(21)]);
    t.row([7, 5], [str('c7'), int(27)]);
    t.end();
    expect(walk(b)).toEqual([
      '1.3.6.1.4.1.9.2.1.2.1=21',
      '1.3.6.1.4.1.9.2.1.2.7.5=27',
      '1.3.6.1.4.1.9.2.1.3.1=c1',
      '1.3.6.1.4.1.9.2.1.3.7.5=c7',
    ]);
  });

  test('an undefined cell is an absent instance; the column is still declared', () => {
    const b = new MibViewBuilder();
    const t = b.table(ENTRY, [2, 3]);
    t.row([1], [int(1), undefined]);
    t.row([2], [undefined, undefined]);
    t.end();
    const view = b.build();
    expect([...view].map((vb) => formatOid(vb.oid))).toEqual(['1.3.6.1.4.1.9.2.1.2.1']);
    expect(view.objectOf([...ENTRY, 3, 1])).toEqual([...ENTRY, 3]);
  });

  test('rows out of index order are sorted by the view builder like any other instances', () => {
    const b = new MibViewBuilder();
    const t = b.table(ENTRY, [2]);
    t.row([9], [int(9)]).row([3], [int(3)]);
    t.end();
    expect(walk(b)).toEqual(['1.3.6.1.4.1.9.2.1.2.3=3', '1.3.6.1.4.1.9.2.1.2.9=9']);
  });

  test('a row with the wrong number of cells, or after end(), is refused', () => {
    const t = new MibViewBuilder().table(ENTRY, [2, 3]);
    expect(() => t.row([1], [int(1)])).toThrow('a row has 1 cells for 2 columns');
    t.end();
    expect(() => t.row([1], [int(1), int(2)])).toThrow('row() after end()');
  });

  test('the index and the cells array may be reused between rows', () => {
    const b = new MibViewBuilder();
    const t = b.table(ENTRY, [2]);
    const index = [0];
    const cells: Value[] = [int(0)];
    for (let i = 1; i <= 3; i++) {
      index[0] = i;
      cells[0] = int(i * 10);
      t.row(index, cells);
    }
    t.end();
    expect(walk(b)).toEqual(['1.3.6.1.4.1.9.2.1.2.1=10', '1.3.6.1.4.1.9.2.1.2.2=20', '1.3.6.1.4.1.9.2.1.2.3=30']);
  });

  test('a table gives the same view as its instances added one by one, whatever rows are absent or how wrong the expected row count is', () => {
    const next = mulberry32(7);
    const random = (): number => next() / 2 ** 32;
    const oidValue: Value = { type: ValueType.ObjectIdentifier, value: [1, 3, 6, 1, 99] };
    for (let round = 0; round < 60; round++) {
      const arcs = [5, 2, 9, 3].slice(0, 1 + Math.floor(random() * 4));
      const rowCount = Math.floor(random() * 90);
      const expectedRows = [0, rowCount, Math.floor(rowCount / 3), rowCount * 2][round % 4];
      const rows: [number[], (Value | undefined)[]][] = [];
      for (let r = 0; r < rowCount; r++) {
        const index = random() < 0.5 ? [r + 1] : [r + 1, Math.floor(random() * 5)];
        rows.push([index, arcs.map((arc): Value | undefined => {
          const pick = random();
          if (pick < 0.2) return undefined;
          if (pick < 0.5) return str(`${arc}:${r}:${'x'.repeat(Math.floor(random() * 40))}`);
          if (pick < 0.55) return oidValue;
          if (pick < 0.7) return { type: ValueType.Counter64, value: BigInt(r) << 40n };
          return int(arc * 1000 + r);
        })]);
      }
      // Something before and after the table, as in a real view.
      const viaTable = new MibViewBuilder().add([1, 3, 6, 1, 4, 1, 9, 1, 0], int(-1));
      const t = viaTable.table(ENTRY, arcs, expectedRows);
      for (const [index, cells] of rows) t.row(index, cells);
      t.end();
      viaTable.add([1, 3, 6, 1, 4, 1, 9, 3, 0], int(-2));

      const oneByOne: [number[], Value][] = [[[1, 3, 6, 1, 4, 1, 9, 1, 0], int(-1)], [[1, 3, 6, 1, 4, 1, 9, 3, 0], int(-2)]];
      for (const [index, cells] of rows) {
        arcs.forEach((arc, k) => {
          const cell = cells[k];
          if (cell !== undefined) oneByOne.push([[...ENTRY, arc, ...index], cell]);
        });
      }
      oneByOne.sort((a, b) => compareOids(a[0], b[0]));
      const reference = new MibViewBuilder();
      for (const [oid, value] of oneByOne) reference.add(oid, value);
      expect(walk(viaTable)).toEqual(walk(reference));
    }
  });

  test('while a table is being added, other instances and build() are refused', () => {
    const b = new MibViewBuilder();
    const t = b.table(ENTRY, [2, 3], 4);
    t.row([1], [int(1), int(2)]);
    expect(() => b.add([1, 3, 6, 1, 4, 1, 9, 3, 0], int(0))).toThrow('end() it first');
    expect(() => b.build()).toThrow('end() it first');
    expect(() => b.table([1, 3, 6, 1, 4, 1, 9, 3, 1], [2])).toThrow('end() it first');
    t.end();
    b.add([1, 3, 6, 1, 4, 1, 9, 3, 0], int(0));
    expect(walk(b)).toEqual(['1.3.6.1.4.1.9.2.1.2.1=1', '1.3.6.1.4.1.9.2.1.3.1=2', '1.3.6.1.4.1.9.3.0=0']);
  });

  test('the next build, given the sizes of this one, has room for every table from the start', () => {
    const build = (sizes?: ReturnType<ReturnType<MibViewBuilder['build']>['sizes']>) => {
      const b = new MibViewBuilder(sizes);
      const t = b.table(ENTRY, [2, 3, 4], 10);
      for (let r = 1; r <= 1000; r++) t.row([r], [int(r), r % 2 === 0 ? undefined : int(-r), str('abc')]);
      t.end();
      return b.build();
    };
    const first = build();
    const sizes = first.sizes();
    expect(sizes.instances).toBe(2500);
    expect(sizes.slots).toBeGreaterThanOrEqual(3000);
    const second = build(sizes);
    expect(second.sizes()).toEqual(sizes);
    expect([...second].length).toBe(2500);
  });

  describe('rebuilt from the view it replaces', () => {
    type Rows = [number[], (Value | undefined)[]][];
    const SCALAR_BEFORE = [1, 3, 6, 1, 4, 1, 9, 1, 0];
    const SECOND = [1, 3, 6, 1, 4, 1, 9, 2, 2];
    /** A view of a scalar, two tables and a scalar; `previous` is the view it replaces. */
    const build = (rows: Rows, second: Rows, previous?: MibView, before = SCALAR_BEFORE): MibView => {
      const b = new MibViewBuilder(previous).add(before, int(-1));
      const t = b.table(ENTRY, [3, 2], rows.length);
      for (const [index, cells] of rows) t.row(index, cells);
      t.end();
      const u = b.table(SECOND, [1]);
      for (const [index, cells] of second) u.row(index, cells);
      u.end();
      return b.add([1, 3, 6, 1, 4, 1, 9, 3, 0], int(-2)).build();
    };
    const text = (view: MibView): string[] => [...view].map((vb) => {
      const value = 'value' in vb && Buffer.isBuffer(vb.value) ? vb.value.toString() : String((vb as { value: unknown }).value);
      return `${formatOid(vb.oid)}=${value}`;
    });
    const rowsOf = (n: number, tag: string): Rows =>
      Array.from({ length: n }, (_, r) => [[r + 1, 7], [str(`${tag}${r}`), int(r)]]);

    test('with the same rows, the tables are not named again: the names and shapes are the previous view\'s, the values new', () => {
      const first = build(rowsOf(3, 'a'), [[[5], [int(50)]]]);
      const second = build(rowsOf(3, 'b'), [[[5], [int(51)]]], first);
      expect(second.oids).toBe(first.oids);
      expect(second.tables).toHaveLength(2);
      second.tables.forEach((shape, i) => expect(shape).toBe(first.tables[i]));
      expect(text(second)).toEqual(text(build(rowsOf(3, 'b'), [[[5], [int(51)]]])));
      expect(text(second)).toContain('1.3.6.1.4.1.9.2.1.3.2.7=b1');
    });

    test('a row more or less, another index, a cell gone or come, or a name before the table changed: named afresh, as a fresh build', () => {
      const base = rowsOf(4, 'a');
      const variants: [string, Rows, Rows, number[]?][] = [
        ['a row more', rowsOf(5, 'b'), [[[5], [int(1)]]]],
        ['a row less', rowsOf(3, 'b'), [[[5], [int(1)]]]],
        ['another index', base.map(([index, cells], r) => [r === 2 ? [index[0], 8] : index, cells]), [[[5], [int(1)]]]],
        ['an index one sub-id shorter', base.map(([index, cells], r) => [r === 3 ? [index[0]] : index, cells]), [[[5], [int(1)]]]],
        ['a cell gone', base.map(([index, cells], r) => [index, r === 1 ? [cells[0], undefined] : cells]), [[[5], [int(1)]]]],
        ['a row of the second table more', base, [[[5], [int(1)]], [[6], [int(2)]]]],
        ['a cell of the second table gone', base, [[[5], [undefined]]]],
        ['another scalar before the tables', base, [[[5], [int(1)]]], [1, 3, 6, 1, 4, 1, 9, 1, 1]],
      ];
      for (const [what, rows, second, before] of variants) {
        const first = build(base, [[[5], [int(1)]]]);
        const again = build(rows, second, first, before);
        expect({ what, walk: text(again) }).toEqual({ what, walk: text(build(rows, second, undefined, before)) });
        // And back: the changed view is a good basis too.
        expect({ what, walk: text(build(base, [[[5], [int(1)]]], again)) }).toEqual({ what, walk: text(first) });
      }
      // A cell that comes back in a row that lacked it.
      const lacking = build(base.map(([index, cells]) => [index, [cells[0], undefined]]), [], undefined);
      expect(text(build(base, [], lacking))).toEqual(text(build(base, [])));
    });

    test('indexes of different lengths: the same rows are taken as they were, another length of one is named afresh', () => {
      const mixed: Rows = [[[1], [str('a'), int(1)]], [[2, 9], [str('b'), int(2)]], [[3, 9, 9], [str('c'), int(3)]]];
      const first = build(mixed, []);
      const same = build(mixed, [], first);
      expect(same.tables[0]).toBe(first.tables[0]);
      const other: Rows = [[[1], [str('a'), int(1)]], [[2], [str('b'), int(2)]], [[9, 3, 9], [str('c'), int(3)]]];
      expect(text(build(other, [], first))).toEqual(text(build(other, [])));
      expect(text(build(mixed, [], build(other, [])))).toEqual(text(first));
    });

    test('a chain of random rebuilds always equals a fresh build of the same rows', () => {
      const next = mulberry32(11);
      const random = (): number => next() / 2 ** 32;
      let rows: Rows = rowsOf(20, 'r');
      let second: Rows = [[[1], [int(1)]], [[2], [int(2)]]];
      let previous: MibView | undefined;
      let reused = 0;
      let nextIndex = rows.length + 1;
      for (let round = 0; round < 200; round++) {
        const change = random();
        rows = rows.map(([index, cells], r) => [index, [cells[0] === undefined ? undefined : str(`v${round}.${r}`), cells[1]]]);
        if (change < 0.1) rows = [...rows, [[nextIndex++, 7], [str('new'), int(0)]]];
        else if (change < 0.2 && rows.length > 1) rows = rows.filter((_, r) => r !== Math.floor(random() * rows.length));
        else if (change < 0.25) second = second.length > 1 ? second.slice(1) : [...second, [[nextIndex++], [int(9)]]];
        else if (change < 0.3) rows = rows.map(([index, cells]) => [index, [cells[0], random() < 0.5 ? undefined : int(3)]]);
        else if (change < 0.35) rows = rows.map(([index, cells]) => [index, [random() < 0.2 ? undefined : str('back'), cells[1]]]);
        const view = build(rows, second, previous);
        expect(text(view)).toEqual(text(build(rows, second)));
        if (previous !== undefined && view.tables[1] === previous.tables[1]) reused++;
        previous = view;
      }
      // Most rounds change only values: most tables are taken as they were.
      expect(reused).toBeGreaterThan(100);
    });
  });
});
