// The run's reaper (reaper.js) and npm test's runner (scripts/run-tests.js)
// against real leftovers: a nested jest runs fixtures/leave-daemons.fixture.ts,
// which starts snmpd and a shell with a child through the harness and then
// crashes (SIGKILL: no afterAll, no 'exit' handler, no global teardown) or
// hangs until the runner is interrupted. What it started must be gone after
// the reaper ran, and nothing the records do not identify may be signalled.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describeUnless, missingTools } from './prereq';
import { isPidAlive, sleep, spawnManaged, stopProcess } from './process';
import { findLeftovers, readStat, reap, recordPidFiles, RUN_DIR_ENV } from './reaper';

const ROOT = path.resolve(__dirname, '..', '..');
const JEST = require.resolve('jest/bin/jest', { paths: [ROOT] });
const RUNNER = path.join(ROOT, 'scripts', 'run-tests.js');
const FIXTURE = path.join(__dirname, 'fixtures', 'leave-daemons.fixture.ts');
const FIXTURE_ARGS = ['--runInBand', '--ci', '--testMatch', FIXTURE];

interface Left {
  snmpd: number;
  shell: number;
  child: number;
}

interface Nested {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const tempDirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
const strays: number[] = [];
afterAll(() => {
  // Should a test fail half-way, its fixture's daemons still go (the records are in its own run dir).
  for (const dir of tempDirs) {
    reap(dir);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const pid of strays) if (isPidAlive(pid)) process.kill(pid, 'SIGKILL');
});

/** The environment of a nested run: none of this run's records or summary file. */
function nestedEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.VMM_TEST_SUMMARY;
  if (!(RUN_DIR_ENV in extra)) delete env[RUN_DIR_ENV];
  return env;
}

function startNested(args: string[], env: NodeJS.ProcessEnv, detached = false): Nested {
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached });
  let text = '';
  child.stdout!.on('data', (b: Buffer) => (text += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (text += b.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })));
  return { child, output: () => text, exited };
}

async function waitForFile(file: string, nested: Nested, timeoutMs = 90_000): Promise<Left> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(file) || fs.statSync(file).size === 0) {
    if (nested.child.exitCode !== null || nested.child.signalCode !== null || Date.now() > deadline) {
      throw new Error(`the fixture did not report its daemons; output:\n${nested.output()}`);
    }
    await sleep(50);
  }
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Left;
}

const pidsOf = (left: Left): number[] => [left.snmpd, left.shell, left.child];

describeUnless(missingTools('snmpd', 'sh', 'sleep'))('the run\'s reaper', () => {
  it('stops the daemons of a suite that crashed without stopping them (snmpd, a group leader and its child)', async () => {
    const runDir = tempDir('vmm-reaper-run-');
    const out = path.join(runDir, 'fixture.json');
    const nested = startNested([JEST, ...FIXTURE_ARGS], nestedEnv({
      [RUN_DIR_ENV]: runDir, VMM_FIXTURE_OUT: out, VMM_FIXTURE_MODE: 'crash',
    }));
    const left = await waitForFile(out, nested);
    expect(await nested.exited).toEqual({ code: null, signal: 'SIGKILL' });

    // What the issue saw: the crashed run's daemons still running, orphaned.
    for (const pid of pidsOf(left)) expect([pid, isPidAlive(pid)]).toEqual([pid, true]);
    expect(readStat(left.snmpd)?.ppid).not.toBe(nested.child.pid);
    expect(findLeftovers(runDir).map((p) => p.pid).sort()).toEqual(expect.arrayContaining(pidsOf(left).sort()));

    const stopped = reap(runDir).map((p) => p.pid);
    expect(stopped).toEqual(expect.arrayContaining(pidsOf(left)));
    for (const pid of pidsOf(left)) expect([pid, isPidAlive(pid)]).toEqual([pid, false]);
    expect(findLeftovers(runDir)).toEqual([]);
  }, 120_000);

  it('signals no process that only shares a recorded pid, or sits in a pid file it did not write', async () => {
    const runDir = tempDir('vmm-reaper-strangers-');
    const stranger = spawn('sleep', ['120'], { stdio: 'ignore' });
    const pid = stranger.pid!;
    strays.push(pid);
    await sleep(50);
    const stat = readStat(pid)!;
    const uid = fs.statSync(`/proc/${pid}`).uid;
    // A record of "the same" pid from an earlier process: another start time.
    fs.mkdirSync(path.join(runDir, 'procs'));
    fs.writeFileSync(path.join(runDir, 'procs', `${pid}-1.json`), JSON.stringify({
      pid, starttime: String(Number(stat.starttime) - 1), group: true, command: 'an earlier process',
    }));
    const pidFile = (name: string, mtime?: Date): string => {
      const file = path.join(runDir, name);
      fs.writeFileSync(file, `${pid}\n`);
      if (mtime) fs.utimesSync(file, mtime, mtime);
      return file;
    };
    const saved = process.env[RUN_DIR_ENV];
    process.env[RUN_DIR_ENV] = runDir;
    try {
      // Another user's process in our pid file.
      recordPidFiles({ files: [pidFile('other-user.pid')], uid: uid + 1 });
      // A pid file older than the process in it: written by an earlier holder of the pid.
      recordPidFiles({ files: [pidFile('stale.pid', new Date(Date.now() - 3_600_000))], uid });
    } finally {
      process.env[RUN_DIR_ENV] = saved;
    }
    expect(findLeftovers(runDir)).toEqual([]);
    expect(reap(runDir)).toEqual([]);
    expect(isPidAlive(pid)).toBe(true);

    // The same process is found once a pid file it could have written names it.
    process.env[RUN_DIR_ENV] = runDir;
    try {
      recordPidFiles({ files: [pidFile('fresh.pid')], uid });
    } finally {
      process.env[RUN_DIR_ENV] = saved;
    }
    expect(findLeftovers(runDir).map((p) => p.pid)).toEqual([pid]);
    expect(reap(runDir).map((p) => p.pid)).toEqual([pid]);
    await new Promise((resolve) => (stranger.exitCode !== null || stranger.signalCode !== null ? resolve(null) : stranger.once('exit', resolve)));
    expect(stranger.signalCode).toBe('SIGTERM');
  });

  it('records each harness child as the leader of its own process group until it is stopped', async () => {
    const runDir = process.env[RUN_DIR_ENV];
    expect(runDir).toBeTruthy();
    const child = await spawnManaged('sleep', ['60'], { env: process.env });
    try {
      expect(readStat(child.pid)?.pgrp).toBe(child.pid);
      const record = `${child.pid}-${readStat(child.pid)!.starttime}.json`;
      expect(fs.readdirSync(path.join(runDir!, 'procs'))).toContain(record);
      await stopProcess(child);
      expect(fs.readdirSync(path.join(runDir!, 'procs'))).not.toContain(record);
    } finally {
      await stopProcess(child);
    }
  });
});

describeUnless(missingTools('snmpd', 'sh', 'sleep'))('a run interrupted mid-way', () => {
  const cases: Array<[string, string, NodeJS.Signals, 'leader' | 'group', number, string]> = [
    // npm forwards SIGINT/SIGTERM to its script, which exec()s into the runner.
    ['npm test\'s runner sent SIGTERM (kill of npm)', RUNNER, 'SIGTERM', 'leader', 143, 'SIGTERM: stopping jest'],
    ['npm test\'s runner\'s process group sent SIGINT (Ctrl-C)', RUNNER, 'SIGINT', 'group', 130, 'SIGINT: stopping jest'],
    ['a bare jest\'s process group sent SIGINT (Ctrl-C on npx jest)', JEST, 'SIGINT', 'group', 130, 'jest got SIGINT'],
  ];
  it.each(cases)('%s: jest stops and no daemon of the run is left', async (_what, entry, sig, target, rc, says) => {
    const outDir = tempDir('vmm-interrupt-fixture-');
    const out = path.join(outDir, 'fixture.json');
    const nested = startNested([entry, ...FIXTURE_ARGS], nestedEnv({ VMM_FIXTURE_OUT: out, VMM_FIXTURE_MODE: 'hang' }), true);
    const left = await waitForFile(out, nested);
    for (const pid of pidsOf(left)) expect([pid, isPidAlive(pid)]).toEqual([pid, true]);

    process.kill(target === 'leader' ? nested.child.pid! : -nested.child.pid!, sig);
    const status = await nested.exited;
    const output = nested.output();
    expect({ status, output }).toEqual({ status: { code: rc, signal: null }, output: expect.stringContaining(says) });
    for (const pid of pidsOf(left)) expect([pid, isPidAlive(pid)]).toEqual([pid, false]);
    expect(output).toContain(`pid ${left.snmpd}: `);
    if (entry === RUNNER) expect(output.trim().split('\n').pop()).toBe(`tests: 0 passed, 1 failed (interrupted by ${sig})`);
  }, 120_000);
});
