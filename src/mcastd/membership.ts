// A host's membership of a multicast group on one interface: an ordinary
// socket membership (IP_ADD_MEMBERSHIP / IPV6_JOIN_GROUP through node:dgram),
// which makes the kernel report the group with IGMP/MLD on that link, so a
// router or a snooping bridge forwards the stream there. The socket itself
// reads nothing useful (it is bound to an ephemeral port); whoever wants the
// datagrams captures them (capture.ts). One socket per membership: Linux
// allows only net.ipv4.igmp_max_memberships (20) IPv4 groups per socket.
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as os from 'node:os';
import { canonicalGroup } from './capture';

/** The first IPv4 address of `iface`, or null (IPv4 joins and sends name the interface by an address). */
export function ipv4AddressOf(iface: string): string | null {
  return os.networkInterfaces()[iface]?.find((a) => a.family === 'IPv4')?.address ?? null;
}

/** The argument node:dgram takes to name `iface` for `group`'s family. */
export function multicastInterfaceFor(group: string, iface: string): string {
  if (net.isIPv6(group)) return `::%${iface}`;
  const address = ipv4AddressOf(iface);
  if (address === null) throw new Error(`${iface} has no IPv4 address to use for ${group}`);
  return address;
}

/** Binds `socket` to a port the kernel picks; rejects with the bind error. */
export function bindEphemeral(socket: dgram.Socket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

export class GroupMembership {
  private left = false;

  private constructor(readonly group: string, readonly iface: string, private readonly socket: dgram.Socket, private readonly via: string) {}

  /** Joins `group` on `iface`; rejects when the interface cannot be used for it. */
  static async join(group: string, iface: string): Promise<GroupMembership> {
    const canonical = canonicalGroup(group);
    const via = multicastInterfaceFor(canonical, iface);
    const socket = dgram.createSocket({ type: net.isIPv6(canonical) ? 'udp6' : 'udp4', reuseAddr: true });
    // Whatever reaches this socket's ephemeral port is not ours to read.
    socket.on('message', () => undefined);
    try {
      await bindEphemeral(socket);
      socket.addMembership(canonical, via);
    } catch (err) {
      socket.close();
      throw new Error(`cannot join ${canonical} on ${iface}: ${err instanceof Error ? err.message : String(err)}`);
    }
    socket.on('error', () => undefined);
    return new GroupMembership(canonical, iface, socket, via);
  }

  /** Leaves the group (the kernel sends the leave/done at once); idempotent. */
  leave(): Promise<void> {
    if (this.left) return Promise.resolve();
    this.left = true;
    try {
      this.socket.dropMembership(this.group, this.via);
    } catch {
      // The interface went away: the membership went with it.
    }
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
