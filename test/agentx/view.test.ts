import { MibView, MibViewBuilder, releaseView } from '../../agentx/view';
import { ValueType } from '../../agentx/pdu';
import type { Oid, Value, VarBind } from '../../agentx/pdu';
import { compareOids, formatOid, parseOid } from '../../agentx/oid';
import { mulberry32 } from '../harness/mulberry32';
import { vmLikeView } from '../harness/views';

const int = (value: number): Value => ({ type: ValueType.Integer, value });
const o = parseOid;

/** A small MIB: two scalars, a two-column table and an empty column. */
function smallView(): MibView {
  return new MibViewBuilder()
    .declareObject(o('1.3.6.1.4.1.9.1.1'))
    .declareObject(o('1.3.6.1.4.1.9.1.2'))
    .declareObject(o('1.3.6.1.4.1.9.2.1.2'))
    .declareObject(o('1.3.6.1.4.1.9.2.1.3'))
    .declareObject(o('1.3.6.1.4.1.9.2.1.4'))
    .add(o('1.3.6.1.4.1.9.1.1.0'), int(11))
    .add(o('1.3.6.1.4.1.9.1.2.0'), { type: ValueType.OctetString, value: Buffer.from('host') })
    .add(o('1.3.6.1.4.1.9.2.1.2.1'), int(21))
    .add(o('1.3.6.1.4.1.9.2.1.2.7'), int(27))
    .add(o('1.3.6.1.4.1.9.2.1.3.1'), int(31))
    .add(o('1.3.6.1.4.1.9.2.1.3.7'), int(37))
    .build();
}

const describeVarBind = (vb: VarBind | undefined): string | undefined => (vb === undefined ? undefined : formatOid(vb.oid));

describe('MibView lookups', () => {
  const view = smallView();

  test.each([
    ['existing scalar instance', '1.3.6.1.4.1.9.1.1.0', 11],
    ['existing table instance', '1.3.6.1.4.1.9.2.1.3.7', 37],
    ['object itself is not an instance', '1.3.6.1.4.1.9.1.1', undefined],
    ['longer than an instance', '1.3.6.1.4.1.9.1.1.0.0', undefined],
    ['missing row', '1.3.6.1.4.1.9.2.1.2.5', undefined],
    ['before everything', '1.3', undefined],
    ['after everything', '1.3.6.1.4.1.10', undefined],
  ])('get: %s', (_name, oid, expected) => {
    const value = view.get(o(oid));
    expect(value === undefined ? undefined : (value as { value: unknown }).value).toEqual(expected);
  });

  test.each([
    // start, include, end, expected name
    ['before all, unbounded', '1.3', false, '', '1.3.6.1.4.1.9.1.1.0'],
    ['empty start', '', false, '', '1.3.6.1.4.1.9.1.1.0'],
    ['exact, exclusive', '1.3.6.1.4.1.9.1.1.0', false, '', '1.3.6.1.4.1.9.1.2.0'],
    ['exact, inclusive', '1.3.6.1.4.1.9.1.1.0', true, '', '1.3.6.1.4.1.9.1.1.0'],
    ['between rows', '1.3.6.1.4.1.9.2.1.2.3', false, '', '1.3.6.1.4.1.9.2.1.2.7'],
    ['between rows, inclusive', '1.3.6.1.4.1.9.2.1.2.3', true, '', '1.3.6.1.4.1.9.2.1.2.7'],
    ['object OID goes to first instance', '1.3.6.1.4.1.9.2.1.3', false, '', '1.3.6.1.4.1.9.2.1.3.1'],
    ['last of a column crosses to the next column', '1.3.6.1.4.1.9.2.1.2.7', false, '', '1.3.6.1.4.1.9.2.1.3.1'],
    ['below an instance goes past it', '1.3.6.1.4.1.9.2.1.2.7.0', false, '', '1.3.6.1.4.1.9.2.1.3.1'],
    ['last instance, exclusive', '1.3.6.1.4.1.9.2.1.3.7', false, '', undefined],
    ['last instance, inclusive', '1.3.6.1.4.1.9.2.1.3.7', true, '', '1.3.6.1.4.1.9.2.1.3.7'],
    ['after all', '1.3.6.1.4.1.9.3', true, '', undefined],
    ['end just past the answer', '1.3.6.1.4.1.9.2.1.2.1', false, '1.3.6.1.4.1.9.2.1.2.8', '1.3.6.1.4.1.9.2.1.2.7'],
    ['end equal to the answer is exclusive', '1.3.6.1.4.1.9.2.1.2.1', false, '1.3.6.1.4.1.9.2.1.2.7', undefined],
    ['end at the column boundary stops the crossing', '1.3.6.1.4.1.9.2.1.2.7', false, '1.3.6.1.4.1.9.2.1.3', undefined],
    ['end equal to start with include', '1.3.6.1.4.1.9.1.1.0', true, '1.3.6.1.4.1.9.1.1.0', undefined],
    ['end before start', '1.3.6.1.4.1.9.2', true, '1.3.6.1.4.1.9.1', undefined],
  ])('next: %s', (_name, start, include, end, expected) => {
    expect(describeVarBind(view.next(o(start), include, o(end)))).toBe(expected);
  });

  test('next returns the value with the name, as a fresh OID array', () => {
    const first = view.next(o('1.3.6.1.4.1.9.1.2'), true, []);
    expect(first).toEqual({ type: ValueType.OctetString, value: Buffer.from('host'), oid: o('1.3.6.1.4.1.9.1.2.0') });
    (first!.oid as number[])[0] = 99;
    expect(view.next(o('1.3.6.1.4.1.9.1.2'), true, [])!.oid[0]).toBe(1);
  });

  test.each([
    ['scalar object itself', '1.3.6.1.4.1.9.1.1', '1.3.6.1.4.1.9.1.1'],
    ['scalar instance', '1.3.6.1.4.1.9.1.1.0', '1.3.6.1.4.1.9.1.1'],
    ['wrong scalar instance', '1.3.6.1.4.1.9.1.1.5.6', '1.3.6.1.4.1.9.1.1'],
    ['empty column', '1.3.6.1.4.1.9.2.1.4.1', '1.3.6.1.4.1.9.2.1.4'],
    ['parent of objects', '1.3.6.1.4.1.9.2.1', undefined],
    ['between objects', '1.3.6.1.4.1.9.1.3.0', undefined],
    ['sibling after the last object', '1.3.6.1.4.1.9.2.1.5.1', undefined],
    ['before the first object', '1.3.6.1.4.1.9.1.0.0', undefined],
    ['empty OID', '', undefined],
  ])('objectOf: %s', (_name, oid, expected) => {
    const object = view.objectOf(o(oid));
    expect(object === undefined ? undefined : formatOid(object)).toBe(expected);
  });

  test('size, iteration order and objects', () => {
    expect(view.size).toBe(6);
    expect([...view].map((vb) => formatOid(vb.oid))).toEqual([
      '1.3.6.1.4.1.9.1.1.0',
      '1.3.6.1.4.1.9.1.2.0',
      '1.3.6.1.4.1.9.2.1.2.1',
      '1.3.6.1.4.1.9.2.1.2.7',
      '1.3.6.1.4.1.9.2.1.3.1',
      '1.3.6.1.4.1.9.2.1.3.7',
    ]);
    expect(view.objects.map(formatOid)).toEqual([
      '1.3.6.1.4.1.9.1.1',
      '1.3.6.1.4.1.9.1.2',
      '1.3.6.1.4.1.9.2.1.2',
      '1.3.6.1.4.1.9.2.1.3',
      '1.3.6.1.4.1.9.2.1.4',
    ]);
  });

  test('an empty view finds nothing', () => {
    const empty = new MibViewBuilder().build();
    expect(empty.size).toBe(0);
    expect(empty.get(o('1.3'))).toBeUndefined();
    expect(empty.next([], true, [])).toBeUndefined();
    expect(empty.objectOf(o('1.3'))).toBeUndefined();
    expect([...empty]).toEqual([]);
  });
});

describe('MibViewBuilder', () => {
  afterEach(() => jest.restoreAllMocks());

  /** OIDs with prefixes of each other and sub-ids beyond 2^31, shuffled deterministically. */
  function awkwardOids(): Oid[] {
    const oids: Oid[] = [o('1'), o('1.0'), o('1.3'), o('1.3.0'), o('1.3.6.1'), o('2'), o('1.4294967295'), o('1.2147483648.1')];
    for (let i = 0; i < 200; i++) oids.push([1, 3, 6, (i * 7919) % 13, i % 5, i]);
    let seed = 12345;
    for (let i = oids.length - 1; i > 0; i--) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const j = seed % (i + 1);
      [oids[i], oids[j]] = [oids[j], oids[i]];
    }
    return oids;
  }

  test('unsorted input comes out in OID order, values following their OIDs', () => {
    const oids = awkwardOids();
    const builder = new MibViewBuilder();
    oids.forEach((oid) => builder.add(oid, { type: ValueType.OctetString, value: Buffer.from(formatOid(oid)) }));
    const view = builder.build();
    const expected = oids.slice().sort(compareOids).map(formatOid);
    expect([...view].map((vb) => formatOid(vb.oid))).toEqual(expected);
    for (const vb of view) expect((vb as { value: Buffer }).value.toString()).toBe(formatOid(vb.oid));
    for (const oid of oids) expect(view.get(oid)).toBeDefined();
  });

  test('sorted input is not sorted again; unsorted input is', () => {
    const sortSpy = jest.spyOn(Uint32Array.prototype, 'sort');
    const sortedOids = awkwardOids().sort(compareOids);
    const sortedBuilder = new MibViewBuilder();
    sortedOids.forEach((oid, i) => sortedBuilder.add(oid, int(i)));
    sortedBuilder.build();
    expect(sortSpy).not.toHaveBeenCalled();

    const unsortedBuilder = new MibViewBuilder();
    [...sortedOids].reverse().forEach((oid, i) => unsortedBuilder.add(oid, int(i)));
    unsortedBuilder.build();
    expect(sortSpy).toHaveBeenCalledTimes(1);
  });

  test('a duplicate instance throws, whether adjacent or not', () => {
    const adjacent = new MibViewBuilder().add(o('1.3.6.1.1'), int(1));
    expect(() => adjacent.add(o('1.3.6.1.1'), int(2))).toThrow('instance 1.3.6.1.1 is added twice');
    const apart = new MibViewBuilder().add(o('1.3.6.1.5'), int(1)).add(o('1.3.6.1.2'), int(2)).add(o('1.3.6.1.5'), int(3));
    expect(() => apart.build()).toThrow('instance 1.3.6.1.5 is added twice');
  });

  test.each([
    ['empty', []],
    ['negative sub-id', [1, 3, -1]],
    ['fractional sub-id', [1, 3, 1.5]],
    ['sub-id above 2^32-1', [1, 3, 4294967296]],
    ['129 sub-ids', new Array<number>(129).fill(1)],
  ])('an invalid instance OID throws: %s', (_name, oid) => {
    expect(() => new MibViewBuilder().add(oid, int(1))).toThrow(/MIB view: instance OID/);
  });

  test('128 sub-ids are accepted', () => {
    const oid = new Array<number>(128).fill(4294967295);
    expect(new MibViewBuilder().add(oid, int(1)).build().get(oid)).toEqual(int(1));
  });

  test.each([ValueType.NoSuchObject, ValueType.NoSuchInstance, ValueType.EndOfMibView])('an exception value %s is refused', (type) => {
    const value = { type } as Value;
    expect(() => new MibViewBuilder().add(o('1.3.6'), value)).toThrow('exception type');
  });

  test('nested objects are refused; a repeated declaration is harmless', () => {
    const nested = new MibViewBuilder().declareObject(o('1.3.6.1.2')).declareObject(o('1.3.6.1'));
    expect(() => nested.build()).toThrow('object 1.3.6.1.2 lies under object 1.3.6.1');
    const repeated = new MibViewBuilder().declareObject(o('1.3.6.1')).declareObject(o('1.3.6.1')).build();
    expect(repeated.objects.map(formatOid)).toEqual(['1.3.6.1']);
    expect(() => new MibViewBuilder().declareObject([])).toThrow('MIB view: object OID');
  });

  test('the builder copies OIDs and starts empty after build', () => {
    const oid = [1, 3, 6, 1];
    const object = [1, 3, 6];
    const builder = new MibViewBuilder().declareObject(object).add(oid, int(1));
    oid[3] = 2;
    object[2] = 7;
    const first = builder.build();
    expect(first.get(o('1.3.6.1'))).toEqual(int(1));
    expect(first.objectOf(o('1.3.6.1'))).toEqual(o('1.3.6'));
    const second = builder.add(o('1.4'), int(2)).build();
    expect(second.size).toBe(1);
    expect(first.size).toBe(1);
  });

  test('a view built after another shares its OIDs and octet bytes while they are the same, and is right whatever changed', () => {
    const str = (text: string): Value => ({ type: ValueType.OctetString, value: Buffer.from(text) });
    type Spec = { rows: number[]; names: Map<number, string>; counter: number };
    const build = (spec: Spec, previous?: MibView): MibView => {
      const b = new MibViewBuilder(previous).declareObject(o('1.3.6.1.4.1.9.1')).add(o('1.3.6.1.4.1.9.1.0'), int(spec.counter));
      const t = b.table(o('1.3.6.1.4.1.9.2.1'), [2, 3], spec.rows.length);
      for (const r of spec.rows) t.row([r], [str(spec.names.get(r) ?? `vm-${r}`), int(r * spec.counter)]);
      t.end();
      return b.build();
    };
    const dump = (view: MibView): string[] => [...view].map((vb) => `${formatOid(vb.oid)}=${'value' in vb ? String(vb.value) : ''}`);
    const first: Spec = { rows: [1, 2, 3, 5, 8, 13], names: new Map(), counter: 1 };
    let previous = build(first);
    // Only numbers change: both shared.
    const counted = build({ ...first, counter: 2 }, previous);
    expect(counted.oids).toBe(previous.oids);
    expect(counted.values.pool).toBe(previous.values.pool);
    expect(dump(counted)).toEqual(dump(build({ ...first, counter: 2 })));
    // A name changes: the OIDs are still shared, the bytes no longer.
    const renamed = build({ ...first, names: new Map([[5, 'vm-five']]), counter: 2 }, counted);
    expect(renamed.oids).toBe(previous.oids);
    expect(renamed.values.pool).not.toBe(previous.values.pool);
    expect(dump(renamed)).toEqual(dump(build({ ...first, names: new Map([[5, 'vm-five']]), counter: 2 })));
    expect(dump(counted)).toEqual(dump(build({ ...first, counter: 2 })));
    // Random changes of rows, names and values, each view built after the one before.
    const next = mulberry32(11);
    previous = renamed;
    for (let round = 0; round < 40; round++) {
      const rows = [...new Set(Array.from({ length: 1 + (next() % 40) }, () => 1 + (next() % 60)))].sort((a, b) => a - b);
      const names = new Map(rows.filter(() => next() % 4 === 0).map((r) => [r, `renamed-${next() % 3}`] as [number, string]));
      const spec = { rows, names, counter: next() % 3 };
      const view = build(spec, previous);
      expect(dump(view)).toEqual(dump(build(spec)));
      expect(view.get(o('1.3.6.1.4.1.9.1.0'))).toEqual(int(spec.counter));
      expect(dump(previous)).toEqual(dump(previous));
      previous = view;
    }
  });

  test('releaseView() gives a view\'s values back without a GC; the one built after it is unharmed', async () => {
    const build = (previous?: MibView): MibView => {
      const b = new MibViewBuilder(previous);
      const t = b.table(o('1.3.6.1.4.1.9.2.1'), [2, 3], 200_000);
      for (let r = 1; r <= 200_000; r++) t.row([r], [int(r), { type: ValueType.OctetString, value: Buffer.from(`row-${r}`) }]);
      t.end();
      return b.build();
    };
    const old = build();
    const next = build(old);
    await new Promise((resolve) => setImmediate(resolve));
    const before = process.memoryUsage().arrayBuffers;
    releaseView(old);
    // The ports close on the next turn of the event loop.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const freed = before - process.memoryUsage().arrayBuffers;
    // 400,000 kinds (1 byte) and slots (4 bytes) are gone (a GC meanwhile may add other garbage to the count)...
    expect(freed).toBeGreaterThan(1_800_000);
    // ...because they were handed off, not because a GC happened to run: the buffers are detached.
    const values = old.values as unknown as { kinds: Uint8Array; words: Uint32Array; wide: BigUint64Array };
    expect(values.kinds.buffer.byteLength).toBe(0);
    expect(values.words.buffer.byteLength).toBe(0);
    expect(values.wide.buffer.byteLength).toBe(0);
    // The OIDs and octets the next view shares are untouched.
    expect(next.oids).toBe(old.oids);
    expect(next.values.pool).toBe(old.values.pool);
    expect(old.released).toBe(true);
    expect(next.released).toBe(false);
    expect(next.get(o('1.3.6.1.4.1.9.2.1.2.7'))).toEqual(int(7));
    expect(next.get(o('1.3.6.1.4.1.9.2.1.3.199999'))).toEqual({ type: ValueType.OctetString, value: Buffer.from('row-199999') });
    expect(next.size).toBe(400_000);
  });

  test('a released view is never read as empty: every read throws', () => {
    const b = new MibViewBuilder().declareObject(o('1.3.6.1.4.1.9.1'));
    b.add(o('1.3.6.1.4.1.9.1.0'), int(5));
    const view = b.build();
    const patched = view.withValues([{ oid: o('1.3.6.1.4.1.9.1.0'), ...int(6) }]);
    releaseView(view);
    const reads: [string, () => unknown][] = [
      ['size', () => view.size],
      ['sizes', () => view.sizes()],
      ['get', () => view.get(o('1.3.6.1.4.1.9.1.0'))],
      ['next', () => view.next(o('1.3'), false)],
      ['iteration', () => [...view]],
      ['withValues', () => view.withValues([{ oid: o('1.3.6.1.4.1.9.1.0'), ...int(7) }])],
      ['a builder given it as the previous view', () => new MibViewBuilder(view)],
      // A view patched from it shares its values, so it is released as well.
      ['a view patched from it', () => patched.get(o('1.3.6.1.4.1.9.1.0'))],
    ];
    const thrown = (read: () => unknown): string => {
      try {
        read();
        return 'nothing thrown';
      } catch (err) {
        return (err as Error).message;
      }
    };
    for (const [what, read] of reads) expect({ what, thrown: thrown(read) }).toEqual({ what, thrown: expect.stringContaining('read after release') });
    expect(patched.released).toBe(true);
  });

  test('every value comes back as given: 32-bit numbers and Counter64 packed, octets of any length, misfits kept as they are', () => {
    const values: Value[] = [
      int(-2147483648),
      int(2147483647),
      int(0),
      { type: ValueType.Counter32, value: 4294967295 },
      { type: ValueType.Gauge32, value: 0 },
      { type: ValueType.TimeTicks, value: 123456 },
      { type: ValueType.Counter64, value: 0n },
      { type: ValueType.Counter64, value: (1n << 64n) - 1n },
      { type: ValueType.Counter64, value: 1n << 53n },
      // Octet lengths around each LEB128 length-prefix boundary.
      ...[0, 1, 127, 128, 16383, 16384, 70000].map((n): Value => ({ type: ValueType.OctetString, value: Buffer.alloc(n, n % 251) })),
      { type: ValueType.IpAddress, value: Buffer.from([10, 0, 0, 1]) },
      { type: ValueType.Opaque, value: Buffer.from('opaque') },
      { type: ValueType.ObjectIdentifier, value: [1, 3, 6, 1] },
      { type: ValueType.Null },
      // Values the encoder will refuse stay exactly as given.
      int(2147483648),
      int(1.5),
      { type: ValueType.Gauge32, value: -1 },
      { type: ValueType.TimeTicks, value: 4294967296 },
      { type: ValueType.Counter32, value: 2.5 },
      { type: ValueType.Counter64, value: -1n },
      { type: ValueType.Counter64, value: 1n << 64n },
    ];
    const build = (previous?: MibView): MibView => {
      const b = new MibViewBuilder(previous).declareObject(o('1.3.6.1.4.1.9.3'));
      values.forEach((value, i) => b.add([1, 3, 6, 1, 4, 1, 9, 3, i + 1], value));
      return b.build();
    };
    const first = build();
    const second = build(first);
    for (const view of [first, second]) {
      values.forEach((value, i) => expect(view.get([1, 3, 6, 1, 4, 1, 9, 3, i + 1])).toEqual(value));
    }
    // The second view shares the first one's octets, length prefixes and all.
    expect(second.values.pool).toBe(first.values.pool);
  });

  test('withValues gives a view with some values replaced, by get, next and iteration, and leaves the original alone', () => {
    const view = smallView();
    const patched = view.withValues([{ oid: o('1.3.6.1.4.1.9.2.1.2.7'), type: ValueType.Integer, value: 99 }]);
    expect(patched.get(o('1.3.6.1.4.1.9.2.1.2.7'))).toEqual(int(99));
    expect(patched.next(o('1.3.6.1.4.1.9.2.1.2.1'), false)).toEqual({ oid: o('1.3.6.1.4.1.9.2.1.2.7'), ...int(99) });
    expect([...patched].map((vb) => ('value' in vb ? vb.value : null))).toEqual([11, Buffer.from('host'), 21, 99, 31, 37]);
    expect(view.get(o('1.3.6.1.4.1.9.2.1.2.7'))).toEqual(int(27));
    // A second patch keeps the first.
    const twice = patched.withValues([{ oid: o('1.3.6.1.4.1.9.1.1.0'), type: ValueType.Gauge32, value: 5 }]);
    expect(twice.get(o('1.3.6.1.4.1.9.1.1.0'))).toEqual({ type: ValueType.Gauge32, value: 5 });
    expect(twice.get(o('1.3.6.1.4.1.9.2.1.2.7'))).toEqual(int(99));
    expect(twice.size).toBe(view.size);
  });

  test('withValues refuses an instance the view does not have, and exception values', () => {
    const view = smallView();
    expect(() => view.withValues([{ oid: o('1.3.6.1.4.1.9.2.1.2.8'), ...int(1) }])).toThrow('no instance 1.3.6.1.4.1.9.2.1.2.8');
    expect(() => view.withValues([{ oid: o('1.3.6.1.4.1.9.2.1.2.7'), type: ValueType.NoSuchInstance }])).toThrow('exception type');
  });
});

describe('MibView at scale', () => {
  test('next from each previous result walks 300,000 instances in order', () => {
    const view = vmLikeView(300_000);
    const iterated = [...view];
    let cursor: Oid = [1, 3, 6, 1, 2, 1, 236];
    let count = 0;
    const outOfOrder: string[] = [];
    for (let vb = view.next(cursor, false, []); vb !== undefined; vb = view.next(cursor, false, [])) {
      if (compareOids(vb.oid, cursor) !== 1) outOfOrder.push(`${formatOid(cursor)} -> ${formatOid(vb.oid)}`);
      if (count % 997 === 0) expect(vb).toEqual(iterated[count]);
      cursor = vb.oid;
      count++;
    }
    expect(outOfOrder).toEqual([]);
    expect(count).toBe(300_000);
    expect(formatOid(cursor)).toBe(formatOid(iterated[iterated.length - 1].oid));
  });
});
