// Child processes for test daemons and client tools: spawn with captured
// output, wait for exit, stop by PID with SIGTERM→SIGKILL escalation. Never a
// shell string and never "kill by name": other tests share the machine.
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  readonly pid: number;
  /** argv[0] and arguments, for error messages. */
  readonly commandLine: string;
  /** Settles when the child has exited and been reaped (its /proc entry is gone). */
  readonly exited: Promise<ExitStatus>;
  hasExited(): boolean;
  /** stdout and stderr interleaved as received (the last `maxOutputChars` of it). */
  output(): string;
  /** Called with every chunk of stdout/stderr text from now on. */
  onOutput(listener: (text: string) => void): void;
}

export interface SpawnOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Also append all output to this file (useful after a test run). */
  logFile?: string;
  maxOutputChars?: number;
}

// Daemons still running when the test process exits would outlive it and hold
// ports; SIGKILL is all a synchronous 'exit' handler can still do.
const liveChildren = new Set<number>();
process.once('exit', () => {
  for (const pid of liveChildren) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export function spawnManaged(command: string, args: readonly string[], options: SpawnOptions): Promise<ManagedProcess> {
  const commandLine = [command, ...args].join(' ');
  const maxChars = options.maxOutputChars ?? 1_000_000;
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let captured = '';
    let exitStatus: ExitStatus | undefined;
    const listeners: Array<(text: string) => void> = [];
    const logStream = options.logFile ? fs.createWriteStream(options.logFile, { flags: 'a' }) : undefined;

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
      liveChildren.add(pid);
      resolve({
        pid,
        commandLine,
        exited,
        hasExited: () => exitStatus !== undefined,
        output: () => captured,
        onOutput: (listener) => {
          listeners.push(listener);
        },
      });
    });
  });
}

/** True while /proc/<pid> exists and is not a zombie. */
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

/**
 * SIGTERM, wait up to `graceMs`, then SIGKILL and wait again. Pass the managed
 * process when it is our child, so we also wait until Node has reaped it.
 */
export async function stopProcess(target: ManagedProcess | number, graceMs = 3000): Promise<void> {
  const pid = typeof target === 'number' ? target : target.pid;
  const exited = typeof target === 'number' ? undefined : target.exited;
  if (typeof target !== 'number' && target.hasExited()) return;
  signalPid(pid, 'SIGTERM');
  if (await waitUntilGone(pid, exited, graceMs)) return;
  signalPid(pid, 'SIGKILL');
  if (!(await waitUntilGone(pid, exited, 5000))) {
    throw new Error(`process ${pid} survived SIGKILL for 5 s`);
  }
}

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** null when the command was killed by a signal (e.g. our timeout). */
  exitCode: number | null;
}

/** Runs a command to completion; a non-zero exit is a result, not an exception. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      { env: options.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
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
