// /proc: when each QEMU domain's process started, so that vmUpTime of a VM
// that was already running when the agent started is its real uptime, not
// the time since the agent first saw it.
//
// libvirt has no API for a domain's start time. Its QEMU driver starts one
// process per domain with "-uuid <domain UUID>" on the command line, and
// /proc/<pid>/stat field 22 is the process start in clock ticks after boot.
// /proc/<pid>/cmdline is readable by any user (unless /proc is mounted with
// hidepid), so this works for the unprivileged agent too.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Collector } from './collector';
import { HostPaths, procFile } from './paths';
import { parseUptime } from './procfs';

/** The kernel reports process times in USER_HZ ticks, 100 a second on every Linux ABI but alpha's. */
const USER_HZ = 100;

/** The domain UUID a QEMU command line names with -uuid, lower-case; null for other processes. */
export function qemuDomainUuid(cmdline: string): string | null {
  const argv = cmdline.split('\0');
  if (!/qemu|kvm/.test(path.basename(argv[0] ?? ''))) return null;
  const at = argv.indexOf('-uuid');
  const uuid = at >= 0 ? argv[at + 1] : undefined;
  return uuid ? uuid.toLowerCase() : null;
}

/** Field 22 of /proc/<pid>/stat (starttime, in ticks after boot), or null. */
export function processStartTicks(stat: string): number | null {
  // Fields after the command name, which is in parentheses and may contain ") ".
  const close = stat.lastIndexOf(')');
  if (close < 0) return null;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const ticks = Number(fields[19]);
  return Number.isInteger(ticks) && ticks >= 0 ? ticks : null;
}

/**
 * Start time (ms since the epoch) of the QEMU process of each of `uuids`
 * found under procRoot. Domains without such a process (other hypervisors,
 * another PID namespace, hidepid) are absent: the caller falls back to when
 * it first saw them running. One pass over /proc, made only when asked.
 */
export async function qemuStartTimes(paths: HostPaths, uuids: ReadonlySet<string>, now = Date.now()): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  if (uuids.size === 0) return found;
  let uptime: number | null;
  let pids: string[];
  try {
    uptime = parseUptime(await fs.readFile(procFile(paths, 'uptime'), 'utf8'));
    pids = (await fs.readdir(paths.procRoot)).filter((name) => /^\d+$/.test(name));
  } catch {
    return found;
  }
  if (uptime === null) return found;
  for (const pid of pids) {
    let uuid: string | null;
    let ticks: number | null;
    try {
      uuid = qemuDomainUuid(await fs.readFile(procFile(paths, pid, 'cmdline'), 'utf8'));
      if (uuid === null || !uuids.has(uuid) || found.has(uuid)) continue;
      ticks = processStartTicks(await fs.readFile(procFile(paths, pid, 'stat'), 'utf8'));
    } catch {
      // Gone since readdir, or not ours to read.
      continue;
    }
    if (ticks === null) continue;
    const startedAt = Math.round(now - (uptime - ticks / USER_HZ) * 1000);
    found.set(uuid, Math.min(startedAt, now));
    if (found.size === uuids.size) break;
  }
  return found;
}

/** qemuStartTimes as a collector: the UUIDs of the runs whose start is wanted in, start times out. */
export class QemuStartTimeCollector implements Collector<ReadonlySet<string>, ReadonlyMap<string, number>> {
  readonly name = 'qemu-start-times';

  constructor(private readonly paths: HostPaths) {}

  collect(uuids: ReadonlySet<string>): Promise<ReadonlyMap<string, number>> {
    return qemuStartTimes(this.paths, uuids);
  }
}
