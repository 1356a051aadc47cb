// The VM-MIB bench's results and the table it prints (bench/vm-walk.ts).
import type { ProcessMemory, RefreshSample } from './vm-agent';
import { formatTiming, WalkTiming } from './walk-timer';

export interface WalkSide {
  /** The best round's median walk. */
  best: WalkTiming | undefined;
  /** CPU of the serving subagent and of snmpd over every timed walk, and the varbinds those walks returned. */
  subagentCpuMs: number;
  snmpdCpuMs: number;
  varbinds: number;
}

export interface WalkPair {
  agent: WalkSide;
  floor: WalkSide;
}

export interface RefreshRun {
  readyMs: number;
  /** The agent's first refresh: every domain XML parsed, every index assigned. */
  cold: RefreshSample;
  steady: RefreshSample[];
  /** Whole-process CPU per cycle over the steady refreshes (/proc/<pid>/stat; GC after a refresh included). */
  perCycleMs: number;
  /** One walk while refreshes run back to back (what a manager sees when a refresh outlasts the interval). */
  walk: WalkTiming;
  /** After the steady refreshes, the walk and two more refreshes. */
  memory: ProcessMemory;
}

/** RSS at the default refresh interval, via libvirtd. */
export interface IntervalMemory {
  refreshSeconds: number;
  medianRssKiB: number;
  maxRssKiB: number;
  /** VmHWM: the peak over the whole run, first refresh included. */
  hwmKiB: number;
}

export interface SizeResult {
  vms: number;
  instances: number;
  fixtureMs: number;
  agentReadyMs: number;
  walks: WalkPair;
  memoryAfterWalks: ProcessMemory;
  /** test:///fixture: the test driver runs inside the agent. */
  local: RefreshRun;
  /** node + libvirt with the same fixture opened, nothing else. */
  baseline: ProcessMemory;
  /** test+unix:// through a private libvirtd, when one could be started. */
  remote: RefreshRun | null;
  /** The same at the default refresh interval. */
  deployed: IntervalMemory | null;
}

export interface ReportHeader {
  command: string;
  host: string;
  walkPlan: string;
  refreshPlan: string;
  /** How fast the machine was while the figures were taken (speed-probe.ts). */
  speed: string;
}

/** The middle value (the mean of the two middle ones for an even count). */
export const median = (xs: number[]): number => {
  const s = xs.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mb = (kib: number): string => `${(kib / 1024).toFixed(0)} MB`;
const ms = (n: number): string => `${n.toFixed(0)} ms`;
const usPer = (cpuMs: number, varbinds: number): string => (varbinds ? ((cpuMs * 1000) / varbinds).toFixed(1) : '-');
const row = (cells: (string | number)[], widths: number[]): string =>
  cells.map((c, i) => String(c)[i === 0 ? 'padEnd' : 'padStart'](widths[i])).join(' ');

function walkSection(results: SizeResult[], native: WalkTiming): string[] {
  const lines = ['Full snmpbulkwalk (-Cr10, unix socket) of mib-2.236 vs the floor responder serving as many varbinds:'];
  for (const r of results) {
    const { agent, floor } = r.walks;
    if (!agent.best || !floor.best) continue;
    lines.push(formatTiming(`${r.vms} VMs, vmm-agentx`, agent.best));
    lines.push(formatTiming(`${r.vms} VMs, floor responder`, floor.best));
    lines.push(`${''.padEnd(34)} agent ÷ floor per varbind = ${(agent.best.usPerVarbind / floor.best.usPerVarbind).toFixed(3)}` +
      `; CPU µs/varbind: agent ${usPer(agent.subagentCpuMs, agent.varbinds)} + its snmpd ${usPer(agent.snmpdCpuMs, agent.varbinds)},` +
      ` floor ${usPer(floor.subagentCpuMs, floor.varbinds)} + its snmpd ${usPer(floor.snmpdCpuMs, floor.varbinds)}`);
  }
  lines.push(formatTiming('snmpd native HOST-RESOURCES-MIB', native));
  return lines;
}

function refreshSection(results: SizeResult[], plan: string): string[] {
  const w = [26, 9, 10, 10, 11, 9, 12];
  const lines = [`Refresh cost: process CPU (all threads) and wall per refresh, from the agent's debug log (${plan}):`];
  lines.push(row(['', 'instances', 'first CPU', 'first wall', 'steady CPU', 'wall', '/proc/cycle'], w));
  for (const r of results) {
    for (const [label, run] of [[`${r.vms} VMs, test:/// in-process`, r.local], [`${r.vms} VMs, via libvirtd (RPC)`, r.remote]] as const) {
      if (!run) continue;
      lines.push(row([label, r.instances, ms(run.cold.cpuMs), ms(run.cold.wallMs), ms(median(run.steady.map((s) => s.cpuMs))),
        ms(median(run.steady.map((s) => s.wallMs))), ms(run.perCycleMs)], w));
    }
  }
  return lines;
}

function memorySection(results: SizeResult[]): string[] {
  const w = [26, 18, 18, 14, 16];
  const lines = ['Memory of the agent process, VmRSS / VmHWM (peak): after the timed walks (one refresh), and after refreshes + a walk;',
    'for test:/// also node + libvirt alone with the fixture loaded (the test driver keeps every domain in-process):'];
  lines.push(row(['', 'after walks', 'after refreshes', 'node+libvirt', 'agent − baseline'], w));
  for (const r of results) {
    const a = r.memoryAfterWalks;
    const b = r.local.memory;
    lines.push(row([`${r.vms} VMs, test:/// in-process`, `${mb(a.rssKiB)} / ${mb(a.hwmKiB)}`, `${mb(b.rssKiB)} / ${mb(b.hwmKiB)}`,
      mb(r.baseline.rssKiB), `${mb(b.rssKiB - r.baseline.rssKiB)} / ${mb(b.hwmKiB - r.baseline.rssKiB)}`], w));
    if (r.remote) {
      const m = r.remote.memory;
      lines.push(row([`${r.vms} VMs, via libvirtd (RPC)`, '', `${mb(m.rssKiB)} / ${mb(m.hwmKiB)}`, '', ''], w));
    }
  }
  const deployed = results.filter((r) => r.deployed !== null);
  if (deployed.length > 0) {
    lines.push(`As deployed: via libvirtd, refresh every ${deployed[0].deployed!.refreshSeconds} s (the default), ` +
      'VmRSS sampled every 100 ms over 4 refreshes, and VmHWM of the whole run:');
    lines.push(row(['', 'median RSS', 'max RSS', 'peak (HWM)'], [26, 12, 12, 12]));
    for (const r of deployed) {
      const d = r.deployed!;
      lines.push(row([`${r.vms} VMs`, mb(d.medianRssKiB), mb(d.maxRssKiB), mb(d.hwmKiB)], [26, 12, 12, 12]));
    }
  }
  return lines;
}

function targetSection(results: SizeResult[]): string[] {
  const lines = ['Targets:'];
  const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
  const r1k = results.find((r) => r.vms === 1000);
  if (r1k?.walks.agent.best && r1k.walks.floor.best) {
    const ratio = r1k.walks.agent.best.usPerVarbind / r1k.walks.floor.best.usPerVarbind;
    lines.push(`  1,000 VMs: full walk ≤ 1.15× floor per varbind: ${ratio.toFixed(3)}× — ${verdict(ratio <= 1.15)}`);
  }
  if (r1k) {
    const cpu = median(r1k.local.steady.map((s) => s.cpuMs));
    const remote = r1k.remote ? `; via libvirtd ${ms(median(r1k.remote.steady.map((s) => s.cpuMs)))}` : '';
    lines.push(`  1,000 VMs: one refresh ≤ 200 ms CPU: steady ${ms(cpu)} (first ${ms(r1k.local.cold.cpuMs)})${remote} — ${verdict(cpu <= 200)}`);
  }
  const r10k = results.find((r) => r.vms === 10000);
  if (r10k) {
    const local = r10k.local.memory.rssKiB;
    const own = local - r10k.baseline.rssKiB;
    const remote = r10k.remote?.memory;
    const deployed = r10k.deployed;
    // Judged on the peak as deployed (default interval, via libvirtd), else on what could be measured.
    const judged = deployed ? deployed.hwmKiB : remote ? remote.rssKiB : own;
    const asDeployed = deployed
      ? `at the default ${deployed.refreshSeconds} s refresh median ${mb(deployed.medianRssKiB)}, max ${mb(deployed.maxRssKiB)}, peak ${mb(deployed.hwmKiB)}; `
      : '';
    lines.push(`  10,000 VMs: RSS ≤ 150 MB (judged on the peak as deployed): via libvirtd ${asDeployed}` +
      `refreshing back to back ${remote ? `${mb(remote.rssKiB)} (peak ${mb(remote.hwmKiB)})` : 'not measured'}; ` +
      `test:/// ${mb(local)} of which node + test driver ${mb(r10k.baseline.rssKiB)} — ${verdict(judged <= 150 * 1024)}`);
  }
  return lines;
}

export function formatReport(results: SizeResult[], native: WalkTiming, header: ReportHeader): string {
  const other = results.map((r) => `${r.vms} VMs: fixture written in ${r.fixtureMs} ms, agent serving after ${r.agentReadyMs} ms; ` +
    `a walk while refreshes run back to back took ${r.local.walk.seconds.toFixed(2)} s (${r.local.walk.usPerVarbind.toFixed(1)} µs/varbind)` +
    (r.remote ? `, via libvirtd ${r.remote.walk.seconds.toFixed(2)} s` : ''));
  return [
    `VM-MIB bench — ${header.command}`,
    `${header.host}; ${header.walkPlan}`,
    header.speed,
    '',
    ...walkSection(results, native),
    '',
    ...refreshSection(results, header.refreshPlan),
    '',
    ...memorySection(results),
    '',
    ...other,
    '',
    ...targetSection(results),
  ].join('\n') + '\n';
}
