// One AgentX session with a master agent, kept open for the life of the
// process: connect, Open, Register, AddAgentCaps; on any loss of the master
// (socket closed, Close received, Ping unanswered, unparseable stream) start
// over with backoff and register everything again. The process never exits
// because the master went away.
import { EventEmitter } from 'events';
import type { Duplex } from 'stream';
import { performance } from 'perf_hooks';
import { decodePdu, encodePdu, PduDecodeError, pduTypeName } from './codec';
import { FramingError, PduFramer } from './framer';
import { answerRequest, expectsResponse, isMasterRequest, response } from './dispatch';
import type { RequestHandler } from './handler';
import { AgentxLog, silentLog } from './log';
import { formatOid } from './oid';
import { AgentxNotOpenError, AgentxTimeoutError, PendingRequests } from './pending';
import {
  CloseReason,
  Oid,
  Pdu,
  PduType,
  ResponseError,
  ResponsePdu,
  ValueType,
  VarBind,
} from './pdu';
import type { AgentCapabilities, Registration, SessionOptions } from './session-options';
import { AgentxAddress, connectAgentx, formatAgentxAddress, parseAgentxAddress } from './transport';

export type { Registration, AgentCapabilities, SessionOptions } from './session-options';

export type SessionState = 'idle' | 'connecting' | 'opening' | 'open' | 'closed';

export { AgentxTimeoutError, AgentxNotOpenError };
export class AgentxResponseError extends Error {
  constructor(readonly error: ResponseError, readonly index: number, what: string) {
    super(`${what} refused by the master: ${ResponseError[error] ?? error}`);
  }
}

interface QueuedNotify {
  varbinds: VarBind[];
  context?: Buffer;
  resolve(): void;
  reject(err: Error): void;
}

const SYS_UPTIME_0: Oid = [1, 3, 6, 1, 2, 1, 1, 3, 0];
const SNMP_TRAP_OID_0: Oid = [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0];

type PduBody = Pdu extends infer P ? (P extends Pdu ? Omit<P, 'sessionId' | 'transactionId' | 'packetId'> : never) : never;

export class AgentxSession extends EventEmitter {
  private readonly address: AgentxAddress;
  private readonly log: AgentxLog;
  private readonly opts: Required<Omit<SessionOptions, 'connect' | 'log' | 'id' | 'address'>> & { id: Oid };
  private socket: Duplex | null = null;
  private framer: PduFramer;
  private sessionId = 0;
  private readonly pending = new PendingRequests();
  private readonly registrations: Registration[] = [];
  private readonly capabilities: AgentCapabilities[] = [];
  private readonly notifyQueue: QueuedNotify[] = [];
  private stateValue: SessionState = 'idle';
  private wantOpen = false;
  private retryDelay: number;
  private retryTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private lastUnreachable = '';
  private everOpened = false;
  private masterClock: { ticks: number; at: number } | null = null;
  private readonly warnedTypes = new Set<number>();

  constructor(options: SessionOptions, private readonly handler: RequestHandler) {
    super();
    this.address = parseAgentxAddress(options.address);
    this.log = options.log ?? silentLog;
    this.opts = {
      description: options.description,
      id: options.id ?? [],
      timeoutSeconds: options.timeoutSeconds ?? 5,
      pingIntervalMs: options.pingIntervalMs ?? 15000,
      requestTimeoutMs: options.requestTimeoutMs ?? 5000,
      reconnectInitialMs: options.reconnectInitialMs ?? 250,
      reconnectMaxMs: options.reconnectMaxMs ?? 3000,
      maxPayloadBytes: options.maxPayloadBytes ?? 1 << 20,
      maxQueuedNotifications: options.maxQueuedNotifications ?? 1000,
    };
    this.connectFn = options.connect ?? connectAgentx;
    this.framer = new PduFramer(this.opts.maxPayloadBytes);
    this.retryDelay = this.opts.reconnectInitialMs;
  }

  private readonly connectFn: (address: AgentxAddress) => Duplex;

  get state(): SessionState {
    return this.stateValue;
  }

  get isOpen(): boolean {
    return this.stateValue === 'open';
  }

  /** Connects and keeps the session open until close(). */
  start(): void {
    if (this.wantOpen) return;
    this.wantOpen = true;
    this.connect();
  }

  /** Adds a region; registered now if open, and again after every reconnect. */
  async register(reg: Registration): Promise<void> {
    this.registrations.push(reg);
    if (this.isOpen) await this.sendRegister(reg);
  }

  async unregister(reg: Registration): Promise<void> {
    const i = this.registrations.indexOf(reg);
    if (i >= 0) this.registrations.splice(i, 1);
    if (!this.isOpen) return;
    const res = await this.request({
      type: PduType.Unregister,
      flags: 0,
      context: reg.context,
      priority: reg.priority ?? 127,
      rangeSubid: reg.rangeSubid ?? 0,
      subtree: reg.subtree,
      upperBound: reg.upperBound,
    }, `Unregister ${formatOid(reg.subtree)}`);
    if (res.error !== ResponseError.NoError) {
      throw new AgentxResponseError(res.error, res.index, `Unregister ${formatOid(reg.subtree)}`);
    }
  }

  /** Adds a sysORTable row (RFC 2741 §6.2.14), kept across reconnects. */
  async addAgentCaps(caps: AgentCapabilities): Promise<void> {
    this.capabilities.push(caps);
    if (this.isOpen) await this.sendAgentCaps(caps);
  }

  /**
   * Sends a notification: sysUpTime.0 and snmpTrapOID.0 first, as RFC 2741
   * §6.2.10 requires, then `varbinds`. sysUpTime.0 is the master's clock, not
   * ours (the master reports it in every Response). While the master is away
   * the notification waits in a bounded queue.
   */
  notify(trapOid: Oid, varbinds: VarBind[], context?: Buffer): Promise<void> {
    const all: VarBind[] = [
      { oid: SYS_UPTIME_0, type: ValueType.TimeTicks, value: this.masterUptime() },
      { oid: SNMP_TRAP_OID_0, type: ValueType.ObjectIdentifier, value: trapOid },
      ...varbinds,
    ];
    return new Promise<void>((resolve, reject) => {
      const item: QueuedNotify = { varbinds: all, context, resolve, reject };
      if (this.isOpen) {
        this.sendNotify(item);
        return;
      }
      if (this.notifyQueue.length >= this.opts.maxQueuedNotifications) {
        const dropped = this.notifyQueue.shift();
        this.log('warn', `AgentX master unreachable: dropping the oldest of ${this.opts.maxQueuedNotifications} queued notifications`);
        dropped?.reject(new AgentxNotOpenError('notification dropped: queue full while the master was unreachable'));
      }
      this.notifyQueue.push(item);
    });
  }

  /** The master's sysUpTime now, in hundredths of a second (0 before the first answer). */
  masterUptime(): number {
    if (!this.masterClock) return 0;
    const elapsed = Math.floor((performance.now() - this.masterClock.at) / 10);
    return (this.masterClock.ticks + elapsed) % 0x100000000;
  }

  /** Closes the session cleanly (Close-PDU, then the socket) and stops reconnecting. */
  async close(reason: CloseReason = CloseReason.Shutdown): Promise<void> {
    this.wantOpen = false;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.stopPing();
    const socket = this.socket;
    if (socket && this.isOpen) {
      try {
        await this.request({ type: PduType.Close, flags: 0, reason }, 'Close', 1000);
      } catch (err) {
        this.log('debug', `AgentX Close not acknowledged: ${(err as Error).message}`);
      }
    }
    for (const q of this.notifyQueue.splice(0)) q.reject(new AgentxNotOpenError('session closed'));
    this.stateValue = 'closed';
    if (this.socket) {
      const s = this.socket;
      await new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.destroy();
      });
    }
  }

  // --- connection life cycle -------------------------------------------------

  private connect(): void {
    this.retryTimer = null;
    if (!this.wantOpen) return;
    this.stateValue = 'connecting';
    this.framer = new PduFramer(this.opts.maxPayloadBytes);
    let socket: Duplex;
    try {
      socket = this.connectFn(this.address);
    } catch (err) {
      this.reportUnreachable((err as Error).message);
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    let connectFailure: string | null = null;
    socket.on('connect', () => void this.opened(socket));
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', (err: Error) => {
      if (this.stateValue === 'connecting') connectFailure = err.message;
      else this.log('warn', `AgentX connection to ${formatAgentxAddress(this.address)}: ${err.message}`);
    });
    socket.on('close', () => this.closed(socket, connectFailure));
    // An injected stream may already be connected and emit nothing.
    if ((socket as { connecting?: boolean }).connecting === undefined) void this.opened(socket);
  }

  /** One log line per distinct reason while the master stays unreachable, not one per attempt. */
  private reportUnreachable(message: string): void {
    if (message === this.lastUnreachable) return;
    this.lastUnreachable = message;
    this.log('warn', `AgentX master at ${formatAgentxAddress(this.address)} unreachable (${message}); ` +
      `retrying with backoff up to ${this.opts.reconnectMaxMs} ms — ${unreachableHint(message)}`);
  }

  private scheduleReconnect(): void {
    if (!this.wantOpen || this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.opts.reconnectMaxMs, this.retryDelay * 2);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private async opened(socket: Duplex): Promise<void> {
    if (socket !== this.socket) return;
    this.stateValue = 'opening';
    this.sessionId = 0;
    try {
      const res = await this.request({
        type: PduType.Open,
        flags: 0,
        timeout: this.opts.timeoutSeconds,
        id: this.opts.id,
        description: Buffer.from(this.opts.description, 'utf8'),
      }, 'Open');
      if (res.error !== ResponseError.NoError) throw new AgentxResponseError(res.error, res.index, 'Open');
      this.sessionId = res.sessionId;
      for (const reg of this.registrations) await this.sendRegister(reg);
      for (const caps of this.capabilities) await this.sendAgentCaps(caps);
    } catch (err) {
      if (socket !== this.socket) return;
      this.log('error', `AgentX session setup failed: ${(err as Error).message}; reconnecting`);
      socket.destroy();
      return;
    }
    if (socket !== this.socket) return;
    this.stateValue = 'open';
    this.retryDelay = this.opts.reconnectInitialMs;
    this.lastUnreachable = '';
    this.log('info', `AgentX session ${this.sessionId} open with ${formatAgentxAddress(this.address)}` +
      (this.everOpened ? ' (reconnected)' : ''));
    this.everOpened = true;
    this.startPing();
    this.emit('open', this.sessionId);
    for (const q of this.notifyQueue.splice(0)) this.sendNotify(q);
  }

  private closed(socket: Duplex, connectFailure: string | null): void {
    if (socket !== this.socket) return;
    const wasOpen = this.stateValue === 'open';
    this.socket = null;
    this.stopPing();
    this.pending.rejectAll('connection to the master closed');
    if (this.stateValue !== 'closed') this.stateValue = 'idle';
    const sessionId = this.sessionId;
    this.sessionId = 0;
    if (sessionId !== 0) this.handler.sessionClosed?.(sessionId);
    if (wasOpen) {
      this.log('warn', `AgentX session ${sessionId} with ${formatAgentxAddress(this.address)} lost; reconnecting`);
      this.emit('close');
    }
    if (connectFailure !== null) this.reportUnreachable(connectFailure);
    this.scheduleReconnect();
  }

  private reset(why: string): void {
    this.log('warn', `AgentX: ${why}; dropping the connection and reconnecting`);
    this.socket?.destroy();
  }

  private startPing(): void {
    this.stopPing();
    if (this.opts.pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      this.request({ type: PduType.Ping, flags: 0 }, 'Ping').catch((err: Error) => {
        if (err instanceof AgentxTimeoutError) this.reset(`master did not answer Ping within ${this.opts.requestTimeoutMs} ms`);
      });
    }, this.opts.pingIntervalMs);
    this.pingTimer.unref();
  }

  private stopPing(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  // --- outgoing requests -----------------------------------------------------

  private async sendRegister(reg: Registration): Promise<void> {
    const what = `Register ${formatOid(reg.subtree)}`;
    const res = await this.request({
      type: PduType.Register,
      flags: reg.instance ? 0x01 : 0,
      context: reg.context,
      timeout: reg.timeout ?? 0,
      priority: reg.priority ?? 127,
      rangeSubid: reg.rangeSubid ?? 0,
      subtree: reg.subtree,
      upperBound: reg.upperBound,
    }, what);
    if (res.error !== ResponseError.NoError) {
      // A refused region is the operator's to fix (another subagent owns it);
      // the rest of the session stays useful, so log and carry on.
      this.log('error', `${what} refused by the master: ${ResponseError[res.error] ?? res.error}` +
        (res.error === ResponseError.DuplicateRegistration ? ' — another subagent already serves this subtree at this priority' : ''));
    }
  }

  private async sendAgentCaps(caps: AgentCapabilities): Promise<void> {
    const res = await this.request({
      type: PduType.AddAgentCaps,
      flags: 0,
      context: caps.context,
      id: caps.id,
      description: Buffer.from(caps.description, 'utf8'),
    }, `AddAgentCaps ${formatOid(caps.id)}`);
    if (res.error !== ResponseError.NoError) {
      this.log('warn', `AddAgentCaps ${formatOid(caps.id)} refused: ${ResponseError[res.error] ?? res.error}`);
    }
  }

  private sendNotify(item: QueuedNotify): void {
    this.request({ type: PduType.Notify, flags: 0, context: item.context, varbinds: item.varbinds }, 'Notify')
      .then((res) => {
        if (res.error === ResponseError.NoError) item.resolve();
        else item.reject(new AgentxResponseError(res.error, res.index, 'Notify'));
      }, (err: Error) => item.reject(err));
  }

  /** Sends a PDU that the master answers with a Response; resolves with it. */
  request(body: PduBody, what: string, timeoutMs = this.opts.requestTimeoutMs): Promise<ResponsePdu> {
    const socket = this.socket;
    if (!socket) return Promise.reject(new AgentxNotOpenError(`${what}: not connected to the master`));
    const packetId = this.pending.nextPacketId();
    const pdu = { ...body, sessionId: this.sessionId, transactionId: 0, packetId } as Pdu;
    const answer = this.pending.wait(packetId, what, timeoutMs);
    socket.write(encodePdu(pdu));
    return answer;
  }

  // --- incoming PDUs ---------------------------------------------------------

  private onData(socket: Duplex, chunk: Buffer): void {
    if (socket !== this.socket) return;
    let frames: Buffer[];
    try {
      frames = this.framer.push(chunk);
    } catch (err) {
      if (err instanceof FramingError) {
        this.reset(`unusable byte stream from the master (${err.message})`);
        return;
      }
      throw err;
    }
    if (frames.length > 1) (socket as { cork?: () => void }).cork?.();
    for (const frame of frames) this.onFrame(socket, frame);
    if (frames.length > 1) (socket as { uncork?: () => void }).uncork?.();
  }

  private onFrame(socket: Duplex, frame: Buffer): void {
    let pdu: Pdu;
    try {
      pdu = decodePdu(frame);
    } catch (err) {
      if (!(err instanceof PduDecodeError)) throw err;
      this.badPdu(socket, err);
      return;
    }
    if (pdu.type === PduType.Response) {
      this.masterClock = { ticks: pdu.sysUpTime, at: performance.now() };
      if (!this.pending.settle(pdu)) {
        this.log('debug', `AgentX Response for unknown packet ${pdu.packetId} ignored (late answer to a timed-out request?)`);
      }
      return;
    }
    if (pdu.type === PduType.Close) {
      this.reset(`master closed session ${pdu.sessionId} (reason ${CloseReason[pdu.reason] ?? pdu.reason})`);
      return;
    }
    if (!isMasterRequest(pdu.type)) {
      this.warnOnce(pdu.type, `AgentX ${pduTypeName(pdu.type)} from the master is not expected by a subagent; ignored`);
      return;
    }
    if (pdu.sessionId !== this.sessionId || this.stateValue !== 'open') {
      if (expectsResponse(pdu.type)) socket.write(encodePdu(response(pdu, ResponseError.NotOpen, 0, [])));
      return;
    }
    let answer;
    try {
      answer = answerRequest(pdu, this.handler);
    } catch (err) {
      this.log('error', `AgentX ${pduTypeName(pdu.type)} (packet ${pdu.packetId}) failed: ${(err as Error).stack ?? err}`);
      answer = expectsResponse(pdu.type) ? response(pdu, ResponseError.GenErr, 1, []) : null;
    }
    if (answer) socket.write(encodePdu(answer));
  }

  private badPdu(socket: Duplex, err: PduDecodeError): void {
    const h = err.header;
    if (err.unknownType && h) {
      this.warnOnce(h.type, `AgentX PDU of unknown type ${h.type} ignored`);
      return;
    }
    this.log('warn', `AgentX: malformed PDU from the master (${err.message})` + (h
      ? ` type=${h.type} flags=0x${h.flags.toString(16)} session=${h.sessionId} transaction=${h.transactionId} packet=${h.packetId} payload=${h.payloadLength}`
      : ''));
    // RFC 2741 §7.2.2: answer what can be answered with parseError.
    if (h && expectsResponse(h.type)) socket.write(encodePdu(response(h, ResponseError.ParseError, 0, [])));
  }

  private warnOnce(type: number, message: string): void {
    if (this.warnedTypes.has(type)) return;
    this.warnedTypes.add(type);
    this.log('warn', message);
  }
}

/** What to check, from the connect error's text (a socket error's code leads its message). */
function unreachableHint(message: string): string {
  if (/\b(EACCES|EPERM)\b/.test(message)) {
    return 'this user may not open the socket: snmpd\'s agentXPerms sets its mode, owner and group ' +
      '(e.g. "agentXPerms 0660 0750 root snmp" with the agent\'s user in group snmp)';
  }
  return 'is snmpd running with "master agentx"?';
}
