// The vmm-mcastd signalling wire format, version 1: a fixed 58-byte header, a
// body, and a 32-byte tag over everything before it. docs/mcastd-protocol.md
// describes it byte by byte; this file is the codec and knows nothing of keys,
// sockets or replay state (the tag is computed by whatever Tagger it is given).
import { createHash } from 'node:crypto';
import { isIP, SocketAddress } from 'node:net';

export const MAGIC = Buffer.from('VMMC', 'ascii');
export const WIRE_VERSION = 1;
export const HEADER_LENGTH = 58;
export const TAG_LENGTH = 32;
export const SENDER_ID_LENGTH = 16;
/** Largest JSON body; every signalling message fits in one unfragmented datagram on common links. */
export const MAX_JSON_BODY = 8192;
/** Largest relayed multicast payload: a 9,000-byte jumbo frame's worth. */
export const MAX_RELAY_PAYLOAD = 9000;
/** Sequence numbers are 1..MAX_SEQUENCE; 0 means "none" in the reply-to field. */
export const MAX_SEQUENCE = 0xffffffff;

const FLAG_RESPONSE = 0x01;

// Header offsets.
const OFF_VERSION = 4;
const OFF_TYPE = 5;
const OFF_FLAGS = 6;
const OFF_RESERVED = 7;
const OFF_SENDER = 8;
const OFF_BOOT = 24;
const OFF_SEQUENCE = 32;
const OFF_TIMESTAMP = 36;
const OFF_REPLY_BOOT = 44;
const OFF_REPLY_SEQUENCE = 52;
const OFF_BODY_LENGTH = 56;

export const MessageType = {
  AGENT_SEARCH: 1,
  AGENT_SEARCH_REPLY: 2,
  MIGRATION_REQUEST: 3,
  MIGRATION_RESPONSE: 4,
  AGENT_REQUEST: 5,
  AGENT_RESPONSE: 6,
  START_MIGRATION: 7,
  RELAY_REQUEST: 8,
  RELAY_RESPONSE: 9,
  RELEASE: 10,
  RELAY_STOP: 11,
  ACK: 12,
  ERROR: 13,
  RELAY_DATA: 32,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const TYPE_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(MessageType).map(([name, code]) => [code, name]));

/** The message type's name for log lines and errors, e.g. "AGENT_REQUEST" or "type 99". */
export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

/** Each request type and the type its successful answer has. Any request may also be answered with ERROR. */
export const REPLY_TYPE = {
  [MessageType.AGENT_SEARCH]: MessageType.AGENT_SEARCH_REPLY,
  [MessageType.MIGRATION_REQUEST]: MessageType.MIGRATION_RESPONSE,
  [MessageType.AGENT_REQUEST]: MessageType.AGENT_RESPONSE,
  [MessageType.START_MIGRATION]: MessageType.ACK,
  [MessageType.RELAY_REQUEST]: MessageType.RELAY_RESPONSE,
  [MessageType.RELEASE]: MessageType.ACK,
  [MessageType.RELAY_STOP]: MessageType.ACK,
} as const;
export type RequestType = keyof typeof REPLY_TYPE;
export type ReplyTypeOf<T extends RequestType> = (typeof REPLY_TYPE)[T];
export type ReplyType = ReplyTypeOf<RequestType> | typeof MessageType.ERROR;
/** Sent without acknowledgement or retransmission. */
export type DatagramType = typeof MessageType.RELAY_DATA;

const REQUEST_TYPES: ReadonlySet<number> = new Set(Object.keys(REPLY_TYPE).map(Number));
const REPLY_TYPES: ReadonlySet<number> = new Set([...Object.values(REPLY_TYPE), MessageType.ERROR]);
const DATAGRAM_TYPES: ReadonlySet<number> = new Set([MessageType.RELAY_DATA]);

export function isRequestType(type: number): type is RequestType {
  return REQUEST_TYPES.has(type);
}
export function isReplyType(type: number): type is ReplyType {
  return REPLY_TYPES.has(type);
}
export function isDatagramType(type: number): type is DatagramType {
  return DATAGRAM_TYPES.has(type);
}

// ---- Bodies ----------------------------------------------------------------

export interface VmRef {
  /** libvirt domain UUID, lower case. */
  uuid: string;
  name: string;
}
export interface GroupRef {
  /** Multicast group address, canonical text form. */
  address: string;
  family: 4 | 6;
}
export interface PeerAddress {
  /** Unicast (or, for AGENT_SEARCH, multicast) address; IPv6 link-local ones carry a scope: fe80::1%eth0. */
  address: string;
  port: number;
}
export interface NicGroups {
  /** The guest interface's MAC, lower case. */
  mac: string;
  /** The bridge named in the interface definition; libvirt migration needs the same name on the destination. */
  bridge: string;
  groups: GroupRef[];
}
export interface GroupDelivery {
  address: string;
  /** direct: the stream arrives on the destination bridge; relay: a relay forwards it; none: neither worked. */
  via: 'direct' | 'relay' | 'none';
  relay?: PeerAddress;
  reason?: string;
}

export interface AgentSearch {
  /** The MAC of the VM whose host agent is sought. */
  mac: string;
}
export interface AgentSearchReply {
  /** The answering agent's configured name. */
  agent: string;
  mac: string;
  vm?: VmRef;
}
export interface MigrationRequest {
  migrationId: string;
  vm: VmRef;
  /** The destination host's agent. */
  destination: PeerAddress;
  /** libvirt URI of the destination hypervisor, when it is not derived from the agent's address. */
  destinationUri?: string;
}
export interface MigrationResponse {
  migrationId: string;
  accepted: boolean;
  reason?: string;
  groups?: GroupDelivery[];
}
export interface AgentRequest {
  migrationId: string;
  vm: VmRef;
  nics: NicGroups[];
}
export interface AgentResponse {
  migrationId: string;
  groups: GroupDelivery[];
}
export interface StartMigration {
  migrationId: string;
  vm: VmRef;
}
export interface RelayRequest {
  group: string;
  /** Where the relay sends RELAY_DATA. */
  subscriber: PeerAddress;
  /** Lease asked for; the relay stops unless the request is repeated before it runs out. */
  ttlSeconds?: number;
}
export interface RelayResponse {
  group: string;
  accepted: boolean;
  /** Lease granted. */
  ttlSeconds?: number;
  reason?: string;
}
export interface RelayStop {
  group: string;
  subscriber: PeerAddress;
}
export interface Release {
  migrationId: string;
  vm: VmRef;
  /** Why the state can go, e.g. "migration aborted", "migration completed". */
  reason: string;
}
export type Ack = Record<string, never>;
export interface ErrorReply {
  error: string;
}
export interface RelayData {
  group: string;
  /** Destination UDP port of the original datagram. */
  port: number;
  payload: Buffer;
}

export interface BodyByType {
  [MessageType.AGENT_SEARCH]: AgentSearch;
  [MessageType.AGENT_SEARCH_REPLY]: AgentSearchReply;
  [MessageType.MIGRATION_REQUEST]: MigrationRequest;
  [MessageType.MIGRATION_RESPONSE]: MigrationResponse;
  [MessageType.AGENT_REQUEST]: AgentRequest;
  [MessageType.AGENT_RESPONSE]: AgentResponse;
  [MessageType.START_MIGRATION]: StartMigration;
  [MessageType.RELAY_REQUEST]: RelayRequest;
  [MessageType.RELAY_RESPONSE]: RelayResponse;
  [MessageType.RELEASE]: Release;
  [MessageType.RELAY_STOP]: RelayStop;
  [MessageType.ACK]: Ack;
  [MessageType.ERROR]: ErrorReply;
  [MessageType.RELAY_DATA]: RelayData;
}

export interface ReplyTo {
  bootId: bigint;
  sequence: number;
}

/** One message of any type; `type` selects the body's shape. */
export type Message<T extends MessageType = MessageType> = T extends MessageType
  ? {
      type: T;
      /** First 16 bytes of SHA-256 of the sender's configured agent name (senderIdFor). */
      senderId: Buffer;
      /** Random per process start of the sender (and renewed if its sequence numbers run out). */
      bootId: bigint;
      sequence: number;
      /** Milliseconds since the epoch, on the sender's clock. */
      timestamp: number;
      /** Present exactly on replies: the boot id and sequence of the request answered. */
      replyTo?: ReplyTo;
      body: BodyByType[T];
    }
  : never;

/** Computes the authentication tag of the bytes it is given (auth.ts: MessageKey). */
export interface Tagger {
  tag(signed: Buffer): Buffer;
}

export class WireError extends Error {
  override readonly name = 'WireError';
}

/** The sender id of an agent: a stable function of its configured name, so logs and replay state survive restarts. */
export function senderIdFor(agentName: string): Buffer {
  return createHash('sha256').update(agentName, 'utf8').digest().subarray(0, SENDER_ID_LENGTH);
}

// ---- Addresses ---------------------------------------------------------------

/** Canonical text of an IP address (lower case, zeros compressed), keeping an IPv6 scope; undefined if not an address. */
export function canonicalAddress(address: string): string | undefined {
  const percent = address.indexOf('%');
  const bare = percent < 0 ? address : address.slice(0, percent);
  const scope = percent < 0 ? '' : address.slice(percent + 1);
  const family = isIP(bare);
  if (family === 0) return undefined;
  if (family === 4) return percent < 0 ? bare : undefined;
  if (percent >= 0 && !/^[A-Za-z0-9_.-]{1,15}$/.test(scope)) return undefined;
  const canonical = new SocketAddress({ address: bare, family: 'ipv6' }).address;
  return scope ? `${canonical}%${scope}` : canonical;
}

export function addressFamily(address: string): 4 | 6 | 0 {
  const percent = address.indexOf('%');
  const family = isIP(percent < 0 ? address : address.slice(0, percent));
  return family === 4 || family === 6 ? family : 0;
}

/** True for 224.0.0.0/4 and ff00::/8 (scope, if any, ignored). */
export function isMulticastAddress(address: string): boolean {
  const canonical = canonicalAddress(address);
  if (canonical === undefined) return false;
  if (addressFamily(canonical) === 4) {
    const first = Number(canonical.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return canonical.startsWith('ff');
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  let text = address;
  const bytes = Buffer.alloc(16);
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups first.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number);
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  groups.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), i * 2));
  return bytes;
}

function ipv6Text(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

// ---- Body validation ----------------------------------------------------------

// JSON.parse's result, typed without `any`.
type Json = unknown;

function fail(path: string, problem: string): never {
  throw new WireError(`${path} ${problem}`);
}

function readObject(value: Json, path: string): Record<string, Json> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'must be a JSON object');
  return value as Record<string, Json>;
}

function readString(value: Json, path: string, maxLength = 256): string {
  if (typeof value !== 'string') fail(path, 'must be a string');
  if (value.length === 0) fail(path, 'must not be empty');
  if (value.length > maxLength) fail(path, `must be at most ${maxLength} characters`);
  return value;
}

function readInteger(value: Json, path: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(path, 'must be an integer');
  if (value < min || value > max) fail(path, `must be between ${min} and ${max}`);
  return value;
}

function readBoolean(value: Json, path: string): boolean {
  if (typeof value !== 'boolean') fail(path, 'must be true or false');
  return value;
}

function readArray(value: Json, path: string, maxItems: number): Json[] {
  if (!Array.isArray(value)) fail(path, 'must be an array');
  if (value.length > maxItems) fail(path, `must have at most ${maxItems} items`);
  return value as Json[];
}

function optional<T>(value: Json, read: (value: Json) => T): T | undefined {
  return value === undefined ? undefined : read(value);
}

function readUuid(value: Json, path: string): string {
  const text = readString(value, path);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)) fail(path, 'must be a UUID');
  return text.toLowerCase();
}

function readMac(value: Json, path: string): string {
  const text = readString(value, path);
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(text)) fail(path, 'must be a MAC address (aa:bb:cc:dd:ee:ff)');
  return text.toLowerCase();
}

function readGroupAddress(value: Json, path: string): string {
  const text = readString(value, path, 64);
  const canonical = canonicalAddress(text);
  if (canonical === undefined || canonical.includes('%') || !isMulticastAddress(canonical)) fail(path, 'must be a multicast group address');
  return canonical;
}

function readVm(value: Json, path: string): VmRef {
  const o = readObject(value, path);
  return { uuid: readUuid(o.uuid, `${path}.uuid`), name: readString(o.name, `${path}.name`) };
}

function readGroup(value: Json, path: string): GroupRef {
  const o = readObject(value, path);
  const address = readGroupAddress(o.address, `${path}.address`);
  const family = o.family;
  if (family !== 4 && family !== 6) fail(`${path}.family`, 'must be 4 or 6');
  if (family !== addressFamily(address)) fail(`${path}.family`, `is ${family} but the address is IPv${addressFamily(address)}`);
  return { address, family };
}

function readPeer(value: Json, path: string): PeerAddress {
  const o = readObject(value, path);
  const text = readString(o.address, `${path}.address`, 64);
  const address = canonicalAddress(text);
  if (address === undefined) fail(`${path}.address`, 'must be an IP address');
  return { address, port: readInteger(o.port, `${path}.port`, 1, 65535) };
}

function readDelivery(value: Json, path: string): GroupDelivery {
  const o = readObject(value, path);
  const via = o.via;
  if (via !== 'direct' && via !== 'relay' && via !== 'none') fail(`${path}.via`, 'must be "direct", "relay" or "none"');
  const relay = optional(o.relay, (v) => readPeer(v, `${path}.relay`));
  if (via === 'relay' && relay === undefined) fail(`${path}.relay`, 'must be given when via is "relay"');
  const delivery: GroupDelivery = { address: readGroupAddress(o.address, `${path}.address`), via };
  if (relay) delivery.relay = relay;
  const reason = optional(o.reason, (v) => readString(v, `${path}.reason`, 512));
  if (reason !== undefined) delivery.reason = reason;
  return delivery;
}

function readDeliveries(value: Json, path: string): GroupDelivery[] {
  return readArray(value, path, 256).map((item, i) => readDelivery(item, `${path}[${i}]`));
}

function readNic(value: Json, path: string): NicGroups {
  const o = readObject(value, path);
  return {
    mac: readMac(o.mac, `${path}.mac`),
    bridge: readString(o.bridge, `${path}.bridge`, 15),
    groups: readArray(o.groups, `${path}.groups`, 256).map((item, i) => readGroup(item, `${path}.groups[${i}]`)),
  };
}

// Drops undefined optional fields so a decoded body compares equal to what was meant.
function withOptional<T extends object, K extends string, V>(body: T, key: K, value: V | undefined): T & Partial<Record<K, V>> {
  return value === undefined ? body : { ...body, [key]: value };
}

const MIGRATION_ID_MAX = 128;
const TTL_MAX = 86400;

type JsonReader<T> = (o: Record<string, Json>) => T;

const JSON_READERS: { [T in Exclude<MessageType, DatagramType>]: JsonReader<BodyByType[T]> } = {
  [MessageType.AGENT_SEARCH]: (o) => ({ mac: readMac(o.mac, 'mac') }),
  [MessageType.AGENT_SEARCH_REPLY]: (o) =>
    withOptional({ agent: readString(o.agent, 'agent'), mac: readMac(o.mac, 'mac') }, 'vm', optional(o.vm, (v) => readVm(v, 'vm'))),
  [MessageType.MIGRATION_REQUEST]: (o) =>
    withOptional(
      { migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX), vm: readVm(o.vm, 'vm'), destination: readPeer(o.destination, 'destination') },
      'destinationUri',
      optional(o.destinationUri, (v) => readString(v, 'destinationUri', 1024)),
    ),
  [MessageType.MIGRATION_RESPONSE]: (o) =>
    withOptional(
      withOptional(
        { migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX), accepted: readBoolean(o.accepted, 'accepted') },
        'reason',
        optional(o.reason, (v) => readString(v, 'reason', 512)),
      ),
      'groups',
      optional(o.groups, (v) => readDeliveries(v, 'groups')),
    ),
  [MessageType.AGENT_REQUEST]: (o) => ({
    migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX),
    vm: readVm(o.vm, 'vm'),
    nics: readArray(o.nics, 'nics', 64).map((item, i) => readNic(item, `nics[${i}]`)),
  }),
  [MessageType.AGENT_RESPONSE]: (o) => ({
    migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX),
    groups: readDeliveries(o.groups, 'groups'),
  }),
  [MessageType.START_MIGRATION]: (o) => ({ migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX), vm: readVm(o.vm, 'vm') }),
  [MessageType.RELAY_REQUEST]: (o) =>
    withOptional(
      { group: readGroupAddress(o.group, 'group'), subscriber: readPeer(o.subscriber, 'subscriber') },
      'ttlSeconds',
      optional(o.ttlSeconds, (v) => readInteger(v, 'ttlSeconds', 1, TTL_MAX)),
    ),
  [MessageType.RELAY_RESPONSE]: (o) =>
    withOptional(
      withOptional(
        { group: readGroupAddress(o.group, 'group'), accepted: readBoolean(o.accepted, 'accepted') },
        'ttlSeconds',
        optional(o.ttlSeconds, (v) => readInteger(v, 'ttlSeconds', 1, TTL_MAX)),
      ),
      'reason',
      optional(o.reason, (v) => readString(v, 'reason', 512)),
    ),
  [MessageType.RELEASE]: (o) => ({
    migrationId: readString(o.migrationId, 'migrationId', MIGRATION_ID_MAX),
    vm: readVm(o.vm, 'vm'),
    reason: readString(o.reason, 'reason', 512),
  }),
  [MessageType.RELAY_STOP]: (o) => ({ group: readGroupAddress(o.group, 'group'), subscriber: readPeer(o.subscriber, 'subscriber') }),
  [MessageType.ACK]: () => ({}),
  [MessageType.ERROR]: (o) => ({ error: readString(o.error, 'error', 1024) }),
};

// ---- RELAY_DATA body: family u8, reserved u8, port u16, group (4 or 16 bytes), payload.

function encodeRelayData(body: RelayData): Buffer {
  const family = addressFamily(body.group);
  if (!isMulticastAddress(body.group) || body.group.includes('%')) throw new WireError(`RELAY_DATA body: group ${body.group} is not a multicast group address`);
  if (!Number.isInteger(body.port) || body.port < 1 || body.port > 65535) throw new WireError(`RELAY_DATA body: port ${body.port} is not a UDP port`);
  if (body.payload.length > MAX_RELAY_PAYLOAD) throw new WireError(`RELAY_DATA body: payload of ${body.payload.length} bytes exceeds ${MAX_RELAY_PAYLOAD}`);
  const group = family === 4 ? ipv4Bytes(body.group) : ipv6Bytes(body.group);
  const head = Buffer.alloc(4);
  head.writeUInt8(family, 0);
  head.writeUInt16BE(body.port, 2);
  return Buffer.concat([head, group, body.payload]);
}

function decodeRelayData(bytes: Buffer): RelayData {
  const fail = (problem: string): never => {
    throw new WireError(`RELAY_DATA body: ${problem}`);
  };
  if (bytes.length < 4) fail(`truncated: ${bytes.length} bytes`);
  const family = bytes.readUInt8(0);
  if (family !== 4 && family !== 6) fail(`family ${family} is neither 4 nor 6`);
  if (bytes.readUInt8(1) !== 0) fail('reserved byte is not 0');
  const port = bytes.readUInt16BE(2);
  if (port === 0) fail('port is 0');
  const addressLength = family === 4 ? 4 : 16;
  if (bytes.length < 4 + addressLength) fail(`truncated: ${bytes.length} bytes, the group address needs ${4 + addressLength}`);
  const raw = bytes.subarray(4, 4 + addressLength);
  const group = family === 4 ? [...raw].join('.') : ipv6Text(raw);
  if (!isMulticastAddress(group)) fail(`group ${group} is not a multicast address`);
  const payload = bytes.subarray(4 + addressLength);
  if (payload.length > MAX_RELAY_PAYLOAD) fail(`payload of ${payload.length} bytes exceeds ${MAX_RELAY_PAYLOAD}`);
  return { group, port, payload };
}

function maxBodyLength(type: MessageType): number {
  return type === MessageType.RELAY_DATA ? 4 + 16 + MAX_RELAY_PAYLOAD : MAX_JSON_BODY;
}

/** The body bytes of a message; throws WireError if the body does not satisfy its type's rules. */
export function encodeBody<T extends MessageType>(type: T, body: BodyByType[T]): Buffer {
  if (type === MessageType.RELAY_DATA) return encodeRelayData(body as RelayData);
  const bytes = Buffer.from(JSON.stringify(body), 'utf8');
  if (bytes.length > MAX_JSON_BODY) throw new WireError(`${typeName(type)} body: ${bytes.length} bytes exceeds ${MAX_JSON_BODY}`);
  // Checking what we send with the receiver's rules turns a peer's refusal into an error at the call site.
  decodeBody(type, bytes);
  return bytes;
}

/** The typed body of a message of `type`; throws WireError naming the first thing wrong. */
export function decodeBody<T extends MessageType>(type: T, bytes: Buffer): BodyByType[T] {
  if (bytes.length > maxBodyLength(type)) throw new WireError(`${typeName(type)} body: ${bytes.length} bytes exceeds ${maxBodyLength(type)}`);
  if (type === MessageType.RELAY_DATA) return decodeRelayData(bytes) as BodyByType[T];
  let parsed: Json;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new WireError(`${typeName(type)} body: not UTF-8 JSON (${(err as Error).message})`);
  }
  const reader = JSON_READERS[type as Exclude<MessageType, DatagramType>] as JsonReader<BodyByType[T]>;
  try {
    return reader(readObject(parsed, 'body'));
  } catch (err) {
    if (err instanceof WireError) throw new WireError(`${typeName(type)} body: ${err.message}`);
    throw err;
  }
}

// ---- Framing -----------------------------------------------------------------

/** A datagram split into its parts, structure checked, body not yet parsed and tag not yet checked. */
export interface Frame {
  type: MessageType;
  senderId: Buffer;
  bootId: bigint;
  sequence: number;
  timestamp: number;
  replyTo?: ReplyTo;
  /** Raw body bytes (views into the datagram). */
  body: Buffer;
  /** The bytes the tag covers: header and body. */
  signed: Buffer;
  tag: Buffer;
}

/** Splits a datagram into its parts, checking everything but the body's content and the tag. */
export function readFrame(datagram: Buffer): Frame {
  const minimum = HEADER_LENGTH + TAG_LENGTH;
  if (datagram.length < minimum) throw new WireError(`truncated: ${datagram.length} bytes, a message has at least ${minimum}`);
  if (!datagram.subarray(0, 4).equals(MAGIC)) throw new WireError('bad magic: not a vmm-mcastd message');
  const version = datagram.readUInt8(OFF_VERSION);
  if (version !== WIRE_VERSION) throw new WireError(`unsupported version ${version} (this agent speaks ${WIRE_VERSION})`);
  const type = datagram.readUInt8(OFF_TYPE);
  if (!TYPE_NAMES.has(type)) throw new WireError(`unknown message type ${type}`);
  const flags = datagram.readUInt8(OFF_FLAGS);
  if ((flags & ~FLAG_RESPONSE) !== 0) throw new WireError(`unknown flags 0x${flags.toString(16).padStart(2, '0')}`);
  const response = (flags & FLAG_RESPONSE) !== 0;
  if (response !== isReplyType(type)) throw new WireError(`${typeName(type)} with the response flag ${response ? 'set' : 'clear'}`);
  if (datagram.readUInt8(OFF_RESERVED) !== 0) throw new WireError('reserved header byte is not 0');
  const sequence = datagram.readUInt32BE(OFF_SEQUENCE);
  if (sequence === 0) throw new WireError('sequence number 0');
  const timestamp = datagram.readBigUInt64BE(OFF_TIMESTAMP);
  if (timestamp > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireError(`timestamp ${timestamp} out of range`);
  const replyBoot = datagram.readBigUInt64BE(OFF_REPLY_BOOT);
  const replySequence = datagram.readUInt32BE(OFF_REPLY_SEQUENCE);
  if (response && replySequence === 0) throw new WireError(`${typeName(type)} without the sequence number it answers`);
  if (!response && (replySequence !== 0 || replyBoot !== 0n)) throw new WireError(`${typeName(type)} carries a reply-to field`);
  const bodyLength = datagram.readUInt16BE(OFF_BODY_LENGTH);
  const limit = maxBodyLength(type as MessageType);
  if (bodyLength > limit) throw new WireError(`${typeName(type)} body of ${bodyLength} bytes exceeds ${limit}`);
  const expected = HEADER_LENGTH + bodyLength + TAG_LENGTH;
  if (datagram.length < expected) throw new WireError(`truncated: header announces ${bodyLength} body bytes, datagram has ${datagram.length} of ${expected} bytes`);
  if (datagram.length > expected) throw new WireError(`${datagram.length - expected} bytes after the tag`);
  const frame: Frame = {
    type: type as MessageType,
    senderId: datagram.subarray(OFF_SENDER, OFF_SENDER + SENDER_ID_LENGTH),
    bootId: datagram.readBigUInt64BE(OFF_BOOT),
    sequence,
    timestamp: Number(timestamp),
    body: datagram.subarray(HEADER_LENGTH, HEADER_LENGTH + bodyLength),
    signed: datagram.subarray(0, HEADER_LENGTH + bodyLength),
    tag: datagram.subarray(HEADER_LENGTH + bodyLength),
  };
  if (response) frame.replyTo = { bootId: replyBoot, sequence: replySequence };
  return frame;
}

/** The frame's typed message (body parsed and checked). Does not check the tag. */
export function messageOf(frame: Frame): Message {
  const message = {
    type: frame.type,
    senderId: Buffer.from(frame.senderId),
    bootId: frame.bootId,
    sequence: frame.sequence,
    timestamp: frame.timestamp,
    body: decodeBody(frame.type, frame.body),
  };
  return (frame.replyTo ? { ...message, replyTo: frame.replyTo } : message) as Message;
}

/** Parses and checks a datagram without checking its tag (tools and tests; the endpoint checks the tag first). */
export function decodeMessage(datagram: Buffer): Message {
  return messageOf(readFrame(datagram));
}

/** The datagram for a message, tag included. Throws WireError if a field is out of range or the body invalid. */
export function encodeMessage(message: Message, tagger: Tagger): Buffer {
  const { type } = message;
  if (!TYPE_NAMES.has(type)) throw new WireError(`unknown message type ${String(type)}`);
  if (message.senderId.length !== SENDER_ID_LENGTH) throw new WireError(`sender id must be ${SENDER_ID_LENGTH} bytes`);
  if (!Number.isInteger(message.sequence) || message.sequence < 1 || message.sequence > MAX_SEQUENCE) throw new WireError(`sequence ${message.sequence} out of range`);
  if (!Number.isSafeInteger(message.timestamp) || message.timestamp < 0) throw new WireError(`timestamp ${message.timestamp} out of range`);
  if (message.bootId < 0n || message.bootId >= 1n << 64n) throw new WireError('boot id out of range');
  const response = isReplyType(type);
  if (response !== (message.replyTo !== undefined)) throw new WireError(`${typeName(type)} ${response ? 'needs' : 'must not have'} a reply-to field`);
  const body = encodeBody(type, message.body);
  const datagram = Buffer.alloc(HEADER_LENGTH + body.length + TAG_LENGTH);
  MAGIC.copy(datagram, 0);
  datagram.writeUInt8(WIRE_VERSION, OFF_VERSION);
  datagram.writeUInt8(type, OFF_TYPE);
  datagram.writeUInt8(response ? FLAG_RESPONSE : 0, OFF_FLAGS);
  message.senderId.copy(datagram, OFF_SENDER);
  datagram.writeBigUInt64BE(message.bootId, OFF_BOOT);
  datagram.writeUInt32BE(message.sequence, OFF_SEQUENCE);
  datagram.writeBigUInt64BE(BigInt(message.timestamp), OFF_TIMESTAMP);
  if (message.replyTo) {
    if (message.replyTo.sequence < 1 || message.replyTo.sequence > MAX_SEQUENCE) throw new WireError(`reply-to sequence ${message.replyTo.sequence} out of range`);
    datagram.writeBigUInt64BE(message.replyTo.bootId, OFF_REPLY_BOOT);
    datagram.writeUInt32BE(message.replyTo.sequence, OFF_REPLY_SEQUENCE);
  }
  datagram.writeUInt16BE(body.length, OFF_BODY_LENGTH);
  body.copy(datagram, HEADER_LENGTH);
  const tag = tagger.tag(datagram.subarray(0, HEADER_LENGTH + body.length));
  if (tag.length !== TAG_LENGTH) throw new WireError(`tagger returned ${tag.length} bytes, not ${TAG_LENGTH}`);
  tag.copy(datagram, HEADER_LENGTH + body.length);
  return datagram;
}
