// What a session is told: where the master is, what to register, and how
// patient to be. Defaults live in AgentxSession's constructor.
import type { Duplex } from 'stream';
import type { AgentxLog } from './log';
import type { Oid } from './pdu';
import type { AgentxAddress } from './transport';

export interface Registration {
  subtree: Oid;
  /** Lower is preferred (RFC 2741 §7.1.4.1); 127 is the customary default. */
  priority?: number;
  /** Seconds the master waits for this region; 0 means the session's timeout. */
  timeout?: number;
  rangeSubid?: number;
  upperBound?: number;
  context?: Buffer;
  instance?: boolean;
}

export interface AgentCapabilities {
  id: Oid;
  description: string;
  context?: Buffer;
}

export interface SessionOptions {
  /** "unix:/path", "tcp:host:port" or a bare socket path. */
  address: string;
  description: string;
  /** o.id of the Open-PDU; empty when the subagent has no identifier. */
  id?: Oid;
  /** o.timeout of the Open-PDU in seconds (0: the master's default). */
  timeoutSeconds?: number;
  pingIntervalMs?: number;
  requestTimeoutMs?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  maxPayloadBytes?: number;
  /** Notifications kept while the master is away, oldest dropped first. */
  maxQueuedNotifications?: number;
  log?: AgentxLog;
  /** Replaces the socket, for tests with an in-memory stream. */
  connect?: (address: AgentxAddress) => Duplex;
}
