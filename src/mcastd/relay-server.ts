// The relay server role (`vmm-mcastd relay`), for a host on a network that
// receives multicast: it joins the groups agents ask for on its
// relay-interface and forwards each datagram to every subscriber as an
// authenticated RELAY_DATA message, while their leases last.
import type { Endpoint } from './config';
import type { AgentContext } from './context';
import { GroupReceiver } from './relay';
import { MessageType, type RelayRequest, type RelayResponse, type RelayStop } from './wire';

interface Subscriber {
  peer: Endpoint;
  expires: number;
}

const SWEEP_MS = 1000;

/**
 * Where a subscriber's datagrams go: always the address the request came
 * from (the unspecified address in the request says just that), so that a
 * key holder cannot point a relay's stream at a third party.
 */
function subscriberOf(requested: { address: string; port: number }, from: Endpoint): Endpoint | null {
  const bare = (a: string): string => a.replace(/%.*$/, '').replace(/^::ffff:/, '');
  const unspecified = requested.address === '::' || requested.address === '0.0.0.0';
  if (!unspecified && bare(requested.address) !== bare(from.address)) return null;
  return { address: from.address, port: requested.port };
}

export class RelayServerRole {
  /** Open only while some group is relayed: an idle capture would wake for every multicast datagram. */
  private receiver: GroupReceiver | null = null;
  private readonly groups = new Map<string, Map<string, Subscriber>>();
  private readonly sweep: NodeJS.Timeout;
  private forwarded = 0;

  constructor(private readonly ctx: AgentContext, private readonly iface: string) {
    this.sweep = setInterval(() => this.expire(), SWEEP_MS);
    this.sweep.unref();
  }

  async handleRequest(body: RelayRequest, from: Endpoint): Promise<RelayResponse> {
    const lease = Math.min(body.ttlSeconds ?? this.ctx.config.relayLeaseSeconds, this.ctx.config.relayLeaseSeconds);
    const peer = subscriberOf(body.subscriber, from);
    if (peer === null) {
      return { group: body.group, accepted: false, reason: `a relay forwards only to the requester (${from.address}), not to ${body.subscriber.address}` };
    }
    let subs = this.groups.get(body.group);
    if (subs === undefined) {
      // Listed before the join, so that no other group's leave closes the receiver meanwhile.
      subs = new Map();
      this.groups.set(body.group, subs);
      try {
        this.receiver ??= new GroupReceiver(this.iface, (group, port, payload) => this.forward(group, port, payload), { log: this.ctx.log });
        await this.receiver.join(body.group);
      } catch (err) {
        await this.leaveIfUnused(body.group);
        return { group: body.group, accepted: false, reason: `cannot join ${body.group} on ${this.iface}: ${(err as Error).message}` };
      }
    }
    const key = `${peer.address} ${peer.port}`;
    if (!subs.has(key)) this.ctx.log('info', `relay: forwarding ${body.group} to ${peer.address} port ${peer.port} (lease ${lease} s)`);
    subs.set(key, { peer, expires: Date.now() + lease * 1000 });
    this.publish();
    return { group: body.group, accepted: true, ttlSeconds: lease };
  }

  async handleStop(body: RelayStop, from: Endpoint): Promise<void> {
    const peer = subscriberOf(body.subscriber, from);
    const subs = peer === null ? undefined : this.groups.get(body.group);
    if (peer !== null && subs?.delete(`${peer.address} ${peer.port}`)) {
      this.ctx.log('info', `relay: ${peer.address} no longer needs ${body.group}`);
      await this.leaveIfUnused(body.group);
      this.publish();
    }
  }

  private forward(group: string, port: number, payload: Buffer): void {
    const subs = this.groups.get(group);
    if (subs === undefined) return;
    for (const s of subs.values()) this.ctx.signalling.sendDatagram(s.peer, MessageType.RELAY_DATA, { group, port, payload });
    this.forwarded++;
  }

  private expire(): void {
    const now = Date.now();
    for (const [group, subs] of this.groups) {
      for (const [key, s] of subs) {
        if (s.expires > now) continue;
        subs.delete(key);
        this.ctx.log('info', `relay: the lease of ${s.peer.address} for ${group} ran out; forwarding to it stops`);
      }
      if (subs.size === 0) void this.leaveIfUnused(group).then(() => this.publish());
    }
  }

  private async leaveIfUnused(group: string): Promise<void> {
    if ((this.groups.get(group)?.size ?? 0) > 0) return;
    this.groups.delete(group);
    const receiver = this.receiver;
    if (receiver === null) return;
    await receiver.leave(group).catch(() => undefined);
    if (this.groups.size === 0 && this.receiver === receiver) {
      this.receiver = null;
      await receiver.close();
    }
  }

  private publish(): void {
    this.ctx.state.relaySubscribers = [...this.groups].flatMap(([group, subs]) =>
      [...subs.values()].map((s) => ({ group, subscriber: `${s.peer.address} ${s.peer.port}`, expires: s.expires })));
    this.ctx.stateChanged();
  }

  summary(): { group: string; subscribers: number }[] {
    return [...this.groups].map(([group, subs]) => ({ group, subscribers: subs.size }));
  }

  get datagramsForwarded(): number {
    return this.forwarded;
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    this.groups.clear();
    await this.receiver?.close();
    this.receiver = null;
  }
}
