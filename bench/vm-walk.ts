// npm run bench — VM-MIB at scale, from one run. For test-driver fixtures of
// 100, 1,000 and 10,000 running VMs (2 vCPUs, 2 disks, 2 NICs each), with the
// real agent (bin/vmm-agentx) as its own process behind one private snmpd:
//   - full snmpbulkwalk of mib-2.236 next to the floor responder serving the
//     same number of varbinds through the same snmpd, walks alternated, plus
//     the CPU each process spent per varbind; snmpd's native cost per varbind;
//   - CPU per refresh cycle as the agent logs it (src/agent.ts, debug level):
//     the first refresh (every domain XML parsed) and steady state after JIT
//     warm-up, plus the whole process's CPU per cycle from /proc;
//   - RSS and peak RSS with the test driver in the agent's process (test:///,
//     next to node + libvirt alone on the same fixture) and, when libvirtd is
//     installed, with the same fixture behind a private libvirtd (RPC, as
//     against qemu:///system), where the RSS is the agent's alone.
// Env: BENCH_VMS (default 100,1000,10000), BENCH_RUNS (walks per round below 10,000 VMs, default 5).
import { execFileSync } from 'child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startSnmpd, SnmpdInstance } from '../test/harness/snmpd';
import { ManagedProcess, spawnManaged, stopProcess } from '../test/harness/process';
import { generateNodeXml } from './gen-fixture';
import { libvirtdAvailable, LibvirtdLab, startLibvirtd } from './libvirtd-lab';
import { ProcessMemory, readProcessCpuMs, RefreshSample, launcherSettings, startVmAgent } from './vm-agent';
import { formatReport, IntervalMemory, RefreshRun, SizeResult, WalkPair } from './vm-walk-report';
import { DEFAULTS } from '../src/config';
import { bulkwalkMedian, bulkwalkOnce, formatTiming, WalkTiming } from './walk-timer';
import { speedProbe } from './speed-probe';

const VM_MIB = '.1.3.6.1.2.1.236';
const VMM_AGENTX_MIB = '.1.3.6.1.4.1.8072.9999.9999.7666';
const FLOOR_TABLE = '.1.3.6.1.3.9999.10';
const HOST_RESOURCES = '.1.3.6.1.2.1.25';
const SIZES = (process.env.BENCH_VMS ?? '100,1000,10000').split(',').map(Number);
const SMALL_RUNS = Number(process.env.BENCH_RUNS ?? 5);
/** Refreshes after the first one that are not timed: V8 is still compiling the refresh path. */
const WARM_REFRESHES = 3;
/** Refreshes timed per run. */
const STEADY_REFRESHES = 5;
/** Refreshes over which RSS is sampled at the default interval. */
const INTERVAL_REFRESHES = 4;
const OUT_FILE = path.resolve(__dirname, '../../.bench-out/vm-walk.txt');

/** A 10,000-VM walk is ~600k varbinds, several seconds each: fewer of them. */
function walkPlan(vms: number): { rounds: number; runs: number; warmups: number } {
  if (vms >= 10_000) return { rounds: 2, runs: 1, warmups: 1 };
  if (vms >= 1_000) return { rounds: 3, runs: SMALL_RUNS, warmups: 2 };
  return { rounds: 3, runs: SMALL_RUNS, warmups: 3 };
}

const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);

async function startFloor(address: string, rows: number): Promise<ManagedProcess> {
  const proc = await spawnManaged(process.execPath, [path.join(__dirname, 'floor-responder.js'), address, String(rows)], { env: process.env });
  const until = Date.now() + 60_000;
  while (!/^floor responder: \d+ rows/m.test(proc.output())) {
    if (proc.hasExited() || Date.now() > until) throw new Error(`floor responder did not start: ${proc.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return proc;
}

/** Median-of-runs walk, with the CPU the subagent and snmpd spent on those runs. */
async function timedWalks(snmpd: SnmpdInstance, oid: string, runs: number, subagentPid: number): Promise<WalkTiming & { subagentCpuMs: number; snmpdCpuMs: number }> {
  const sub0 = readProcessCpuMs(subagentPid);
  const snmpd0 = readProcessCpuMs(snmpd.pid);
  const t = await bulkwalkMedian(snmpd, oid, runs, 0);
  return { ...t, subagentCpuMs: readProcessCpuMs(subagentPid) - sub0, snmpdCpuMs: readProcessCpuMs(snmpd.pid) - snmpd0 };
}

/** Agent and floor walks alternate round by round; each keeps its best round's median. */
async function alternateWalks(snmpd: SnmpdInstance, vms: number, agentPid: number, expected: number): Promise<WalkPair> {
  const plan = walkPlan(vms);
  const floorRows = Math.ceil(expected / 3);
  const floor = await startFloor(snmpd.agentxAddress, floorRows);
  try {
    await new Promise((r) => setTimeout(r, 200)); // let snmpd finish the floor's registration
    for (let i = 0; i < plan.warmups; i++) {
      await bulkwalkOnce(snmpd, FLOOR_TABLE);
      await bulkwalkOnce(snmpd, VM_MIB);
    }
    const pair: WalkPair = {
      agent: { best: undefined, subagentCpuMs: 0, snmpdCpuMs: 0, varbinds: 0 },
      floor: { best: undefined, subagentCpuMs: 0, snmpdCpuMs: 0, varbinds: 0 },
    };
    for (let round = 0; round < plan.rounds; round++) {
      for (const [side, oid, pid] of [['floor', FLOOR_TABLE, floor.pid], ['agent', VM_MIB, agentPid]] as const) {
        const t = await timedWalks(snmpd, oid, plan.runs, pid);
        const want = side === 'floor' ? 3 * floorRows : expected;
        if (t.varbinds !== want) throw new Error(`${side} walk gave ${t.varbinds} varbinds, expected ${want}`);
        progress(`  round ${round + 1}: ${formatTiming(side, t)}`);
        const s = pair[side];
        if (!s.best || t.usPerVarbind < s.best.usPerVarbind) s.best = t;
        s.subagentCpuMs += t.subagentCpuMs;
        s.snmpdCpuMs += t.snmpdCpuMs;
        s.varbinds += t.varbinds * plan.runs;
      }
    }
    return pair;
  } finally {
    await stopProcess(floor);
  }
}

/**
 * An agent refreshing every second (back to back once a refresh takes
 * longer): the first refresh, STEADY_REFRESHES after WARM_REFRESHES, the
 * process CPU over those, one walk while refreshing, then memory.
 */
async function refreshRun(snmpd: SnmpdInstance, libvirtUri: string, workDir: string, vms: number): Promise<RefreshRun> {
  const timeoutMs = 60_000 + vms * 20 * (WARM_REFRESHES + STEADY_REFRESHES);
  const agent = await startVmAgent(snmpd, {
    libvirtUri, stateDir: mkdtempSync(path.join(workDir, 'state-')), refreshSeconds: 1, readyTimeoutMs: 60_000 + vms * 20,
  });
  try {
    const start = (await agent.waitForRefreshes(1 + WARM_REFRESHES, timeoutMs)).length;
    const cpuStart = agent.cpuMs();
    const all = await agent.waitForRefreshes(start + STEADY_REFRESHES, timeoutMs);
    const perCycleMs = (agent.cpuMs() - cpuStart) / STEADY_REFRESHES;
    const walk = await bulkwalkOnce(snmpd, VM_MIB);
    await agent.waitForRefreshes(agent.refreshes().length + 2, timeoutMs);
    return { cold: all[0], steady: all.slice(start, start + STEADY_REFRESHES), perCycleMs, walk, memory: agent.memory(), readyMs: agent.readyMs };
  } finally {
    await agent.stop();
  }
}

/**
 * Memory as deployed: the default refresh interval, RSS sampled every 100 ms
 * over INTERVAL_REFRESHES refreshes after the warm-up ones (a sample during a
 * view swap is the high point of a cycle), and the peak of the whole run.
 */
async function intervalMemory(snmpd: SnmpdInstance, libvirtUri: string, workDir: string, vms: number): Promise<IntervalMemory> {
  const agent = await startVmAgent(snmpd, {
    libvirtUri, stateDir: mkdtempSync(path.join(workDir, 'state-')), refreshSeconds: DEFAULTS.refreshSeconds,
    readyTimeoutMs: 60_000 + vms * 20,
  });
  try {
    const timeoutMs = 60_000 + (vms * 20 + DEFAULTS.refreshSeconds * 1000) * (WARM_REFRESHES + INTERVAL_REFRESHES);
    const start = (await agent.waitForRefreshes(1 + WARM_REFRESHES, timeoutMs)).length;
    const samples: number[] = [];
    const sampler = setInterval(() => samples.push(agent.memory().rssKiB), 100);
    try {
      await agent.waitForRefreshes(start + INTERVAL_REFRESHES, timeoutMs);
    } finally {
      clearInterval(sampler);
    }
    samples.sort((a, b) => a - b);
    return {
      refreshSeconds: DEFAULTS.refreshSeconds,
      medianRssKiB: samples[samples.length >> 1],
      maxRssKiB: samples[samples.length - 1],
      hwmKiB: agent.memory().hwmKiB,
    };
  } finally {
    await agent.stop();
  }
}

function libvirtBaseline(uri: string): ProcessMemory {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'libvirt-baseline.js'), uri], { encoding: 'utf8' });
  const m = /rss (\d+) hwm (\d+)/.exec(out);
  if (!m) throw new Error(`libvirt-baseline printed "${out.trim()}"`);
  return { rssKiB: Number(m[1]), hwmKiB: Number(m[2]) };
}

async function benchSize(snmpd: SnmpdInstance, vms: number, workDir: string, libvirtd: LibvirtdLab | null): Promise<SizeResult> {
  const log = (msg: string): void => progress(`[${vms} VMs] ${msg}`);
  const t0 = Date.now();
  const fixture = path.join(workDir, `host-${vms}.xml`);
  writeFileSync(fixture, generateNodeXml(vms));
  chmodSync(fixture, 0o644); // libvirtd runs as nobody
  const fixtureMs = Date.now() - t0;
  const uri = `test://${fixture}`;

  // Walks: refresh every hour, so nothing but the walks runs while they are timed.
  log('agent (test:///, refresh 3600 s): walks');
  const quiet = await startVmAgent(snmpd, {
    libvirtUri: uri, stateDir: mkdtempSync(path.join(workDir, 'state-')), refreshSeconds: 3600, readyTimeoutMs: 60_000 + vms * 20,
  });
  let walks: WalkPair;
  let instances: number;
  let memoryAfterWalks: ProcessMemory;
  try {
    const [first]: RefreshSample[] = await quiet.waitForRefreshes(1, 1000);
    // The view also serves VMM-AGENTX-MIB (outside mib-2.236): the timed walks are of VM-MIB alone.
    const extension = (await bulkwalkOnce(snmpd, VMM_AGENTX_MIB)).varbinds;
    instances = first.instances - extension;
    log(`ready in ${quiet.readyMs} ms; view has ${first.instances} instances, ${instances} of them VM-MIB's`);
    walks = await alternateWalks(snmpd, vms, quiet.proc.pid, instances);
    memoryAfterWalks = quiet.memory();
  } finally {
    await quiet.stop();
  }

  log('agent (test:///, refresh 1 s): refresh CPU and memory');
  const local = await refreshRun(snmpd, uri, workDir, vms);
  const baseline = libvirtBaseline(uri);
  let remote: RefreshRun | null = null;
  let deployed: IntervalMemory | null = null;
  if (libvirtd) {
    log('agent (test+unix:// via private libvirtd, refresh 1 s): refresh CPU and memory');
    remote = await refreshRun(snmpd, libvirtd.uriFor(fixture), workDir, vms);
    log(`agent (via libvirtd, refresh ${DEFAULTS.refreshSeconds} s as by default): memory`);
    deployed = await intervalMemory(snmpd, libvirtd.uriFor(fixture), workDir, vms);
  }
  rmSync(fixture, { force: true });
  return { vms, instances, fixtureMs, agentReadyMs: quiet.readyMs, walks, memoryAfterWalks, local, baseline, remote, deployed };
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vmm-bench-'));
  chmodSync(workDir, 0o755);
  const started = Date.now();
  const snmpd = await startSnmpd({ agentxTimeoutSeconds: 60 });
  let libvirtd: LibvirtdLab | null = null;
  const results: SizeResult[] = [];
  const probes: [string, number][] = [];
  let native: WalkTiming;
  try {
    if (libvirtdAvailable()) libvirtd = await startLibvirtd(path.join(workDir, 'libvirtd'));
    else progress('libvirtd not installed (or not root): RSS only with the in-process test driver');
    native = await bulkwalkMedian(snmpd, HOST_RESOURCES, 7);
    for (const vms of SIZES) {
      probes.push([`before ${vms} VMs`, speedProbe()]);
      results.push(await benchSize(snmpd, vms, workDir, libvirtd));
    }
    probes.push(['at the end', speedProbe()]);
  } finally {
    await libvirtd?.stop();
    await snmpd.dispose();
    rmSync(workDir, { recursive: true, force: true });
  }
  const text = formatReport(results, native, {
    command: `npm run bench (node dist/bench/vm-walk.js), BENCH_VMS=${SIZES.join(',')} BENCH_RUNS=${SMALL_RUNS}`,
    host: `${os.cpus().length} CPUs, node ${process.version}, ${new Date().toISOString()}, took ${((Date.now() - started) / 1000).toFixed(0)} s; agent run through bin/vmm-agentx: ${launcherSettings()}`,
    walkPlan: `walks: best round of median-of-runs, alternating agent/floor; <10,000 VMs 3 rounds × ${SMALL_RUNS} runs, 10,000 VMs 2 rounds × 1 run`,
    refreshPlan: `refresh 1 s; steady = median of ${STEADY_REFRESHES} refreshes after ${WARM_REFRESHES} warm-up ones`,
    speed: `machine speed probe (CPU ms of a fixed arithmetic loop; the figures below scale with it): ` +
      probes.map(([when, cpuMs]) => `${when} ${cpuMs.toFixed(0)}`).join(', '),
  });
  process.stdout.write(text);
  mkdirSync(path.dirname(OUT_FILE), { recursive: true });
  writeFileSync(OUT_FILE, text);
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
