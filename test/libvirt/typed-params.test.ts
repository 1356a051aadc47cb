import { decodeTypedParams, paramBigInt, paramNumber } from '../../src/libvirt/typed-params';
import { TypedParamType } from '../../src/libvirt/ffi';
import { encodeTypedParams as encode } from '../harness/typed-params';

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

describe('decodeTypedParams field names', () => {
  it('decodes the same names again correctly, ASCII or not, after other names at the same place', () => {
    const first = encode([
      ['state.state', TypedParamType.INT, (v, at) => v.setInt32(at, 1, true)],
      ['état', TypedParamType.INT, (v, at) => v.setInt32(at, 2, true)],
    ]);
    const second = encode([
      ['state.reason', TypedParamType.INT, (v, at) => v.setInt32(at, 3, true)],
      ['état', TypedParamType.INT, (v, at) => v.setInt32(at, 4, true)],
      ['state.state', TypedParamType.INT, (v, at) => v.setInt32(at, 5, true)],
    ]);
    expect([...decodeTypedParams(first, 2)]).toEqual([['state.state', 1], ['état', 2]]);
    expect([...decodeTypedParams(second, 3)]).toEqual([['state.reason', 3], ['état', 4], ['state.state', 5]]);
    expect([...decodeTypedParams(first, 2)]).toEqual([['state.state', 1], ['état', 2]]);
  });
});
