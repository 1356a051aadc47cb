// A private, unprivileged Net-SNMP master agent for integration tests
// (platform-notes §3): its own temp dir, config, free ports and AgentX socket,
// running as nobody when we are root (so nothing it does can touch the
// machine's real snmpd), else as the current user in its temp dir.
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freeTcpPort, freeUdpPort, tcpPortAccepts } from './ports';
import { ManagedProcess, sleep, spawnManaged, stopProcess } from './process';
import { snmpget } from './snmp-tools';

export const SNMPD_BINARY = '/usr/sbin/snmpd';
/**
 * As root, snmpd runs as nobody:nogroup (setpriv) and the lab dir belongs to
 * it so it can create the socket; otherwise it runs as we do, in our own lab
 * dir, and needs no privilege at all.
 */
export const SNMPD_AS_NOBODY = process.getuid?.() === 0;
export const SNMPD_UID = SNMPD_AS_NOBODY ? 65534 : (process.getuid?.() ?? 65534);
export const SNMPD_GID = SNMPD_AS_NOBODY ? 65534 : (process.getgid?.() ?? 65534);

/** What to put before the snmpd command line: setpriv to nobody as root, nothing otherwise. */
export function snmpdUserPrefix(): string[] {
  return SNMPD_AS_NOBODY ? ['setpriv', `--reuid=${SNMPD_UID}`, `--regid=${SNMPD_GID}`, '--clear-groups'] : [];
}

/** Hands lab files to the snmpd user (only needed, and only possible, as root). */
export function chownForSnmpd(paths: readonly string[]): void {
  if (!SNMPD_AS_NOBODY) return;
  for (const p of paths) fs.chownSync(p, SNMPD_UID, SNMPD_GID);
}

export interface StartSnmpdOptions {
  agentxTransport?: 'unix' | 'tcp';
  /** Adds `trap2sink 127.0.0.1:<port> <community>`; snmpd then sends coldStart on start. */
  trapSink?: { port: number; community?: string };
  /** Appended verbatim to snmpd.conf. */
  extraConfig?: string[];
  /** agentXTimeout: how long snmpd waits for a subagent answer (default 5). */
  agentxTimeoutSeconds?: number;
  /** agentXRetries (default 1). */
  agentxRetries?: number;
  /** How long to wait for snmpd to answer (default 10 000 ms). */
  startTimeoutMs?: number;
  /**
   * Start snmpd through this command, e.g. ['ip', 'netns', 'exec', ns]. The
   * instance keeps it as its commandPrefix, so the start-up probe and the
   * snmp-tools helpers run through it too (127.0.0.1 is then the namespace's).
   */
  commandPrefix?: readonly string[];
}

export interface SnmpdInstance {
  readonly labDir: string;
  readonly udpPort: number;
  /** "unix:/path/agentx.sock" or "tcp:127.0.0.1:port", as snmpd's agentXSocket. */
  readonly agentxAddress: string;
  /** PID of the running snmpd (changes on restart). */
  readonly pid: number;
  /** What snmpd and the client tools run through, if anything (StartSnmpdOptions.commandPrefix). */
  readonly commandPrefix?: readonly string[];
  readonly configPath: string;
  /** SIGTERM by PID, wait for exit, SIGKILL after 3 s. Keeps the lab dir. */
  stop(): Promise<void>;
  /** stop(), then start again with the same config, ports and socket path. */
  restart(): Promise<void>;
  /** Everything snmpd printed, over all restarts. */
  log(): string;
  /** stop() and remove the lab dir. */
  dispose(): Promise<void>;
}

// SNMPv2c GetRequest, community "public", request-id 1, one varbind
// sysUpTime.0 (1.3.6.1.2.1.1.3.0) = NULL, BER per RFC 3416 §3 / X.690.
const SYSUPTIME_GET = Buffer.from(
  '3026' + '020101' + '0406' + Buffer.from('public').toString('hex') +
    'a019' + '020101' + '020100' + '020100' + '300e' + '300c' + '06082b06010201010300' + '0500',
  'hex',
);
const SYSUPTIME_OID_BER = Buffer.from('06082b06010201010300', 'hex');

/** One GET of sysUpTime.0; true when a response naming that OID comes back. */
function probeSysUpTime(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      socket.close();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('error', () => finish(false));
    socket.once('message', (msg) => finish(msg[0] === 0x30 && msg.includes(SYSUPTIME_OID_BER)));
    // A connected socket gets ICMP port-unreachable as ECONNREFUSED, so a probe
    // sent before snmpd has bound its port fails at once instead of timing out.
    socket.connect(port, '127.0.0.1', () => socket.send(SYSUPTIME_GET));
  });
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

interface LabLayout {
  labDir: string;
  configPath: string;
  pidFile: string;
  persistDir: string;
  logFile: string;
  socketPath: string | undefined;
  agentxTcpPort: number | undefined;
}

function renderConfig(layout: LabLayout, udpPort: number, agentxAddress: string, opts: StartSnmpdOptions): string {
  const lines = [
    `agentAddress udp:127.0.0.1:${udpPort}`,
    'rocommunity public 127.0.0.1',
    'master agentx',
    `agentXSocket ${agentxAddress}`,
    `agentXTimeout ${opts.agentxTimeoutSeconds ?? 5}`,
    `agentXRetries ${opts.agentxRetries ?? 1}`,
    'sysLocation vmm-agentx test lab',
    'sysContact lab@example.invalid',
    // One "Connection from UDP" line per request would bloat the log during walks.
    'dontLogTCPWrappersConnects yes',
  ];
  if (layout.socketPath !== undefined) {
    // Socket and dir owned by snmpd's user (nobody as root); group/other bits
    // matter only to subagents of another non-root user, root connects
    // regardless (RFC 2741 §8.1 leaves access to the OS).
    lines.push('agentXPerms 0770 0770');
  }
  if (opts.trapSink) {
    lines.push(`trap2sink 127.0.0.1:${opts.trapSink.port} ${opts.trapSink.community ?? 'public'}`);
  }
  lines.push(...(opts.extraConfig ?? []));
  return lines.join('\n') + '\n';
}

class SnmpdLab implements SnmpdInstance {
  private process: ManagedProcess | undefined;
  private previousRuns = '';

  constructor(
    private readonly layout: LabLayout,
    readonly udpPort: number,
    readonly agentxAddress: string,
    private readonly startTimeoutMs: number,
    readonly commandPrefix: readonly string[] | undefined,
  ) {}

  get labDir(): string {
    return this.layout.labDir;
  }

  get configPath(): string {
    return this.layout.configPath;
  }

  get pid(): number {
    if (!this.process) throw new Error(`snmpd in ${this.labDir} is not running`);
    return this.process.pid;
  }

  log(): string {
    return this.previousRuns + (this.process?.output() ?? '');
  }

  async launch(): Promise<void> {
    const { layout } = this;
    // A socket left by a SIGKILLed snmpd would make "socket exists" true too early.
    if (layout.socketPath !== undefined) fs.rmSync(layout.socketPath, { force: true });
    const [command, ...args] = [
      ...(this.commandPrefix ?? []),
      ...snmpdUserPrefix(),
      SNMPD_BINARY, '-f', '-Lo', '-C', '-I', '-smux', '-c', layout.configPath, '-p', layout.pidFile,
    ];
    const child = await spawnManaged(
      command,
      args,
      {
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', SNMP_PERSISTENT_DIR: layout.persistDir, MIBS: '' },
        cwd: layout.labDir,
        logFile: layout.logFile,
      },
    );
    this.process = child;
    const deadline = Date.now() + this.startTimeoutMs;
    while (Date.now() < deadline) {
      if (child.hasExited()) {
        const status = await child.exited;
        throw new Error(
          `snmpd (${layout.configPath}) exited during start-up with code ${status.code} signal ${status.signal}; ` +
            `log tail:\n${tail(this.log(), 30)}`,
        );
      }
      if ((await this.answers()) && (await this.agentxReady())) return;
      await sleep(20);
    }
    await stopProcess(child);
    throw new Error(
      `snmpd (${layout.configPath}) did not answer GET sysUpTime.0 on udp:127.0.0.1:${this.udpPort} with AgentX ` +
        `socket ${this.agentxAddress} present within ${this.startTimeoutMs} ms; log tail:\n${tail(this.log(), 30)}`,
    );
  }

  /** One GET of sysUpTime.0, sent from where the client tools run. */
  private async answers(): Promise<boolean> {
    if (this.commandPrefix === undefined) return probeSysUpTime(this.udpPort, 500);
    const r = await snmpget(this, ['.1.3.6.1.2.1.1.3.0'], ['-t', '1', '-r', '0'], { allowFailure: true, timeoutMs: 5000 });
    return r.exitCode === 0 && r.varbinds.length === 1 && r.varbinds[0].type === 'Timeticks';
  }

  private async agentxReady(): Promise<boolean> {
    if (this.layout.socketPath !== undefined) return fs.existsSync(this.layout.socketPath);
    return this.layout.agentxTcpPort !== undefined && tcpPortAccepts(this.layout.agentxTcpPort);
  }

  async stop(): Promise<void> {
    const child = this.process;
    if (!child) return;
    await stopProcess(child, 3000);
    this.previousRuns += child.output();
    this.process = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async dispose(): Promise<void> {
    await this.stop();
    fs.rmSync(this.labDir, { recursive: true, force: true });
  }
}

/** Starts a private snmpd (as nobody when root) and resolves once it answers SNMP and its AgentX socket exists. */
export async function startSnmpd(opts: StartSnmpdOptions = {}): Promise<SnmpdInstance> {
  const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snmpd-'));
  try {
    const transport = opts.agentxTransport ?? 'unix';
    const layout: LabLayout = {
      labDir,
      configPath: path.join(labDir, 'snmpd.conf'),
      pidFile: path.join(labDir, 'snmpd.pid'),
      persistDir: path.join(labDir, 'persist'),
      logFile: path.join(labDir, 'snmpd.log'),
      socketPath: transport === 'unix' ? path.join(labDir, 'agentx.sock') : undefined,
      agentxTcpPort: transport === 'tcp' ? await freeTcpPort() : undefined,
    };
    const udpPort = await freeUdpPort();
    const agentxAddress =
      layout.socketPath !== undefined ? `unix:${layout.socketPath}` : `tcp:127.0.0.1:${layout.agentxTcpPort}`;
    fs.mkdirSync(layout.persistDir);
    fs.writeFileSync(layout.configPath, renderConfig(layout, udpPort, agentxAddress, opts));
    // Traversable by anyone so non-root test processes can reach the socket.
    fs.chmodSync(labDir, 0o755);
    chownForSnmpd([labDir, layout.persistDir, layout.configPath]);

    const lab = new SnmpdLab(layout, udpPort, agentxAddress, opts.startTimeoutMs ?? 10_000, opts.commandPrefix);
    await lab.launch();
    return lab;
  } catch (err) {
    fs.rmSync(labDir, { recursive: true, force: true });
    throw err;
  }
}
