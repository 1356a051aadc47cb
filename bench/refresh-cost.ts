// npm run bench:refresh — what one steady refresh costs, per VM. The real
// agent (bin/vmm-agentx) refreshes every second behind a private snmpd; its
// own debug line per refresh gives the CPU of the whole process (every
// thread: the libuv pool runs the libvirt calls, in-process drivers included)
// and the libvirt calls it made, by function. Steady = median of
// STEADY_REFRESHES after WARM_REFRESHES; nothing else happens meanwhile, so
// these are refreshes with no event to handle.
//
// Paths, for each size of BENCH_VMS (default 100,1000,10000):
//   - the test driver in the agent's process (test:///fixture.xml): its bulk
//     stats carry only the state group, so every counter is a per-domain call;
//   - the same fixture behind a private libvirtd (every call an RPC, as
//     against qemu:///system);
// and, where QEMU is installed, a real QEMU host: BENCH_QEMU_VMS (default
// 50) small TCG guests under a private qemu:///session daemon
// (qemu-host-lab.ts), whose bulk stats carry every group.
// The machine speed probe is taken before each path: every CPU figure scales
// with it.
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
const QEMU_VMS = Number(process.env.BENCH_QEMU_VMS ?? 50);
const WARM_REFRESHES = 3;
const STEADY_REFRESHES = 5;
const OUT_FILE = path.resolve(__dirname, '../../.bench-out/refresh-cost.txt');

const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);

interface PathResult {
  label: string;
  vms: number;
  probeMs: number;
  cold: RefreshSample;
  steady: RefreshSample[];
}

async function measure(snmpd: SnmpdInstance, label: string, libvirtUri: string, vms: number, workDir: string): Promise<PathResult> {
  progress(`[${label}, ${vms} VMs] speed probe, then the agent at refresh 1 s`);
  const probeMs = speedProbe();
  // Generous: a 10,000-VM refresh via libvirtd took over 20 s before refreshes were cut down.
  const timeoutMs = 120_000 + vms * 30 * (1 + WARM_REFRESHES + STEADY_REFRESHES);
  const agent = await startVmAgent(snmpd, {
    libvirtUri, stateDir: mkdtempSync(path.join(workDir, 'state-')), refreshSeconds: 1, readyTimeoutMs: 60_000 + vms * 30,
  });
  try {
    const all = await agent.waitForRefreshes(1 + WARM_REFRESHES + STEADY_REFRESHES, timeoutMs);
    const steady = all.slice(1 + WARM_REFRESHES, 1 + WARM_REFRESHES + STEADY_REFRESHES);
    return { label, vms, probeMs, cold: all[0], steady };
  } finally {
    await agent.stop();
  }
}

function formatResult(r: PathResult): string {
  const cpu = median(r.steady.map((s) => s.cpuMs));
  const calls = median(r.steady.map((s) => s.libvirtCalls ?? NaN));
  const wall = median(r.steady.map((s) => s.wallMs));
  // The profile of the median refresh by CPU.
  const byCpu = [...r.steady].sort((a, b) => a.cpuMs - b.cpuMs)[Math.floor(r.steady.length / 2)];
  return [
    `${r.label}, ${r.vms} VMs (probe ${r.probeMs.toFixed(0)} ms):`,
    `  steady refresh: ${cpu.toFixed(1)} ms CPU = ${((cpu * 1000) / r.vms).toFixed(1)} µs per VM ` +
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
    const missing = QEMU_VMS > 0 ? qemuHostMissing() : 'BENCH_QEMU_VMS=0';
    if (missing !== null) {
      progress(`no real QEMU host: ${missing}`);
    } else {
      const qemuDir = path.join(workDir, 'qemu');
      mkdirSync(qemuDir);
      progress(`[QEMU host] starting ${QEMU_VMS} TCG guests`);
      const lab = await startQemuHost({ vms: QEMU_VMS, workDir: qemuDir, log: progress });
      try {
        results.push(await measure(snmpd, 'QEMU host (qemu:///session, TCG guests)', lab.uri, lab.vms, workDir));
      } finally {
        await lab.stop();
      }
    }
  } finally {
    await libvirtd?.stop();
    await snmpd.dispose();
    rmSync(workDir, { recursive: true, force: true });
  }
  const text = [
    `command: npm run bench:refresh (node dist/bench/refresh-cost.js), BENCH_VMS=${SIZES.join(',')} BENCH_QEMU_VMS=${QEMU_VMS}`,
    `host: ${os.cpus().length} CPUs, node ${process.version}, ${new Date().toISOString()}, took ${((Date.now() - started) / 1000).toFixed(0)} s; ` +
      `agent through bin/vmm-agentx: ${launcherSettings()}`,
    `plan: refresh 1 s; steady = median of ${STEADY_REFRESHES} refreshes after ${WARM_REFRESHES} warm-up ones; CPU of the whole agent process; ` +
      'probe = CPU ms of a fixed arithmetic loop just before (figures scale with it)',
    '',
    ...results.map(formatResult),
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
