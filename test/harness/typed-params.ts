// virTypedParameter arrays laid out the way libvirt lays them out on LP64
// little-endian Linux, for decoder tests.
import { TYPED_PARAM_SIZE, TYPED_PARAM_TYPE_OFFSET, TYPED_PARAM_VALUE_OFFSET, TypedParamType } from '../../src/libvirt/ffi';

/** One parameter: field name, virTypedParameterType, and a writer of its 8 value bytes. */
export type EncodedParam = [string, number, (view: DataView, at: number) => void];

export function encodeTypedParams(params: readonly EncodedParam[]): Buffer {
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

export const int = (name: string, v: number): EncodedParam => [name, TypedParamType.INT, (d, at) => d.setInt32(at, v, true)];
export const uint = (name: string, v: number): EncodedParam => [name, TypedParamType.UINT, (d, at) => d.setUint32(at, v, true)];
export const ullong = (name: string, v: bigint): EncodedParam => [name, TypedParamType.ULLONG, (d, at) => d.setBigUint64(at, v, true)];
export const double = (name: string, v: number): EncodedParam => [name, TypedParamType.DOUBLE, (d, at) => d.setFloat64(at, v, true)];
/** A type no libvirt this code knows defines: decoders skip it. */
export const unknownType = (name: string): EncodedParam => [name, 99, () => undefined];
