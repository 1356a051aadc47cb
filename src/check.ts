// vmm-agentx --check: what an operator needs to know before starting the
// service, checked for real, one line each — libvirt (opened, listed), the
// AgentX master (a session opened, the MIBs registered, closed), the state
// directory, and whether the agent can number host objects as snmpd does.
// Exit 0 only when every check passed; otherwise the first failure is named
// with its fix on the last line.
import { constants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import { AgentxSession, Responder } from '../agentx';
import type { VmmAgent } from './agent';
import type { Config } from './config';
import type { DomainSource } from './snapshot-collector';
import { VM_MIB } from './model/vm-mib-oids';
import { VMM_AGENTX_MIB } from './model/vmm-agentx-oids';

export interface CheckResult {
  name: string;
  ok: boolean;
  /** What was found (ok) or what failed and how to fix it. */
  detail: string;
}

/** How long the AgentX master may take to accept the session. */
const AGENTX_TIMEOUT_MS = 5000;

export async function agentxCheck(config: Config): Promise<CheckResult> {
  const name = `agentx: ${config.agentxSocket}`;
  let failure: string | null = null;
  let settle: (opened: boolean) => void = () => undefined;
  const outcome = new Promise<boolean>((resolve) => { settle = resolve; });
  const session = new AgentxSession({
    address: config.agentxSocket,
    description: 'vmm-agentx --check',
    id: [...VM_MIB],
    // The first unreachable or refused line is the answer: no waiting for a retry.
    log: (_level, message) => {
      if (failure === null && /unreachable|setup failed/.test(message)) {
        failure = message.replace(/^AgentX /, '').replace(/; (retrying|reconnecting)[^—]*—/, ' —');
        settle(false);
      }
    },
    reconnectInitialMs: 60_000,
  }, new Responder({}));
  // Priority 255, the lowest: a running agent keeps answering (RFC 2741 §7.1.4.1
  // refuses only a registration of the same subtree at the same priority).
  await session.register({ subtree: [...VM_MIB], priority: 255 });
  await session.register({ subtree: [...VMM_AGENTX_MIB], priority: 255 });
  session.once('open', () => settle(true));
  const timer = setTimeout(() => settle(false), AGENTX_TIMEOUT_MS);
  session.start();
  const ok = await outcome;
  clearTimeout(timer);
  await session.close().catch(() => undefined);
  if (ok) return { name, ok, detail: 'session opened, VM-MIB and VMM-AGENTX-MIB registered, closed' };
  return { name, ok, detail: failure ?? `the master did not answer within ${AGENTX_TIMEOUT_MS} ms — is snmpd running with "master agentx"?` };
}

export async function stateDirCheck(config: Config): Promise<CheckResult> {
  const name = `state dir: ${config.stateDir}`;
  try {
    const st = await fs.stat(config.stateDir);
    if (!st.isDirectory()) return { name, ok: false, detail: 'is not a directory — point state-dir at a directory' };
    await fs.access(config.stateDir, constants.W_OK | constants.X_OK);
    return { name, ok: true, detail: 'writable' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      // The agent creates it; so the parent must let it.
      try {
        await fs.access(path.dirname(config.stateDir), constants.W_OK | constants.X_OK);
        return { name, ok: true, detail: 'absent; the agent creates it at start' };
      } catch {
        return { name, ok: false, detail: `absent and ${path.dirname(config.stateDir)} is not writable — create it, owned by ` +
          `uid ${process.getuid?.() ?? '?'} (the unit's StateDirectory= does)` };
      }
    }
    return { name, ok: false, detail: `not writable by uid ${process.getuid?.() ?? '?'} (${e.code ?? e.message}) — ` +
      'chown it to the agent\'s user' };
  }
}

/** libvirt, from the agent's refresh: reachable, which driver, how many domains. */
export function libvirtCheck(config: Config, domains: DomainSource, count: number | null): CheckResult {
  const name = `libvirt: ${config.libvirtUri ?? '(default URI)'}`;
  const hv = domains.hypervisorInfo();
  if (count === null) {
    return { name, ok: false, detail: 'connected but listing the domains failed — see the log line above' };
  }
  return { name, ok: true, detail: `${hv?.type ?? 'unknown driver'}${hv?.version ? ` ${hv.version}` : ''}, libvirt ${hv?.libvirtVersion ?? '?'}, ${count} domain(s)` };
}

/**
 * Whether the agent reads the host as snmpd does: the mount table (for
 * hrStorageIndex) and the interfaces (for ifIndex) must be readable.
 */
export async function linkageCheck(config: Config, agent: VmmAgent): Promise<CheckResult> {
  const name = 'linkage';
  try {
    await fs.access(config.mountsFile, constants.R_OK);
  } catch (err) {
    return { name, ok: false, detail: `cannot read ${config.mountsFile} (${(err as NodeJS.ErrnoException).code ?? ''}) — ` +
      'vmStorageParent needs the mount table snmpd reads (mounts-file)' };
  }
  try {
    await fs.readdir(path.join(config.sysRoot, 'class', 'net'));
  } catch (err) {
    return { name, ok: false, detail: `cannot list ${config.sysRoot}/class/net (${(err as NodeJS.ErrnoException).code ?? ''}) — ` +
      'vmNetworkIfIndex needs the host interfaces (sys-root)' };
  }
  const failed = agent.collectorReports().filter((r) => !r.ok && r.name !== 'libvirt');
  if (failed.length > 0) return { name, ok: false, detail: `collector ${failed[0].name} failed: ${failed[0].error ?? ''}` };
  return { name, ok: true, detail: `ifIndex from ${config.sysRoot}/class/net, hrStorageIndex from ${config.mountsFile}` };
}

/** One line per check, then `notes` (e.g. each collector's last run), then the verdict. */
export function formatCheck(results: readonly CheckResult[], notes: readonly string[] = []): { text: string; exitCode: number } {
  const lines = [...results.map((r) => `${r.name} ${r.ok ? 'ok' : 'FAILED'}: ${r.detail}`), ...notes];
  const first = results.find((r) => !r.ok);
  lines.push(first ? `check: FAILED — ${first.name}: ${first.detail}` : 'check: all passed');
  return { text: lines.join('\n') + '\n', exitCode: first ? 1 : 0 };
}

