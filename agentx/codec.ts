// AgentX PDUs to bytes and back (RFC 2741 §6). One function per PDU type in
// each direction; bounds checks, byte order and OID prefix compression live in
// PduReader / PduWriter, so the functions here only spell out the layouts.
import { formatOid } from './oid';
import {
  AGENTX_VERSION,
  CloseReason,
  HEADER_LENGTH,
  PduFlag,
  PduType,
  ResponseError,
  ValueType,
  type AddAgentCapsPdu,
  type ClosePdu,
  type EmptyPdu,
  type GetBulkPdu,
  type GetPdu,
  type OpenPdu,
  type Pdu,
  type RegisterPdu,
  type RemoveAgentCapsPdu,
  type ResponsePdu,
  type SearchRange,
  type UnregisterPdu,
  type VarBind,
  type VarBindListPdu,
} from './pdu';
import { PduDecodeError, PduReader, type RawHeader } from './reader';
import { PduEncodeError, PduWriter } from './writer';

export { PduDecodeError, PduEncodeError };
export type { RawHeader };

export interface EncodeOptions {
  /** NETWORK_BYTE_ORDER (§6.1): big-endian when true (the default), little-endian when false. */
  networkByteOrder?: boolean;
}

/** §6.1.1: the PDU types whose payload may start with a context octet string. */
const CONTEXT_ALLOWED: ReadonlySet<number> = new Set([
  PduType.Register,
  PduType.Unregister,
  PduType.Get,
  PduType.GetNext,
  PduType.GetBulk,
  PduType.TestSet,
  PduType.Notify,
  PduType.Ping,
  PduType.IndexAllocate,
  PduType.IndexDeallocate,
  PduType.AddAgentCaps,
  PduType.RemoveAgentCaps,
]);

// Encoding and decoding are synchronous, so one reader and one writer serve every call.
const reader = new PduReader(Buffer.alloc(0));
const writer = new PduWriter(512);

export function pduTypeName(type: number): string {
  return PduType[type] ?? `unknown PDU type ${type}`;
}

/** Reads the 20-byte §6.1 header; multi-byte fields follow that PDU's NETWORK_BYTE_ORDER flag. */
export function decodeHeader(buf: Buffer): RawHeader {
  if (buf.length < HEADER_LENGTH) {
    throw new PduDecodeError(`AgentX header truncated: ${buf.length} of ${HEADER_LENGTH} bytes`);
  }
  const flags = buf[2];
  if (flags & PduFlag.NetworkByteOrder) {
    return {
      version: buf[0],
      type: buf[1],
      flags,
      sessionId: buf.readUInt32BE(4),
      transactionId: buf.readUInt32BE(8),
      packetId: buf.readUInt32BE(12),
      payloadLength: buf.readUInt32BE(16),
    };
  }
  return {
    version: buf[0],
    type: buf[1],
    flags,
    sessionId: buf.readUInt32LE(4),
    transactionId: buf.readUInt32LE(8),
    packetId: buf.readUInt32LE(12),
    payloadLength: buf.readUInt32LE(16),
  };
}

/** Decodes one whole PDU (header + payload, as the framer delivers it). Throws only PduDecodeError. */
export function decodePdu(frame: Buffer): Pdu {
  const h = decodeHeader(frame);
  if (h.version !== AGENTX_VERSION) {
    throw new PduDecodeError(`AgentX version ${h.version} is not supported (RFC 2741 defines version 1)`, h);
  }
  if (h.type < PduType.Open || h.type > PduType.Response) {
    throw new PduDecodeError(`unknown AgentX PDU type ${h.type}`, h, true);
  }
  if (h.payloadLength !== frame.length - HEADER_LENGTH) {
    throw new PduDecodeError(
      `${pduTypeName(h.type)}: payload_length ${h.payloadLength} does not match the ${frame.length - HEADER_LENGTH} byte(s) after the header`,
      h,
    );
  }
  reader.reset(frame, HEADER_LENGTH, frame.length, (h.flags & PduFlag.NetworkByteOrder) !== 0, h);
  try {
    const pdu = decodeBody(reader, h);
    reader.expectEnd(pduTypeName(h.type));
    return pdu;
  } finally {
    reader.release();
  }
}

function decodeBody(r: PduReader, h: RawHeader): Pdu {
  let context: Buffer | undefined;
  if (h.flags & PduFlag.NonDefaultContext) {
    if (!CONTEXT_ALLOWED.has(h.type)) r.fail(`${pduTypeName(h.type)}: NON_DEFAULT_CONTEXT flag set, but §6.1.1 allows no context here`);
    context = r.octets('context');
  }
  const pdu = decodePayload(r, h);
  if (context !== undefined) pdu.context = context;
  return pdu;
}

function decodePayload(r: PduReader, h: RawHeader): Pdu {
  const base = { flags: h.flags, sessionId: h.sessionId, transactionId: h.transactionId, packetId: h.packetId };
  switch (h.type as PduType) {
    case PduType.Open: {
      const timeout = r.uint8('Open timeout');
      r.skip(3, 'Open reserved');
      const id = r.oid('Open id');
      const description = r.octets('Open description');
      return { type: PduType.Open, ...base, timeout, id, description } satisfies OpenPdu;
    }
    case PduType.Close: {
      const reason = r.uint8('Close reason') as CloseReason;
      r.skip(3, 'Close reserved');
      return { type: PduType.Close, ...base, reason } satisfies ClosePdu;
    }
    case PduType.Register: {
      const timeout = r.uint8('Register timeout');
      const priority = r.uint8('Register priority');
      const rangeSubid = r.uint8('Register range_subid');
      r.skip(1, 'Register reserved');
      const subtree = r.oid('Register subtree');
      const pdu: RegisterPdu = { type: PduType.Register, ...base, timeout, priority, rangeSubid, subtree };
      if (rangeSubid !== 0) pdu.upperBound = decodeUpperBound(r, pdu);
      return pdu;
    }
    case PduType.Unregister: {
      r.skip(1, 'Unregister reserved');
      const priority = r.uint8('Unregister priority');
      const rangeSubid = r.uint8('Unregister range_subid');
      r.skip(1, 'Unregister reserved');
      const subtree = r.oid('Unregister subtree');
      const pdu: UnregisterPdu = { type: PduType.Unregister, ...base, priority, rangeSubid, subtree };
      if (rangeSubid !== 0) pdu.upperBound = decodeUpperBound(r, pdu);
      return pdu;
    }
    case PduType.Get:
    case PduType.GetNext:
      return { type: h.type as PduType.Get | PduType.GetNext, ...base, ranges: decodeRanges(r) } satisfies GetPdu;
    case PduType.GetBulk: {
      const nonRepeaters = r.uint16('GetBulk non_repeaters');
      const maxRepetitions = r.uint16('GetBulk max_repetitions');
      return { type: PduType.GetBulk, ...base, nonRepeaters, maxRepetitions, ranges: decodeRanges(r) } satisfies GetBulkPdu;
    }
    case PduType.TestSet:
    case PduType.Notify:
    case PduType.IndexAllocate:
    case PduType.IndexDeallocate:
      return { type: h.type as VarBindListPdu['type'], ...base, varbinds: decodeVarBinds(r) } satisfies VarBindListPdu;
    case PduType.CommitSet:
    case PduType.UndoSet:
    case PduType.CleanupSet:
    case PduType.Ping:
      return { type: h.type as EmptyPdu['type'], ...base } satisfies EmptyPdu;
    case PduType.AddAgentCaps: {
      const id = r.oid('AddAgentCaps id');
      const description = r.octets('AddAgentCaps description');
      return { type: PduType.AddAgentCaps, ...base, id, description } satisfies AddAgentCapsPdu;
    }
    case PduType.RemoveAgentCaps:
      return { type: PduType.RemoveAgentCaps, ...base, id: r.oid('RemoveAgentCaps id') } satisfies RemoveAgentCapsPdu;
    case PduType.Response: {
      const sysUpTime = r.uint32('Response sysUpTime');
      const error = r.uint16('Response error') as ResponseError;
      const index = r.uint16('Response index');
      return { type: PduType.Response, ...base, sysUpTime, error, index, varbinds: decodeVarBinds(r) } satisfies ResponsePdu;
    }
  }
}

/** §6.2.3: range_subid counts sub-ids of the full (expanded) subtree, so it must point inside it. */
function decodeUpperBound(r: PduReader, pdu: RegisterPdu | UnregisterPdu): number {
  const name = pduTypeName(pdu.type);
  if (pdu.rangeSubid > pdu.subtree.length) {
    r.fail(`${name}: range_subid ${pdu.rangeSubid} is beyond the ${pdu.subtree.length} sub-ids of the subtree`);
  }
  return r.uint32(name, 'upper_bound');
}

/** §5.2 SearchRangeList: ranges until the payload ends. */
function decodeRanges(r: PduReader): SearchRange[] {
  const ranges: SearchRange[] = [];
  while (r.remaining > 0) ranges.push(r.searchRange('search range'));
  return ranges;
}

/** §5.4 VarBindList: varbinds until the payload ends. */
function decodeVarBinds(r: PduReader): VarBind[] {
  const varbinds: VarBind[] = [];
  while (r.remaining > 0) varbinds.push(r.varbind('varbind'));
  return varbinds;
}

/**
 * Encodes a PDU. NON_DEFAULT_CONTEXT is set iff `pdu.context` is given and
 * NETWORK_BYTE_ORDER follows `opts`; both bits of `pdu.flags` are ignored.
 * Throws PduEncodeError for values that do not fit their fields.
 */
export function encodePdu(pdu: Pdu, opts?: EncodeOptions): Buffer {
  const bigEndian = opts?.networkByteOrder ?? true;
  if (!Number.isInteger(pdu.flags) || pdu.flags < 0 || pdu.flags > 0xff) {
    throw new PduEncodeError(`${pduTypeName(pdu.type)}: flags must be an integer 0..255, got ${String(pdu.flags)}`);
  }
  const hasContext = pdu.context !== undefined;
  if (hasContext && !CONTEXT_ALLOWED.has(pdu.type)) {
    throw new PduEncodeError(`${pduTypeName(pdu.type)}: §6.1.1 allows no non-default context on this PDU type`);
  }
  let flags = pdu.flags & ~(PduFlag.NonDefaultContext | PduFlag.NetworkByteOrder);
  if (hasContext) flags |= PduFlag.NonDefaultContext;
  if (bigEndian) flags |= PduFlag.NetworkByteOrder;
  const w = writer;
  w.begin(pdu.type, flags, pdu.sessionId, pdu.transactionId, pdu.packetId, bigEndian);
  if (pdu.context !== undefined) w.octets(pdu.context, 'context');
  encodePayload(w, pdu);
  return w.finish();
}

function encodePayload(w: PduWriter, pdu: Pdu): void {
  switch (pdu.type) {
    case PduType.Open:
      w.uint8(pdu.timeout, 'Open timeout');
      w.zeros(3);
      w.oid(pdu.id, 'Open id');
      w.octets(pdu.description, 'Open description');
      return;
    case PduType.Close:
      w.uint8(pdu.reason, 'Close reason');
      w.zeros(3);
      return;
    case PduType.Register:
      w.uint8(pdu.timeout, 'Register timeout');
      w.uint8(pdu.priority, 'Register priority');
      w.uint8(pdu.rangeSubid, 'Register range_subid');
      w.zeros(1);
      w.oid(pdu.subtree, 'Register subtree');
      encodeUpperBound(w, pdu);
      return;
    case PduType.Unregister:
      w.zeros(1);
      w.uint8(pdu.priority, 'Unregister priority');
      w.uint8(pdu.rangeSubid, 'Unregister range_subid');
      w.zeros(1);
      w.oid(pdu.subtree, 'Unregister subtree');
      encodeUpperBound(w, pdu);
      return;
    case PduType.Get:
    case PduType.GetNext:
      for (let i = 0; i < pdu.ranges.length; i++) w.searchRange(pdu.ranges[i], 'search range');
      return;
    case PduType.GetBulk:
      w.uint16(pdu.nonRepeaters, 'GetBulk non_repeaters');
      w.uint16(pdu.maxRepetitions, 'GetBulk max_repetitions');
      for (let i = 0; i < pdu.ranges.length; i++) w.searchRange(pdu.ranges[i], 'search range');
      return;
    case PduType.TestSet:
    case PduType.Notify:
    case PduType.IndexAllocate:
    case PduType.IndexDeallocate:
      for (let i = 0; i < pdu.varbinds.length; i++) w.varbind(pdu.varbinds[i], 'varbind');
      return;
    case PduType.CommitSet:
    case PduType.UndoSet:
    case PduType.CleanupSet:
    case PduType.Ping:
      return;
    case PduType.AddAgentCaps:
      w.oid(pdu.id, 'AddAgentCaps id');
      w.octets(pdu.description, 'AddAgentCaps description');
      return;
    case PduType.RemoveAgentCaps:
      w.oid(pdu.id, 'RemoveAgentCaps id');
      return;
    case PduType.Response:
      w.uint32(pdu.sysUpTime, 'Response sysUpTime');
      w.uint16(pdu.error, 'Response error');
      w.uint16(pdu.index, 'Response index');
      for (let i = 0; i < pdu.varbinds.length; i++) w.varbind(pdu.varbinds[i], 'varbind');
      return;
    default:
      throw new PduEncodeError(`unknown PDU type ${String((pdu as { type: unknown }).type)}`);
  }
}

/** §6.2.3: r.upper_bound is present only when r.range_subid is not 0. */
function encodeUpperBound(w: PduWriter, pdu: RegisterPdu | UnregisterPdu): void {
  if (pdu.rangeSubid === 0) return;
  const name = pduTypeName(pdu.type);
  if (pdu.rangeSubid > pdu.subtree.length) {
    throw new PduEncodeError(`${name}: range_subid ${pdu.rangeSubid} is beyond the ${pdu.subtree.length} sub-ids of the subtree`);
  }
  if (pdu.upperBound === undefined) throw new PduEncodeError(`${name}: range_subid ${pdu.rangeSubid} needs an upperBound`);
  w.uint32(pdu.upperBound, name, 'upper_bound');
}

// ---- one-line descriptions for logs ----

const LIST_LIMIT = 3;

function formatBytes(data: Buffer): string {
  const shown = data.subarray(0, 64);
  const more = data.length > shown.length ? `…(${data.length} bytes)` : '';
  for (const byte of shown) {
    if (byte < 0x20 || byte > 0x7e) return `0x${shown.toString('hex')}${more}`;
  }
  return `${JSON.stringify(shown.toString('latin1'))}${more}`;
}

function formatList<T>(items: readonly T[], format: (item: T) => string): string {
  const shown = items.slice(0, LIST_LIMIT).map(format).join(', ');
  return items.length > LIST_LIMIT ? `[${shown}, +${items.length - LIST_LIMIT} more]` : `[${shown}]`;
}

function formatRange(range: SearchRange): string {
  const end = range.end.length === 0 ? '∞' : formatOid(range.end);
  return `${range.include ? '[' : '('}${formatOid(range.start)}..${end})`;
}

function formatVarBind(vb: VarBind): string {
  const type = ValueType[vb.type] ?? String(vb.type);
  if (!('value' in vb)) return `${formatOid(vb.oid)}=${type}`;
  const value = vb.value;
  const text = Buffer.isBuffer(value)
    ? vb.type === ValueType.IpAddress
      ? Array.from(value).join('.')
      : formatBytes(value)
    : Array.isArray(value)
      ? formatOid(value)
      : String(value);
  return `${formatOid(vb.oid)}=${type}:${text}`;
}

/** One line naming the PDU, its ids and its main fields, for log messages. */
export function describePdu(pdu: Pdu): string {
  let line = `${pduTypeName(pdu.type)} session=${pdu.sessionId} transaction=${pdu.transactionId} packet=${pdu.packetId}`;
  if (pdu.context !== undefined) line += ` context=${formatBytes(pdu.context)}`;
  switch (pdu.type) {
    case PduType.Open:
      return `${line} timeout=${pdu.timeout} id=${formatOid(pdu.id)} description=${formatBytes(pdu.description)}`;
    case PduType.Close:
      return `${line} reason=${CloseReason[pdu.reason] ?? pdu.reason}`;
    case PduType.Register:
    case PduType.Unregister: {
      const range = pdu.rangeSubid !== 0 ? ` range_subid=${pdu.rangeSubid} upper_bound=${pdu.upperBound}` : '';
      const timeout = pdu.type === PduType.Register ? ` timeout=${pdu.timeout}` : '';
      return `${line} subtree=${formatOid(pdu.subtree)}${range} priority=${pdu.priority}${timeout}`;
    }
    case PduType.Get:
    case PduType.GetNext:
      return `${line} ranges=${formatList(pdu.ranges, formatRange)}`;
    case PduType.GetBulk:
      return `${line} non_repeaters=${pdu.nonRepeaters} max_repetitions=${pdu.maxRepetitions} ranges=${formatList(pdu.ranges, formatRange)}`;
    case PduType.TestSet:
    case PduType.Notify:
    case PduType.IndexAllocate:
    case PduType.IndexDeallocate:
      return `${line} varbinds=${formatList(pdu.varbinds, formatVarBind)}`;
    case PduType.AddAgentCaps:
      return `${line} id=${formatOid(pdu.id)} description=${formatBytes(pdu.description)}`;
    case PduType.RemoveAgentCaps:
      return `${line} id=${formatOid(pdu.id)}`;
    case PduType.Response:
      return `${line} sysUpTime=${pdu.sysUpTime} error=${ResponseError[pdu.error] ?? pdu.error} index=${pdu.index} varbinds=${formatList(pdu.varbinds, formatVarBind)}`;
    default:
      return line;
  }
}
