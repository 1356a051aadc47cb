// Proxy joins: the host joins a VM's groups on a bridge, on the VM's behalf.
// A socket membership is all it takes — the kernel then answers the
// querier's queries and sends its own reports on that link, so the router
// builds the tree — and the kernel drops it when the process ends, which
// is why an agent that dies leaves no join of this kind behind.
import * as dgram from 'dgram';
import * as os from 'os';
import { familyOf, type Family } from './groups';

function key(group: string, bridge: string): string {
  return `${group}%${bridge}`;
}

/** The address IP_ADD_MEMBERSHIP names an IPv4 interface by. */
function ipv4AddressOf(device: string): string {
  const address = os.networkInterfaces()[device]?.find((a) => a.family === 'IPv4');
  if (address === undefined) {
    throw new Error(`${device} has no IPv4 address: an IPv4 proxy join names its interface by address — give the bridge one`);
  }
  return address.address;
}

export class ProxyJoins {
  private readonly sockets = new Map<Family, dgram.Socket>();
  /** Holders per membership: two migrations may need one group on one bridge. */
  private readonly holders = new Map<string, number>();

  private async socket(family: Family): Promise<dgram.Socket> {
    let s = this.sockets.get(family);
    if (s === undefined) {
      s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', reuseAddr: true });
      this.sockets.set(family, s);
      const bound = s;
      // Bound to a port nothing sends to: the socket exists for its memberships, not to receive.
      await new Promise<void>((resolve, reject) => {
        bound.once('error', reject);
        bound.bind(0, () => {
          bound.off('error', reject);
          resolve();
        });
      });
    }
    return s;
  }

  /** Joins `group` on `bridge` (once per group and bridge, however many hold it). */
  async join(group: string, bridge: string): Promise<void> {
    const k = key(group, bridge);
    const n = this.holders.get(k) ?? 0;
    if (n === 0) {
      const family = familyOf(group);
      if (family === null) throw new Error(`"${group}" is not an IP address`);
      const s = await this.socket(family);
      s.addMembership(group, family === 4 ? ipv4AddressOf(bridge) : `::%${bridge}`);
    }
    this.holders.set(k, n + 1);
  }

  /** Drops one hold; the membership goes with the last. */
  leave(group: string, bridge: string): void {
    const k = key(group, bridge);
    const n = this.holders.get(k) ?? 0;
    if (n === 0) return;
    if (n > 1) {
      this.holders.set(k, n - 1);
      return;
    }
    this.holders.delete(k);
    const family = familyOf(group);
    const s = family === null ? undefined : this.sockets.get(family);
    try {
      s?.dropMembership(group, family === 4 ? ipv4AddressOf(bridge) : `::%${bridge}`);
    } catch {
      // The bridge (or its address) is gone, and the membership with it.
    }
  }

  held(group: string, bridge: string): boolean {
    return this.holders.has(key(group, bridge));
  }

  close(): void {
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
    this.holders.clear();
  }
}
