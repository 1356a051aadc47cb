// Runs the real vmm-agentx CLI (dist/src/cli.js, built by `npm test`) as its
// own process against a private snmpd, and waits until snmpd serves VM-MIB.
import { existsSync, promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ManagedProcess, spawnManaged, stopProcess } from './process';
import type { SnmpdInstance } from './snmpd';
import { snmpget } from './snmp-tools';

export const CLI_JS = path.resolve(__dirname, '../../dist/src/cli.js');
export const DEMO_FIXTURE = path.resolve(__dirname, '../../examples/libvirt/demo-host.xml');
export const DEMO_URI = `test://${DEMO_FIXTURE}`;
export const MIB_DIR = path.resolve(__dirname, '../../mib');

export interface AgentProcess {
  proc: ManagedProcess;
  stateDir: string;
  /** Everything the agent logged. */
  log(): string;
  stop(): Promise<void>;
}

export interface StartAgentOptions {
  libvirtUri?: string;
  stateDir?: string;
  refreshSeconds?: number;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Prefix the command, e.g. ['ip', 'netns', 'exec', ns] or a setpriv wrapper. */
  commandPrefix?: string[];
  /** Wait until snmpd answers vmNumber.0 (default true). */
  waitReady?: boolean;
}

export function requireBuiltCli(): void {
  if (!existsSync(CLI_JS)) throw new Error(`${CLI_JS} is missing: run "npm run build" first (npm test does)`);
}

export async function startAgent(snmpd: SnmpdInstance, opts: StartAgentOptions = {}): Promise<AgentProcess> {
  requireBuiltCli();
  const stateDir = opts.stateDir ?? await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-agent-state-'));
  const args = [
    CLI_JS,
    '--libvirt-uri', opts.libvirtUri ?? DEMO_URI,
    '--agentx-socket', snmpd.agentxAddress,
    '--state-dir', stateDir,
    '--refresh', String(opts.refreshSeconds ?? 1),
    '--log-level', 'debug',
    ...(opts.extraArgs ?? []),
  ];
  const [cmd, ...pre] = opts.commandPrefix ?? [];
  const proc = cmd
    ? await spawnManaged(cmd, [...pre, process.execPath, ...args], { env: opts.env ?? process.env })
    : await spawnManaged(process.execPath, args, { env: opts.env ?? process.env });
  const agent: AgentProcess = {
    proc,
    stateDir,
    log: () => proc.output(),
    stop: () => stopProcess(proc),
  };
  if (opts.waitReady !== false) await waitForVmMib(snmpd, proc);
  return agent;
}

/** Polls snmpd until VM-MIB's vmNumber.0 is served (the agent opened and registered). */
export async function waitForVmMib(snmpd: SnmpdInstance, proc?: ManagedProcess, timeoutMs = 15000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc?.hasExited()) throw new Error(`vmm-agentx exited during start-up:\n${proc.output()}`);
    const r = await snmpget(snmpd, ['.1.3.6.1.2.1.236.1.2.0'], ['-t', '1', '-r', '0'], { allowFailure: true });
    if (r.varbinds[0]?.type === 'INTEGER') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`snmpd did not serve VM-MIB within ${timeoutMs} ms; agent log:\n${proc?.output() ?? ''}`);
}
