// /proc: host uptime (vmHvUpTime) and the hrDeviceIndex snmpd gives each CPU,
// which vmCpuPhysIndex MUST equal (RFC 7666 §5 and the vmCpuPhysIndex
// DESCRIPTION: "the hrDeviceIndex used in hrProcessorTable").
//
// How Net-SNMP 5.9.3 numbers processors on Linux:
// - host/hr_proc.c Get_Next_HR_Proc() walks the hardware/cpu list, skipping the
//   "Overall CPU statistics" entry (idx -1), and returns
//   (HRDEV_PROC << HRDEV_TYPE_SHIFT) + cpu->idx = (3 << 16) + N = 196608 + N
//   (host_res.h: HRDEV_PROC 3, HRDEV_TYPE_SHIFT 16).
// - hardware/cpu/cpu_linux.c init_cpu_linux() creates entry N for every
//   "processor : N" line of /proc/cpuinfo at start-up; netsnmp_cpu_arch_load(),
//   run every 5 s by hardware/cpu/cpu.c, creates one for every "cpuN" line of
//   /proc/stat. Both files list online CPUs only, and hardware/cpu/cpu.c never
//   deletes an entry, so snmpd lists every CPU that was online at some point
//   since it started, with N the kernel's CPU number (gaps stay gaps).
// Measured against snmpd 5.9.3 with both files replaced (bind mounts in a
// private mount namespace): cpuinfo {0,2,3} + stat {0,2,3,7} gives
// 196608/196610/196611 at once and 196615 after the first 5-second sample.
import { HostPaths, ReportUnreadable, ignoreUnreadable, procFile, readTextFile } from './paths';

/** host_res.h: HRDEV_PROC = 3, HRDEV_TYPE_SHIFT = 16. */
export const HRDEV_PROC_BASE = 3 << 16;

export function hrProcessorIndex(cpu: number): number {
  return HRDEV_PROC_BASE + cpu;
}

/** Seconds since boot: the first field of /proc/uptime, or null when the text is not that. */
export function parseUptime(text: string): number | null {
  const first = /^\s*(\d+(?:\.\d+)?)(?:\s|$)/.exec(text);
  if (!first) return null;
  const seconds = Number(first[1]);
  return Number.isFinite(seconds) ? seconds : null;
}

/** CPU numbers from /proc/cpuinfo "processor : N" lines (the scanf pattern cpu_linux.c uses). */
export function parseCpuinfoProcessors(text: string): number[] {
  const cpus: number[] = [];
  for (const match of text.matchAll(/^processor\s*:\s*(\d+)/gm)) cpus.push(Number(match[1]));
  return cpus;
}

/** CPU numbers from the per-CPU "cpuN ..." lines of /proc/stat (not the "cpu " total). */
export function parseStatCpus(text: string): number[] {
  const cpus: number[] = [];
  for (const match of text.matchAll(/^cpu(\d+)\s/gm)) cpus.push(Number(match[1]));
  return cpus;
}

/** CPU number → hrDeviceIndex, in ascending CPU order like hrProcessorTable. */
export function cpuDeviceIndexes(cpus: Iterable<number>): Map<number, number> {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  return new Map(sorted.map((cpu) => [cpu, hrProcessorIndex(cpu)]));
}

export interface ProcfsInfo {
  /** 0 when /proc/uptime is unreadable (reported). */
  uptimeSeconds: number;
  cpuDeviceIndex: Map<number, number>;
}

/**
 * Reads /proc/uptime, /proc/cpuinfo and /proc/stat. `cpusSeen` carries CPUs
 * across calls because snmpd keeps a CPU listed after it goes offline; pass
 * the same set on every refresh (host.ts does) to mirror that.
 */
export async function readProcfs(
  paths: HostPaths,
  report: ReportUnreadable = ignoreUnreadable,
  cpusSeen: Set<number> = new Set(),
): Promise<ProcfsInfo> {
  const uptimeFile = procFile(paths, 'uptime');
  const cpuinfoFile = procFile(paths, 'cpuinfo');
  const statFile = procFile(paths, 'stat');
  const [uptimeText, cpuinfoText, statText] = await Promise.all([
    readTextFile(uptimeFile, 'vmHvUpTime will be 0', report),
    readTextFile(cpuinfoFile, 'vmCpuPhysIndex falls back to the CPUs in /proc/stat', report),
    readTextFile(statFile, 'vmCpuPhysIndex falls back to the CPUs in /proc/cpuinfo', report),
  ]);

  let uptimeSeconds = 0;
  if (uptimeText !== undefined) {
    const parsed = parseUptime(uptimeText);
    if (parsed === null) report(uptimeFile, 'not "<uptime> <idle>" seconds', 'vmHvUpTime will be 0');
    else uptimeSeconds = parsed;
  }

  for (const cpu of parseCpuinfoProcessors(cpuinfoText ?? '')) cpusSeen.add(cpu);
  for (const cpu of parseStatCpus(statText ?? '')) cpusSeen.add(cpu);
  return { uptimeSeconds, cpuDeviceIndex: cpuDeviceIndexes(cpusSeen) };
}
