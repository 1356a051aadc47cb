// Times snmpbulkwalk through a private snmpd: the measurement shared by the
// AgentX bench and the VM-MIB bench. Wall time per varbind is what a manager
// sees; Net-SNMP's master sends one AgentX GetNext per returned varbind.
import { spawn } from 'child_process';
import { performance } from 'perf_hooks';
import type { SnmpdInstance } from '../test/harness/snmpd';
import { clientEnvironment } from '../test/harness/snmp-tools';

export interface WalkTiming {
  varbinds: number;
  seconds: number;
  usPerVarbind: number;
}

/** One snmpbulkwalk; counts output lines (one per varbind with -On -Oq). */
export function bulkwalkOnce(snmpd: SnmpdInstance, oid: string): Promise<WalkTiming> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('snmpbulkwalk', ['-v2c', '-c', 'public', '-On', '-Oq', '-t', '30', '-r', '0', `127.0.0.1:${snmpd.udpPort}`, oid], {
      env: clientEnvironment(snmpd),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lines = 0;
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      for (const b of chunk) if (b === 10) lines++;
    });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      if (code !== 0) reject(new Error(`snmpbulkwalk ${oid} exited ${code}: ${stderr.trim()}`));
      else resolve({ varbinds: lines, seconds, usPerVarbind: lines ? (seconds * 1e6) / lines : 0 });
    });
  });
}

/**
 * Median of `runs` walks, after warm-up walks: a subagent serves for days, so
 * what matters is its speed once V8 has compiled the answer path.
 */
export async function bulkwalkMedian(snmpd: SnmpdInstance, oid: string, runs: number, warmups = 3): Promise<WalkTiming> {
  for (let i = 0; i < warmups; i++) await bulkwalkOnce(snmpd, oid);
  const all: WalkTiming[] = [];
  for (let i = 0; i < runs; i++) all.push(await bulkwalkOnce(snmpd, oid));
  all.sort((a, b) => a.seconds - b.seconds);
  return all[Math.floor(all.length / 2)];
}

export function formatTiming(label: string, t: WalkTiming): string {
  return `${label.padEnd(34)} ${String(t.varbinds).padStart(8)} varbinds ${t.seconds.toFixed(3).padStart(8)} s ${t.usPerVarbind.toFixed(1).padStart(7)} µs/varbind`;
}
