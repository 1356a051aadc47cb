// npm run bench:notify — how long a VM state change takes to reach a manager
// as a VM-MIB notification, with real daemons only:
//   - a session libvirtd serving the test driver over RPC (test/harness/libvirtd.ts),
//   - a private unprivileged snmpd (AgentX on a unix socket in its temp dir)
//     whose trap2sink is a private snmptrapd on a free loopback UDP port,
//   - the agent (bin/vmm-agentx, --refresh 3600 so no timer refresh
//     interferes) watching that libvirtd.
// One domain ("test", test:///default's own) is suspended and resumed in
// turn, one transition at a time: the next starts only once the previous
// one's notification has arrived and the agent has logged the end of its
// refresh, then BENCH_GAP_MS of quiet.
//
// What is timed, all with performance.now() in this process at the moment
// the bytes are read from a pipe (so each instant includes the writer's print
// and one pipe hop, well under a millisecond here):
//   command  the "suspend test" / "resume test" line is written to a virsh
//            shell that runs for the whole bench (no process start counted);
//   event    a separate libvirt client, `virsh -r event --loop`, prints the
//            lifecycle event: the moment libvirtd's event reached a client.
//            The agent is another client of the same daemon and receives the
//            same event over its own unix socket at about the same moment;
//   return   the virsh shell prints a marker after the command returned;
//   trap     snmptrapd (-f -Lo, one line per notification) prints the
//            matching vmPaused / vmRunning, checked for vmName and the
//            previous vmOperState.
// The figure reported is trap − event; trap − return is shown beside it.
// How it is made up, from the agent's debug line "refresh: … X ms wall"
// (logged when a refresh ends, after the notification was handed to snmpd
// and the state file saved): refresh start ≈ arrival of that line − X, which
// splits trap − event into event → refresh start (the hop into Node and the
// agent's turn of its event loop) and refresh start → trap (collection, model, AgentX Notify,
// snmpd, snmptrapd). Both instants are a client's view, so expect an
// error of a millisecond or so (a few under load): a busy watcher prints its
// event late, which shows as a refresh "starting" before the event.
// The report and every transition's figures go to
// .bench-out/notification-latency.txt.
//
// The agent holds per-VM notifications back above notifications-rate-limit
// (20 a second by default): BENCH_GAP_MS keeps the bench well below that.
//
// Env: BENCH_TRANSITIONS (timed, default 100), BENCH_WARMUP (untimed ones
// first, default 4), BENCH_GAP_MS (quiet between transitions, default 100),
// BENCH_EXTRA_VMS (more running test-driver domains the agent refreshes each
// time, default 0: test:///default's one domain only).
import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { startSessionLibvirtd, SessionLibvirtd } from '../test/harness/libvirtd';
import { freeUdpPort } from '../test/harness/ports';
import { ManagedProcess, sleep, spawnManaged, stopProcess, toolEnv } from '../test/harness/process';
import { startSnmpd, SnmpdInstance } from '../test/harness/snmpd';
import { launcherSettings, parseRefreshLines, startVmAgent, VmAgent } from './vm-agent';

const TRANSITIONS = Number(process.env.BENCH_TRANSITIONS ?? 100);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 4);
const GAP_MS = Number(process.env.BENCH_GAP_MS ?? 100);
const EXTRA_VMS = Number(process.env.BENCH_EXTRA_VMS ?? 0);
const GOAL_MEDIAN_MS = 50;
/** How long one transition may take before the bench gives up. */
const TRANSITION_TIMEOUT_MS = 10_000;
const OUT_FILE = path.resolve(__dirname, '../../.bench-out/notification-latency.txt');

const DOMAIN = 'test';
const VM_MIB = '.1.3.6.1.2.1.236';
const SNMP_TRAP_OID = '.1.3.6.1.6.3.1.1.4.1.0';
const VM_NAME_COLUMN = `${VM_MIB}.1.4.1.2.`;
const VM_OPER_STATE_COLUMN = `${VM_MIB}.1.4.1.6.`;

interface Transition {
  command: 'suspend' | 'resume';
  /** What `virsh event` prints for it. */
  event: RegExp;
  /** The per-VM notification (RFC 7666 §4) and the previous vmOperState it carries. */
  trapOid: string;
  previousState: string;
}

const SUSPEND: Transition = {
  command: 'suspend', event: /^event 'lifecycle' for domain '?test'?: Suspended\b/, trapOid: `${VM_MIB}.0.4`, previousState: '4',
};
const RESUME: Transition = {
  command: 'resume', event: /^event 'lifecycle' for domain '?test'?: Resumed\b/, trapOid: `${VM_MIB}.0.1`, previousState: '8',
};

const progress = (msg: string): void => void process.stderr.write(`${msg}\n`);

interface Line {
  text: string;
  /** performance.now() when the chunk completing this line was read. */
  at: number;
}

/** Complete lines of a pipe, each stamped when it arrived; waits for the first match after an index. */
class LineTap {
  readonly lines: Line[] = [];
  private partial = '';
  private readonly waiters = new Set<() => void>();

  feed(chunk: string): void {
    const at = performance.now();
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    if (parts.length === 0) return;
    for (const text of parts) this.lines.push({ text, at });
    for (const wake of [...this.waiters]) wake();
  }

  get length(): number {
    return this.lines.length;
  }

  /** The first line at index `from` or later that `match` accepts, as soon as it has arrived. */
  waitFor(from: number, match: (text: string) => boolean, what: string, timeoutMs: number): Promise<Line> {
    return new Promise((resolve, reject) => {
      let next = from;
      const check = (): void => {
        try {
          for (; next < this.lines.length; next++) {
            if (!match(this.lines[next].text)) continue;
            done();
            resolve(this.lines[next]);
            return;
          }
        } catch (err) {
          done();
          reject(err as Error);
        }
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no ${what} within ${timeoutMs} ms; last lines:\n${this.lines.slice(-10).map((l) => l.text).join('\n')}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }
}

function tapManaged(proc: ManagedProcess): LineTap {
  const tap = new LineTap();
  proc.onOutput((text) => tap.feed(text));
  return tap;
}

/**
 * One interactive virsh for the whole bench: a command costs a line on its
 * stdin, not a process start and a libvirt connection. Each command is
 * followed by an `echo` of a marker, printed once the command has returned.
 * Interactive virsh echoes each input line and prints echo's output without
 * a newline before the next prompt, so the marker is looked for in the raw
 * output, quoted in the input (echo '@@done'7 prints @@done7) so that the
 * echoed input never contains it.
 */
class VirshShell {
  private stdout = '';
  private stderr = '';
  private readonly waiters = new Set<() => void>();
  private readonly exited: Promise<void>;
  private gone = false;
  private sent = 0;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (chunk: Buffer) => {
      this.stdout += chunk.toString('utf8');
      for (const wake of [...this.waiters]) wake();
    });
    child.stderr.on('data', (chunk: Buffer) => { this.stderr += chunk.toString('utf8'); });
    this.exited = new Promise((resolve) => child.once('close', () => {
      this.gone = true;
      resolve();
    }));
    // Should this process die without stop(), the shell must not outlive it.
    process.once('exit', this.killOnExit);
  }

  static start(uri: string): Promise<VirshShell> {
    return new Promise((resolve, reject) => {
      const child = spawn('virsh', ['-q', '-c', uri], { env: toolEnv(process.env), stdio: ['pipe', 'pipe', 'pipe'] });
      child.once('error', (err) => reject(new Error(`cannot start virsh: ${err.message}`)));
      child.once('spawn', () => resolve(new VirshShell(child)));
    });
  }

  private readonly killOnExit = (): void => {
    if (!this.gone && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  };

  /** Writes the command; resolves with performance.now() when its marker arrived (the command had returned). */
  run(command: string, timeoutMs = TRANSITION_TIMEOUT_MS): Promise<number> {
    const n = ++this.sent;
    const marker = `@@done${n}@`;
    const from = this.stdout.length;
    const errorsBefore = this.stderr.length;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.stdout.indexOf(marker, from) < 0) return;
        const at = performance.now();
        done();
        const errors = this.stderr.slice(errorsBefore).trim();
        if (errors !== '') reject(new Error(`virsh "${command}": ${errors}`));
        else resolve(at);
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
        // Keep the buffer short: nothing before this marker is looked at again.
        if (this.waiters.size === 0) this.stdout = '';
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`virsh "${command}" did not return within ${timeoutMs} ms; stderr: ${this.stderr.slice(errorsBefore)}`));
      }, timeoutMs);
      this.waiters.add(check);
      this.child.stdin.write(`${command} ; echo '@@done'${n}'@'\n`);
    });
  }

  /** End of input ends the shell; SIGTERM, then SIGKILL, by its PID if it lingers. */
  async stop(): Promise<void> {
    if (!this.gone) {
      this.child.stdin.end();
      const pid = this.child.pid as number;
      for (const signal of [null, 'SIGTERM', 'SIGKILL'] as const) {
        if (signal !== null && !this.gone) process.kill(pid, signal);
        if (await Promise.race([this.exited.then(() => true), sleep(2000).then(() => false)])) break;
      }
    }
    process.removeListener('exit', this.killOnExit);
  }
}

interface TrapReceiver {
  proc: ManagedProcess;
  port: number;
  dir: string;
  lines: LineTap;
}

const TRAP_PREFIX = 'VMMTRAP ';

/**
 * snmptrapd in the foreground logging to stdout (-f -Lo), a pipe to this
 * process: one line per notification, "VMMTRAP " and the varbinds separated
 * by tabs (%V sets the separator), numeric OIDs.
 */
async function startTrapReceiver(workDir: string): Promise<TrapReceiver> {
  const dir = mkdtempSync(path.join(workDir, 'snmptrapd-'));
  const port = await freeUdpPort();
  const config = path.join(dir, 'snmptrapd.conf');
  writeFileSync(config, ['authCommunity log public', 'disableAuthorization yes', 'doNotRetainNotificationLogs yes', ''].join('\n'));
  const proc = await spawnManaged('/usr/sbin/snmptrapd', [
    '-f', '-Lo', '-C', '-c', config, '-On', '-n', '-F', `${TRAP_PREFIX}%V\t%v\n`,
    '-p', path.join(dir, 'snmptrapd.pid'), `udp:127.0.0.1:${port}`,
  ], {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin', SNMP_PERSISTENT_DIR: path.join(dir, 'persist'), MIBS: '' },
    cwd: dir,
  });
  const lines = tapManaged(proc);
  try {
    await lines.waitFor(0, (text) => text.includes('NET-SNMP version'), 'snmptrapd start-up line', 10_000);
  } catch (err) {
    await stopProcess(proc);
    throw err;
  }
  return { proc, port, dir, lines };
}

/** Varbinds of a snmptrapd line: OID → "TYPE: value" (or null when the line is not a trap). */
function parseTrapLine(text: string): Map<string, string> | null {
  if (!text.startsWith(TRAP_PREFIX)) return null;
  const varbinds = new Map<string, string>();
  for (const vb of text.slice(TRAP_PREFIX.length).split('\t')) {
    const eq = vb.indexOf(' = ');
    if (eq > 0) varbinds.set(vb.slice(0, eq).trim(), vb.slice(eq + 3).trim());
  }
  return varbinds;
}

/** Whether a trap is `t`'s notification about the domain, with the right previous vmOperState. */
function matchesTransition(text: string, t: Transition): boolean {
  const vbs = parseTrapLine(text);
  if (vbs === null || vbs.get(SNMP_TRAP_OID) !== `OID: ${t.trapOid}`) return false;
  const name = [...vbs].find(([oid]) => oid.startsWith(VM_NAME_COLUMN));
  if (name === undefined || name[1] !== `STRING: "${DOMAIN}"`) return false;
  const vmIndex = name[0].slice(VM_NAME_COLUMN.length);
  const previous = vbs.get(VM_OPER_STATE_COLUMN + vmIndex);
  if (previous !== `INTEGER: ${t.previousState}`) {
    throw new Error(`${t.command}: notification ${t.trapOid} carries previous vmOperState "${previous}", expected ${t.previousState}: ${text}`);
  }
  return true;
}

function isVmMibTrap(text: string): boolean {
  return parseTrapLine(text)?.get(SNMP_TRAP_OID)?.startsWith(`OID: ${VM_MIB}.0.`) ?? false;
}

interface Sample {
  command: string;
  /** All in ms, relative to the event line. */
  commandAt: number;
  returnAt: number;
  trapAt: number;
  /** Estimated from the agent's refresh line: its arrival − the wall time it reports. */
  refreshStartAt: number;
  refreshWallMs: number;
  /** Refresh lines the agent logged during this transition (1 expected). */
  refreshes: number;
  /** "collector NAME: ok in X ms" of that refresh, by collector. */
  collectorMs: Map<string, number>;
}

const COLLECTOR_LINE = /collector (\S+): ok in ([\d.]+) ms/;

async function oneTransition(t: Transition, shell: VirshShell, watcher: LineTap, traps: LineTap, agentLines: LineTap): Promise<Sample> {
  const marks = { event: watcher.length, trap: traps.length, agent: agentLines.length };
  const isRefresh = (text: string): boolean => parseRefreshLines(text).length > 0;
  const event = watcher.waitFor(marks.event, (text) => t.event.test(text), `"${t.command}" event from virsh event`, TRANSITION_TIMEOUT_MS);
  const trap = traps.waitFor(marks.trap, (text) => matchesTransition(text, t), `${t.command} notification at snmptrapd`, TRANSITION_TIMEOUT_MS);
  const refresh = agentLines.waitFor(marks.agent, isRefresh, `agent refresh line after ${t.command}`, TRANSITION_TIMEOUT_MS);
  // Rejections are handled by the await below; these keep an early one from being "unhandled" meanwhile.
  for (const p of [event, trap, refresh]) p.catch(() => undefined);
  const commandAt = performance.now();
  const returnedAt = await shell.run(`${t.command} ${DOMAIN}`);
  const [e, tr, r] = await Promise.all([event, trap, refresh]);
  const wallMs = parseRefreshLines(r.text)[0].wallMs;
  const sample: Sample = {
    command: t.command,
    commandAt: commandAt - e.at,
    returnAt: returnedAt - e.at,
    trapAt: tr.at - e.at,
    refreshStartAt: r.at - wallMs - e.at,
    refreshWallMs: wallMs,
    refreshes: 0,
    collectorMs: new Map(),
  };
  await sleep(GAP_MS);
  const logged = agentLines.lines.slice(marks.agent);
  sample.refreshes = logged.filter((l) => isRefresh(l.text)).length;
  for (const { text } of logged) {
    const m = COLLECTOR_LINE.exec(text);
    if (m && !sample.collectorMs.has(m[1])) sample.collectorMs.set(m[1], Number(m[2]));
  }
  return sample;
}

interface Stats {
  median: number;
  p90: number;
  max: number;
  min: number;
}

/** Median (mean of the middle two for an even count), p90 by nearest rank, min, max. */
function stats(values: readonly number[]): Stats {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const median = n % 2 === 1 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  return { median, p90: s[Math.ceil(0.9 * n) - 1], max: s[n - 1], min: s[0] };
}

const ms = (v: number): string => v.toFixed(1).padStart(7);
const row = (label: string, values: readonly number[]): string => {
  const s = stats(values);
  return `  ${label.padEnd(50)}${ms(s.median)}${ms(s.p90)}${ms(s.max)}${ms(s.min)}`;
};

function report(samples: readonly Sample[], env: { unexpectedTraps: number; started: number; load: string }): string {
  const latency = samples.map((s) => s.trapAt);
  const s = stats(latency);
  const extraRefreshes = samples.reduce((n, x) => n + Math.max(0, x.refreshes - 1), 0);
  const lines = [
    `vmm-agentx notification latency — npm run bench:notify (node dist/bench/notification-latency.js)`,
    `${os.cpus().length} CPUs, node ${process.version}, ${new Date().toISOString()}, load ${env.load}, took ${((Date.now() - env.started) / 1000).toFixed(0)} s`,
    `agent: bin/vmm-agentx (${launcherSettings()}), --refresh 3600`,
    `libvirt: session libvirtd, test driver over RPC (test+unix:///default), ${1 + EXTRA_VMS} running domain(s); ` +
      `snmpd trap2sink → snmptrapd on 127.0.0.1, all loopback / unix sockets`,
    `${samples.length} transitions (virsh suspend/resume of "${DOMAIN}" in turn, one at a time, ${GAP_MS} ms apart) after ${WARMUP} untimed`,
    '',
    `${'ms ("event": the lifecycle event reached a separate libvirt client)'.padEnd(73)}median    p90    max    min`,
    row('event → trap logged by snmptrapd (THE FIGURE)', latency),
    row('virsh command returned → trap', samples.map((x) => x.trapAt - x.returnAt)),
    row('command written to virsh → trap', samples.map((x) => x.trapAt - x.commandAt)),
    row('command written → event', samples.map((x) => -x.commandAt)),
    row('command returned − event (negative: before)', samples.map((x) => x.returnAt)),
  ];
  lines.push(
    `  made up of (refresh start = arrival of the agent's "refresh: … ms wall" line − that wall time):`,
    row('  event → agent refresh starts', samples.map((x) => x.refreshStartAt)),
    row('  refresh start → trap (collect, model, notify)', samples.map((x) => x.trapAt - x.refreshStartAt)),
    row('  refresh wall time as the agent logs it', samples.map((x) => x.refreshWallMs)),
  );
  for (const name of ['libvirt', 'host']) {
    const values = samples.flatMap((x) => x.collectorMs.get(name) ?? []);
    if (values.length > 0) lines.push(row(`    of which collector ${name} (run in parallel)`, values));
  }
  lines.push(
    '',
    `refreshes beyond one per transition: ${extraRefreshes}; VM-MIB notifications not matched to a transition: ${env.unexpectedTraps}`,
    '',
    `notify latency: median ${s.median.toFixed(1)} ms, p90 ${s.p90.toFixed(1)} ms, max ${s.max.toFixed(1)} ms over ${samples.length} ` +
      `transitions (libvirt event at a client → snmptrapd logs the vmPaused/vmRunning); ` +
      `goal median ≤ ${GOAL_MEDIAN_MS} ms: ${s.median <= GOAL_MEDIAN_MS ? 'met' : 'NOT met'}`,
  );
  return lines.join('\n') + '\n';
}

function samplesCsv(samples: readonly Sample[]): string {
  const head = 'n,command,command_ms,return_ms,trap_ms,refresh_start_ms,refresh_wall_ms,refreshes';
  const f = (v: number): string => v.toFixed(3);
  return [head, ...samples.map((s, i) =>
    [i + 1, s.command, f(s.commandAt), f(s.returnAt), f(s.trapAt), f(s.refreshStartAt), f(s.refreshWallMs), s.refreshes].join(','))].join('\n') + '\n';
}

/** Transient running test-driver domains, created before the agent starts. */
async function createExtraDomains(shell: VirshShell, workDir: string, count: number): Promise<void> {
  for (let i = 1; i <= count; i++) {
    const name = `extra-${String(i).padStart(4, '0')}`;
    const file = path.join(workDir, `${name}.xml`);
    writeFileSync(file, `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n`);
    await shell.run(`create ${file}`);
  }
}

async function main(): Promise<void> {
  if (!Number.isInteger(TRANSITIONS) || TRANSITIONS < 1) throw new Error(`BENCH_TRANSITIONS=${process.env.BENCH_TRANSITIONS} is not a positive integer`);
  const started = Date.now();
  const loadBefore = os.loadavg()[0];
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'vmm-bench-notify-'));
  chmodSync(workDir, 0o755);
  let libvirtd: SessionLibvirtd | undefined;
  let watcher: ManagedProcess | undefined;
  let shell: VirshShell | undefined;
  let trapd: TrapReceiver | undefined;
  let snmpd: SnmpdInstance | undefined;
  let agent: VmAgent | undefined;
  const samples: Sample[] = [];
  let unexpectedTraps = 0;
  try {
    progress('starting libvirtd (session, test driver over RPC)');
    libvirtd = await startSessionLibvirtd();
    const uri = libvirtd.testUri;
    // test:///default lives while some client holds it: the watcher does, from before any change.
    watcher = await spawnManaged('virsh', ['-q', '-r', '-c', uri, 'event', '--loop', '--event', 'lifecycle'], { env: process.env });
    const events = tapManaged(watcher);
    shell = await VirshShell.start(uri);
    await shell.run(`domstate ${DOMAIN}`);
    if (EXTRA_VMS > 0) {
      progress(`creating ${EXTRA_VMS} more running domains`);
      await createExtraDomains(shell, workDir, EXTRA_VMS);
    }
    progress('starting snmptrapd and snmpd');
    trapd = await startTrapReceiver(workDir);
    snmpd = await startSnmpd({ trapSink: { port: trapd.port } });
    progress('starting the agent');
    const stateDir = mkdtempSync(path.join(workDir, 'state-'));
    agent = await startVmAgent(snmpd, { libvirtUri: uri, stateDir, refreshSeconds: 3600, readyTimeoutMs: 30_000 });
    const agentLines = tapManaged(agent.proc);
    await agent.waitForRefreshes(1, 10_000);
    const trapMark = trapd.lines.length;

    let next = SUSPEND;
    for (let i = 0; i < WARMUP + TRANSITIONS; i++) {
      const sample = await oneTransition(next, shell, events, trapd.lines, agentLines);
      if (i >= WARMUP) samples.push(sample);
      next = next === SUSPEND ? RESUME : SUSPEND;
      if ((i + 1) % 20 === 0) progress(`  ${i + 1} of ${WARMUP + TRANSITIONS} transitions`);
    }
    await sleep(300);
    const vmTraps = trapd.lines.lines.slice(trapMark).filter((l) => isVmMibTrap(l.text)).length;
    unexpectedTraps = vmTraps - (WARMUP + TRANSITIONS);
    if (agent.proc.hasExited()) throw new Error(`the agent exited:\n${agent.proc.output().slice(-4000)}`);
  } finally {
    await agent?.stop();
    await snmpd?.dispose();
    if (trapd) await stopProcess(trapd.proc);
    await shell?.stop();
    if (watcher) await stopProcess(watcher);
    await libvirtd?.dispose();
    rmSync(workDir, { recursive: true, force: true });
  }
  const text = report(samples, { unexpectedTraps, started, load: `${loadBefore.toFixed(2)} → ${os.loadavg()[0].toFixed(2)}` });
  process.stdout.write(text);
  mkdirSync(path.dirname(OUT_FILE), { recursive: true });
  writeFileSync(OUT_FILE, `${text}\nper transition (ms relative to the event):\n${samplesCsv(samples)}`);
}

main().catch((err: Error) => {
  process.stderr.write(`bench failed: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
