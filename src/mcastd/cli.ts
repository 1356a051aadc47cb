// vmm-mcastd's command line: the daemon (run, relay), its client commands
// (migrate, release, status, which talk to the running daemon over the
// control socket), and --check.
import { existsSync } from 'fs';
import { ConfigError, parseMcastdArgs, USAGE, type McastdConfig, type Command } from './config';
import { ControlClient } from './control';
import { Mcastd } from './daemon';
import { mcastdCheck } from './check';
import { createLogger, logFunction } from '../logger';
import { exitNow, exitOnUncaughtError, prepareExitNow, whenOutputReaderGone } from '../exit-now';

/** sysexits.h: a configuration error (the unit's RestartPreventExitStatus). */
const EX_CONFIG = 78;
const SHUTDOWN_BUDGET_MS = 2000;

function fail(message: string, code: number): never {
  process.stderr.write(`vmm-mcastd: ${message}\n`);
  // Not process.exit(): libvirt's event loop may be running (exit-now.ts).
  exitNow(code);
}

async function client(config: McastdConfig, command: Exclude<Command, { kind: 'run' }>): Promise<void> {
  const request = command.kind === 'migrate'
    ? { cmd: 'migrate' as const, vm: command.vm, dest: command.dest, prepareOnly: command.prepareOnly }
    : command.kind === 'release'
      ? { cmd: 'release' as const, vm: command.vm, dest: command.dest }
      : { cmd: 'status' as const };
  try {
    const result = await ControlClient.request(config.controlSocket, request, (line) => process.stderr.write(`${line}\n`));
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } catch (err) {
    fail((err as Error).message, 1);
  }
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseMcastdArgs(process.argv.slice(2), existsSync);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, EX_CONFIG);
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const { config, command } = parsed;
  if (config.check) {
    const { text, exitCode } = await mcastdCheck(config);
    process.stdout.write(text);
    process.exitCode = exitCode;
    return;
  }
  if (command.kind !== 'run') {
    await client(config, command);
    return;
  }
  const logger = createLogger(config.logLevel);
  exitOnUncaughtError((message) => logger.error(message));
  whenOutputReaderGone('carry-on');
  const log = logFunction(logger);
  let daemon: Mcastd;
  try {
    daemon = await Mcastd.start(config, log);
  } catch (err) {
    fail(`cannot start: ${(err as Error).message}`, err instanceof ConfigError ? EX_CONFIG : 1);
  }
  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: leaving proxy joins, stopping relays and exiting`);
    setTimeout(() => {
      logger.warn(`${signal}: not finished after ${SHUTDOWN_BUDGET_MS} ms; exiting without waiting further`);
      exitNow(0);
    }, SHUTDOWN_BUDGET_MS).unref();
    await daemon.stop();
    exitNow(0);
  };
  prepareExitNow();
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => fail(`unexpected error: ${err.stack ?? err.message}`, 1));
