import { MibViewBuilder } from '../../agentx/view';
import { ValueType } from '../../agentx/pdu';
import type { Value } from '../../agentx/pdu';
import { formatOid } from '../../agentx/oid';

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
});
