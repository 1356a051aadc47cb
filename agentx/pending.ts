// Requests a subagent sent to the master and not yet answered, keyed by
// packetID (RFC 2741 §6.1: the master echoes it in its Response). Each one
// times out on its own, so a lost answer never leaves a caller waiting.
import type { ResponsePdu } from './pdu';

export class AgentxTimeoutError extends Error {}
export class AgentxNotOpenError extends Error {}

interface Pending {
  resolve(pdu: ResponsePdu): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  what: string;
}

export class PendingRequests {
  private readonly byPacketId = new Map<number, Pending>();
  private lastPacketId = 0;

  /** A fresh packetID (never 0, wrapping at 2^32). */
  nextPacketId(): number {
    this.lastPacketId = (this.lastPacketId + 1) >>> 0 || 1;
    return this.lastPacketId;
  }

  /** Waits for the Response to `packetId`; rejects with AgentxTimeoutError after `timeoutMs`. */
  wait(packetId: number, what: string, timeoutMs: number): Promise<ResponsePdu> {
    return new Promise<ResponsePdu>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.byPacketId.delete(packetId);
        reject(new AgentxTimeoutError(`${what}: no answer from the master within ${timeoutMs} ms`));
      }, timeoutMs);
      this.byPacketId.set(packetId, { resolve, reject, timer, what });
    });
  }

  /** Hands a Response to its waiter; false when nobody waits for it (e.g. it came after the timeout). */
  settle(pdu: ResponsePdu): boolean {
    const p = this.byPacketId.get(pdu.packetId);
    if (!p) return false;
    this.byPacketId.delete(pdu.packetId);
    clearTimeout(p.timer);
    p.resolve(pdu);
    return true;
  }

  /** The connection is gone: every waiter learns it now rather than at its timeout. */
  rejectAll(why: string): void {
    for (const [id, p] of this.byPacketId) {
      clearTimeout(p.timer);
      this.byPacketId.delete(id);
      p.reject(new AgentxNotOpenError(`${p.what}: ${why}`));
    }
  }
}
