// npm run bench:mobility — the interruption of a VM's multicast stream across
// a migration to another network, as the paper measures it (longest run of
// lost sequence numbers + 1, times the packet interval), in the lab of
// test/harness/mcast-lab.ts: with vmm-mcastd to the multicast-capable net A
// and to net B (relay), and without it (the baseline), at the paper's 2 and
// 20 Mbps (174 and 1,725 packets/s of 1,450 bytes). Also T_PRE, the
// signalling time before the migration may start. Needs root.
//
//   BENCH_RUNS=5             runs per case and rate
//   BENCH_FAMILY=6           the stream's family (4 or 6); signalling uses the same
//   BENCH_PAUSE_MS=100       the switchover pause (the stop-and-copy)
//   BENCH_QUERY_INTERVAL=10  the router's query interval in the lab, s (the baseline waits for a query)
//   BENCH_CASES=agent-A,agent-B,none-A,none-B
import { McastLab, mcastLabMissing, type Family, type Hypervisor } from '../test/harness/mcast-lab';
import { McastdRig } from '../test/harness/mcastd-rig';
import { sleep } from '../test/harness/process';

type Case = 'agent-A' | 'agent-B' | 'none-A' | 'none-B';

interface Run {
  interruptionMs: number;
  resumed: boolean;
  gapMs: number;
  duplicates: number;
  pauseMs: number;
  tPreMs: number | null;
}

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const FAMILY = Number(process.env.BENCH_FAMILY ?? 6) as Family;
const PAUSE_MS = Number(process.env.BENCH_PAUSE_MS ?? 100);
const QUERY_INTERVAL = Number(process.env.BENCH_QUERY_INTERVAL ?? 10);
const QUERY_RESPONSE = 1;
const CASES = (process.env.BENCH_CASES ?? 'agent-A,agent-B,none-A,none-B').split(',') as Case[];
const RATES = [174, 1725];
const SETTLE_AFTER_JOIN_MS = 3000;

async function waitForPackets(lab: McastLab, n: number, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  while (lab.receivedSoFar() < n) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`the stream did not reach the VM within ${timeoutMs} ms`);
    await sleep(20);
  }
}

async function oneRun(c: Case, pps: number): Promise<Run> {
  const dest = c.endsWith('A') ? 'A' : 'B' as Hypervisor;
  const withAgent = c.startsWith('agent');
  const lab = await McastLab.create({ family: FAMILY, queryIntervalSec: QUERY_INTERVAL, queryResponseSec: QUERY_RESPONSE, querier: 'router' });
  let rig: McastdRig | null = null;
  try {
    if (withAgent) {
      rig = new McastdRig(lab, { signalling: FAMILY === 4 ? 4 : 6 });
      await rig.start();
    }
    await lab.startStream({ pps });
    await waitForPackets(lab, Math.ceil(pps / 4), 10_000);
    // A host repeats its report of a group it just joined (robustness 2, within the unsolicited
    // report interval, 1 s): moved before that, the VM would announce the group on the new
    // network by itself. A migrating VM has been receiving for a while.
    await sleep(SETTLE_AFTER_JOIN_MS);
    const tPreMs = rig !== null ? (await rig.prepare(dest)).tPreMs : null;
    const sw = await lab.switchover({ to: dest, pauseMs: PAUSE_MS });
    if (withAgent) {
      await sleep(1500);
    } else {
      // Until the VM answers the router's next query (and the router forwards), or past it.
      const until = Date.now() + (QUERY_INTERVAL + QUERY_RESPONSE + 2) * 1000;
      const at = lab.receivedSoFar();
      while (Date.now() < until && lab.receivedSoFar() === at) await sleep(50);
      await sleep(500);
    }
    const r = await lab.stopStream();
    return { interruptionMs: r.interruptionMs, resumed: r.resumed, gapMs: r.gapMs, duplicates: r.duplicates, pauseMs: sw.pauseMs, tPreMs };
  } finally {
    await rig?.close();
    await lab.close();
  }
}

function stats(values: number[]): string {
  if (values.length === 0) return '— | — | —';
  const min = Math.min(...values);
  const max = Math.max(...values);
  const avg = values.reduce((a, b) => a + b, 0) / values.length;
  const s = (ms: number): string => (ms / 1000).toFixed(3);
  return `${s(min)} | ${s(avg)} | ${s(max)}`;
}

async function main(): Promise<void> {
  const missing = mcastLabMissing();
  if (missing !== null) throw new Error(`the lab cannot run here: ${missing}`);
  process.stdout.write(`vmm-mcastd interruption bench: IPv${FAMILY}, pause ${PAUSE_MS} ms, router query interval ${QUERY_INTERVAL} s ` +
    `(response ${QUERY_RESPONSE} s), ${RUNS} runs per case\n\n`);
  const rows: string[] = [];
  for (const c of CASES) {
    for (const pps of RATES) {
      const runs: Run[] = [];
      for (let i = 0; i < RUNS; i++) {
        const r = await oneRun(c, pps);
        runs.push(r);
        process.stderr.write(`${c} ${pps} pkt/s run ${i + 1}: interruption ${r.interruptionMs.toFixed(1)} ms` +
          `${r.resumed ? '' : ' (not resumed)'}, pause ${r.pauseMs.toFixed(0)} ms, duplicates ${r.duplicates}` +
          `${r.tPreMs !== null ? `, T_PRE ${r.tPreMs.toFixed(1)} ms` : ''}\n`);
      }
      const resumed = runs.filter((r) => r.resumed);
      const tPre = runs.flatMap((r) => (r.tPreMs === null ? [] : [r.tPreMs]));
      const over = resumed.map((r) => r.interruptionMs - r.pauseMs);
      rows.push(`| ${c} | ${pps === 174 ? '2 Mbps' : '20 Mbps'} | ${resumed.length}/${runs.length} | ${stats(resumed.map((r) => r.interruptionMs))} | ` +
        `${over.length ? `${Math.max(...over).toFixed(1)}` : '—'} | ${(runs.reduce((a, r) => a + r.pauseMs, 0) / runs.length).toFixed(0)} | ` +
        `${(runs.reduce((a, r) => a + r.duplicates, 0) / runs.length).toFixed(1)} | ${stats(tPre)} |`);
    }
  }
  process.stdout.write('| case | stream | resumed | interruption min s | avg | max | worst over pause, ms | pause ms | duplicates | ' +
    'T_PRE min s | avg | max |\n');
  process.stdout.write('|---|---|---|---|---|---|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});
