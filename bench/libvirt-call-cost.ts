// npm run bench:calls — what one libvirt call costs this process in CPU (every
// thread), the floor under a refresh for a driver whose bulk stats lack the
// counters: the test driver needs six calls a VM of the shipped fixture
// (virDomainGetInfo, virDomainGetVcpus, and virDomainGetBlockInfo and
// virDomainBlockStats for each of two disks).
//
// One call, virDomainGetInfo, over the domains of a 100-VM fixture, made
//   - on the main thread (…Now) and through the libuv pool (as the collector
//     does: CONCURRENCY calls at once);
//   - against the test driver in this process (test:///fixture.xml) and
//     behind a private libvirtd (test+unix://, every call an RPC), with
//     libvirt's event loop running as in the agent.
// Root only for the libvirtd rows (the daemon runs as nobody).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { closeConnection, listDomains, openConnection, releaseDomain } from '../src/libvirt/calls';
import { domainInfo, domainInfoNow } from '../src/libvirt/domain-calls';
import { eventLoop } from '../src/libvirt/event-loop';
import type { DomainPtr } from '../src/libvirt/ffi';
import { generateNodeXml } from './gen-fixture';
import { libvirtdAvailable, startLibvirtd } from './libvirtd-lab';
import { speedProbe } from './speed-probe';

const CALLS = Number(process.env.BENCH_CALLS ?? 20_000);
const CONCURRENCY = 4;
const CALLS_PER_VM = 6;

interface Row {
  label: string;
  cpuUs: number;
  /** Of cpuUs, the kernel's. */
  systemUs: number;
  wallUs: number;
}

async function measure(label: string, doms: DomainPtr[], how: 'now' | 'pool'): Promise<Row> {
  // A warm-up pass, so that koffi and V8 have compiled what the calls run.
  await run(doms, how, Math.min(CALLS, 1000));
  const cpu = process.cpuUsage();
  const wall = process.hrtime.bigint();
  await run(doms, how, CALLS);
  const used = process.cpuUsage(cpu);
  return {
    label,
    cpuUs: (used.user + used.system) / CALLS,
    systemUs: used.system / CALLS,
    wallUs: Number(process.hrtime.bigint() - wall) / 1000 / CALLS,
  };
}

async function run(doms: DomainPtr[], how: 'now' | 'pool', calls: number): Promise<void> {
  if (how === 'now') {
    for (let i = 0; i < calls; i++) domainInfoNow(doms[i % doms.length]);
    return;
  }
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < calls) await domainInfo(doms[next++ % doms.length]);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
}

async function rowsFor(uri: string, where: string): Promise<Row[]> {
  const conn = await openConnection(uri, true);
  const doms = await listDomains(conn, 0);
  try {
    return [
      await measure(`${where}, main thread`, doms, 'now'),
      await measure(`${where}, libuv pool (${CONCURRENCY} at once)`, doms, 'pool'),
    ];
  } finally {
    for (const dom of doms) releaseDomain(dom);
    await closeConnection(conn);
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vmm-agentx-call-cost-'));
  chmodSync(dir, 0o755);
  const fixture = path.join(dir, 'host-100.xml');
  writeFileSync(fixture, generateNodeXml(100), { mode: 0o644 });
  eventLoop.acquire();
  const rows: Row[] = [];
  try {
    const probeMs = speedProbe();
    rows.push(...(await rowsFor(`test://${fixture}`, 'test driver in-process')));
    if (libvirtdAvailable()) {
      const lab = await startLibvirtd(dir);
      try {
        rows.push(...(await rowsFor(lab.uriFor(fixture), 'test driver via libvirtd')));
      } finally {
        await lab.stop();
      }
    } else {
      process.stderr.write('libvirt-call-cost: not root or no libvirtd: the RPC rows are skipped\n');
    }
    process.stdout.write(`virDomainGetInfo, ${CALLS} calls each, machine speed probe ${probeMs.toFixed(0)} ms\n`);
    for (const r of rows) {
      process.stdout.write(
        `  ${r.label.padEnd(48)} ${r.cpuUs.toFixed(1).padStart(6)} µs CPU a call (system ${r.systemUs.toFixed(1)}), ` +
          `${(CALLS_PER_VM * r.cpuUs).toFixed(0).padStart(4)} µs a VM at ${CALLS_PER_VM} calls; wall ${r.wallUs.toFixed(1)} µs\n`,
      );
    }
  } finally {
    await eventLoop.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  process.stderr.write(`libvirt-call-cost: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
