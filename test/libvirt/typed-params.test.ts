import { decodeTypedParams, paramBigInt, paramNumber } from '../../src/libvirt/typed-params';
import { TYPED_PARAM_SIZE, TYPED_PARAM_TYPE_OFFSET, TYPED_PARAM_VALUE_OFFSET, TypedParamType } from '../../src/libvirt/ffi';

/** Lays out virTypedParameter structs the way libvirt does on LP64 little-endian Linux. */
function encode(params: Array<[string, number, (view: DataView, at: number) => void]>): Buffer {
  const buf = Buffer.alloc(params.length * TYPED_PARAM_SIZE);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  params.forEach(([field, type, write], i) => {
    const base = i * TYPED_PARAM_SIZE;
    buf.write(field, base, 'utf8');
    view.setInt32(base + TYPED_PARAM_TYPE_OFFSET, type, true);
    write(view, base + TYPED_PARAM_VALUE_OFFSET);
  });
  return buf;
}

describe('decodeTypedParams', () => {
  it('decodes every scalar type, keeping 64-bit values exact', () => {
    const buf = encode([
      ['block.count', TypedParamType.UINT, (v, at) => v.setUint32(at, 4000000000, true)],
      ['vcpu.0.state', TypedParamType.INT, (v, at) => v.setInt32(at, -1, true)],
      ['rd_total_times', TypedParamType.LLONG, (v, at) => v.setBigInt64(at, -(2n ** 62n), true)],
      ['cpu.time', TypedParamType.ULLONG, (v, at) => v.setBigUint64(at, 2n ** 64n - 1n, true)],
      ['dirtyrate.megabytes_per_second', TypedParamType.DOUBLE, (v, at) => v.setFloat64(at, 12.5, true)],
      ['perf.enabled', TypedParamType.BOOLEAN, (v, at) => v.setInt8(at, 1)],
      ['from.a.future.libvirt', 99, () => undefined],
    ]);
    const params = decodeTypedParams(buf, 7);
    expect([...params]).toEqual([
      ['block.count', 4000000000],
      ['vcpu.0.state', -1],
      ['rd_total_times', -(2n ** 62n)],
      ['cpu.time', 2n ** 64n - 1n],
      ['dirtyrate.megabytes_per_second', 12.5],
      ['perf.enabled', true],
    ]);
    expect(paramBigInt(params, 'cpu.time')).toBe(2n ** 64n - 1n);
    expect(paramBigInt(params, 'block.count')).toBe(4000000000n);
    expect(paramBigInt(params, 'perf.enabled')).toBeNull();
    expect(paramNumber(params, 'vcpu.0.state')).toBe(-1);
    expect(paramNumber(params, 'missing')).toBeNull();
  });

  it('reads a field name that fills all 80 bytes without a terminator', () => {
    const name = 'x'.repeat(80);
    const params = decodeTypedParams(encode([[name, TypedParamType.INT, (v, at) => v.setInt32(at, 7, true)]]), 1);
    expect(params.get(name)).toBe(7);
  });
});
