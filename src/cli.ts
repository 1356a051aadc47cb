// vmm-agentx: AgentX sub-agent serving VM-MIB (RFC 7666) from libvirt.
// Started through bin/vmm-agentx, which gives node the runtime settings the
// agent is measured with; `--version` shows them.
//
// Each libvirt call that may block runs on the libuv pool; give it enough
// threads that one hung domain cannot starve the file reads of a refresh.
process.env.UV_THREADPOOL_SIZE ??= '8';

import { readFileSync } from 'fs';
import * as path from 'path';
import { AgentxSession, parseAgentxAddress } from '../agentx';
import { sessionNotifier, VmmAgent } from './agent';
import { ConfigError, parseArgs, USAGE, Config } from './config';
import { dumpView } from './dump';
import { agentxCheck, formatCheck, libvirtCheck, linkageCheck, stateDirCheck } from './check';
import { createLogger, logFunction, Logger } from './logger';
import { LibvirtDomainSource } from './libvirt-source';
import { VM_MIB } from './model/vm-mib-oids';
import { VMM_AGENTX_MIB } from './model/vmm-agentx-oids';
import { MigrationStore } from './state/migration-store';
import { VmIndexStore } from './state/index-store';
import { tuneNativeMemory } from './native-memory';
import { exitNow, exitOnUncaughtError, prepareExitNow, whenOutputReaderGone } from './exit-now';

const AGENT_DESCRIPTION = 'vmm-agentx: VM-MIB (RFC 7666) for libvirt';
/** SIGTERM/SIGINT to exit, whatever hangs: well inside systemd's stop timeout, and 2 s as promised. */
const SHUTDOWN_BUDGET_MS = 1000;
/** sysexits.h: a configuration error. */
const EX_CONFIG = 78;

function fail(message: string, code: number): never {
  process.stderr.write(`vmm-agentx: ${message}\n`);
  // Not process.exit(): libvirt's event loop may be running (exit-now.ts).
  exitNow(code);
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  tuneNativeMemory();
  let config: Config;
  try {
    const parsed = parseArgs(process.argv.slice(2));
    if (parsed.help) {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    if (parsed.version) {
      const flags = process.execArgv.length > 0 ? process.execArgv.join(' ') : 'none (not started through bin/vmm-agentx)';
      process.stdout.write(`vmm-agentx ${packageVersion()}\nnode ${process.version}, flags: ${flags}, ` +
        `MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? 'unset'}\n`);
      return;
    }
    config = parsed.config;
    parseAgentxAddress(config.agentxSocket);
  } catch (err) {
    // EX_CONFIG: the unit's RestartPreventExitStatus=78 keeps systemd from restarting into the same mistake.
    if (err instanceof ConfigError || err instanceof Error) fail(err.message, EX_CONFIG);
    throw err;
  }
  const logger = createLogger(config.logLevel);
  exitOnUncaughtError((message) => logger.error(message));
  whenOutputReaderGone(config.dump || config.check ? 'exit' : 'carry-on');
  const log = logFunction(logger);

  let domains: LibvirtDomainSource;
  try {
    domains = await LibvirtDomainSource.open(config, logFunction(logger, 'libvirt: '));
  } catch (err) {
    const why = `${(err as Error).message} — is libvirtd running, and may this user open the URI? (--libvirt-uri)`;
    if (config.check) {
      // The other checks still say what else is wrong.
      const results = [{ name: `libvirt: ${config.libvirtUri ?? '(default URI)'}`, ok: false, detail: why },
        await agentxCheck(config), await stateDirCheck(config)];
      const { text, exitCode } = formatCheck(results);
      process.stdout.write(text);
      exitNow(exitCode);
    }
    fail(`cannot connect to libvirt${config.libvirtUri ? ` at ${config.libvirtUri}` : ''}: ${why}`, 1);
  }

  const oneShot = config.dump || config.check;
  const store = await VmIndexStore.load(config.stateDir, log, { readOnly: oneShot });
  const migrations = await MigrationStore.load(config.stateDir, log, { readOnly: oneShot });

  const agent = new VmmAgent({ config, domains, store, migrations, log });
  if (oneShot) {
    await agent.refresh();
    if (config.dump) {
      const lines = agent.view ? dumpView(agent.view) : [];
      process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
      await domains.close();
      return;
    }
    const libvirtReport = agent.collectorReports().find((r) => r.name === 'libvirt');
    const results = [
      libvirtCheck(config, domains, libvirtReport?.ok ? agent.vmCount() : null),
      await agentxCheck(config),
      await stateDirCheck(config),
      await linkageCheck(config, agent),
    ];
    const { text, exitCode } = formatCheck(results, agent.collectorReports().map((r) =>
      `collector ${r.name}: ${r.ok ? 'ok' : `failed: ${r.error}`} in ${r.durationMs.toFixed(1)} ms`));
    process.stdout.write(text);
    await domains.close();
    process.exitCode = exitCode;
    return;
  }
  await runDaemon(config, agent, domains, logger);
}

async function runDaemon(config: Config, agent: VmmAgent, domains: LibvirtDomainSource, logger: Logger): Promise<void> {
  const session = new AgentxSession({
    address: config.agentxSocket,
    description: AGENT_DESCRIPTION,
    id: [...VM_MIB],
    log: logFunction(logger),
  }, agent.responder);
  agent.setNotifier(sessionNotifier(session));
  await agent.start();
  await session.register({ subtree: [...VM_MIB] });
  await session.register({ subtree: [...VMM_AGENTX_MIB] });
  await session.addAgentCaps({ id: [...VM_MIB], description: 'VM-MIB (RFC 7666): virtual machines controlled by libvirt' });
  await session.addAgentCaps({ id: [...VMM_AGENTX_MIB], description: 'VMM-AGENTX-MIB: live migration of the virtual machines' });
  session.start();
  logger.info(`serving VM-MIB and VMM-AGENTX-MIB via ${config.agentxSocket}, refreshing every ${config.refreshSeconds} s`);

  let stopping = false;
  const shutdown = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: closing the AgentX session and exiting`);
    // systemd, and an operator's Ctrl-C, expect the process gone promptly: a
    // libvirt or snmpd that stopped answering must not hold it. What has not
    // finished by then is abandoned; the state file is saved before that.
    setTimeout(() => {
      logger.warn(`${signal}: not finished after ${SHUTDOWN_BUDGET_MS} ms (libvirt or snmpd not answering); exiting without waiting further`);
      exitNow(0);
    }, SHUTDOWN_BUDGET_MS);
    await Promise.all([session.close(), agent.stop()]);
    await domains.close();
    // Not process.exit(): a libvirt call that hung earlier may still hold a pool thread.
    exitNow(0);
  };
  prepareExitNow();
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => fail(`unexpected error: ${err.stack ?? err.message}`, 1));
