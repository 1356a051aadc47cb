// VMM-AGENTX-MIB's multicast objects: facts → rows. Pure. The per-VM table
// joins a bridge port's multicast entries to the VM NIC whose host side that
// port is (vmNetworkIndex from the index store), and the mobility agent's
// proxy joins to the VM they are held for.
import * as net from 'node:net';
import type { MibViewBuilder, Oid, Value } from '../../agentx';
import type { HostInfo, MdbEntry, MulticastFacts, ProxyJoin } from '../snapshot';
import { gauge32, integer, octets, timeTicks, uuidBytes } from './values';
import type { VmRow } from './vm-mib';
import { nicKey } from './vm-mib';
import { vmmObjects } from './vmm-agentx-oids';

const vmmMulticast = [...vmmObjects, 2];
export const vmmMcastGroupEntry = [...vmmMulticast, 1, 1];
export const vmmMcastHostGroupEntry = [...vmmMulticast, 2, 1];
export const vmmMcastAgentPresent = [...vmmMulticast, 3, 1];
export const vmmMcastProxyJoinEntry = [...vmmMulticast, 3, 2, 1];
export const vmmMcastRelayEntry = [...vmmMulticast, 3, 3, 1];

const InetAddressType = { ipv4: 1, ipv6: 2 } as const;
const GroupSource = { snooped: 1, static: 2, proxy: 3 } as const;
const GroupState = { temporary: 1, permanent: 2 } as const;
const HostSource = { host: 1, proxy: 2 } as const;
const REASON: Record<ProxyJoin['reason'], number> = { 'incoming-migration': 1, 'awaiting-report': 2 };
const RELAY_STATE = { requested: 1, active: 2, failed: 3 } as const;
const TRUE = 1;
const FALSE = 2;

/** InetAddressType and the address bytes, or null for text that is no IP address. */
function inetAddress(text: string): { type: number; bytes: Buffer } | null {
  const family = net.isIP(text);
  if (family === 4) return { type: InetAddressType.ipv4, bytes: Buffer.from(text.split('.').map(Number)) };
  if (family === 6) return { type: InetAddressType.ipv6, bytes: ipv6Bytes(text) };
  return null;
}

function ipv6Bytes(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const h = words(head);
  const t = tail === null ? [] : words(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/**
 * Groups every host joins: IPv4 all-hosts, IPv6 all-nodes (link- and
 * interface-local) and the solicited-node range ff02::1:ff00:0/104.
 */
export function isEveryHostGroup(type: number, bytes: Buffer): boolean {
  if (type === InetAddressType.ipv4) return bytes.equals(Buffer.from([224, 0, 0, 1]));
  const solicitedNode = Buffer.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
  if (bytes.subarray(0, 13).equals(solicitedNode)) return true;
  const allNodes = (scope: number): Buffer => Buffer.from([0xff, scope, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  return bytes.equals(allNodes(0x02)) || bytes.equals(allNodes(0x01));
}

/** The index part of an InetAddressType + InetAddress pair: type, length, bytes. */
function addressIndex(a: { type: number; bytes: Buffer }): number[] {
  return [a.type, a.bytes.length, ...a.bytes];
}

function compareIndex(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

interface Row {
  index: number[];
  /** undefined: no instance in that column. */
  cells: (Value | undefined)[];
}

function addRows(b: MibViewBuilder, entry: Oid, arcs: number[], rows: Row[]): void {
  rows.sort((x, y) => compareIndex(x.index, y.index));
  const table = b.table(entry, arcs, rows.length);
  let last: number[] | null = null;
  for (const r of rows) {
    // One instance per index, the first in the facts' order (sort() is stable): the kernel lists a group
    // more than once on a port ((S,G) next to (*,G), one entry per VLAN), and the proxy-join and relay
    // indexes name no bridge or server.
    if (last !== null && compareIndex(last, r.index) === 0) continue;
    table.row(r.index, r.cells);
    last = r.index;
  }
  table.end();
}

/** The ifIndex of each bridge (or other parent) a VM NIC hangs off, by name, and the NIC's own host-side ifIndex. */
function nicLinks(nic: VmRow['domain']['nics'][number], host: HostInfo, names: ReadonlyMap<number, string>): { port: number; bridge: string | null } {
  const iface = nic.hostDevice ? host.interfaces.get(nic.hostDevice) : undefined;
  let bridge = nic.source;
  if (iface && iface.parentIfIndex > 0) bridge = names.get(iface.parentIfIndex) ?? bridge;
  return { port: iface?.ifIndex ?? 0, bridge };
}

/** The multicast tables and scalar, in OID order. */
export function addMulticastObjects(b: MibViewBuilder, rows: readonly VmRow[], m: MulticastFacts, host: HostInfo): void {
  const byPort = new Map<number, MdbEntry[]>();
  for (const e of m.mdb ?? []) {
    if (e.portIfIndex === e.bridgeIfIndex) continue; // the host's own membership: in the host table
    const list = byPort.get(e.portIfIndex) ?? [];
    list.push(e);
    byPort.set(e.portIfIndex, list);
  }
  // Interface names by ifIndex, once: looking each NIC's bridge up among all interfaces is O(VMs x interfaces).
  const names = new Map<number, string>();
  for (const [name, i] of host.interfaces) names.set(i.ifIndex, name);
  const proxyByVm = new Map<string, ProxyJoin[]>();
  for (const j of m.agent?.proxyJoins ?? []) {
    const list = proxyByVm.get(j.vm) ?? [];
    list.push(j);
    proxyByVm.set(j.vm, list);
  }

  // vmmMcastGroupTable
  const groupRows: Row[] = [];
  const usedBridges = new Set<string>();
  // The usual host has no snooped, proxied or host group at all: then no NIC
  // needs looking at (at 10,000 VMs that walk cost ~10 ms a refresh).
  const anyGroup = byPort.size > 0 || proxyByVm.size > 0 || m.hostGroups.length > 0;
  for (const { domain: d, indexes } of anyGroup ? rows : []) {
    d.nics.forEach((nic, pos) => {
      const nicIndex = indexes.nics.get(nicKey(nic, pos));
      const { port, bridge } = nicLinks(nic, host, names);
      if (bridge !== null) usedBridges.add(bridge);
      if (nicIndex === undefined) return;
      const seen = new Set<string>();
      for (const e of port > 0 ? byPort.get(port) ?? [] : []) {
        const a = inetAddress(e.group);
        if (a === null || isEveryHostGroup(a.type, a.bytes)) continue;
        seen.add(a.bytes.toString('hex'));
        groupRows.push({
          index: [indexes.vmIndex, nicIndex, ...addressIndex(a)],
          cells: [
            integer(e.configured ? GroupSource.static : GroupSource.snooped),
            integer(e.permanent ? GroupState.permanent : GroupState.temporary),
            timeTicks(e.permanent ? 0 : e.timerCs),
          ],
        });
      }
      // Held by the mobility agent for this VM, on this NIC's bridge, and not reported by the VM itself yet.
      for (const j of proxyByVm.get(d.uuid) ?? []) {
        const a = inetAddress(j.group);
        if (a === null || j.bridge !== bridge || seen.has(a.bytes.toString('hex'))) continue;
        seen.add(a.bytes.toString('hex'));
        groupRows.push({
          index: [indexes.vmIndex, nicIndex, ...addressIndex(a)],
          cells: [integer(GroupSource.proxy), integer(GroupState.temporary), timeTicks(0)],
        });
      }
    });
  }
  addRows(b, vmmMcastGroupEntry, [3, 4, 5], groupRows);

  // vmmMcastHostGroupTable: the bridges VMs use.
  const proxied = new Set((m.agent?.proxyJoins ?? []).map((j) => `${j.bridge} ${inetAddress(j.group)?.bytes.toString('hex')}`));
  const hostRows: Row[] = [];
  const hostSeen = new Set<string>();
  for (const g of m.hostGroups) {
    const iface = host.interfaces.get(g.device);
    const a = inetAddress(g.group);
    if (!usedBridges.has(g.device) || iface === undefined || a === null || isEveryHostGroup(a.type, a.bytes)) continue;
    const key = `${g.device} ${a.bytes.toString('hex')}`;
    if (hostSeen.has(key)) continue;
    hostSeen.add(key);
    hostRows.push({
      index: [iface.ifIndex, ...addressIndex(a)],
      cells: [integer(proxied.has(key) ? HostSource.proxy : HostSource.host)],
    });
  }
  addRows(b, vmmMcastHostGroupEntry, [4], hostRows);

  b.declareObject(vmmMcastAgentPresent);
  b.add([...vmmMcastAgentPresent, 0], integer(m.agent !== null ? TRUE : FALSE));

  // vmmMcastProxyJoinTable
  const vmIndexOf = new Map(proxyByVm.size === 0 ? [] : rows.map((r) => [r.domain.uuid, r.indexes.vmIndex]));
  const proxyRows: Row[] = [];
  for (const j of m.agent?.proxyJoins ?? []) {
    const a = inetAddress(j.group);
    const uuid = uuidBytes(j.vm);
    if (a === null || uuid.length !== 16) continue;
    const bridge = host.interfaces.get(j.bridge);
    proxyRows.push({
      index: [...addressIndex(a), ...uuid],
      cells: [
        // InterfaceIndex has no 0: a bridge that does not exist leaves the cell out.
        bridge ? integer(bridge.ifIndex) : undefined,
        gauge32(vmIndexOf.get(j.vm) ?? 0),
        octets(dateAndTime(j.since)),
        integer(REASON[j.reason]),
      ],
    });
  }
  addRows(b, vmmMcastProxyJoinEntry, [4, 5, 6, 7], proxyRows);

  // vmmMcastRelayTable
  const relayRows: Row[] = [];
  for (const r of m.agent?.relays ?? []) {
    const g = inetAddress(r.group);
    const s = inetAddress(r.server);
    if (g === null || s === null) continue;
    relayRows.push({
      index: addressIndex(g),
      cells: [integer(s.type), octets(s.bytes), gauge32(r.port), integer(RELAY_STATE[r.state])],
    });
  }
  addRows(b, vmmMcastRelayEntry, [3, 4, 5, 6], relayRows);
}

/** DateAndTime (SNMPv2-TC) in UTC: year(2) month day hour minutes seconds deci-seconds '+' 0 0. */
export function dateAndTime(ms: number): Buffer {
  const d = new Date(ms);
  const out = Buffer.alloc(11);
  out.writeUInt16BE(d.getUTCFullYear(), 0);
  out[2] = d.getUTCMonth() + 1;
  out[3] = d.getUTCDate();
  out[4] = d.getUTCHours();
  out[5] = d.getUTCMinutes();
  out[6] = d.getUTCSeconds();
  out[7] = Math.floor(d.getUTCMilliseconds() / 100);
  out[8] = 0x2b; // '+'
  return out;
}
