// The two ends of a unicast relay, minus the signalling between them.
// - GroupReceiver (relay server side): joins groups on an interface so the
//   network delivers their streams there, captures every datagram to them
//   whatever the port, and hands (group, port, payload) on; the daemon wraps
//   those into authenticated messages to its subscribers.
// - Resender (the agent that asked for a relay): puts each relayed datagram
//   back on its link as plain multicast, TTL / hop limit 1 so it goes no
//   further than the VM's link, loopback off so this host's own sockets do
//   not see it twice.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import type { CollectorLog } from '../collectors/paths';
import { canonicalGroup, CapturedDatagram, MulticastCapture } from './capture';
import { bindEphemeral, GroupMembership, ipv4AddressOf } from './membership';

export type RelayedDatagramHandler = (group: string, port: number, payload: Buffer) => void;

export interface GroupReceiverOptions {
  log: CollectorLog;
  /** Passed to the capture (default 4 MiB). */
  receiveBufferBytes?: number;
}

/** Receives the streams of the groups it joined on one interface. Needs CAP_NET_RAW. */
export class GroupReceiver {
  private readonly capture: MulticastCapture;
  private readonly memberships = new Map<string, GroupMembership>();
  /** Groups whose fragmented datagrams were already logged as not relayed. */
  private readonly fragmentLogged = new Set<string>();
  private readonly log: CollectorLog;

  constructor(readonly iface: string, private readonly onDatagram: RelayedDatagramHandler, options: GroupReceiverOptions) {
    this.log = options.log;
    this.capture = new MulticastCapture(iface, (d) => this.received(d), { log: options.log, receiveBufferBytes: options.receiveBufferBytes });
  }

  /** Joins `group` on the interface (if not yet) and starts handing its datagrams on; returns its canonical form. */
  async join(group: string): Promise<string> {
    const canonical = canonicalGroup(group);
    if (this.memberships.has(canonical)) return canonical;
    // Captured before the report goes out, so the stream's first datagram is not missed.
    this.capture.add(canonical);
    try {
      this.memberships.set(canonical, await GroupMembership.join(canonical, this.iface));
    } catch (err) {
      this.capture.remove(canonical);
      throw err;
    }
    this.log('info', `relay: joined ${canonical} on ${this.iface}`);
    return canonical;
  }

  async leave(group: string): Promise<void> {
    const canonical = canonicalGroup(group);
    const membership = this.memberships.get(canonical);
    if (membership === undefined) return;
    this.memberships.delete(canonical);
    this.fragmentLogged.delete(canonical);
    await membership.leave();
    this.capture.remove(canonical);
    this.log('info', `relay: left ${canonical} on ${this.iface}`);
  }

  get groups(): string[] {
    return [...this.memberships.keys()];
  }

  private received(d: CapturedDatagram): void {
    // What this host sends on the interface is not the network's stream.
    if (d.outgoing) return;
    if (d.fragment) {
      // Only the first part was captured; relaying it would hand the VM a broken datagram.
      if (!this.fragmentLogged.has(d.group)) {
        this.fragmentLogged.add(d.group);
        this.log('warn', `relay: ${d.group} on ${this.iface} carries fragmented datagrams (port ${d.port}); those are not relayed`);
      }
      return;
    }
    this.onDatagram(d.group, d.port, d.payload);
  }

  /** Leaves every group and stops the capture. */
  async close(): Promise<void> {
    for (const group of [...this.memberships.keys()]) await this.leave(group);
    await this.capture.close();
  }
}

export interface ResenderStats {
  sent: number;
  failed: number;
}

/**
 * Re-sends datagrams as link-local multicast on one interface: one socket per
 * family (IPv4 only when the interface has an IPv4 address, which names it).
 */
export class Resender {
  private readonly counters: ResenderStats = { sent: 0, failed: 0 };
  /** A send failed and no send has succeeded since: the next failure is not logged again. */
  private failing = false;

  private constructor(
    readonly iface: string,
    private readonly v4: dgram.Socket | null,
    private readonly v6: dgram.Socket,
    private readonly log: CollectorLog,
  ) {}

  static async open(iface: string, log: CollectorLog): Promise<Resender> {
    const address = ipv4AddressOf(iface);
    const v6 = await linkLocalSender('udp6', `::%${iface}`);
    let v4: dgram.Socket | null = null;
    if (address !== null) {
      try {
        v4 = await linkLocalSender('udp4', address);
      } catch (err) {
        v6.close();
        throw err;
      }
    } else {
      log('warn', `resender: ${iface} has no IPv4 address; IPv4 groups cannot be re-sent on it`);
    }
    return new Resender(iface, v4, v6, log);
  }

  /** Sends `payload` to group:port on the interface; a failure is counted and logged, never thrown. */
  send(group: string, port: number, payload: Buffer): void {
    const socket = net.isIPv6(group) ? this.v6 : this.v4;
    if (socket === null) {
      this.failed(`${group}:${port}: ${net.isIPv4(group) ? `${this.iface} has no IPv4 address` : 'not an IP address'}`);
      return;
    }
    socket.send(payload, port, group, (err) => {
      if (err) {
        this.failed(`${group}:${port}: ${err.message}`);
      } else {
        this.counters.sent++;
        this.failing = false;
      }
    });
  }

  stats(): ResenderStats {
    return { ...this.counters };
  }

  private failed(why: string): void {
    this.counters.failed++;
    if (this.failing) return;
    this.failing = true;
    this.log('warn', `resender on ${this.iface}: cannot send to ${why}`);
  }

  async close(): Promise<void> {
    const closing = [this.v4, this.v6].filter((s): s is dgram.Socket => s !== null)
      .map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    await Promise.all(closing);
  }
}

/** A socket that sends multicast out of `via` with TTL / hop limit 1 and no local copy. */
async function linkLocalSender(type: 'udp4' | 'udp6', via: string): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type });
  try {
    await bindEphemeral(socket);
    socket.setMulticastInterface(via);
    socket.setMulticastTTL(1);
    socket.setMulticastLoopback(false);
  } catch (err) {
    socket.close();
    throw new Error(`cannot open a ${type} multicast sender on ${via}: ${err instanceof Error ? err.message : String(err)}`);
  }
  // Send errors come to each send's callback; this keeps a stray one from ending the process.
  socket.on('error', () => undefined);
  socket.on('message', () => undefined);
  return socket;
}
