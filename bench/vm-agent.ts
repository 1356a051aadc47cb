// The real vmm-agentx (bin/vmm-agentx) as its own process, for the VM-MIB
// bench: start it on a libvirt URI against a private snmpd, read the
// per-refresh cost it logs at debug level, and read its memory from /proc.
import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';
import * as path from 'path';
import type { SnmpdInstance } from '../test/harness/snmpd';
import { ManagedProcess, spawnManaged, stopProcess } from '../test/harness/process';
import { waitForVmMib } from '../test/harness/agent';

/** The launcher operators and the unit start: it carries the agent's runtime settings (compiled to dist/bench/, hence ../../). */
export const AGENT_LAUNCHER = path.resolve(__dirname, '../../bin/vmm-agentx');

/** One "refresh: …" debug line of src/agent.ts. */
export interface RefreshSample {
  vms: number;
  instances: number;
  wallMs: number;
  cpuMs: number;
  /** Calls the refresh made to libvirt, where the agent logs them. */
  libvirtCalls: number | null;
  /** The same by libvirt function, e.g. "virDomainGetInfo 1000, virConnectGetAllDomainStats 1". */
  callProfile: string | null;
}

export interface ProcessMemory {
  /** VmRSS: resident now. */
  rssKiB: number;
  /** VmHWM: the peak resident size so far. */
  hwmKiB: number;
}

export interface VmAgent {
  proc: ManagedProcess;
  /** Milliseconds from spawn until snmpd served vmNumber.0. */
  readyMs: number;
  /** Every refresh the agent has logged so far, in order (the first is the cold one). */
  refreshes(): RefreshSample[];
  /** Resolves once at least `count` refreshes have been logged. */
  waitForRefreshes(count: number, timeoutMs: number): Promise<RefreshSample[]>;
  memory(): ProcessMemory;
  /** user + system CPU of the whole process so far, in ms (/proc/<pid>/stat). */
  cpuMs(): number;
  stop(): Promise<void>;
}

export interface VmAgentOptions {
  libvirtUri: string;
  stateDir: string;
  refreshSeconds: number;
  readyTimeoutMs: number;
  /** Extra node flags, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/prof']. */
  nodeFlags?: string[];
  /** Runs the launcher under this command, e.g. ['ip', 'netns', 'exec', NS] (which execs it: the PID stays the agent's). */
  commandPrefix?: string[];
}

const REFRESH_LINE = /refresh: (\d+) VMs, (\d+) instances, ([\d.]+) ms wall, ([\d.]+) ms CPU \([^)]*\)(?:, (\d+) libvirt calls \(([^)]*)\))?/g;

export function parseRefreshLines(log: string): RefreshSample[] {
  const out: RefreshSample[] = [];
  for (const m of log.matchAll(REFRESH_LINE)) {
    out.push({ vms: Number(m[1]), instances: Number(m[2]), wallMs: Number(m[3]), cpuMs: Number(m[4]),
      libvirtCalls: m[5] === undefined ? null : Number(m[5]), callProfile: m[6] ?? null });
  }
  return out;
}

export function readProcessMemory(pid: number): ProcessMemory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    if (!m) throw new Error(`/proc/${pid}/status has no ${name} line`);
    return Number(m[1]);
  };
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** utime + stime of a process in ms; fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 Hz on Linux). */
export function readProcessCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state), so field n is fields[n - 3].
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** The runtime settings the launcher gives the agent, as its --version reports them. */
export function launcherSettings(): string {
  const out = execFileSync(AGENT_LAUNCHER, ['--version'], { encoding: 'utf8' });
  return out.trim().split('\n').slice(1).join(' ');
}

export async function startVmAgent(snmpd: SnmpdInstance, opts: VmAgentOptions): Promise<VmAgent> {
  const t0 = Date.now();
  // As the unit runs it: through the launcher, with its node flags and environment.
  const [command, ...prefixArgs] = [...(opts.commandPrefix ?? []), AGENT_LAUNCHER];
  const proc = await spawnManaged(command, [
    ...prefixArgs,
    '--libvirt-uri', opts.libvirtUri,
    '--agentx-socket', snmpd.agentxAddress,
    '--state-dir', opts.stateDir,
    '--refresh', String(opts.refreshSeconds),
    '--log-level', 'debug',
  ], {
    env: { ...process.env, VMM_AGENTX_NODE_FLAGS: (opts.nodeFlags ?? []).join(' ') },
    maxOutputChars: 64 * 1024 * 1024,
  });
  try {
    await waitForVmMib(snmpd, proc, opts.readyTimeoutMs);
  } catch (err) {
    await stopProcess(proc);
    throw err;
  }
  const readyMs = Date.now() - t0;
  // Parsed as output arrives (the agent logs other debug lines too; the whole log is not rescanned per poll).
  const soFar = proc.output();
  const samples = parseRefreshLines(soFar.slice(0, soFar.lastIndexOf('\n') + 1));
  let partial = soFar.slice(soFar.lastIndexOf('\n') + 1);
  proc.onOutput((text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) samples.push(...parseRefreshLines(line));
  });
  const refreshes = (): RefreshSample[] => samples.slice();
  return {
    proc,
    readyMs,
    refreshes,
    waitForRefreshes: async (count, timeoutMs) => {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const seen = refreshes();
        if (seen.length >= count) return seen;
        if (proc.hasExited()) throw new Error(`vmm-agentx exited after ${seen.length} refreshes:\n${proc.output().slice(-4000)}`);
        if (Date.now() > until) throw new Error(`vmm-agentx logged ${seen.length} of ${count} refreshes in ${timeoutMs} ms`);
        // Short polls: callers read /proc right after a refresh is logged to align CPU windows with refreshes.
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    memory: () => readProcessMemory(proc.pid),
    cpuMs: () => readProcessCpuMs(proc.pid),
    stop: () => stopProcess(proc, 10_000),
  };
}
