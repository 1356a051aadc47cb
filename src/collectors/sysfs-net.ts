// /sys/class/net: the host's interfaces with their kernel ifindex and parent,
// for vmNetworkIfIndex and vmNetworkParent (RFC 7666 §5: both the VM's
// host-side interface and its physical parent are ifTable rows).
//
// Net-SNMP 5.9.3 on Linux (if-mib/data_access/interface_linux.c) takes the
// names from /proc/net/dev and uses the kernel ifindex as ifIndex, ifDescr =
// the name; measured here: ifTable 1 lo, 2 ifb0, 3 ifb1, 4 eth0 = `ip link`.
// Both /proc/net/dev and /sys/class/net show the network namespace of the
// reader (for sysfs: of whoever mounted it), so snmpd and this collector
// must look at the same namespace.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { HostInterface } from '../snapshot';
import { HostPaths, ReportUnreadable, errorReason, ignoreUnreadable, sysFile } from './paths';

/** What sysfs says about one interface, before parents are resolved. */
export interface SysfsInterfaceRecord {
  name: string;
  ifIndex: number;
  /** Name from the `master` link (bridge, bond, team, VRF), or null. */
  master: string | null;
  /** Names from the `lower_<name>` links (the devices this one sits on). */
  lowers: string[];
}

const LOWER_PREFIX = 'lower_';

/**
 * Parent = the master if there is one (a tap enslaved to a bridge), otherwise
 * a lower device (macvtap/macvlan/vlan over a NIC). A bridge or bond also has
 * lower_ links — to its own ports — and those are children, not parents, so a
 * lower whose master is this very interface does not count. Several candidate
 * lowers: the smallest ifIndex, so the answer does not depend on readdir order.
 */
export function resolveParents(records: readonly SysfsInterfaceRecord[]): Map<string, HostInterface> {
  const byName = new Map(records.map((r) => [r.name, r]));
  const result = new Map<string, HostInterface>();
  for (const record of records) {
    let parentIfIndex = 0;
    const master = record.master === null ? undefined : byName.get(record.master);
    if (master) {
      parentIfIndex = master.ifIndex;
    } else {
      const lowerIndexes = record.lowers
        .map((name) => byName.get(name))
        .filter((lower): lower is SysfsInterfaceRecord => lower !== undefined && lower.master !== record.name)
        .map((lower) => lower.ifIndex);
      if (lowerIndexes.length > 0) parentIfIndex = Math.min(...lowerIndexes);
    }
    result.set(record.name, { name: record.name, ifIndex: record.ifIndex, parentIfIndex });
  }
  return result;
}

/** A positive decimal ifindex file body, or null. */
export function parseIfIndex(text: string): number | null {
  const match = /^\s*(\d+)\s*$/.exec(text);
  if (!match) return null;
  const value = Number(match[1]);
  return value > 0 && value <= 0x7fffffff ? value : null;
}

async function linkTargetName(link: string): Promise<string | null> {
  try {
    return path.basename(await fs.readlink(link));
  } catch {
    return null;
  }
}

/**
 * One interface directory, or null when the entry is not an interface
 * (e.g. the regular file bonding_masters) or vanished while we looked.
 */
async function readInterfaceRecord(classDir: string, name: string): Promise<SysfsInterfaceRecord | null> {
  const dir = path.join(classDir, name);
  let ifIndexText: string;
  try {
    ifIndexText = await fs.readFile(path.join(dir, 'ifindex'), 'utf8');
  } catch {
    return null;
  }
  const ifIndex = parseIfIndex(ifIndexText);
  if (ifIndex === null) return null;
  let entries: string[] = [];
  try {
    entries = await fs.readdir(dir);
  } catch {
    // Gone between the two reads: keep the index, parents are best effort.
  }
  const lowers = entries.filter((e) => e.startsWith(LOWER_PREFIX)).map((e) => e.slice(LOWER_PREFIX.length));
  const master = entries.includes('master') ? await linkTargetName(path.join(dir, 'master')) : null;
  return { name, ifIndex, master, lowers };
}

export async function readInterfaceRecords(
  paths: HostPaths,
  report: ReportUnreadable = ignoreUnreadable,
): Promise<SysfsInterfaceRecord[]> {
  const classDir = sysFile(paths, 'class', 'net');
  let names: string[];
  try {
    names = await fs.readdir(classDir);
  } catch (err) {
    report(classDir, errorReason(err), 'vmNetworkIfIndex and vmNetworkParent will be 0');
    return [];
  }
  const records = await Promise.all(names.sort().map((name) => readInterfaceRecord(classDir, name)));
  return records.filter((r): r is SysfsInterfaceRecord => r !== null);
}

/** Interface name → { ifIndex, parentIfIndex } from <sysRoot>/class/net/<name>/{ifindex,master,lower_*}. */
export async function readInterfaces(
  paths: HostPaths,
  report: ReportUnreadable = ignoreUnreadable,
): Promise<Map<string, HostInterface>> {
  return resolveParents(await readInterfaceRecords(paths, report));
}
