import { FieldNameTable } from '../../src/libvirt/field-names';
import { TYPED_PARAM_FIELD_LENGTH, TYPED_PARAM_SIZE } from '../../src/libvirt/ffi';

/** The name laid out as a typed parameter's field (NUL-padded, 80 bytes at most). */
function field(name: string): Buffer {
  const buf = Buffer.alloc(TYPED_PARAM_SIZE);
  buf.write(name, 0, TYPED_PARAM_FIELD_LENGTH, 'utf8');
  return buf;
}

/** FNV-1a of a string's bytes, as the table hashes them. */
function fnv1a(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const b of bytes) hash = Math.imul(hash ^ b, 0x01000193);
  return hash;
}

/** Two different ASCII names with the same hash. */
function collidingNames(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const name = `block.${i}.rd.reqs`;
    const hash = fnv1a(Buffer.from(name, 'latin1'));
    const other = seen.get(hash);
    if (other !== undefined) return [other, name];
    seen.set(hash, name);
  }
}

describe('FieldNameTable', () => {
  it('describes each distinct ASCII name once and hands back the same value', () => {
    const described: string[] = [];
    const table = new FieldNameTable((name) => {
      described.push(name);
      return { name };
    });
    const a1 = table.lookup(field('vcpu.0.time'), 0);
    const b = table.lookup(field('vcpu.0.state'), 0);
    const a2 = table.lookup(field('vcpu.0.time'), 0);
    expect(a1).toEqual({ name: 'vcpu.0.time' });
    expect(b).toEqual({ name: 'vcpu.0.state' });
    expect(a2).toBe(a1);
    expect(described).toEqual(['vcpu.0.time', 'vcpu.0.state']);
  });

  it('tells apart names whose hashes collide', () => {
    const [x, y] = collidingNames();
    expect(fnv1a(Buffer.from(x))).toBe(fnv1a(Buffer.from(y)));
    const table = new FieldNameTable((name) => name);
    expect(table.lookup(field(x), 0)).toBe(x);
    expect(table.lookup(field(y), 0)).toBe(y);
    expect(table.lookup(field(x), 0)).toBe(x);
    expect(table.lookup(field(y), 0)).toBe(y);
  });

  it('does not take a prefix or an extension of a known name for it', () => {
    const table = new FieldNameTable((name) => name);
    expect(table.lookup(field('cpu.time'), 0)).toBe('cpu.time');
    expect(table.lookup(field('cpu.tim'), 0)).toBe('cpu.tim');
    expect(table.lookup(field('cpu.times'), 0)).toBe('cpu.times');
  });

  it('decodes a non-ASCII name as UTF-8 every time', () => {
    const described: string[] = [];
    const table = new FieldNameTable((name) => {
      described.push(name);
      return name;
    });
    expect(table.lookup(field('disque.é'), 0)).toBe('disque.é');
    expect(table.lookup(field('disque.é'), 0)).toBe('disque.é');
    expect(described).toEqual(['disque.é', 'disque.é']);
  });

  it('reads a name that fills all 80 bytes, at any offset', () => {
    const long = 'y'.repeat(TYPED_PARAM_FIELD_LENGTH);
    const two = Buffer.concat([field('x'), field(long)]);
    two.fill(0x7a, TYPED_PARAM_SIZE + TYPED_PARAM_FIELD_LENGTH); // bytes after the field are not part of it
    const table = new FieldNameTable((name) => name);
    expect(table.lookup(two, TYPED_PARAM_SIZE)).toBe(long);
    expect(table.lookup(two, TYPED_PARAM_SIZE)).toBe(long);
    expect(table.lookup(two, 0)).toBe('x');
  });

  it('starts over when full, still answering right', () => {
    let described = 0;
    const table = new FieldNameTable((name) => {
      described++;
      return name;
    }, 4);
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const n of names) expect(table.lookup(field(n), 0)).toBe(n);
    for (const n of names) expect(table.lookup(field(n), 0)).toBe(n);
    expect(described).toBeGreaterThan(names.length);
  });
});
