// The contract between the session (which owns the wire) and whatever answers
// requests. Answers are synchronous on purpose: a subagent behind Net-SNMP gets
// one GetNext per returned varbind, so every answer must come from memory.
import type { ResponseError, SearchRange, Value, VarBind, Oid } from './pdu';

export interface RequestContext {
  /** Non-default context name, or undefined for the default context. */
  context?: Buffer;
  sessionId: number;
  transactionId: number;
  packetId: number;
}

/** error/index pair of a Response-PDU; index is 1-based, 0 when no varbind is at fault. */
export interface SetResult {
  error: ResponseError;
  index: number;
}

/**
 * Thrown by a handler to answer the whole request with `error` at `index`
 * (1-based) after logging the cause itself. Anything else a handler throws
 * the session logs with its stack and answers genErr.
 */
export class RequestFailed extends Error {
  constructor(
    readonly error: ResponseError,
    readonly index: number,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestHandler {
  get(ranges: readonly SearchRange[], ctx: RequestContext): VarBind[];
  getNext(ranges: readonly SearchRange[], ctx: RequestContext): VarBind[];
  getBulk(nonRepeaters: number, maxRepetitions: number, ranges: readonly SearchRange[], ctx: RequestContext): VarBind[];
  testSet(varbinds: readonly VarBind[], ctx: RequestContext): SetResult;
  commitSet(ctx: RequestContext): SetResult;
  undoSet(ctx: RequestContext): SetResult;
  /** CleanupSet has no Response (RFC 2741 §7.2.4.4). */
  cleanupSet(ctx: RequestContext): void;
  /** The session ended: forget Set transactions it left open. */
  sessionClosed?(sessionId: number): void;
}

/**
 * One writable object (a scalar or a column). The responder calls test for
 * every varbind of a TestSet, then commit for all of them, then undo (if a
 * later commit failed) or cleanup.
 */
export interface WritableObject {
  test(oid: Oid, value: Value): ResponseError;
  commit(oid: Oid, value: Value): ResponseError;
  undo(oid: Oid, value: Value): ResponseError;
  cleanup?(oid: Oid, value: Value): void;
}
