// Public surface of the AgentX library (it knows nothing of VMs): a session
// to the master, a responder answering from sorted views, and the types they
// share. The codec, framer, packed storage, table builder internals and
// freeNow are implementation details, reached by module path from agentx/
// and its tests only.
export { ValueType, ResponseError, CloseReason } from './pdu';
export type { Oid, Value, VarBind, SearchRange } from './pdu';
export { compareOids, oidEquals, isPrefixOf, parseOid, formatOid } from './oid';
export type { RequestHandler, RequestContext, SetResult, WritableObject } from './handler';
export { truthValueScalar, TRUTH_TRUE, TRUTH_FALSE } from './truth-value';
export type { TruthValueAccess } from './truth-value';
export { MibView, MibViewBuilder } from './view';
/** What MibViewBuilder.table() returns; built only by the view builder. */
export type { MibTableBuilder } from './table-builder';
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
