import { OID_BLOCK, PackedOids, PackedOidsWriter } from '../../agentx/packed-oids';
import { compareOids, formatOid } from '../../agentx/oid';
import type { Oid } from '../../agentx/pdu';

function pack(oids: readonly Oid[]): PackedOids {
  const writer = new PackedOidsWriter();
  for (const oid of oids) writer.push(oid);
  return writer.finish();
}

function unpack(packed: PackedOids): string[] {
  const out: string[] = [];
  for (const c = packed.cursor(); c.index < packed.count; c.advance()) out.push(formatOid(c.oid()));
  return out;
}

/** Sorted, distinct OIDs that stress the encoding: prefixes of each other, varint widths, 128 sub-ids, long shared runs. */
function awkwardSorted(): Oid[] {
  const oids: Oid[] = [[0], [1], [1, 0], [1, 3], [1, 3, 0], [127], [128], [16383], [16384], [2 ** 21], [2 ** 28], [2 ** 31], [4294967295]];
  oids.push(new Array<number>(128).fill(4294967295), new Array<number>(127).fill(4294967295));
  for (let row = 0; row < 300; row++) oids.push([1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, row * 37]);
  for (let row = 0; row < 40; row++) oids.push([1, 3, 6, 1, 2, 1, 236, 1, 6, 1, 3, row, 196608 + row]);
  const unique = new Map(oids.map((o) => [formatOid(o), o]));
  return [...unique.values()].sort(compareOids);
}

/** Index of the first OID >= target, by a linear scan. */
function linearLowerBound(oids: readonly Oid[], target: Oid): number {
  const i = oids.findIndex((o) => compareOids(o, target) >= 0);
  return i === -1 ? oids.length : i;
}

describe('PackedOids', () => {
  test('every OID comes back exactly, whatever its sub-ids', () => {
    const oids = awkwardSorted();
    const packed = pack(oids);
    expect(packed.count).toBe(oids.length);
    expect(unpack(packed)).toEqual(oids.map(formatOid));
  });

  test('front coding keeps a table column at a few bytes per OID', () => {
    const column = Array.from({ length: 10_000 }, (_, row) => [1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, row + 1]);
    const packed = pack(column);
    // 2 header bytes + a 1-2 byte row sub-id, plus a whole head OID per block.
    expect(packed.byteLength / column.length).toBeLessThan(5.5);
    expect(packed.byteLength / column.length).toBeGreaterThan(3);
  });

  test('a writer told the size of the previous set allocates once and copies nothing, down to the last OID', () => {
    // Small sub-ids: each entry takes far less than the most push() reserves for it.
    const oids = Array.from({ length: 1000 }, (_, row) => [1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, row + 1]);
    const previous = pack(oids);
    const writer = new PackedOidsWriter(previous.byteLength, previous.count);
    const buffer = (): ArrayBufferLike => (writer as unknown as { bytes: Uint8Array }).bytes.buffer;
    const first = buffer();
    for (const oid of oids) writer.push(oid);
    expect(buffer()).toBe(first);
    const again = writer.finish();
    expect(again.byteLength).toBe(previous.byteLength);
    expect((again as unknown as { bytes: Uint8Array }).bytes.buffer).toBe(first);
    expect(unpack(again)).toEqual(unpack(previous));
  });

  test('a writer given the set it replaces returns that set itself when the OIDs are the same, and writes nothing', () => {
    const oids = awkwardSorted();
    const basis = pack(oids);
    const writer = new PackedOidsWriter(basis.byteLength, basis.count, basis);
    for (const oid of oids) {
      expect(writer.compareToLast(oid)).toBeLessThan(0);
      writer.push(oid);
    }
    expect((writer as unknown as { bytes: Uint8Array }).bytes.length).toBe(0);
    expect(writer.finish()).toBe(basis);
  });

  test('a writer given a basis that differs anywhere (first, inside a block, at a block head, last, fewer, more) gives the same set as one without', () => {
    const base = Array.from({ length: 5 * OID_BLOCK + 3 }, (_, row) => [1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, 2 * row + 2]);
    const variants: [string, Oid[]][] = [
      ['first', [[1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, 1], ...base.slice(1)]],
      ['inside a block', base.map((o, i) => (i === OID_BLOCK + 5 ? [...o.slice(0, -1), o[11] + 1] : o))],
      ['at a block head', base.map((o, i) => (i === 2 * OID_BLOCK ? [...o.slice(0, -1), o[11] - 1] : o))],
      ['last', base.map((o, i) => (i === base.length - 1 ? [...o, 0] : o))],
      ['fewer', base.slice(0, 2 * OID_BLOCK)],
      ['more', [...base, [1, 3, 6, 1, 2, 1, 236, 1, 4]]],
      ['a longer varint', base.map((o, i) => (i === 7 ? [...o.slice(0, -1), o[11] + 1, 200000] : o))],
    ];
    for (const [what, oids] of variants) {
      const basis = pack(base);
      const writer = new PackedOidsWriter(basis.byteLength, basis.count, basis);
      for (const oid of oids) writer.push(oid);
      const packed = writer.finish();
      expect([what, unpack(packed)]).toEqual([what, oids.map(formatOid)]);
      expect([what, packed.byteLength]).toEqual([what, pack(oids).byteLength]);
      for (const target of [oids[0], oids[OID_BLOCK + 5], oids[oids.length - 1], [1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, 40]]) {
        expect([what, packed.cursor().seek(target)]).toEqual([what, linearLowerBound(oids, target)]);
      }
      // The basis is left as it was.
      expect(unpack(basis)).toEqual(base.map(formatOid));
    }
  });

  test('seek finds the first OID >= the target, from any cursor position', () => {
    const oids = awkwardSorted();
    const packed = pack(oids);
    const targets: Oid[] = [[], [0], [0, 0], [1, 2], [1, 3, 6], [1, 3, 6, 1, 2, 1, 236, 1, 3, 1, 5, 370], [4294967295, 0], [5000]];
    for (const oid of oids) targets.push(oid, [...oid, 0], oid.slice(0, -1));
    const cursor = packed.cursor();
    const wrong: string[] = [];
    for (const [n, target] of targets.entries()) {
      // Seeks run from wherever the previous one left the cursor, as a view's shared cursor does.
      const expected = linearLowerBound(oids, target);
      const got = cursor.seek(target);
      const name = got < oids.length ? formatOid(cursor.oid()) : 'end';
      if (got !== expected || (got < oids.length && name !== formatOid(oids[expected]))) {
        wrong.push(`#${n} ${formatOid(target)}: got ${got} (${name}), want ${expected}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  test('seek in every block position, including the last partial block', () => {
    const oids = Array.from({ length: 5 * OID_BLOCK + 3 }, (_, i) => [1, 3, 6, 1, 4, 1, 2 * i + 2]);
    const packed = pack(oids);
    const cursor = packed.cursor();
    for (let i = 0; i < oids.length; i++) {
      expect(cursor.seek([1, 3, 6, 1, 4, 1, 2 * i + 1])).toBe(i); // just before
      expect(cursor.seek(oids[i])).toBe(i); // exactly
      expect(cursor.seek([1, 3, 6, 1, 4, 1, 2 * i + 2, 0])).toBe(i + 1); // just after
    }
    expect(cursor.seek([1, 3, 6, 1, 4, 2])).toBe(oids.length);
  });

  test('an empty set: every seek is at the end', () => {
    const packed = pack([]);
    expect(packed.count).toBe(0);
    expect(packed.cursor().seek([1, 3])).toBe(0);
    expect(unpack(packed)).toEqual([]);
  });

  test('compareToLast orders against the previous OID; the writer starts empty after finish', () => {
    const writer = new PackedOidsWriter();
    expect(writer.compareToLast([1])).toBe(-1);
    writer.push([1, 3, 6]);
    expect(writer.compareToLast([1, 3, 6])).toBe(0);
    expect(writer.compareToLast([1, 3])).toBe(1);
    expect(writer.compareToLast([1, 3, 6, 0])).toBe(-1);
    expect(unpack(writer.finish())).toEqual(['1.3.6']);
    expect(writer.compareToLast([1])).toBe(-1);
    writer.push([2]);
    expect(unpack(writer.finish())).toEqual(['2']);
  });
});
