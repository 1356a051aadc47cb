import { Interner, sharedNumberList } from '../../src/collectors/interner';

describe('Interner', () => {
  test('equal keys give the one value first made; make runs once per key', () => {
    const interner = new Interner<{ key: string }>(10);
    const make = jest.fn((key: string) => ({ key }));
    const a = interner.get('a', () => make('a'));
    expect(interner.get('a', () => make('a'))).toBe(a);
    expect(make).toHaveBeenCalledTimes(1);
  });

  test('a full table starts over instead of growing; values handed out stay intact', () => {
    const interner = new Interner<{ n: number }>(3);
    const first = [0, 1, 2].map((n) => interner.get(String(n), () => ({ n })));
    interner.get('3', () => ({ n: 3 })); // table was full: cleared, then '3' added
    const again = interner.get('0', () => ({ n: 0 }));
    expect(again).not.toBe(first[0]);
    expect(again).toEqual(first[0]);
    expect(first.map((v) => v.n)).toEqual([0, 1, 2]);
  });

  test('CPU sets: one frozen copy per distinct list, unaffected by the caller changing its array', () => {
    const mine = [0, 1, 2, 3];
    const shared = sharedNumberList(mine);
    mine.push(4);
    expect(sharedNumberList([0, 1, 2, 3])).toBe(shared);
    expect(shared).toEqual([0, 1, 2, 3]);
    expect(Object.isFrozen(shared)).toBe(true);
    expect(sharedNumberList([0, 1])).not.toBe(shared);
  });
});
