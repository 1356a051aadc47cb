// The UDP side of vmm-mcastd: one port on an IPv6 and an IPv4 socket, every
// message tagged on the way out and checked on the way in, requests matched
// to replies, retransmitted with backoff and answered at most once.
//
// Retransmission and replay: a retransmitted request is the same datagram,
// byte for byte (same sequence number, timestamp and tag). The receiver keeps
// the reply to each request it handled, keyed by (sender, boot, sequence),
// for as long as that request's timestamp stays fresh, and a datagram that
// matches a kept entry — same tag, same source address and port — gets the
// kept reply again instead of reaching the replay window or the handler. An
// attacker replaying a captured request therefore gains only a second copy of
// a reply already sent to the same place; with any other source, or once the
// entry is gone, the replay window refuses it. docs/mcastd-protocol.md has the
// whole argument.
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import type { CollectorLog, CollectorLogLevel } from '../collectors/paths';
import { ReplayGuard, type MessageKey, type ReplayGuardOptions, type ReplayRefusalReason } from './auth';
import {
  MAX_SEQUENCE,
  MessageType,
  REPLY_TYPE,
  WireError,
  addressFamily,
  canonicalAddress,
  encodeMessage,
  isDatagramType,
  isMulticastAddress,
  isReplyType,
  isRequestType,
  messageOf,
  readFrame,
  typeName,
  type BodyByType,
  type DatagramType,
  type Frame,
  type Message,
  type PeerAddress,
  type ReplyTo,
  type ReplyType,
  type ReplyTypeOf,
  type RequestType,
} from './wire';

export type RefusalReason =
  | ReplayRefusalReason
  | 'malformed'
  | 'bad-tag'
  | 'unsolicited-response'
  | 'unexpected-responder'
  | 'no-handler';

const REFUSAL_REASONS: readonly RefusalReason[] = [
  'malformed',
  'bad-tag',
  'stale',
  'replay',
  'outside-window',
  'peer-limit',
  'unsolicited-response',
  'unexpected-responder',
  'no-handler',
];

/** Who sent a message: its source address and port, and its authenticated sender id. */
export interface RemotePeer extends PeerAddress {
  family: 4 | 6;
  /** Sender id, hex. */
  senderId: string;
}

export type ReplyBody<T extends RequestType> = BodyByType[ReplyTypeOf<T>];
/** Returns the reply body, or undefined to stay silent (an AGENT_SEARCH for a VM this host does not run). */
export type RequestHandler<T extends RequestType> = (
  body: BodyByType[T],
  from: RemotePeer,
) => Promise<ReplyBody<T> | undefined> | ReplyBody<T> | undefined;
export type DatagramHandler<T extends DatagramType> = (body: BodyByType[T], from: RemotePeer) => void;

export interface Reply<T extends RequestType> {
  body: ReplyBody<T>;
  from: RemotePeer;
}

export interface RequestOptions {
  /** Wait before the first retransmission; each further wait doubles. Default 200 ms. */
  timeoutMs?: number;
  /** Retransmissions after the first send. Default 4 (sends at 0, 0.2, 0.6, 1.4, 3 s; gives up at 6.2 s). */
  retries?: number;
}

export class RequestTimeoutError extends Error {
  override readonly name = 'RequestTimeoutError';
}

/** The peer answered with ERROR. */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
}

export interface SignallingOptions {
  key: MessageKey;
  /** senderIdFor(the configured agent name). */
  senderId: Buffer;
  /** UDP port of both sockets; 0 picks a free one (tests). */
  port: number;
  /** Address of the IPv6 socket; null for none. Default "::". */
  bindAddress6?: string | null;
  /** Address of the IPv4 socket; null for none. Default "0.0.0.0". */
  bindAddress4?: string | null;
  log: CollectorLog;
  /** Names a sender id for log lines (e.g. from the configured peers); the hex prefix otherwise. */
  senderName?: (senderId: Buffer) => string | undefined;
  clock?: () => number;
  replay?: Partial<Omit<ReplayGuardOptions, 'clock'>>;
  /** One log line per refusal reason and source address per this interval. Default 60 s. */
  logIntervalMs?: number;
  /** Replies kept for retransmitted requests. Default 1024. */
  replyCacheLimit?: number;
}

export interface SignallingCounters {
  /** Datagrams sent, retransmissions included. */
  sent: number;
  /** Messages accepted (tag, freshness and sequence checks passed). */
  received: number;
  /** Request retransmissions sent. */
  retransmitted: number;
  /** Retransmitted requests answered from the reply cache. */
  answeredFromCache: number;
  /** Requests that got no answer after all retransmissions. */
  timedOut: number;
  /** Datagrams the kernel refused to send. */
  sendErrors: number;
  refused: Record<RefusalReason, number>;
}

const DEFAULT_TIMEOUT_MS = 200;
const DEFAULT_RETRIES = 4;

function endpointText(address: string, port: number): string {
  return addressFamily(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

function randomBootId(): bigint {
  for (;;) {
    const id = randomBytes(8).readBigUInt64BE(0);
    if (id !== 0n) return id;
  }
}

/** IPv6 link-local unicast (fe80::/10) and link-local-scope multicast (ff02::/16) cannot be used without a scope. */
function needsScope(canonical: string): boolean {
  return /^fe[89ab][0-9a-f]:/.test(canonical) || /^ff[0-9a-f]2:/.test(canonical);
}

/**
 * One log line per (reason, source address) and interval, then a count of
 * what was suppressed on the next line, so a flood costs a few lines. Sources
 * beyond `maxKeys` share one entry per reason.
 */
class RefusalLog {
  readonly #entries = new Map<string, { since: number; suppressed: number }>();

  constructor(
    private readonly log: CollectorLog,
    private readonly intervalMs: number,
    private readonly clock: () => number,
    private readonly maxKeys = 256,
  ) {}

  report(level: CollectorLogLevel, reason: string, source: string, text: string): void {
    const now = this.clock();
    let key = `${reason} ${source}`;
    if (!this.#entries.has(key) && this.#entries.size >= this.maxKeys) {
      for (const [old, entry] of this.#entries) {
        if (now - entry.since >= this.intervalMs && entry.suppressed === 0) this.#entries.delete(old);
      }
      if (this.#entries.size >= this.maxKeys) key = `${reason} *`;
    }
    const entry = this.#entries.get(key);
    if (entry && now - entry.since < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    const more = entry && entry.suppressed > 0 ? ` (and ${entry.suppressed} more like it in the last ${Math.round((now - entry.since) / 1000)} s)` : '';
    const many = key.endsWith(' *') ? ' (many sources; further ones are counted together)' : '';
    this.log(level, `signalling: ${text}${more}${many}`);
    this.#entries.set(key, { since: now, suppressed: 0 });
  }
}

interface PendingRequest {
  peer: PeerAddress;
  /** Canonical address the reply must come from; undefined for a multicast request (any agent may answer). */
  expectedFrom: string | undefined;
  requestType: RequestType;
  datagram: Buffer;
  socket: dgram.Socket;
  timer: NodeJS.Timeout | undefined;
  settle: (message: Message | Error, from?: RemotePeer) => void;
}

interface KeptReply {
  /** "address port" the request came from; a copy from elsewhere is a replay. */
  source: string;
  requestTag: Buffer;
  /** Local time after which the request's timestamp is stale, so no copy of it can reach the cache. */
  expiresAt: number;
  replyTo: ReplyTo;
  requestType: RequestType;
  /** undefined while the handler runs; null if the handler chose not to answer. */
  reply: { type: ReplyType; body: BodyByType[ReplyType] } | null | undefined;
}

type AnyRequestHandler = (body: BodyByType[RequestType], from: RemotePeer) => Promise<BodyByType[ReplyType] | undefined> | BodyByType[ReplyType] | undefined;
type AnyDatagramHandler = (body: BodyByType[DatagramType], from: RemotePeer) => void;

export class SignallingEndpoint {
  readonly senderId: Buffer;
  readonly #key: MessageKey;
  readonly #log: CollectorLog;
  readonly #clock: () => number;
  readonly #guard: ReplayGuard;
  readonly #refusals: RefusalLog;
  readonly #senderName: (senderId: Buffer) => string | undefined;
  readonly #replyCacheLimit: number;
  readonly #sockets: { 4?: dgram.Socket; 6?: dgram.Socket };
  readonly #pending = new Map<string, PendingRequest>();
  readonly #kept = new Map<string, KeptReply>();
  readonly #requestHandlers = new Map<RequestType, AnyRequestHandler>();
  readonly #datagramHandlers = new Map<DatagramType, AnyDatagramHandler>();
  readonly #counters: SignallingCounters = {
    sent: 0,
    received: 0,
    retransmitted: 0,
    answeredFromCache: 0,
    timedOut: 0,
    sendErrors: 0,
    refused: Object.fromEntries(REFUSAL_REASONS.map((reason) => [reason, 0])) as Record<RefusalReason, number>,
  };
  #bootId = randomBootId();
  #sequence = 0;
  #closed = false;

  /** The port both sockets are bound to. */
  readonly port: number;

  private constructor(options: SignallingOptions, sockets: { 4?: dgram.Socket; 6?: dgram.Socket }, port: number) {
    this.senderId = Buffer.from(options.senderId);
    this.#key = options.key;
    this.#log = options.log;
    this.#clock = options.clock ?? Date.now;
    this.#guard = new ReplayGuard({ ...options.replay, clock: this.#clock });
    this.#refusals = new RefusalLog(options.log, options.logIntervalMs ?? 60_000, this.#clock);
    this.#senderName = options.senderName ?? (() => undefined);
    this.#replyCacheLimit = options.replyCacheLimit ?? 1024;
    this.#sockets = sockets;
    this.port = port;
    for (const socket of [sockets[4], sockets[6]]) {
      if (!socket) continue;
      socket.on('message', (datagram, rinfo) => this.#receive(socket, datagram, rinfo));
      socket.on('error', (err) => this.#log('error', `signalling: socket error: ${errorText(err)}`));
    }
  }

  /** Binds the sockets (both on one port) and returns the endpoint. */
  static async open(options: SignallingOptions): Promise<SignallingEndpoint> {
    if (options.senderId.length !== 16) throw new RangeError('sender id must be 16 bytes (senderIdFor(agent name))');
    const address6 = options.bindAddress6 === undefined ? '::' : options.bindAddress6;
    const address4 = options.bindAddress4 === undefined ? '0.0.0.0' : options.bindAddress4;
    if (address6 === null && address4 === null) throw new RangeError('signalling needs an IPv6 or an IPv4 bind address');
    // With port 0 the IPv6 socket picks the port and the IPv4 one must get the same; if it is taken, try another.
    for (let attempt = 1; ; attempt++) {
      const sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
      try {
        let port = options.port;
        if (address6 !== null) {
          sockets[6] = await bindSocket('udp6', address6, port);
          port = sockets[6].address().port;
        }
        if (address4 !== null) {
          sockets[4] = await bindSocket('udp4', address4, port);
          port = sockets[4].address().port;
        }
        return new SignallingEndpoint(options, sockets, port);
      } catch (err) {
        for (const socket of [sockets[4], sockets[6]]) socket?.close();
        const retry = options.port === 0 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE' && attempt < 10;
        if (!retry) throw new Error(`signalling: cannot bind UDP port ${options.port}: ${errorText(err)}`);
      }
    }
  }

  get bootId(): bigint {
    return this.#bootId;
  }

  counters(): SignallingCounters {
    return { ...this.#counters, refused: { ...this.#counters.refused } };
  }

  /** Registers the handler of one request type (replacing any earlier one). */
  onRequest<T extends RequestType>(type: T, handler: RequestHandler<T>): void {
    this.#requestHandlers.set(type, handler as unknown as AnyRequestHandler);
  }

  onDatagram<T extends DatagramType>(type: T, handler: DatagramHandler<T>): void {
    this.#datagramHandlers.set(type, handler as AnyDatagramHandler);
  }

  /**
   * Sends a request and resolves with the first valid reply, retransmitting
   * the same datagram after timeoutMs, 2×, 4×… until `retries` are spent.
   * To a multicast peer (AGENT_SEARCH to ff02::1%eth0) any agent may answer.
   * Rejects with RemoteError if the peer answers ERROR, RequestTimeoutError
   * if nobody answers.
   */
  async request<T extends RequestType>(peer: PeerAddress, type: T, body: BodyByType[T], options: RequestOptions = {}): Promise<Reply<T>> {
    if (this.#closed) throw new Error('signalling endpoint is closed');
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const retries = options.retries ?? DEFAULT_RETRIES;
    if (!(timeoutMs > 0)) throw new RangeError(`request timeout ${timeoutMs} ms is not positive`);
    if (!Number.isInteger(retries) || retries < 0) throw new RangeError(`retries ${retries} is not a non-negative integer`);
    // Retransmissions repeat the first datagram's timestamp; the last must still be fresh with margin to spare.
    const lastSendAt = timeoutMs * (2 ** retries - 1);
    if (lastSendAt > this.#guard.maxSkewMs / 2) {
      throw new RangeError(`a retry schedule of ${retries} retransmissions from ${timeoutMs} ms sends the last one at ${lastSendAt} ms; at most ${this.#guard.maxSkewMs / 2} ms`);
    }
    const { socket, canonical } = this.#route(peer);
    const sequence = this.#nextSequence();
    const bootId = this.#bootId;
    const datagram = encodeMessage({ type, senderId: this.senderId, bootId, sequence, timestamp: this.#clock(), body } as Message, this.#key);
    const pendingKey = `${bootId}:${sequence}`;
    const what = `${typeName(type)} (sequence ${sequence}) to ${endpointText(peer.address, peer.port)}`;

    return new Promise<Reply<T>>((resolve, reject) => {
      const pending: PendingRequest = {
        peer,
        expectedFrom: isMulticastAddress(canonical) ? undefined : canonical,
        requestType: type,
        datagram,
        socket,
        timer: undefined,
        settle: (outcome, from) => {
          clearTimeout(pending.timer);
          this.#pending.delete(pendingKey);
          if (outcome instanceof Error) reject(outcome);
          else if (outcome.type === MessageType.ERROR) reject(new RemoteError(`${what}: ${endpointText(from?.address ?? '?', from?.port ?? 0)} answered: ${outcome.body.error}`));
          else resolve({ body: outcome.body as ReplyBody<T>, from: from as RemotePeer });
        },
      };
      this.#pending.set(pendingKey, pending);
      let attempt = 0;
      const expire = (): void => {
        if (attempt === retries) {
          this.#counters.timedOut++;
          const total = timeoutMs * (2 ** (retries + 1) - 1);
          pending.settle(new RequestTimeoutError(`no answer to ${what} after ${retries + 1} sends over ${total} ms`));
          return;
        }
        attempt++;
        this.#counters.retransmitted++;
        this.#transmit(socket, datagram, peer.address, peer.port);
        pending.timer = setTimeout(expire, timeoutMs * 2 ** attempt);
      };
      this.#transmit(socket, datagram, peer.address, peer.port);
      pending.timer = setTimeout(expire, timeoutMs);
    });
  }

  /** Sends a message that is neither acknowledged nor retransmitted (RELAY_DATA). */
  sendDatagram<T extends DatagramType>(peer: PeerAddress, type: T, body: BodyByType[T]): void {
    if (this.#closed) throw new Error('signalling endpoint is closed');
    const { socket } = this.#route(peer);
    const datagram = encodeMessage(
      { type, senderId: this.senderId, bootId: this.#bootId, sequence: this.#nextSequence(), timestamp: this.#clock(), body } as Message,
      this.#key,
    );
    this.#transmit(socket, datagram, peer.address, peer.port);
  }

  /**
   * Joins a multicast group on which AGENT_SEARCH is received: for IPv6 give
   * the interface name, for IPv4 the interface's address. ff02::1 (all
   * nodes) needs no join: every IPv6 host is a member on every link.
   */
  joinSearchGroup(group: string, iface: string): void {
    this.#searchMembership(group, iface, 'add');
  }

  leaveSearchGroup(group: string, iface: string): void {
    this.#searchMembership(group, iface, 'drop');
  }

  /** Rejects every pending request and closes the sockets. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of [...this.#pending.values()]) pending.settle(new Error('signalling endpoint closed'));
    await Promise.all(
      [this.#sockets[4], this.#sockets[6]].filter((s): s is dgram.Socket => s !== undefined).map((socket) => new Promise<void>((done) => socket.close(() => done()))),
    );
  }

  // ---- sending -------------------------------------------------------------------

  #searchMembership(group: string, iface: string, action: 'add' | 'drop'): void {
    const family = addressFamily(group);
    if (!isMulticastAddress(group) || group.includes('%')) throw new RangeError(`${group} is not a multicast group address (give the interface separately)`);
    const socket = family === 4 ? this.#sockets[4] : this.#sockets[6];
    if (!socket) throw new Error(`no IPv${family} signalling socket to join ${group} on`);
    const where = family === 6 ? `::%${iface}` : iface;
    if (action === 'add') socket.addMembership(group, where);
    else socket.dropMembership(group, where);
  }

  #route(peer: PeerAddress): { socket: dgram.Socket; canonical: string } {
    const canonical = canonicalAddress(peer.address);
    if (canonical === undefined) throw new RangeError(`${peer.address} is not an IP address`);
    if (!Number.isInteger(peer.port) || peer.port < 1 || peer.port > 65535) throw new RangeError(`${peer.port} is not a UDP port`);
    const family = addressFamily(canonical);
    if (family === 6 && !canonical.includes('%') && needsScope(canonical)) {
      throw new RangeError(`${peer.address} is link-local: name the interface, e.g. ${canonical}%eth0`);
    }
    const socket = family === 4 ? this.#sockets[4] : this.#sockets[6];
    if (!socket) throw new Error(`no IPv${family} signalling socket for ${peer.address}`);
    return { socket, canonical };
  }

  #nextSequence(): number {
    // A boot never reuses a sequence number: when they run out (after 2^32 messages,
    // some 25 days of a relay at 2,000 datagrams/s) the endpoint becomes a new boot.
    if (this.#sequence >= MAX_SEQUENCE) {
      this.#bootId = randomBootId();
      this.#sequence = 0;
      this.#log('info', 'signalling: sequence numbers exhausted; continuing under a new boot id');
    }
    return ++this.#sequence;
  }

  #transmit(socket: dgram.Socket, datagram: Buffer, address: string, port: number): void {
    this.#counters.sent++;
    socket.send(datagram, port, address, (err) => {
      if (!err) return;
      this.#counters.sendErrors++;
      this.#refusals.report('warn', 'send', address, `cannot send to ${endpointText(address, port)}: ${errorText(err)}`);
    });
  }

  #sendReply(kept: KeptReply, socket: dgram.Socket, address: string, port: number): void {
    if (!kept.reply) return;
    // Each copy of a reply is a new message (own sequence number and timestamp) answering the same request.
    const message = {
      type: kept.reply.type,
      senderId: this.senderId,
      bootId: this.#bootId,
      sequence: this.#nextSequence(),
      timestamp: this.#clock(),
      replyTo: kept.replyTo,
      body: kept.reply.body,
    } as Message;
    let datagram: Buffer;
    try {
      datagram = encodeMessage(message, this.#key);
    } catch (err) {
      // A handler returned a body its own peer would refuse: a bug here, reported to the peer as ERROR.
      this.#log('error', `signalling: invalid ${typeName(kept.reply.type)} for ${typeName(kept.requestType)}: ${errorText(err)}`);
      kept.reply = { type: MessageType.ERROR, body: { error: `internal error answering ${typeName(kept.requestType)}` } };
      this.#sendReply(kept, socket, address, port);
      return;
    }
    this.#transmit(socket, datagram, address, port);
  }

  // ---- receiving -----------------------------------------------------------------

  #peerLabel(senderId: Buffer, address: string, port: number): string {
    const name = this.#senderName(senderId) ?? senderId.toString('hex').slice(0, 12);
    return `${name} at ${endpointText(address, port)}`;
  }

  #refuse(reason: RefusalReason, address: string, text: string, level: CollectorLogLevel = 'warn'): void {
    this.#counters.refused[reason]++;
    this.#refusals.report(level, reason, address, text);
  }

  #receive(socket: dgram.Socket, datagram: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.#closed) return;
    const { address, port } = rinfo;
    const source = endpointText(address, port);
    let frame: Frame;
    try {
      frame = readFrame(datagram);
    } catch (err) {
      this.#refuse('malformed', address, `dropped datagram from ${source}: ${errorText(err)}`);
      return;
    }
    if (!this.#key.verify(frame.signed, frame.tag)) {
      this.#refuse('bad-tag', address, `dropped ${typeName(frame.type)} from ${source}: bad tag`);
      return;
    }
    // Our own multicast AGENT_SEARCH comes back through multicast loopback.
    if (frame.bootId === this.#bootId && frame.senderId.equals(this.senderId)) return;
    const peer = this.#peerLabel(frame.senderId, address, port);
    const what = typeName(frame.type);

    const keptKey = `${frame.senderId.toString('hex')}/${frame.bootId}/${frame.sequence}`;
    if (isRequestType(frame.type)) {
      const stale = this.#guard.checkFreshness(frame.timestamp);
      if (stale) {
        this.#refuse('stale', address, `dropped ${what}: ${stale.detail} from ${peer}`);
        return;
      }
      const kept = this.#kept.get(keptKey);
      if (kept) {
        this.#retransmission(kept, frame, socket, rinfo, peer);
        return;
      }
    }
    const refusal = this.#guard.admit(frame.senderId, frame.bootId, frame.sequence, frame.timestamp, peer);
    if (refusal) {
      this.#refuse(refusal.reason, address, `dropped ${what}: ${refusal.detail}`);
      return;
    }
    let message: Message;
    try {
      message = messageOf(frame);
    } catch (err) {
      const detail = err instanceof WireError ? err.message : errorText(err);
      this.#refuse('malformed', address, `dropped ${what} from ${peer}: ${detail}`);
      return;
    }
    this.#counters.received++;
    const from: RemotePeer = { address, port, family: rinfo.family === 'IPv4' ? 4 : 6, senderId: frame.senderId.toString('hex') };
    if (isRequestType(message.type)) this.#handleRequest(message, frame, keptKey, socket, from, peer);
    else if (isReplyType(message.type)) this.#handleReply(message, from, peer);
    else if (isDatagramType(message.type)) this.#handleDatagram(message, from, peer);
  }

  #retransmission(kept: KeptReply, frame: Frame, socket: dgram.Socket, rinfo: dgram.RemoteInfo, peer: string): void {
    if (kept.source !== `${rinfo.address} ${rinfo.port}` || !kept.requestTag.equals(frame.tag)) {
      const why = kept.source !== `${rinfo.address} ${rinfo.port}` ? 'from another source than the original' : 'with different content';
      this.#refuse('replay', rinfo.address, `dropped ${typeName(frame.type)}: replayed sequence ${frame.sequence} from ${peer} (${why})`);
      return;
    }
    // Still being handled: the reply goes out when the handler finishes.
    if (kept.reply === undefined) return;
    this.#counters.answeredFromCache++;
    this.#sendReply(kept, socket, rinfo.address, rinfo.port);
  }

  #keep(key: string, kept: KeptReply): void {
    const now = this.#clock();
    for (const [old, entry] of this.#kept) {
      if (this.#kept.size < this.#replyCacheLimit && entry.expiresAt > now) break;
      // Oldest first; an entry still being handled is kept unless the cache is far over its limit.
      if (entry.expiresAt <= now || entry.reply !== undefined || this.#kept.size >= 2 * this.#replyCacheLimit) this.#kept.delete(old);
    }
    this.#kept.set(key, kept);
  }

  #handleRequest(message: Message, frame: Frame, keptKey: string, socket: dgram.Socket, from: RemotePeer, peer: string): void {
    const requestType = message.type as RequestType;
    const kept: KeptReply = {
      source: `${from.address} ${from.port}`,
      requestTag: Buffer.from(frame.tag),
      expiresAt: Math.max(this.#clock(), frame.timestamp) + this.#guard.maxSkewMs,
      replyTo: { bootId: frame.bootId, sequence: frame.sequence },
      requestType,
      reply: undefined,
    };
    this.#keep(keptKey, kept);
    const handler = this.#requestHandlers.get(requestType);
    if (!handler) {
      this.#refuse('no-handler', from.address, `${typeName(requestType)} from ${peer}: not served here`, 'info');
      kept.reply = { type: MessageType.ERROR, body: { error: `${typeName(requestType)} is not served by this agent` } };
      this.#sendReply(kept, socket, from.address, from.port);
      return;
    }
    const answer = (reply: KeptReply['reply']): void => {
      kept.reply = reply;
      if (!this.#closed) this.#sendReply(kept, socket, from.address, from.port);
    };
    new Promise<BodyByType[ReplyType] | undefined>((resolve) => resolve(handler(message.body as BodyByType[RequestType], from))).then(
      (body) => answer(body === undefined ? null : { type: REPLY_TYPE[requestType], body }),
      (err) => {
        this.#log('warn', `signalling: ${typeName(requestType)} from ${peer} failed: ${errorText(err)}`);
        answer({ type: MessageType.ERROR, body: { error: errorText(err) } });
      },
    );
  }

  #handleReply(message: Message, from: RemotePeer, peer: string): void {
    const replyTo = message.replyTo as ReplyTo;
    const pending = this.#pending.get(`${replyTo.bootId}:${replyTo.sequence}`);
    const what = typeName(message.type);
    if (!pending) {
      // Usually a second copy of a reply already taken (the request was retransmitted before the first copy arrived).
      this.#refuse('unsolicited-response', from.address, `dropped ${what} from ${peer}: sequence ${replyTo.sequence} is not awaiting an answer`, 'debug');
      return;
    }
    if (pending.expectedFrom !== undefined && (canonicalAddress(from.address) !== pending.expectedFrom || from.port !== pending.peer.port)) {
      this.#refuse('unexpected-responder', from.address, `dropped ${what} from ${peer}: the request went to ${endpointText(pending.peer.address, pending.peer.port)}`);
      return;
    }
    if (message.type !== MessageType.ERROR && message.type !== REPLY_TYPE[pending.requestType]) {
      this.#refuse('malformed', from.address, `dropped ${what} from ${peer}: it does not answer ${typeName(pending.requestType)}`);
      return;
    }
    pending.settle(message, from);
  }

  #handleDatagram(message: Message, from: RemotePeer, peer: string): void {
    const type = message.type as DatagramType;
    const handler = this.#datagramHandlers.get(type);
    if (!handler) {
      this.#refuse('no-handler', from.address, `dropped ${typeName(type)} from ${peer}: not served here`, 'info');
      return;
    }
    try {
      handler(message.body as BodyByType[DatagramType], from);
    } catch (err) {
      this.#refusals.report('warn', 'handler', from.address, `${typeName(type)} from ${peer}: handler failed: ${errorText(err)}`);
    }
  }
}

function bindSocket(type: 'udp4' | 'udp6', address: string, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
    const failed = (err: Error): void => {
      socket.close();
      reject(err);
    };
    socket.once('error', failed);
    socket.bind({ port, address, exclusive: true }, () => {
      socket.off('error', failed);
      resolve(socket);
    });
  });
}
