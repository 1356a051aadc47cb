// npm run bench:refresh — what one steady refresh costs, per VM. The real
// agent (bin/vmm-agentx) refreshes every second behind a private snmpd; its
// own debug line per refresh gives the CPU of the whole process (every
// thread: the libuv pool runs the libvirt calls, in-process drivers included)
// and the libvirt calls it made, by function. Steady = median of
// STEADY_REFRESHES after at least WARM_REFRESHES and WARM_SECONDS of
// refreshing: V8 keeps compiling hot functions on its own threads for tens of
// seconds (a perf profile of a 50-VM agent showed a fifth of its CPU in the
// optimising compiler between its 6th and 18th refresh), which is start-up
// cost, not a refresh's. With few VMs a function gets hot slowly: a 50-VM
// agent still optimised a function every few seconds after 4 minutes, so
// BENCH_WARM_SECONDS (default 30) should be raised for the small hosts (the
// QEMU and tap paths). Nothing else happens meanwhile, so these are
// refreshes with no event to handle.
//
// Paths, for each size of BENCH_VMS (default 100,1000,10000):
//   - the test driver in the agent's process (test:///fixture.xml): its bulk
//     stats carry only the state group, so every counter is a per-domain call;
//   - the same fixture behind a private libvirtd (every call an RPC, as
//     against qemu:///system);
// and, where QEMU is installed, a real QEMU host: BENCH_QEMU_VMS (default
// 10,50) small TCG guests under a private qemu:///session daemon
// (qemu-host-lab.ts), whose bulk stats carry every group; two sizes give the
// cost of one more VM apart from what a refresh costs with none.
// and, as root, the host side alone: no VM, and BENCH_TAPS (default 1000) tap
// interfaces on a bridge in a network namespace of the bench's own, as a
// hypervisor has a tap per VM NIC (the agent runs in that namespace, `ip
// netns exec`, and reads its /sys/class/net); beside the same namespace with
// no tap, it gives what one more tap costs a refresh.
// The machine speed probe is taken before each path: every CPU figure scales
// with it.
import { execFileSync } from 'child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { startSnmpd, SnmpdInstance } from '../test/harness/snmpd';
import { generateNodeXml } from './gen-fixture';
import { libvirtdAvailable, LibvirtdLab, startLibvirtd } from './libvirtd-lab';
import { qemuHostMissing, startQemuHost } from './qemu-host-lab';
import { speedProbe } from './speed-probe';
import { launcherSettings, RefreshSample, startVmAgent } from './vm-agent';
import { median } from './vm-walk-report';

// BENCH_VMS= (empty): the QEMU host alone.
const SIZES = (process.env.BENCH_VMS ?? '100,1000,10000').split(',').filter((v) => v.trim() !== '').map(Number);
const TAPS = Number(process.env.BENCH_TAPS ?? 1000);
const QEMU_VMS = (process.env.BENCH_QEMU_VMS ?? '10,50').split(',').filter((v) => v.trim() !== '').map(Number);
const WARM_REFRESHES = 3;
const WARM_SECONDS = Number(process.env.BENCH_WARM_SECONDS ?? 30);
const STEADY_REFRESHES = 9;
const OUT_FILE = path.resolve(__dirname, '../../.bench-out/refresh-cost.txt');

const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);

interface PathResult {
  label: string;
  vms: number;
  probeMs: number;
  cold: RefreshSample;
  steady: RefreshSample[];
}

async function measure(
  snmpd: SnmpdInstance, label: string, libvirtUri: string, vms: number, workDir: string, commandPrefix?: string[],
): Promise<PathResult> {
  progress(`[${label}, ${vms} VMs] speed probe, then the agent at refresh 1 s`);
  const probeMs = speedProbe();
  // Generous: a 10,000-VM refresh via libvirtd took over 20 s before refreshes were cut down.
  const timeoutMs = 120_000 + vms * 30 * (1 + WARM_REFRESHES + STEADY_REFRESHES);
  const agent = await startVmAgent(snmpd, {
    libvirtUri, stateDir: mkdtempSync(path.join(workDir, 'state-')), refreshSeconds: 1, readyTimeoutMs: 60_000 + vms * 30,
    commandPrefix,
  });
  try {
    const warmFrom = Date.now();
    await agent.waitForRefreshes(1 + WARM_REFRESHES, timeoutMs);
    const rest = WARM_SECONDS * 1000 - (Date.now() - warmFrom);
    if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
    const warm = agent.refreshes().length;
    const all = await agent.waitForRefreshes(warm + STEADY_REFRESHES, timeoutMs);
    const steady = all.slice(warm, warm + STEADY_REFRESHES);
    return { label, vms, probeMs, cold: all[0], steady };
  } finally {
    await agent.stop();
  }
}

const QEMU_LABEL = 'QEMU host (qemu:///session, TCG guests)';
const TAPS_LABEL = 'no VM, taps on a bridge (network namespace)';

/** The agent on an empty test driver in a namespace of its own, with no tap, then with TAPS taps on a bridge. */
async function measureTaps(snmpd: SnmpdInstance, workDir: string): Promise<PathResult[]> {
  const ns = `vmm-bench-taps-${process.pid}`;
  const fixture = path.join(workDir, 'host-0.xml');
  writeFileSync(fixture, generateNodeXml(0));
  const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  ip('netns', 'add', ns);
  try {
    ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge');
    const prefix = ['ip', 'netns', 'exec', ns];
    const none = await measure(snmpd, `${TAPS_LABEL}: 0 taps`, `test://${fixture}`, 0, workDir, prefix);
    const batch = path.join(workDir, 'taps.batch');
    writeFileSync(batch, Array.from({ length: TAPS }, (_, i) => `tuntap add tap${i} mode tap\nlink set tap${i} master br0\n`).join(''));
    ip('-n', ns, '-batch', batch);
    const taps = await measure(snmpd, `${TAPS_LABEL}: ${TAPS} taps`, `test://${fixture}`, 0, workDir, prefix);
    return [none, taps];
  } finally {
    ip('netns', 'del', ns);
  }
}

function tapCost(results: PathResult[]): string[] {
  const [none, taps] = [results.find((r) => r.label === `${TAPS_LABEL}: 0 taps`), results.find((r) => r.label === `${TAPS_LABEL}: ${TAPS} taps`)];
  if (none === undefined || taps === undefined) return [];
  return [`one more tap: ${(((steadyCpu(taps) - steadyCpu(none)) * 1000) / TAPS).toFixed(1)} µs CPU per refresh ` +
    `((${steadyCpu(taps).toFixed(1)} - ${steadyCpu(none).toFixed(1)}) ms / ${TAPS} taps)`];
}

const steadyCpu = (r: PathResult): number => median(r.steady.map((s) => s.cpuMs));

/** What one more QEMU guest costs a refresh: the slope between the smallest and largest host measured. */
function marginalQemuCost(results: PathResult[]): string[] {
  const qemu = results.filter((r) => r.label === QEMU_LABEL).sort((a, b) => a.vms - b.vms);
  if (qemu.length < 2) return [];
  const [small, large] = [qemu[0], qemu[qemu.length - 1]];
  const perVm = (steadyCpu(large) - steadyCpu(small)) / (large.vms - small.vms);
  const fixed = steadyCpu(small) - perVm * small.vms;
  return [
    `QEMU host, one more VM: ${(perVm * 1000).toFixed(1)} µs CPU per refresh ((${steadyCpu(large).toFixed(1)} - ` +
      `${steadyCpu(small).toFixed(1)}) ms / ${large.vms - small.vms} VMs); with none, about ${fixed.toFixed(1)} ms ` +
      '(the host collectors, the scalars, the bulk call itself)',
  ];
}

function formatResult(r: PathResult): string {
  const cpu = steadyCpu(r);
  const calls = median(r.steady.map((s) => s.libvirtCalls ?? NaN));
  const wall = median(r.steady.map((s) => s.wallMs));
  // The profile of the median refresh by CPU.
  const byCpu = [...r.steady].sort((a, b) => a.cpuMs - b.cpuMs)[Math.floor(r.steady.length / 2)];
  return [
    `${r.label}, ${r.vms} VMs (probe ${r.probeMs.toFixed(0)} ms):`,
    `  steady refresh: ${cpu.toFixed(1)} ms CPU${r.vms > 0 ? ` = ${((cpu * 1000) / r.vms).toFixed(1)} µs per VM` : ''} ` +
      `(min ${Math.min(...r.steady.map((s) => s.cpuMs)).toFixed(1)}, max ${Math.max(...r.steady.map((s) => s.cpuMs)).toFixed(1)}), ` +
      `wall ${wall.toFixed(1)} ms, ${Number.isNaN(calls) ? '? (not logged)' : calls} libvirt calls`,
    `  first refresh: ${r.cold.cpuMs.toFixed(1)} ms CPU, ${r.cold.wallMs.toFixed(1)} ms wall, ${r.cold.libvirtCalls ?? '?'} libvirt calls`,
    `  calls of the median refresh: ${byCpu.callProfile ?? '(not logged)'}`,
  ].join('\n');
}

async function main(): Promise<void> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vmm-refresh-bench-'));
  chmodSync(workDir, 0o755);
  const started = Date.now();
  const snmpd = await startSnmpd({ agentxTimeoutSeconds: 60 });
  let libvirtd: LibvirtdLab | null = null;
  const results: PathResult[] = [];
  try {
    if (libvirtdAvailable()) libvirtd = await startLibvirtd(path.join(workDir, 'libvirtd'));
    else progress('libvirtd not installed (or not root): the test driver in-process only');
    for (const vms of SIZES) {
      const fixture = path.join(workDir, `host-${vms}.xml`);
      writeFileSync(fixture, generateNodeXml(vms));
      chmodSync(fixture, 0o644); // libvirtd runs as nobody
      results.push(await measure(snmpd, 'test driver in-process', `test://${fixture}`, vms, workDir));
      if (libvirtd) results.push(await measure(snmpd, 'test driver via libvirtd', libvirtd.uriFor(fixture), vms, workDir));
      rmSync(fixture, { force: true });
    }
    if (TAPS > 0 && process.getuid?.() === 0) {
      results.push(...await measureTaps(snmpd, workDir));
    } else {
      progress('no tap measurement: BENCH_TAPS=0 or not root (ip netns add)');
    }
    const missing = QEMU_VMS.length > 0 ? qemuHostMissing() : 'BENCH_QEMU_VMS= (none)';
    if (missing !== null) {
      progress(`no real QEMU host: ${missing}`);
    } else {
      for (const vms of QEMU_VMS) {
        const qemuDir = mkdtempSync(path.join(workDir, 'qemu-'));
        progress(`[QEMU host] starting ${vms} TCG guests`);
        const lab = await startQemuHost({ vms, workDir: qemuDir, log: progress });
        try {
          results.push(await measure(snmpd, QEMU_LABEL, lab.uri, lab.vms, workDir));
        } finally {
          await lab.stop();
        }
      }
    }
  } finally {
    await libvirtd?.stop();
    await snmpd.dispose();
    rmSync(workDir, { recursive: true, force: true });
  }
  const text = [
    `command: npm run bench:refresh (node dist/bench/refresh-cost.js), BENCH_VMS=${SIZES.join(',')} BENCH_QEMU_VMS=${QEMU_VMS.join(',')} BENCH_WARM_SECONDS=${WARM_SECONDS}`,
    `host: ${os.cpus().length} CPUs, node ${process.version}, ${new Date().toISOString()}, took ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
      `agent through bin/vmm-agentx: ${launcherSettings()}`,
    `plan: refresh 1 s; steady = median of ${STEADY_REFRESHES} refreshes after ${WARM_REFRESHES} warm-up ones and ` +
      `${WARM_SECONDS} s; CPU of the whole agent process; ` +
      'probe = CPU ms of a fixed arithmetic loop just before (figures scale with it)',
    '',
    ...results.map(formatResult),
    ...marginalQemuCost(results),
    ...tapCost(results),
    '',
  ].join('\n');
  mkdirSync(path.dirname(OUT_FILE), { recursive: true });
  writeFileSync(OUT_FILE, text);
  process.stdout.write(text);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
