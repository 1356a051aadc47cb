// Times LibvirtCollector.collect() against a test-driver node file:
//   node dist/bench/gen-fixture.js 1000 > /tmp/host-1000.xml
//   node dist/bench/libvirt-collect.js /tmp/host-1000.xml [refreshes]
// Reports, for the first (cold: every domain XML parsed) and the following
// (warm: XML unchanged, parse skipped) refreshes: wall time, CPU of the main
// thread (/proc/self/task/<pid>/schedstat, ns resolution) and CPU of the
// whole process (all threads, incl. the libuv pool running libvirt calls).

import { readFileSync } from 'fs';
import * as path from 'path';
import { LibvirtCollector } from '../src/collectors/libvirt';

function mainThreadCpuNs(): bigint {
  const [runNs] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
  return BigInt(runNs);
}

interface Sample {
  wallMs: number;
  mainCpuMs: number;
  processCpuMs: number;
  domains: number;
}

async function timedCollect(collector: LibvirtCollector): Promise<Sample> {
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuNs();
  const t0 = process.hrtime.bigint();
  const records = await collector.collect();
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const mainCpuMs = Number(mainThreadCpuNs() - main0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, mainCpuMs, processCpuMs: (cpu.user + cpu.system) / 1000, domains: records.length };
}

const fmt = (s: Sample): string =>
  `${s.domains} domains: wall ${s.wallMs.toFixed(1)} ms, main-thread CPU ${s.mainCpuMs.toFixed(1)} ms, ` +
  `process CPU ${s.processCpuMs.toFixed(1)} ms`;

async function main(): Promise<void> {
  const file = process.argv[2];
  const refreshes = Number(process.argv[3] ?? '10');
  if (file === undefined || !Number.isInteger(refreshes) || refreshes < 1) {
    process.stderr.write('usage: node dist/bench/libvirt-collect.js NODE.xml [refreshes]\n');
    process.exit(2);
  }
  const collector = new LibvirtCollector({ log: (level, msg) => level !== 'debug' && process.stderr.write(`${level}: ${msg}\n`) });
  await collector.open(`test://${path.resolve(file)}`, { readOnly: true });
  try {
    console.log(`cold  ${fmt(await timedCollect(collector))}`);
    const warm: Sample[] = [];
    for (let i = 0; i < refreshes; i++) warm.push(await timedCollect(collector));
    const avg = (k: keyof Sample): number => warm.reduce((sum, s) => sum + s[k], 0) / warm.length;
    console.log(
      `warm  ${fmt({ wallMs: avg('wallMs'), mainCpuMs: avg('mainCpuMs'), processCpuMs: avg('processCpuMs'), domains: avg('domains') })}` +
        ` (mean of ${refreshes})`,
    );
  } finally {
    await collector.close();
  }
}

void main();
