// npm run bench:agentx — µs per varbind of a full snmpbulkwalk through one
// private snmpd, for: the floor responder (pre-encoded varbinds, nothing
// else), agentx/ (bench/table-agent.ts) and snmpd's own HOST-RESOURCES-MIB.
// Each subagent runs in its own process; the two alternate so drift on a
// shared 2-core machine hits both alike.
import * as path from 'path';
import { startSnmpd } from '../test/harness/snmpd';
import { spawnManaged, stopProcess, ManagedProcess } from '../test/harness/process';
import { bulkwalkMedian, formatTiming, WalkTiming } from './walk-timer';

const TABLE = '.1.3.6.1.3.9999.10';
const SIZES = (process.env.BENCH_ROWS ?? '1000,10000').split(',').map(Number);
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const ROUNDS = 3;

async function startResponder(script: string, address: string, rows: number): Promise<ManagedProcess> {
  const proc = await spawnManaged(process.execPath, [path.join(__dirname, script), address, String(rows)], { env: process.env });
  const until = Date.now() + 15000;
  while (!/^ready$|^floor responder: \d+ rows/m.test(proc.output())) {
    if (proc.hasExited() || Date.now() > until) throw new Error(`${script} did not start: ${proc.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return proc;
}

async function main(): Promise<void> {
  const snmpd = await startSnmpd({ agentxTimeoutSeconds: 30 });
  const lines: string[] = [];
  try {
    for (const rows of SIZES) {
      const best: Record<string, WalkTiming> = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const [label, script] of [['floor responder', 'floor-responder.js'], ['agentx/', 'table-agent.js']]) {
          const proc = await startResponder(script, snmpd.agentxAddress, rows);
          // Give snmpd a moment to finish the registration before timing.
          await new Promise((r) => setTimeout(r, 200));
          const t = await bulkwalkMedian(snmpd, TABLE, RUNS);
          await stopProcess(proc);
          await new Promise((r) => setTimeout(r, 200));
          if (t.varbinds !== 3 * rows) throw new Error(`${label}: walked ${t.varbinds} varbinds, expected ${3 * rows}`);
          if (!best[label] || t.seconds < best[label].seconds) best[label] = t;
        }
      }
      lines.push(formatTiming(`${rows} rows, floor responder`, best['floor responder']));
      lines.push(formatTiming(`${rows} rows, agentx/`, best['agentx/']));
      lines.push(`${''.padEnd(34)} agentx/ ÷ floor = ${(best['agentx/'].usPerVarbind / best['floor responder'].usPerVarbind).toFixed(3)}`);
    }
    const native = await bulkwalkMedian(snmpd, '.1.3.6.1.2.1.25', RUNS);
    lines.push(formatTiming('snmpd native HOST-RESOURCES-MIB', native));
  } finally {
    await snmpd.dispose();
  }
  process.stdout.write(`AgentX bench (snmpbulkwalk -Cr10 via snmpd, unix socket; best of ${ROUNDS} rounds × median of ${RUNS})\n`);
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
