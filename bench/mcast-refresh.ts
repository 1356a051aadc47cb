// npm run bench:mcast — what the multicast collection costs a refresh at
// 1,000 VMs with 4 groups each, on a real kernel. The issue's budget:
// polling every bridge's whole multicast database at each refresh is
// acceptable only if it costs at most 5 ms there.
//
// As root, in a network namespace of its own (deleted at the end, also on
// failure or Ctrl-C; no traffic leaves it), the bench builds a bridge br0
// with mcast_snooping and BENCH_PORTS (1,000) veth ports vnet0..vnetN-1,
// all down (so the ports are disabled and nothing is snooped), their peers in
// a second namespace of its own, so that the measured one holds what a host
// with 1,000 VM taps does: /proc/net/igmp and igmp6 list the bridge and its
// ports, not also 1,000 peers. Then 4 permanent static groups per port — 2 IPv4
// (239.1.x.y, 239.2.x.y) and 2 IPv6 (ff0e::1:n, ff0e::2:n), each port its
// own, added with `bridge -batch`. Then it runs itself inside the namespace
// (`ip netns exec NS node mcast-refresh.js --inside`) and times, after
// BENCH_WARMUP (5) untimed runs, BENCH_RUNS (50) of each:
//   mdb    BridgeMdbCollector.collect(): the RTM_GETMDB dump (socket, request,
//          the kernel building the answer during recv, close) and its parse;
//          also each half apart (netlinkDump; parseMdbMessages on its answer);
//   host   HostMulticastCollector.collect(): /proc/net/igmp and igmp6 read and
//          parsed (the namespace's own: every device in it, the bridge and
//          the 1,000 ports, lists the groups it joined, all-hosts and all-nodes);
//   model  addMulticastObjects for 1,000 VM rows (one NIC each, hostDevice
//          vnetN, numbered as the index store would) over those entries,
//          into a fresh MibViewBuilder, and the build() of that view apart;
// each in a loop of its own (so one part's garbage is collected in its own
// runs), the sums per run index standing for a refresh's share;
// as CPU (process.cpuUsage, user + system: the kernel builds the dump as
// system time of this process's recv) and wall (performance.now()) milliseconds.
// Last, the time from a change to its RTNLGRP_MDB notification through
// watchBridgeMdb: BENCH_CHANGES (50) `mdb add` / `mdb del` of one entry in
// turn, each a line written to one `bridge -batch -` that runs throughout (no
// process start counted), timed from the write to the callback on the main
// thread — so it includes a pipe hop and bridge's parsing of the line.
// The summary line goes to stdout, the report with every sample to
// .bench-out/mcast-refresh.txt.
//
// Env: BENCH_PORTS (default 1000), BENCH_RUNS (50), BENCH_WARMUP (5), BENCH_CHANGES (50).
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { isPrefixOf, MibViewBuilder } from '../agentx';
import { BridgeMdbCollector, parseMdbMessages, watchBridgeMdb } from '../src/collectors/bridge-mdb';
import { HostCollector } from '../src/collectors/host';
import { HostMulticastCollector } from '../src/collectors/host-mcast';
import { netlinkDump } from '../src/collectors/netlink';
import { hostPaths } from '../src/collectors/paths';
import { addMulticastObjects, vmmMcastGroupEntry } from '../src/model/vmm-mcast';
import type { VmRow } from '../src/model/vm-mib';
import type { HostInfo, MulticastFacts } from '../src/snapshot';
import { DeviceIndexes } from '../src/state/index-store';
import { domainRecord } from '../test/harness/records';

const PORTS = Number(process.env.BENCH_PORTS ?? 1000);
const RUNS = Number(process.env.BENCH_RUNS ?? 50);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5);
const CHANGES = Number(process.env.BENCH_CHANGES ?? 50);
const GROUPS_PER_PORT = 4;
const BUDGET_MS = 5;
const BRIDGE = 'br0';
/** How long one change may take to be notified before the bench gives up. */
const CHANGE_TIMEOUT_MS = 5000;
/** Quiet between two changes. */
const CHANGE_GAP_MS = 20;
const OUT_FILE = path.resolve(__dirname, '../../.bench-out/mcast-refresh.txt');
const RESULT_TAG = 'MCAST-BENCH-RESULT ';

const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The 4 groups of port n: 2 IPv4, 2 IPv6, no two ports sharing one. */
function portGroups(n: number): string[] {
  const [hi, lo] = [n >> 8, n & 255];
  return [`239.1.${hi}.${lo}`, `239.2.${hi}.${lo}`, `ff0e::1:${n.toString(16)}`, `ff0e::2:${n.toString(16)}`];
}

// ---------------------------------------------------------------------------
// Inside the namespace

interface Sample {
  wallMs: number;
  cpuMs: number;
  /** The kernel's part of cpuMs (system time). */
  systemMs: number;
}

interface InsideResult {
  entries: number;
  vmPortEntries: number;
  dumpMessages: number;
  dumpBytes: number;
  hostGroups: number;
  interfaces: number;
  groupRows: number;
  mdb: Sample[];
  /** The two halves of mdb, timed apart: netlinkDump alone, parseMdbMessages alone on its messages. */
  dump: Sample[];
  parse: Sample[];
  host: Sample[];
  model: Sample[];
  build: Sample[];
  /** Change → notification, ms, in the order made (add, del, add, ...). */
  notify: number[];
}

async function timed<T>(fn: () => T | Promise<T>): Promise<{ value: T; sample: Sample }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { value, sample: { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, systemMs: cpu.system / 1000 } };
}

function vmRows(count: number): VmRow[] {
  const rows: VmRow[] = [];
  for (let n = 0; n < count; n++) {
    const mac = `52:54:00:${((n >> 16) & 255).toString(16).padStart(2, '0')}:${((n >> 8) & 255).toString(16).padStart(2, '0')}:` +
      `${(n & 255).toString(16).padStart(2, '0')}`;
    const uuid = `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
    rows.push({
      domain: domainRecord({ uuid, name: `vm-${n}`, nics: [{ kind: 'bridge', mac, model: 'virtio', hostDevice: `vnet${n}`, source: BRIDGE }] }),
      indexes: { vmIndex: n + 1, runningSince: null, disks: DeviceIndexes.EMPTY, nics: DeviceIndexes.fromRecord({ [mac]: 1 }) },
    });
  }
  return rows;
}

async function inside(): Promise<void> {
  const mdbCollector = new BridgeMdbCollector();
  const hostCollector = new HostMulticastCollector(hostPaths());
  const host: HostInfo = await new HostCollector(hostPaths(), (level, message) => progress(`host ${level}: ${message}`)).collect();
  const rows = vmRows(PORTS);

  // What one dump is, and a check that the bench measures what it says.
  const request = Buffer.alloc(8);
  request.writeUInt8(7 /* AF_BRIDGE */, 0);
  const messages = netlinkDump(86 /* RTM_GETMDB */, request);
  const entries = await mdbCollector.collect();
  const bridgeIfIndex = host.interfaces.get(BRIDGE)?.ifIndex;
  const vmPortEntries = entries.filter((e) => e.portIfIndex !== e.bridgeIfIndex && e.bridgeIfIndex === bridgeIfIndex).length;
  if (vmPortEntries !== PORTS * GROUPS_PER_PORT) {
    throw new Error(`the dump has ${vmPortEntries} port entries on ${BRIDGE}, not ${PORTS * GROUPS_PER_PORT}`);
  }
  const hostGroups = await hostCollector.collect();
  const facts: MulticastFacts = { mdb: entries, hostGroups, agent: null };
  const probe = new MibViewBuilder();
  addMulticastObjects(probe, rows, facts, host);
  const probeView = probe.build();
  // Group rows: the instances under vmmMcastGroupEntry divided by its 3 columns.
  const groupRows = [...probeView].filter((vb) => isPrefixOf(vmmMcastGroupEntry, vb.oid)).length / 3;
  if (groupRows !== PORTS * GROUPS_PER_PORT) throw new Error(`the model made ${groupRows} group rows, not ${PORTS * GROUPS_PER_PORT}`);

  const result: InsideResult = {
    entries: entries.length, vmPortEntries, dumpMessages: messages.length,
    dumpBytes: messages.reduce((n, m) => n + 16 + m.payload.length, 0), hostGroups: hostGroups.length,
    interfaces: host.interfaces.size, groupRows, mdb: [], dump: [], parse: [], host: [], model: [], build: [], notify: [],
  };

  progress(`inside: ${entries.length} entries in ${messages.length} message(s), ${result.dumpBytes} bytes; timing ${WARMUP} + ${RUNS} runs`);
  // Each part in a loop of its own, so that the garbage one part leaves is collected during its own runs.
  const series = async <T>(into: Sample[], fn: () => T | Promise<T>): Promise<void> => {
    for (let i = 0; i < WARMUP + RUNS; i++) {
      const { sample } = await timed(fn);
      if (i >= WARMUP) into.push(sample);
    }
  };
  await series(result.mdb, () => mdbCollector.collect());
  await series(result.dump, () => netlinkDump(86, request));
  await series(result.parse, () => parseMdbMessages(messages));
  await series(result.host, () => hostCollector.collect());
  // Builders made beforehand (the agent makes one for its whole view), each filled once, then built.
  const builders = Array.from({ length: WARMUP + RUNS }, () => new MibViewBuilder());
  let filled = 0;
  await series(result.model, () => addMulticastObjects(builders[filled++], rows, facts, host));
  let built = 0;
  await series(result.build, () => builders[built++].build());

  result.notify = await notificationLatency();
  process.stdout.write(`${RESULT_TAG}${JSON.stringify(result)}\n`);
}

/** Change → RTNLGRP_MDB notification, through one long-running `bridge -batch -`. */
async function notificationLatency(): Promise<number[]> {
  let notes: number[] = [];
  let wake: (() => void) | null = null;
  let failure: Error | null = null;
  const subscription = watchBridgeMdb(() => {
    notes.push(performance.now());
    wake?.();
  }, (err) => { failure = err; });
  const bridge = spawn('bridge', ['-batch', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let bridgeErr = '';
  bridge.stderr.on('data', (chunk: Buffer) => { bridgeErr += chunk.toString('utf8'); });
  const exited = new Promise<void>((resolve) => bridge.once('close', () => resolve()));
  let gone = false;
  void exited.then(() => { gone = true; });
  const latencies: number[] = [];
  try {
    await sleep(100);
    const group = '239.3.0.1';
    for (let i = 0; i < WARMUP + CHANGES; i++) {
      const verb = i % 2 === 0 ? 'add' : 'del';
      notes = [];
      const t0 = performance.now();
      bridge.stdin.write(`mdb ${verb} dev ${BRIDGE} port vnet0 grp ${group} permanent\n`);
      const at = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no notification of mdb ${verb} within ${CHANGE_TIMEOUT_MS} ms` +
          `${failure ? ` (${(failure as Error).message})` : ''}${gone ? `; bridge exited: ${bridgeErr.trim()}` : ''}`)), CHANGE_TIMEOUT_MS);
        const check = (): void => {
          const first = notes.find((t) => t >= t0);
          if (first === undefined) return;
          clearTimeout(timer);
          wake = null;
          resolve(first);
        };
        wake = check;
        check();
      });
      if (i >= WARMUP) latencies.push(at - t0);
      await sleep(CHANGE_GAP_MS);
    }
  } finally {
    bridge.stdin.end();
    const timer = setTimeout(() => bridge.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
    await subscription.close();
  }
  return latencies;
}

// ---------------------------------------------------------------------------
// Outside: the namespace, the run, the report

function run(cmd: string, args: string[], timeoutMs = 300_000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

function stats(values: number[]): { median: number; p90: number; max: number; min: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * (s.length - 1) + 0.5))];
  return { median: s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2, p90: at(0.9), max: s[s.length - 1], min: s[0] };
}

const f2 = (n: number): string => n.toFixed(2);

function statLine(label: string, samples: Sample[]): string {
  const cpu = stats(samples.map((s) => s.cpuMs));
  const wall = stats(samples.map((s) => s.wallMs));
  return `  ${label.padEnd(38)} CPU median ${f2(cpu.median).padStart(7)}  p90 ${f2(cpu.p90).padStart(7)}  max ${f2(cpu.max).padStart(7)}` +
    `   wall median ${f2(wall.median).padStart(7)}  p90 ${f2(wall.p90).padStart(7)}  max ${f2(wall.max).padStart(7)}`;
}

function sum(...series: Sample[][]): Sample[] {
  return series[0].map((_s, i) => ({
    cpuMs: series.reduce((n, s) => n + s[i].cpuMs, 0),
    systemMs: series.reduce((n, s) => n + s[i].systemMs, 0),
    wallMs: series.reduce((n, s) => n + s[i].wallMs, 0),
  }));
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root: it makes a network namespace with a bridge and veth ports');
  for (const tool of ['ip', 'bridge']) {
    try {
      run(tool, ['-V']);
    } catch {
      throw new Error(`no ${tool} (apt-get install iproute2)`);
    }
  }
  const ns = `vmm-mcast-bench-${process.pid}`;
  const peersNs = `${ns}-peers`;
  const work = mkdtempSync(path.join(os.tmpdir(), 'mcast-bench-'));
  const created: string[] = [];
  let child: ChildProcess | null = null;
  const cleanup = (): void => {
    if (child && child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    while (created.length > 0) {
      const name = created.pop()!;
      try {
        run('ip', ['netns', 'del', name], 60_000);
      } catch (err) {
        progress(`could not delete network namespace ${name}: ${(err as Error).message}; delete it with: ip netns del ${name}`);
      }
    }
    rmSync(work, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    progress(`${signal}: cleaning up`);
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const t0 = performance.now();
    for (const name of [ns, peersNs]) {
      run('ip', ['netns', 'add', name]);
      created.push(name);
    }
    const links = [
      'link set lo up',
      `link add ${BRIDGE} type bridge mcast_snooping 1 mcast_hash_max ${Math.max(4096, 2 ** Math.ceil(Math.log2(PORTS * GROUPS_PER_PORT + 64)))}`,
    ];
    for (let n = 0; n < PORTS; n++) links.push(`link add vnet${n} type veth peer name peer${n} netns ${peersNs}`, `link set vnet${n} master ${BRIDGE}`);
    links.push(`link set ${BRIDGE} up`);
    writeFileSync(path.join(work, 'links'), `${links.join('\n')}\n`);
    run('ip', ['-n', ns, '-batch', path.join(work, 'links')]);
    const tLinks = performance.now();
    const mdb: string[] = [];
    for (let n = 0; n < PORTS; n++) for (const g of portGroups(n)) mdb.push(`mdb add dev ${BRIDGE} port vnet${n} grp ${g} permanent`);
    writeFileSync(path.join(work, 'mdb'), `${mdb.join('\n')}\n`);
    run('bridge', ['-n', ns, '-batch', path.join(work, 'mdb')]);
    const tMdb = performance.now();
    progress(`namespace ${ns}: ${PORTS} ports in ${((tLinks - t0) / 1000).toFixed(1)} s, ${mdb.length} static entries in ` +
      `${((tMdb - tLinks) / 1000).toFixed(1)} s`);

    const load = os.loadavg();
    const output = await new Promise<string>((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', ns, process.execPath, __filename, '--inside'], {
        stdio: ['ignore', 'pipe', 'inherit'],
        env: process.env,
      });
      child = c;
      let out = '';
      c.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString('utf8'); });
      c.once('error', reject);
      c.once('close', (code, signal) => {
        if (code === 0) resolve(out);
        else reject(new Error(`the run inside the namespace ended with ${signal ?? `code ${code}`}`));
      });
    });
    child = null;
    const line = output.split('\n').find((l) => l.startsWith(RESULT_TAG));
    if (!line) throw new Error(`no result from inside the namespace: ${output}`);
    const r = JSON.parse(line.slice(RESULT_TAG.length)) as InsideResult;
    report(r, { load, setupLinksS: (tLinks - t0) / 1000, setupMdbS: (tMdb - tLinks) / 1000 });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
  }
}

function report(r: InsideResult, env: { load: number[]; setupLinksS: number; setupMdbS: number }): void {
  const mdbCpu = stats(r.mdb.map((s) => s.cpuMs));
  const poll = sum(r.mdb, r.host);
  const all = sum(r.mdb, r.host, r.model, r.build);
  const pollCpu = stats(poll.map((s) => s.cpuMs));
  const allCpu = stats(all.map((s) => s.cpuMs));
  const notify = stats(r.notify);
  const verdict = (ms: number): string => (ms <= BUDGET_MS ? `within the ${BUDGET_MS} ms budget` : `OVER the ${BUDGET_MS} ms budget`);
  const hostCpu = stats(r.host.map((s) => s.cpuMs));
  const modelCpu = stats(r.model.map((s) => s.cpuMs));
  const summary = `mcast-refresh: ${PORTS} VMs x ${GROUPS_PER_PORT} groups: mdb dump+parse ${f2(mdbCpu.median)} ms CPU median ` +
    `(max ${f2(mdbCpu.max)}) — ${verdict(mdbCpu.median)}; host groups ${f2(hostCpu.median)}, model ${f2(modelCpu.median)}, ` +
    `all ${f2(allCpu.median)} ms CPU per refresh; change → notification ${f2(notify.median)} ms median (max ${f2(notify.max)})`;
  const cpus = os.cpus();
  const text = [
    'npm run bench:mcast — multicast collection per refresh (bench/mcast-refresh.ts)',
    `${new Date().toISOString()}  Linux ${os.release()}  node ${process.version}  ${cpus.length} x ${cpus[0]?.model ?? '?'}`,
    `load average at the start: ${env.load.map((l) => l.toFixed(2)).join(' ')} (other work on the machine shows in max and wall)`,
    '',
    `setup: bridge ${BRIDGE} (mcast_snooping 1, up), ${PORTS} veth ports (down: disabled, nothing snooped; peers in another namespace), ` +
      `${PORTS * GROUPS_PER_PORT} permanent static entries (2 IPv4 + 2 IPv6 per port); ports in ${env.setupLinksS.toFixed(1)} s, ` +
      `entries in ${env.setupMdbS.toFixed(1)} s (bridge -batch)`,
    `dump: ${r.entries} entries (${r.vmPortEntries} on VM ports${r.entries > r.vmPortEntries ? ', the rest the bridge\'s own' : ''}), ` +
      `${r.dumpMessages} message(s), ` +
      `${r.dumpBytes} bytes; host groups: ${r.hostGroups}; interfaces: ${r.interfaces}; group rows made: ${r.groupRows}`,
    '',
    `ms per call, ${RUNS} runs after ${WARMUP} warm-ups (CPU = user + system of the process, the kernel's dump work included):`,
    statLine('mdb: BridgeMdbCollector.collect()', r.mdb),
    `    of which the kernel (system time): median ${f2(stats(r.mdb.map((s) => s.systemMs)).median)}`,
    statLine('  apart: netlinkDump (socket..close)', r.dump),
    statLine('  apart: parseMdbMessages', r.parse),
    statLine('host: HostMulticastCollector.collect()', r.host),
    statLine(`model: addMulticastObjects (${PORTS} VMs)`, r.model),
    statLine('build(): the multicast-only view', r.build),
    statLine('mdb + host (the polling)', poll),
    statLine('mdb + host + model + build', all),
    '',
    `budget (the issue): polling the whole database each refresh is acceptable if it costs <= ${BUDGET_MS} ms at 1,000 VMs x 4 groups:`,
    `  mdb dump + parse: ${f2(mdbCpu.median)} ms CPU median (max ${f2(mdbCpu.max)}) — ${verdict(mdbCpu.median)}`,
    'for comparison (no budget of their own): what the refresh adds for multicast in all',
    `  mdb + host groups: ${f2(pollCpu.median)} ms CPU median; with the model and build(): ${f2(allCpu.median)} ms`,
    '',
    `change → RTNLGRP_MDB notification (watchBridgeMdb callback), ${r.notify.length} changes (mdb add / del in turn) after ${WARMUP}:`,
    `  median ${f2(notify.median)} ms  p90 ${f2(notify.p90)}  max ${f2(notify.max)}  min ${f2(notify.min)} ` +
      '(from the line written to `bridge -batch -`: includes the pipe hop and bridge\'s parse)',
    '',
    summary,
    '',
    'samples (ms): run, mdb cpu, mdb system, mdb wall, dump cpu, parse cpu, host cpu, host wall, model cpu, model wall, build cpu, build wall',
    ...r.mdb.map((_s, i) => [i + 1, r.mdb[i].cpuMs, r.mdb[i].systemMs, r.mdb[i].wallMs, r.dump[i].cpuMs, r.parse[i].cpuMs, r.host[i].cpuMs,
      r.host[i].wallMs, r.model[i].cpuMs, r.model[i].wallMs, r.build[i].cpuMs, r.build[i].wallMs]
      .map((v, k) => (k === 0 ? String(v) : f2(v))).join(', ')),
    'notification latency (ms), in order (add, del, ...):',
    r.notify.map(f2).join(', '),
    '',
  ].join('\n');
  mkdirSync(path.dirname(OUT_FILE), { recursive: true });
  writeFileSync(OUT_FILE, text);
  process.stdout.write(`${summary}\nreport: ${OUT_FILE}\n`);
}

if (process.argv[2] === '--inside') {
  inside().catch((err: Error) => {
    progress(`inside the namespace: ${err.stack ?? err.message}`);
    process.exit(1);
  });
} else {
  main().catch((err: Error) => {
    progress(`bench:mcast failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  });
}
