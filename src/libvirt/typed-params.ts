// Decoding of virTypedParameter arrays (libvirt-common.h): the currency of
// virConnectGetAllDomainStats, virDomainBlockStatsFlags and job events.
//
// The array is read straight from memory through a DataView instead of a
// koffi union type: the union's active member depends on the `type` field,
// and reading the 8 value bytes ourselves keeps 64-bit values exact (BigInt)
// without a per-element object decode.

import koffi from 'koffi';
import { FieldNameTable } from './field-names';
import {
  TYPED_PARAM_SIZE,
  TYPED_PARAM_TYPE_OFFSET,
  TYPED_PARAM_VALUE_OFFSET,
  TypedParamType,
  type NativePtr,
} from './ffi';
import { endianness } from 'node:os';

/** INT/UINT → number, LLONG/ULLONG → bigint, DOUBLE → number, BOOLEAN → boolean, STRING → string. */
export type TypedParamValue = number | bigint | boolean | string;

const littleEndian = endianness() === 'LE';
const fieldNames = new FieldNameTable<string>((name) => name);

/** Decodes `count` parameters stored in `bytes` (a Buffer we allocated, or a view of libvirt's memory). */
export function decodeTypedParams(bytes: Uint8Array, count: number): Map<string, TypedParamValue> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const params = new Map<string, TypedParamValue>();
  for (let i = 0; i < count; i++) {
    const value = typedParamValue(view, i);
    if (value !== undefined) params.set(fieldNames.lookup(bytes, i * TYPED_PARAM_SIZE), value);
  }
  return params;
}

/** The value of parameter `i` of the array in `view`, or undefined for a type this code does not know. */
export function typedParamValue(view: DataView, i: number): TypedParamValue | undefined {
  const base = i * TYPED_PARAM_SIZE;
  return readValue(view, view.getInt32(base + TYPED_PARAM_TYPE_OFFSET, littleEndian), base + TYPED_PARAM_VALUE_OFFSET);
}

/** Decodes a typed-parameter array that libvirt owns (valid only until libvirt frees it). */
export function decodeNativeTypedParams(ptr: NativePtr | null, count: number): Map<string, TypedParamValue> {
  if (ptr === null || ptr === 0n || count <= 0) return new Map();
  return decodeTypedParams(new Uint8Array(koffi.view(ptr, count * TYPED_PARAM_SIZE)), count);
}

function readValue(view: DataView, type: number, at: number): TypedParamValue | undefined {
  switch (type) {
    case TypedParamType.INT:
      return view.getInt32(at, littleEndian);
    case TypedParamType.UINT:
      return view.getUint32(at, littleEndian);
    case TypedParamType.LLONG:
      return view.getBigInt64(at, littleEndian);
    case TypedParamType.ULLONG:
      return view.getBigUint64(at, littleEndian);
    case TypedParamType.DOUBLE:
      return view.getFloat64(at, littleEndian);
    case TypedParamType.BOOLEAN:
      return view.getInt8(at) !== 0;
    case TypedParamType.STRING: {
      const p = view.getBigUint64(at, littleEndian);
      return p === 0n ? '' : koffi.decode.string(p);
    }
    default:
      // A type added in a later libvirt: skip it rather than guess its layout.
      return undefined;
  }
}

/** A counter-like parameter as BigInt, or null when absent or not numeric. */
export function paramBigInt(params: ReadonlyMap<string, TypedParamValue>, name: string): bigint | null {
  return asBigInt(params.get(name));
}

/** A small integer parameter as number, or null when absent or not numeric. */
export function paramNumber(params: ReadonlyMap<string, TypedParamValue>, name: string): number | null {
  return asNumber(params.get(name));
}

/** A counter-like value as BigInt, or null when absent or not an integer. */
export function asBigInt(v: TypedParamValue | undefined): bigint | null {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return null;
}

/** A numeric value as number, or null when absent or not numeric. */
export function asNumber(v: TypedParamValue | undefined): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return null;
}
