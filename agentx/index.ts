// Public surface of the AgentX library. It knows nothing of VMs.
export * from './pdu';
export { compareOids, oidEquals, isPrefixOf, parseOid, formatOid } from './oid';
export { encodePdu, decodePdu, decodeHeader, describePdu, pduTypeName, PduDecodeError, PduEncodeError } from './codec';
export type { RawHeader } from './codec';
export { PduFramer, FramingError } from './framer';
export type { RequestHandler, RequestContext, SetResult, WritableObject } from './handler';
export { truthValueScalar, TRUTH_TRUE, TRUTH_FALSE } from './truth-value';
export type { TruthValueAccess } from './truth-value';
export { MibView, MibViewBuilder } from './view';
export { MibTableBuilder } from './table-builder';
export { freeNow } from './free-now';
export { Responder } from './responder';
export type { ResponderOptions } from './responder';
export {
  AgentxSession,
  AgentxTimeoutError,
  AgentxNotOpenError,
  AgentxResponseError,
} from './session';
export type { SessionOptions, Registration, AgentCapabilities, SessionState } from './session';
export { parseAgentxAddress, formatAgentxAddress } from './transport';
export type { AgentxAddress } from './transport';
export type { AgentxLog, LogLevel } from './log';
