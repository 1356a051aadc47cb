// The multicast groups the host itself has joined, per device: the kernel's
// IGMP (/proc/net/igmp) and MLD (/proc/net/igmp6) memberships. A proxy join
// of the multicast mobility agent on a bridge shows up here.
import { endianness } from 'node:os';
import type { Collector } from './collector';
import type { HostGroup } from '../snapshot';
import { HostPaths, procFile, readKernelFile } from './paths';

const littleEndian = endianness() === 'LE';

/**
 * /proc/net/igmp: a device line ("3\tbr0       :     2      V3") followed by
 * one indented line per group whose first field is the address as the
 * kernel's u32 printed with %08X — byte-reversed on little-endian hosts.
 */
export function parseIgmp(text: string): HostGroup[] {
  const out: HostGroup[] = [];
  let device: string | null = null;
  for (const line of text.split('\n').slice(1)) {
    if (line.trim() === '') continue;
    if (!/^\s/.test(line)) {
      const m = /^\d+\s+(\S+)\s*:/.exec(line);
      device = m ? m[1] : null;
      continue;
    }
    const hex = line.trim().split(/\s+/)[0];
    if (device === null || !/^[0-9A-Fa-f]{8}$/.test(hex)) continue;
    const bytes = Buffer.from(hex, 'hex');
    if (littleEndian) bytes.reverse();
    const group = [...bytes].join('.');
    // All-hosts, joined by every interface: never served.
    if (group !== '224.0.0.1') out.push({ device, group });
  }
  return out;
}

/**
 * The groups every IPv6 interface joins (all-nodes, link- and
 * interface-local; solicited-node): never served, and with a tap per VM
 * they are most of the file, so they are dropped here rather than kept.
 */
function everyInterfaceJoins(hex: string): boolean {
  const h = hex.toLowerCase();
  return h === 'ff020000000000000000000000000001' || h === 'ff010000000000000000000000000001' ||
    h.startsWith('ff0200000000000000000001ff');
}

/** /proc/net/igmp6: "ifindex device group(32 hex digits) users flags timer" per line. */
export function parseIgmp6(text: string): HostGroup[] {
  const out: HostGroup[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || !/^[0-9a-fA-F]{32}$/.test(f[2]) || everyInterfaceJoins(f[2])) continue;
    const words: string[] = [];
    for (let i = 0; i < 32; i += 4) words.push(parseInt(f[2].slice(i, i + 4), 16).toString(16));
    out.push({ device: f[1], group: words.join(':') });
  }
  return out;
}

export class HostMulticastCollector implements Collector<void, HostGroup[]> {
  readonly name = 'host-mcast';

  constructor(private readonly paths: HostPaths) {}

  async collect(): Promise<HostGroup[]> {
    return Promise.resolve([...parseIgmp(this.read('net/igmp')), ...parseIgmp6(this.read('net/igmp6'))]);
  }

  /** A /proc file's text (read on the calling thread: see readKernelFile). */
  private read(name: string): string {
    try {
      return readKernelFile(procFile(this.paths, name));
    } catch (err) {
      // A kernel without IPv6 has no igmp6: that is no groups, not a failure.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return '';
      throw err;
    }
  }
}
