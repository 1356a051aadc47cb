// The destination's side of a unicast relay: asks the relay server to
// forward a group, renews the lease while the group is needed, and puts each
// relayed datagram back on the bridges that wait for it (TTL / hop limit 1).
import type { Endpoint } from './config';
import type { AgentContext } from './context';
import { MessageType, type PeerAddress, type RelayData } from './wire';

interface Subscription {
  group: string;
  server: Endpoint;
  /** bridge%migration pairs that need the group. */
  holders: Set<string>;
  bridges: Map<string, number>;
  renew: NodeJS.Timeout;
}

export class RelayClient {
  private readonly subs = new Map<string, Subscription>();

  constructor(private readonly ctx: AgentContext) {}

  /** Asks the configured relay server for `group` on behalf of a migration; resolves with the server. */
  async subscribe(group: string, bridge: string, migrationId: string): Promise<PeerAddress> {
    const { ctx } = this;
    const server = ctx.config.relayServer;
    if (server === null) throw new Error('no relay-server is configured');
    let sub = this.subs.get(group);
    if (sub === undefined) {
      const record = { group, server: server.address, port: server.port, state: 'requested' as const, bridge, migration: migrationId };
      ctx.state.relays.push(record);
      ctx.stateChanged();
      try {
        await this.request(group, server);
      } catch (err) {
        ctx.state.relays = ctx.state.relays.filter((r) => r !== record);
        ctx.stateChanged();
        throw err;
      }
      const renewMs = (ctx.config.relayLeaseSeconds * 1000) / 3;
      sub = {
        group, server, holders: new Set(), bridges: new Map(),
        renew: setInterval(() => {
          this.request(group, server).catch((err: Error) =>
            ctx.log('warn', `relay of ${group} from ${server.address}: renewal failed (${err.message}); retrying in ${Math.round(renewMs / 1000)} s`));
        }, renewMs),
      };
      sub.renew.unref();
      this.subs.set(group, sub);
      for (const r of ctx.state.relays) if (r.group === group) r.state = 'active';
      ctx.stateChanged();
      ctx.log('info', `relay: ${server.address} forwards ${group} to this host`);
    } else if (!ctx.state.relays.some((r) => r.group === group && r.bridge === bridge && r.migration === migrationId)) {
      ctx.state.relays.push({ group, server: server.address, port: server.port, state: 'active', bridge, migration: migrationId });
      ctx.stateChanged();
    }
    sub.holders.add(`${bridge}%${migrationId}`);
    sub.bridges.set(bridge, (sub.bridges.get(bridge) ?? 0) + 1);
    return { address: server.address, port: server.port };
  }

  serving(group: string, bridge: string, migrationId: string): boolean {
    return this.subs.get(group)?.holders.has(`${bridge}%${migrationId}`) ?? false;
  }

  unsubscribe(group: string, bridge: string, migrationId: string): void {
    const sub = this.subs.get(group);
    if (sub === undefined || !sub.holders.delete(`${bridge}%${migrationId}`)) return;
    const n = (sub.bridges.get(bridge) ?? 1) - 1;
    if (n <= 0) sub.bridges.delete(bridge);
    else sub.bridges.set(bridge, n);
    const { ctx } = this;
    ctx.state.relays = ctx.state.relays.filter((r) => !(r.group === group && r.bridge === bridge && r.migration === migrationId));
    ctx.stateChanged();
    if (sub.holders.size > 0) return;
    clearInterval(sub.renew);
    this.subs.delete(group);
    this.stop(group, sub.server);
  }

  /** Tells a relay server to stop forwarding `group` here (best effort: its lease ends it anyway). */
  stop(group: string, server: Endpoint): void {
    this.ctx.signalling.request(server, MessageType.RELAY_STOP, { group, subscriber: this.subscriberAddress(server) })
      .then(() => this.ctx.log('info', `relay: ${server.address} stopped forwarding ${group}`))
      .catch((err: Error) => this.ctx.log('warn', `relay: telling ${server.address} to stop ${group} failed (${err.message}); ` +
        `its lease ends it within ${this.ctx.config.relayLeaseSeconds} s`));
  }

  /** A RELAY_DATA datagram: re-sent on each bridge that waits for its group, if it came from that group's server. */
  onData(data: RelayData, from: Endpoint): void {
    const sub = this.subs.get(data.group);
    if (sub === undefined || sub.server.address.replace(/%.*$/, '') !== from.address.replace(/%.*$/, '')) return;
    for (const bridge of sub.bridges.keys()) {
      this.ctx.resenders.on(bridge).then((r) => r.send(data.group, data.port, data.payload), () => undefined);
    }
  }

  private async request(group: string, server: Endpoint): Promise<void> {
    const reply = await this.ctx.signalling.request(server, MessageType.RELAY_REQUEST, {
      group, subscriber: this.subscriberAddress(server), ttlSeconds: this.ctx.config.relayLeaseSeconds,
    });
    if (!reply.body.accepted) throw new Error(`relay server ${server.address} refused ${group}: ${reply.body.reason ?? 'no reason given'}`);
  }

  /**
   * Where the relay should send: the unspecified address of the server's
   * family asks it to answer to the address the request came from, which is
   * the one that reaches this host.
   */
  private subscriberAddress(server: Endpoint): PeerAddress {
    return { address: server.address.includes(':') ? '::' : '0.0.0.0', port: this.ctx.config.port };
  }

  close(): void {
    for (const sub of this.subs.values()) {
      clearInterval(sub.renew);
      this.stop(sub.group, sub.server);
    }
    this.subs.clear();
  }
}
