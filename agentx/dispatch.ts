// Turns one request PDU from the master into the Response the RFC asks for.
// Kept apart from the session so that the answer path (the hot one: Net-SNMP
// sends one GetNext per varbind of a walk) has no connection state in it.
import { RequestFailed } from './handler';
import type { RequestContext, RequestHandler } from './handler';
import { Pdu, PduType, ResponseError, ResponsePdu, VarBind } from './pdu';

/**
 * Returns the Response for a request PDU, or null when none is due
 * (CleanupSet, RFC 2741 §7.2.4.4). A handler's RequestFailed becomes the
 * Response it names; anything else the handler throws is thrown on.
 */
export function answerRequest(pdu: Pdu, handler: RequestHandler): ResponsePdu | null {
  try {
    return answer(pdu, handler);
  } catch (err) {
    if (!(err instanceof RequestFailed)) throw err;
    return expectsResponse(pdu.type) ? response(pdu, err.error, err.index, []) : null;
  }
}

function answer(pdu: Pdu, handler: RequestHandler): ResponsePdu | null {
  const ctx: RequestContext = {
    context: pdu.context,
    sessionId: pdu.sessionId,
    transactionId: pdu.transactionId,
    packetId: pdu.packetId,
  };
  switch (pdu.type) {
    case PduType.Get:
      return response(pdu, ResponseError.NoError, 0, handler.get(pdu.ranges, ctx));
    case PduType.GetNext:
      return response(pdu, ResponseError.NoError, 0, handler.getNext(pdu.ranges, ctx));
    case PduType.GetBulk:
      return response(pdu, ResponseError.NoError, 0, handler.getBulk(pdu.nonRepeaters, pdu.maxRepetitions, pdu.ranges, ctx));
    case PduType.TestSet: {
      const r = handler.testSet(pdu.varbinds, ctx);
      return response(pdu, r.error, r.index, []);
    }
    case PduType.CommitSet: {
      const r = handler.commitSet(ctx);
      return response(pdu, r.error, r.index, []);
    }
    case PduType.UndoSet: {
      const r = handler.undoSet(ctx);
      return response(pdu, r.error, r.index, []);
    }
    case PduType.CleanupSet:
      handler.cleanupSet(ctx);
      return null;
    default:
      return null;
  }
}

/** True for the PDU types a master sends to a subagent: Get through CleanupSet (RFC 2741 §7.2). */
export function isMasterRequest(type: number): boolean {
  return type >= PduType.Get && type <= PduType.CleanupSet;
}

/** True for the master's requests that take a Response: all but CleanupSet (§7.2.4.4). */
export function expectsResponse(type: number): boolean {
  return isMasterRequest(type) && type !== PduType.CleanupSet;
}

export function response(
  req: { sessionId: number; transactionId: number; packetId: number; context?: Buffer },
  error: ResponseError,
  index: number,
  varbinds: VarBind[],
): ResponsePdu {
  return {
    type: PduType.Response,
    flags: 0,
    sessionId: req.sessionId,
    transactionId: req.transactionId,
    packetId: req.packetId,
    // res.sysUpTime is only meaningful from the master (RFC 2741 §6.2.16).
    sysUpTime: 0,
    error,
    index,
    varbinds,
  };
}
