// A libvirt connection that stays open: opens it, subscribes domain events,
// notices when it dies and reopens it with backoff.
//
// Death is noticed two ways: libvirt's close callback (remote connections:
// EOF, keepalive timeout, socket error), and callers reporting a call that
// failed with a connection-class error, which is confirmed with
// virConnectIsAlive before acting on it.

import type { AgentxLog } from '../../agentx';
import { closeConnection, connectionFacts, isAlive, openConnection, type ConnectionFacts } from './calls';
import { DomainEvents } from './domain-events';
import { LibvirtError } from './errors';
import { eventLoop } from './event-loop';
import type { ConnectPtr } from './ffi';

export interface ConnectionOptions {
  /** Delays before reconnect attempts, in ms; the last one repeats. */
  reconnectDelaysMs: readonly number[];
  log: AgentxLog;
}

type State = 'closed' | 'connected' | 'reconnecting';

export class LibvirtConnection {
  readonly events: DomainEvents;
  private uri: string | null = null;
  private readOnly = true;
  private state: State = 'closed';
  private conn: ConnectPtr | null = null;
  private lastFacts: ConnectionFacts | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectFailure: string | null = null;
  private readonly changeListeners = new Set<(connected: boolean) => void>();

  constructor(private readonly options: ConnectionOptions) {
    this.events = new DomainEvents((conn, why) => this.lost(conn, why), options.log);
  }

  /** Opens `uri` (null: libvirt's default URI). Rejects with a LibvirtError, leaving nothing open. */
  async open(uri: string | null, readOnly: boolean): Promise<void> {
    if (this.state !== 'closed') throw new Error('libvirt connection already open');
    this.uri = uri;
    this.readOnly = readOnly;
    eventLoop.acquire();
    try {
      this.adopt(await this.connect());
    } catch (err) {
      await this.events.releaseCallbacks();
      await eventLoop.release();
      throw err;
    }
  }

  /** The live connection, or null while closed or reconnecting. */
  get current(): ConnectPtr | null {
    return this.state === 'connected' ? this.conn : null;
  }

  /** Facts of the current connection, or of the last one while reconnecting. */
  get facts(): ConnectionFacts | null {
    return this.lastFacts;
  }

  /** The URI open() was given (null: libvirt's default), as against the one libvirt reports. */
  get requestedUri(): string | null {
    return this.uri;
  }

  describeUri(): string {
    return this.lastFacts?.uri ?? this.uri ?? 'the default libvirt URI';
  }

  /** Called with false when the connection is lost and true when it is back; returns an unsubscribe function. */
  onChange(cb: (connected: boolean) => void): () => void {
    this.changeListeners.add(cb);
    return () => this.changeListeners.delete(cb);
  }

  private changed(connected: boolean): void {
    for (const cb of this.changeListeners) cb(connected);
  }

  /** A call on `conn` failed with `err`: if that means the connection died, start reconnecting. */
  async checkAfterError(conn: ConnectPtr, err: unknown): Promise<void> {
    if (!(err instanceof LibvirtError && err.isConnectionError)) return;
    const alive = await isAlive(conn).catch(() => false);
    if (!alive) this.lost(conn, err.libvirtMessage);
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const conn = this.conn;
    this.conn = null;
    if (conn !== null) await this.disconnect(conn);
    await this.events.releaseCallbacks();
    await eventLoop.release();
  }

  /** Opens and subscribes a new connection without adopting it. */
  private async connect(): Promise<{ conn: ConnectPtr; facts: ConnectionFacts }> {
    const conn = await openConnection(this.uri, this.readOnly);
    try {
      const facts = await connectionFacts(conn);
      await this.events.subscribe(conn);
      return { conn, facts };
    } catch (err) {
      await this.disconnect(conn);
      throw err;
    }
  }

  private adopt({ conn, facts }: { conn: ConnectPtr; facts: ConnectionFacts }): void {
    this.conn = conn;
    this.lastFacts = facts;
    this.state = 'connected';
  }

  private async disconnect(conn: ConnectPtr): Promise<void> {
    await this.events.unsubscribe(conn);
    await closeConnection(conn).catch(() => undefined);
  }

  private lost(conn: ConnectPtr, why: string): void {
    if (this.state !== 'connected' || this.conn !== conn) return;
    this.options.log('warn', `connection to ${this.describeUri()} lost (${why}); reconnecting`);
    this.state = 'reconnecting';
    this.conn = null;
    void this.disconnect(conn);
    this.scheduleReconnect(0);
    this.changed(false);
  }

  private scheduleReconnect(attempt: number): void {
    const delays = this.options.reconnectDelaysMs;
    const delay = delays[Math.min(attempt, delays.length - 1)] ?? 1000;
    this.reconnectTimer = setTimeout(() => void this.reconnect(attempt), delay);
  }

  private async reconnect(attempt: number): Promise<void> {
    this.reconnectTimer = null;
    if (this.state !== 'reconnecting') return;
    let fresh;
    try {
      fresh = await this.connect();
    } catch (err) {
      // The first failure is news; repeats of the same failure are not.
      const message = err instanceof LibvirtError ? err.libvirtMessage : err instanceof Error ? err.message : String(err);
      if (message !== this.reconnectFailure) {
        this.options.log('warn', `cannot reconnect to ${this.describeUri()}: ${message}; retrying`);
        this.reconnectFailure = message;
      }
      if (this.state === 'reconnecting') this.scheduleReconnect(attempt + 1);
      return;
    }
    if (this.state !== 'reconnecting') {
      // close() ran while we were connecting.
      await this.disconnect(fresh.conn);
      return;
    }
    this.adopt(fresh);
    this.reconnectFailure = null;
    this.options.log('info', `connection to ${this.describeUri()} restored`);
    this.changed(true);
  }
}
