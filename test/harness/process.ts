// Child processes for test daemons and client tools: spawn with captured
// output, wait for exit, stop by PID with SIGTERM→SIGKILL escalation. Never a
// shell string and never "kill by name": other tests share the machine.
// In a test run, every daemon leads its own process group and is recorded
// for the run's reaper (reaper.js), which stops what a crashed or interrupted
// suite left.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as Reaper from './reaper';

/**
 * The run's record and reaper (reaper.js). It is plain CommonJS, which
 * scripts/run-tests.js loads without ts-jest; bench/ compiles this file into
 * dist/, where tsc copies no .js files, so it is loaded from the source tree
 * wherever this file runs from.
 */
export const reaper: typeof Reaper = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = up;
  }
  return require(path.join(dir, 'test', 'harness', 'reaper.js')) as typeof Reaper;
})();
const { forget, recordProcess, runDir } = reaper;

/**
 * The locale every process the harness starts runs with. Tests parse what
 * virsh and the Net-SNMP tools print; in the C/POSIX locale (LANG unset: cron,
 * containers, `env -i`) virsh prints a UTF-8 name as "\xff" escapes, and a
 * translated locale would change virsh's labels. C.UTF-8 is built into glibc.
 */
export const UTF8_LOCALE = 'C.UTF-8';

/** `env` with LANG and LC_ALL set to C.UTF-8 (and no LANGUAGE, which could still pick translations). */
export function toolEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const result: NodeJS.ProcessEnv = { ...env, LANG: UTF8_LOCALE, LC_ALL: UTF8_LOCALE };
  delete result.LANGUAGE;
  return result;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly pid: number;
  /**
   * The process group the child leads (its pid) in a test run, where
   * stopProcess signals all of it; undefined elsewhere (bench/), where the
   * child stays in our group so a Ctrl-C reaches it as before.
   */
  readonly processGroup: number | undefined;
  /** argv[0] and arguments, for error messages. */
  readonly commandLine: string;
  /** Settles when the child has exited and been reaped (its /proc entry is gone). */
  readonly exited: Promise<ExitStatus>;
  hasExited(): boolean;
  /** stdout and stderr interleaved as received (the last `maxOutputChars` of it). */
  output(): string;
  /** Called with every chunk of stdout/stderr text from now on. */
  onOutput(listener: (text: string) => void): void;
  /** Closes our ends of the child's stdout and stderr: its next write fails with EPIPE, as when a log reader goes away. */
  closeOutput(): void;
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append all output to this file (useful after a test run). */
  logFile?: string;
  maxOutputChars?: number;
}

// Daemons still running when the test process exits would outlive it and hold
// ports; SIGKILL is all a synchronous 'exit' handler can still do. (A process
// killed by a signal runs no 'exit' handler: then the run's reaper does it.)
const liveChildren = new Map<number, boolean>();
process.once('exit', () => {
  for (const [pid, group] of liveChildren) {
    for (const target of group ? [-pid, pid] : [pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

export function spawnManaged(command: string, args: readonly string[], options: SpawnOptions): Promise<ManagedProcess> {
  const commandLine = [command, ...args].join(' ');
  const maxChars = options.maxOutputChars ?? 1_000_000;
  return new Promise((resolve, reject) => {
    // In a test run (a run directory to record into), the child leads a
    // process group of its own, so stopping it reaches whatever it forked, and
    // an interrupt of jest is handled by the reaper (global-setup.js,
    // scripts/run-tests.js), not by whichever daemon the signal reaches first.
    const detached = runDir() !== undefined;
    const child = spawn(command, args, {
      env: toolEnv(options.env),
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached,
    });
    let record: string | undefined;
    let captured = '';
    let exitStatus: ExitStatus | undefined;
    const listeners: Array<(text: string) => void> = [];
    const logStream = options.logFile ? fs.createWriteStream(options.logFile, { flags: 'a' }) : undefined;
    // The file opens asynchronously: when the lab dir is removed first (a
    // quick dispose on a busy machine), the open fails with ENOENT. The log
    // copy is a convenience; without a listener that error would take the
    // whole test file down ("Test suite failed to run").
    logStream?.on('error', () => undefined);

    const onData = (chunk: Buffer): void => {
      const text = chunk.toString('utf8');
      captured += text;
      if (captured.length > maxChars) captured = captured.slice(captured.length - maxChars);
      logStream?.write(text);
      for (const listener of listeners) listener(text);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);

    const exited = new Promise<ExitStatus>((resolveExit) => {
      // 'close' comes after 'exit' and after both pipes drained, so output() is complete.
      child.once('close', (code, signal) => {
        exitStatus = { code, signal };
        if (child.pid !== undefined) liveChildren.delete(child.pid);
        forget(record);
        logStream?.end();
        resolveExit(exitStatus);
      });
    });

    child.once('error', (err) => reject(new Error(`cannot start ${commandLine}: ${err.message}`)));
    child.once('spawn', () => {
      const pid = child.pid;
      if (pid === undefined) {
        reject(new Error(`cannot start ${commandLine}: no PID`));
        return;
      }
      liveChildren.set(pid, detached);
      record = recordProcess(pid, { command: commandLine, group: detached });
      resolve({
        pid,
        processGroup: detached ? pid : undefined,
        commandLine,
        exited,
        hasExited: () => exitStatus !== undefined,
        output: () => captured,
        onOutput: (listener) => {
          listeners.push(listener);
        },
        closeOutput: () => {
          child.stdout.destroy();
          child.stderr.destroy();
        },
      });
    });
  });
}

/** True while /proc/<pid> exists and is not a zombie. */
/** The uid owning a process, or null when it is gone: only what a harness started under that uid may be stopped. */
export function ownerUid(pid: number): number | null {
  try {
    return fs.statSync(`/proc/${pid}`).uid;
  } catch {
    return null;
  }
}

export function isPidAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // Field 3 follows the parenthesised command name, which may itself contain ") ".
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z';
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntilGone(pid: number, exited: Promise<ExitStatus> | undefined, timeoutMs: number): Promise<boolean> {
  if (exited) {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const result = await Promise.race([exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return result;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isPidAlive(pid)) return true;
    await sleep(20);
  }
  return !isPidAlive(pid);
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGTERM, wait up to `graceMs`, then SIGKILL and wait again. Pass the managed
 * process when it is our child, so we also wait until Node has reaped it; its
 * whole process group is signalled, and members outliving the leader by a
 * second are SIGKILLed. A bare pid is signalled alone.
 */
export async function stopProcess(target: ManagedProcess | number, graceMs = 3000): Promise<void> {
  const pid = typeof target === 'number' ? target : target.pid;
  const exited = typeof target === 'number' ? undefined : target.exited;
  const group = typeof target === 'number' ? undefined : target.processGroup;
  if (typeof target !== 'number' && target.hasExited()) {
    if (group !== undefined) await stopGroupRemains(group);
    return;
  }
  signalPid(group !== undefined ? -group : pid, 'SIGTERM');
  if (!(await waitUntilGone(pid, exited, graceMs))) {
    signalPid(group !== undefined ? -group : pid, 'SIGKILL');
    if (!(await waitUntilGone(pid, exited, 5000))) {
      throw new Error(`process ${pid} survived SIGKILL for 5 s`);
    }
  }
  if (group !== undefined) await stopGroupRemains(group);
}

/** After the leader is gone, what is left of its group gets a second, then SIGKILL. */
async function stopGroupRemains(pgid: number): Promise<void> {
  // The group id stays allocated while any member lives, so this cannot hit a stranger.
  const deadline = Date.now() + 1000;
  while (groupExists(pgid) && Date.now() < deadline) await sleep(20);
  if (groupExists(pgid)) signalPid(-pgid, 'SIGKILL');
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** null when the command was killed by a signal (e.g. our timeout). */
  exitCode: number | null;
}

/** Runs a command to completion (in the C.UTF-8 locale); a non-zero exit is a result, not an exception. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: toolEnv(options.env), timeout: options.timeoutMs ?? 60_000, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code === 'string') {
          reject(new Error(`cannot run ${command}: ${err.message}`));
          return;
        }
        const exitCode = err ? (typeof err.code === 'number' ? err.code : null) : 0;
        resolve({ stdout, stderr, exitCode });
      },
    );
  });
}
