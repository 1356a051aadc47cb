// The host part of a snapshot: uptime, the CPUs, network interfaces and the
// mount table, as plain facts (model/linkage.ts numbers them as snmpd does).
// A source that cannot be read never fails the refresh: it costs the columns
// it feeds, and one log line says which file and which columns.
import type { HostInfo } from '../snapshot';
import type { Collector } from './collector';
import { readMounts } from './mounts';
import { CollectorLog, HostPaths, ReportUnreadable } from './paths';
import { readProcfs } from './procfs';
import { readInterfaces } from './sysfs-net';

/**
 * What the host collector remembers between refreshes: an unreadable file is
 * logged when it breaks and when it recovers, not on every refresh.
 */
export class HostCollectorState {
  private readonly failing = new Map<string, string>();

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
 * Reads /proc, /sys/class/net and the mount table concurrently. Pass the same
 * `state` on every refresh; without it each call starts afresh (and logs
 * every failure).
 */
export async function collectHost(
  paths: HostPaths,
  log: CollectorLog,
  state: HostCollectorState = new HostCollectorState(),
): Promise<HostInfo> {
  const failedNow = new Set<string>();
  const report = state.reporter(log, failedNow);
  const [procfs, interfaces, mounts] = await Promise.all([
    readProcfs(paths, report),
    readInterfaces(paths, report),
    readMounts(paths, report),
  ]);
  state.settle(log, failedNow);
  return { uptimeSeconds: procfs.uptimeSeconds, cpus: procfs.cpus, interfaces, mounts };
}

/** The host's facts as one collector; it keeps its HostCollectorState across refreshes. */
export class HostCollector implements Collector<void, HostInfo> {
  readonly name = 'host';
  private readonly state = new HostCollectorState();

  constructor(private readonly paths: HostPaths, private readonly log: CollectorLog) {}

  collect(): Promise<HostInfo> {
    return collectHost(this.paths, this.log, this.state);
  }
}
