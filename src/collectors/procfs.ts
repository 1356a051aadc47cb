// /proc: host uptime (vmHvUpTime) and the CPUs the kernel lists, which
// model/linkage.ts numbers as snmpd's hrProcessorTable does. snmpd reads
// both /proc/cpuinfo ("processor : N" at start-up) and /proc/stat ("cpuN"
// every 5 s), so the CPUs are those either file lists.
import { HostPaths, ReportUnreadable, ignoreUnreadable, procFile, readKernelTextFile } from './paths';

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

export interface ProcfsInfo {
  /** 0 when /proc/uptime is unreadable (reported). */
  uptimeSeconds: number;
  /** CPU numbers /proc/cpuinfo or /proc/stat list now, ascending. */
  cpus: number[];
}

/** Reads /proc/uptime, /proc/cpuinfo and /proc/stat (on the calling thread: see readKernelFile). */
export function readProcfs(paths: HostPaths, report: ReportUnreadable = ignoreUnreadable): ProcfsInfo {
  const uptimeFile = procFile(paths, 'uptime');
  const uptimeText = readKernelTextFile(uptimeFile, 'vmHvUpTime will be 0', report);
  const cpuinfoText = readKernelTextFile(procFile(paths, 'cpuinfo'), 'vmCpuPhysIndex falls back to the CPUs in /proc/stat', report);
  const statText = readKernelTextFile(procFile(paths, 'stat'), 'vmCpuPhysIndex falls back to the CPUs in /proc/cpuinfo', report);

  let uptimeSeconds = 0;
  if (uptimeText !== undefined) {
    const parsed = parseUptime(uptimeText);
    if (parsed === null) report(uptimeFile, 'not "<uptime> <idle>" seconds', 'vmHvUpTime will be 0');
    else uptimeSeconds = parsed;
  }
  const cpus = new Set([...parseCpuinfoProcessors(cpuinfoText ?? ''), ...parseStatCpus(statText ?? '')]);
  return { uptimeSeconds, cpus: [...cpus].sort((a, b) => a - b) };
}
