// What vmm-mcastd asks of a Linux bridge: its ports and their MACs (sysfs),
// which groups each port receives (the snooping database, over rtnetlink),
// temporary MDB entries for a VM's new port (rtnetlink: no process to start
// between the port coming up and the stream reaching it), and how many
// IGMP/MLD reports a port has received (iproute2's `ip stats`, polled only
// while a migrated VM's report is awaited).
import { execFile } from 'child_process';
import { promises as fs } from 'fs';
import * as path from 'path';
import { addMdbEntry, BridgeMdbCollector, deleteMdbEntry } from '../collectors/bridge-mdb';
import type { MdbEntry } from '../snapshot';
import { canonicalGroup } from './groups';

const COMMAND_TIMEOUT_MS = 5000;

export interface BridgePort {
  name: string;
  ifIndex: number;
  /** Lowercase colon-separated MAC of the port device itself. */
  mac: string;
  /** Carrier and administratively up: the bridge can forward to it. */
  up: boolean;
}

function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

export class BridgeHost {
  constructor(private readonly sysRoot = '/sys') {}

  async exists(bridge: string): Promise<boolean> {
    try {
      await fs.access(path.join(this.sysRoot, 'class/net', bridge, 'bridge'));
      return true;
    } catch {
      return false;
    }
  }

  /** The bridge's ports now; an empty list when it has none or does not exist. */
  async ports(bridge: string): Promise<BridgePort[]> {
    let names: string[];
    try {
      names = await fs.readdir(path.join(this.sysRoot, 'class/net', bridge, 'brif'));
    } catch {
      return [];
    }
    const out: BridgePort[] = [];
    for (const name of names) {
      const dir = path.join(this.sysRoot, 'class/net', name);
      try {
        const [mac, ifIndex, operstate] = await Promise.all(
          ['address', 'ifindex', 'operstate'].map((f) => fs.readFile(path.join(dir, f), 'utf8')),
        );
        out.push({ name, ifIndex: Number(ifIndex.trim()), mac: mac.trim().toLowerCase(), up: operstate.trim() === 'up' });
      } catch {
        // The port left the bridge while it was being read.
      }
    }
    return out;
  }

  async ifIndex(device: string): Promise<number | null> {
    try {
      return Number((await fs.readFile(path.join(this.sysRoot, 'class/net', device, 'ifindex'), 'utf8')).trim());
    } catch {
      return null;
    }
  }

  /** Every bridge's multicast database: memberships learned from reports and configured ones. */
  mdb(): Promise<MdbEntry[]> {
    return new BridgeMdbCollector().collect();
  }

  /** Groups the port `portIfIndex` receives (canonical text), from the snooping database. */
  async portGroups(portIfIndex: number): Promise<string[]> {
    const groups = new Set<string>();
    for (const e of await this.mdb()) {
      if (e.portIfIndex === portIfIndex && e.portIfIndex !== e.bridgeIfIndex) groups.add(canonicalGroup(e.group));
    }
    return [...groups].sort();
  }

  /** A temporary entry: it ages out like a learned one unless the VM's own reports refresh it. */
  async addPortGroup(bridge: string, port: string, group: string): Promise<void> {
    const [b, p] = await this.indexes(bridge, port);
    addMdbEntry(b, p, group);
  }

  /** Removes the entry; one already gone (aged out, the port removed) is no error. */
  async removePortGroup(bridge: string, port: string, group: string): Promise<void> {
    const indexes = await this.indexes(bridge, port).catch(() => null);
    // No bridge or no port any more: no entry either.
    if (indexes !== null) deleteMdbEntry(indexes[0], indexes[1], group);
  }

  private async indexes(bridge: string, port: string): Promise<[number, number]> {
    const [b, p] = await Promise.all([this.ifIndex(bridge), this.ifIndex(port)]);
    if (b === null) throw new Error(`no bridge ${bridge}`);
    if (p === null) throw new Error(`no port ${port}`);
    return [b, p];
  }

  /** Whether the bridge counts IGMP/MLD messages per port (needed to see a VM's own report). */
  async statsEnabled(bridge: string): Promise<boolean> {
    try {
      return (await fs.readFile(path.join(this.sysRoot, 'class/net', bridge, 'bridge/multicast_stats_enabled'), 'utf8')).trim() === '1';
    } catch {
      return false;
    }
  }

  /** IGMP and MLD reports the bridge has received on `port` so far (every version). */
  async reportsReceived(port: string): Promise<number> {
    const text = await run('ip', ['-j', 'stats', 'show', 'dev', port, 'group', 'xstats_slave', 'subgroup', 'bridge', 'suite', 'mcast']);
    const data = JSON.parse(text) as { multicast?: Record<string, Record<string, number> | number> }[];
    const mc = data[0]?.multicast;
    if (mc === undefined) throw new Error(`ip stats: no multicast statistics for ${port} (is mcast_stats_enabled set on its bridge?)`);
    let sum = 0;
    for (const key of ['igmp_reports', 'mld_reports']) {
      const counters = mc[key];
      if (typeof counters !== 'object') continue;
      for (const [name, v] of Object.entries(counters)) if (name.startsWith('rx_')) sum += v;
    }
    return sum;
  }
}

/**
 * libvirt gives a guest NIC's host-side tap the guest's MAC with the first
 * byte set to 0xfe (so the bridge never takes the guest's MAC as its own):
 * the destination knows the migrated VM's port by it.
 */
export function tapMacOf(guestMac: string): string {
  const bytes = guestMac.toLowerCase().split(':');
  return ['fe', ...bytes.slice(1)].join(':');
}
