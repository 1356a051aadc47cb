// AgentX (RFC 2741) protocol data units as plain TypeScript values.
// The numbers in the enums are the wire values of RFC 2741 §6; the codec is
// the only place that turns these values into bytes and back.

export type Oid = readonly number[];

/** RFC 2741 §6.1 h.type */
export enum PduType {
  Open = 1,
  Close = 2,
  Register = 3,
  Unregister = 4,
  Get = 5,
  GetNext = 6,
  GetBulk = 7,
  TestSet = 8,
  CommitSet = 9,
  UndoSet = 10,
  CleanupSet = 11,
  Notify = 12,
  Ping = 13,
  IndexAllocate = 14,
  IndexDeallocate = 15,
  AddAgentCaps = 16,
  RemoveAgentCaps = 17,
  Response = 18,
}

/** RFC 2741 §6.1 h.flags bits */
export enum PduFlag {
  InstanceRegistration = 0x01,
  NewIndex = 0x02,
  AnyIndex = 0x04,
  NonDefaultContext = 0x08,
  NetworkByteOrder = 0x10,
}

/** RFC 2741 §5.4 v.type */
export enum ValueType {
  Integer = 2,
  OctetString = 4,
  Null = 5,
  ObjectIdentifier = 6,
  IpAddress = 64,
  Counter32 = 65,
  Gauge32 = 66,
  TimeTicks = 67,
  Opaque = 68,
  Counter64 = 70,
  NoSuchObject = 128,
  NoSuchInstance = 129,
  EndOfMibView = 130,
}

/** RFC 2741 §6.2.2 r.reason of a Close-PDU */
export enum CloseReason {
  Other = 1,
  ParseError = 2,
  ProtocolError = 3,
  Timeouts = 4,
  Shutdown = 5,
  ByManager = 6,
}

/**
 * res.error of a Response-PDU: the AgentX administrative errors of RFC 2741
 * §6.2.16 and, for Get/Set processing, the SNMPv2 error-status values of
 * RFC 3416 which share the same field.
 */
export enum ResponseError {
  NoError = 0,
  TooBig = 1,
  NoSuchName = 2,
  BadValue = 3,
  ReadOnly = 4,
  GenErr = 5,
  NoAccess = 6,
  WrongType = 7,
  WrongLength = 8,
  WrongEncoding = 9,
  WrongValue = 10,
  NoCreation = 11,
  InconsistentValue = 12,
  ResourceUnavailable = 13,
  CommitFailed = 14,
  UndoFailed = 15,
  AuthorizationError = 16,
  NotWritable = 17,
  InconsistentName = 18,
  OpenFailed = 256,
  NotOpen = 257,
  IndexWrongType = 258,
  IndexAlreadyAllocated = 259,
  IndexNoneAvailable = 260,
  IndexNotAllocated = 261,
  UnsupportedContext = 262,
  DuplicateRegistration = 263,
  UnknownRegistration = 264,
  UnknownAgentCaps = 265,
  ParseError = 266,
  RequestDenied = 267,
  ProcessingError = 268,
}

/** A varbind's value, tagged by its AgentX type. Octet strings are bytes. */
export type Value =
  | { type: ValueType.Integer; value: number }
  | { type: ValueType.OctetString | ValueType.Opaque | ValueType.IpAddress; value: Buffer }
  | { type: ValueType.ObjectIdentifier; value: Oid }
  | { type: ValueType.Counter32 | ValueType.Gauge32 | ValueType.TimeTicks; value: number }
  | { type: ValueType.Counter64; value: bigint }
  | { type: ValueType.Null | ValueType.NoSuchObject | ValueType.NoSuchInstance | ValueType.EndOfMibView };

export type VarBind = Value & { oid: Oid };

/** RFC 2741 §5.2: a search range; an empty `end` means "no upper bound". */
export interface SearchRange {
  start: Oid;
  include: boolean;
  end: Oid;
}

/** Fields of the 20-byte header (§6.1) common to every PDU. */
export interface PduHeader {
  flags: number;
  sessionId: number;
  transactionId: number;
  packetId: number;
  /** Present when the NON_DEFAULT_CONTEXT flag is set (§6.1.1). */
  context?: Buffer;
}

export interface OpenPdu extends PduHeader {
  type: PduType.Open;
  timeout: number;
  id: Oid;
  description: Buffer;
}
export interface ClosePdu extends PduHeader {
  type: PduType.Close;
  reason: CloseReason;
}
export interface RegisterPdu extends PduHeader {
  type: PduType.Register;
  timeout: number;
  priority: number;
  rangeSubid: number;
  subtree: Oid;
  /** Only meaningful (and only encoded) when rangeSubid is not 0. */
  upperBound?: number;
}
export interface UnregisterPdu extends PduHeader {
  type: PduType.Unregister;
  priority: number;
  rangeSubid: number;
  subtree: Oid;
  upperBound?: number;
}
export interface GetPdu extends PduHeader {
  type: PduType.Get | PduType.GetNext;
  ranges: SearchRange[];
}
export interface GetBulkPdu extends PduHeader {
  type: PduType.GetBulk;
  nonRepeaters: number;
  maxRepetitions: number;
  ranges: SearchRange[];
}
export interface VarBindListPdu extends PduHeader {
  type: PduType.TestSet | PduType.Notify | PduType.IndexAllocate | PduType.IndexDeallocate;
  varbinds: VarBind[];
}
export interface EmptyPdu extends PduHeader {
  type: PduType.CommitSet | PduType.UndoSet | PduType.CleanupSet | PduType.Ping;
}
export interface AddAgentCapsPdu extends PduHeader {
  type: PduType.AddAgentCaps;
  id: Oid;
  description: Buffer;
}
export interface RemoveAgentCapsPdu extends PduHeader {
  type: PduType.RemoveAgentCaps;
  id: Oid;
}
export interface ResponsePdu extends PduHeader {
  type: PduType.Response;
  sysUpTime: number;
  error: ResponseError;
  index: number;
  varbinds: VarBind[];
}

export type Pdu =
  | OpenPdu
  | ClosePdu
  | RegisterPdu
  | UnregisterPdu
  | GetPdu
  | GetBulkPdu
  | VarBindListPdu
  | EmptyPdu
  | AddAgentCapsPdu
  | RemoveAgentCapsPdu
  | ResponsePdu;

/** Size of the fixed header of every AgentX PDU (§6.1). */
export const HEADER_LENGTH = 20;
export const AGENTX_VERSION = 1;
