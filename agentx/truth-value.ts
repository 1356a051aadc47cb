// A read-write TruthValue scalar (SNMPv2-TC): the writable object most MIBs
// have, and the only kind VM-MIB has. Test checks what RFC 3416 §4.2.5 asks
// (instance .0 only, INTEGER, true(1) or false(2)); commit and undo go
// through the owner's accessors, so the value lives where the owner keeps it.
import type { WritableObject } from './handler';
import { Oid, ResponseError, Value, ValueType } from './pdu';

export const TRUTH_TRUE = 1;
export const TRUTH_FALSE = 2;

export interface TruthValueAccess {
  get(): boolean;
  set(value: boolean): void;
}

export function truthValueScalar(scalar: Oid, access: TruthValueAccess): WritableObject {
  /** The value before this transaction's commit, for its undo. */
  let before: boolean | null = null;
  return {
    test(oid: Oid, value: Value): ResponseError {
      if (oid.length !== scalar.length + 1 || oid[scalar.length] !== 0) return ResponseError.NoCreation;
      if (value.type !== ValueType.Integer) return ResponseError.WrongType;
      if (value.value !== TRUTH_TRUE && value.value !== TRUTH_FALSE) return ResponseError.WrongValue;
      return ResponseError.NoError;
    },
    commit(_oid: Oid, value: Value): ResponseError {
      before = access.get();
      access.set(value.type === ValueType.Integer && value.value === TRUTH_TRUE);
      return ResponseError.NoError;
    },
    undo(): ResponseError {
      if (before !== null) access.set(before);
      before = null;
      return ResponseError.NoError;
    },
    cleanup(): void {
      before = null;
    },
  };
}
