// The host part of a snapshot: uptime, the CPUs, network interfaces and the
// mount table, as plain facts (model/linkage.ts numbers them as snmpd does).
// A source that cannot be read never fails the refresh: it costs the columns
// it feeds, and one log line says which file and which columns.
import type { HostInfo, HostInterface } from '../snapshot';
import type { Collector } from './collector';
import { MountTableReader } from './mounts';
import { NetlinkSubscription } from './netlink';
import { CollectorLog, DEFAULT_HOST_PATHS, HostPaths, ReportUnreadable } from './paths';
import { readProcfs } from './procfs';
import { readInterfaces } from './sysfs-net';

/** rtnetlink's multicast group of link changes (linux/rtnetlink.h). */
const RTNLGRP_LINK = 1;

/**
 * What the host collector remembers between refreshes: an unreadable file is
 * logged when it breaks and when it recovers, not on every refresh; and the
 * mount table, with where it lies.
 */
export class HostCollectorState {
  private readonly failing = new Map<string, string>();
  /** Knows whether the mount table is a kernel file, and its last entries. */
  readonly mountTable = new MountTableReader();

  /** A reporter for one refresh: warns on a new failure, debug while it lasts. */
  reporter(log: CollectorLog, failedNow: Set<string>): ReportUnreadable {
    return (file, reason, lost) => {
      failedNow.add(file);
      const message = `cannot read ${file}: ${reason}; ${lost}`;
      if (this.failing.get(file) === message) {
        log('debug', message);
        return;
      }
      this.failing.set(file, message);
      log('warn', message);
    };
  }

  /** After a refresh: files that failed before and did not fail now are back. */
  settle(log: CollectorLog, failedNow: Set<string>): void {
    for (const file of [...this.failing.keys()]) {
      if (failedNow.has(file)) continue;
      this.failing.delete(file);
      log('info', `${file} is readable again`);
    }
  }
}

/**
 * Reads /proc, then /sys/class/net and the mount table concurrently. Pass the same
 * `state` on every refresh; without it each call starts afresh (and logs
 * every failure). `interfaces`: how the interfaces are had this time (by
 * default read from /sys/class/net).
 */
export async function collectHost(
  paths: HostPaths,
  log: CollectorLog,
  state: HostCollectorState = new HostCollectorState(),
  interfaces: (report: ReportUnreadable) => Promise<Map<string, HostInterface>> = (report) => readInterfaces(paths, report),
): Promise<HostInfo> {
  const failedNow = new Set<string>();
  const report = state.reporter(log, failedNow);
  const procfs = readProcfs(paths, report);
  const [ifaces, mounts] = await Promise.all([interfaces(report), state.mountTable.read(paths, report)]);
  state.settle(log, failedNow);
  return { uptimeSeconds: procfs.uptimeSeconds, cpus: procfs.cpus, interfaces: ifaces, mounts };
}

/**
 * The host's facts as one collector; it keeps its HostCollectorState across
 * refreshes. Once watchLinks() runs, /sys/class/net is read again only after
 * the kernel reports a link change: a hypervisor has a tap per VM NIC, and
 * reading each one's directory every refresh was the costliest part of a
 * refresh on such a host (docs/refresh-cost.md, "Taps").
 */
export class HostCollector implements Collector<void, HostInfo> {
  readonly name = 'host';
  private readonly state = new HostCollectorState();
  private linkWatch: NetlinkSubscription | null = null;
  /** The interfaces as last read completely, while no link changed since; null: read them. */
  private interfaces: Map<string, HostInterface> | null = null;
  /** Link changes reported so far: a read during which one came is not kept. */
  private linkChanges = 0;

  constructor(private readonly paths: HostPaths, private readonly log: CollectorLog) {}

  /**
   * Subscribes to link changes. Only where the interfaces are the real /sys
   * (those of the agent's network namespace, which the subscription sees);
   * elsewhere, and if the subscription fails, every refresh reads them.
   */
  watchLinks(): void {
    if (this.linkWatch !== null || this.paths.sysRoot !== DEFAULT_HOST_PATHS.sysRoot) return;
    const changed = (): void => {
      this.linkChanges++;
      this.interfaces = null;
    };
    try {
      this.linkWatch = new NetlinkSubscription(RTNLGRP_LINK, changed, (err) => {
        this.log('warn', `network link changes: ${err.message}; /sys/class/net is now read every refresh`);
        this.linkWatch = null;
        changed();
      });
    } catch (err) {
      this.log('warn', `cannot watch network link changes (${(err as Error).message}); /sys/class/net is read every refresh`);
    }
  }

  /** Ends the subscription; the socket closes within half a second, without anyone waiting for it. */
  unwatchLinks(): void {
    void this.linkWatch?.close();
    this.linkWatch = null;
    this.interfaces = null;
  }

  collect(): Promise<HostInfo> {
    return collectHost(this.paths, this.log, this.state, (report) => this.currentInterfaces(report));
  }

  private async currentInterfaces(report: ReportUnreadable): Promise<Map<string, HostInterface>> {
    if (this.linkWatch !== null && this.interfaces !== null) return this.interfaces;
    const before = this.linkChanges;
    let complete = true;
    const read = await readInterfaces(this.paths, (file, reason, lost) => {
      complete = false;
      report(file, reason, lost);
    });
    // Kept only if nothing was unreadable (the next read retries and logs) and no link changed meanwhile.
    if (this.linkWatch !== null && complete && this.linkChanges === before) this.interfaces = read;
    return read;
  }
}
