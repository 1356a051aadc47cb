// vmm-mcastd in the multicast lab: one agent in each hypervisor's namespace
// (hvS, hvA, hvB), a relay server on the sender's link, a shared key, and
// libvirt's test driver on hvS holding the VM stand-in as a domain whose NIC
// is the lab's tap (vnet0 on br0, the VM's MAC) — so `migrate` finds the VM
// and its port as it would on a real host. The migration itself is the lab's
// switchover: `migrate --prepare-only`, then lab.switchover().
import { randomBytes, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { repositoryRoot, type Hypervisor, type McastLab, type Role } from './mcast-lab';
import type { ManagedProcess } from './process';
import { runCommand } from './process';
import { pollUntil } from './poll';

export const MCASTD_CLI = path.join(repositoryRoot(), 'dist', 'src', 'mcastd', 'cli.js');
export const SIGNALLING_PORT = 7666;

export interface RigOptions {
  /** Signalling over IPv4 or IPv6 (the stream's family is the lab's). */
  signalling: 4 | 6;
  /** Seconds a destination waits for a stream before asking the relay. */
  streamTimeoutSec?: number;
  /** Start the relay server (default yes). */
  relay?: boolean;
}

export interface PrepareOutcome {
  migrationId: string;
  tPreMs: number;
  groups: { address: string; via: string }[];
}

interface StateJson {
  pid?: number;
  proxyJoins: { group: string; bridge: string; reason: string }[];
  relays: { group: string; state: string }[];
  portEntries: { port: string; group: string }[];
  migrations: { id: string; role: string; phase: string }[];
  relaySubscribers?: { group: string; subscriber: string }[];
}

const ROLE_OF: Record<Hypervisor, Role> = { S: 'hvS', A: 'hvA', B: 'hvB' };

export class McastdRig {
  readonly dir: string;
  readonly keyFile: string;
  readonly vmUuid = randomUUID();
  readonly vmName = 'mcast-vm';
  private readonly agents = new Map<Hypervisor | 'relay', ManagedProcess>();

  constructor(readonly lab: McastLab, readonly options: RigOptions) {
    this.dir = fs.mkdtempSync(path.join(lab.dir, 'mcastd-'));
    this.keyFile = path.join(this.dir, 'key');
    fs.writeFileSync(this.keyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(this.dir, 'domain.xml'), this.fixture());
  }

  /** The libvirt test driver's host with the VM running on hvS's br0 through vnet0. */
  private fixture(): string {
    const a = this.lab.addresses;
    return `<node>
  <domain type='test'>
    <name>${this.vmName}</name>
    <uuid>${this.vmUuid}</uuid>
    <memory unit='MiB'>128</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <interface type='bridge'>
        <mac address='${a.vmMac}'/>
        <source bridge='${a.bridge}'/>
        <target dev='${a.ports.S}'/>
        <model type='virtio'/>
      </interface>
    </devices>
  </domain>
</node>
`;
  }

  private address(net: Hypervisor | 'relay'): string {
    const a = this.lab.addresses;
    const pair = net === 'relay' ? a.relay : a.nets[net].bridge;
    return this.options.signalling === 4 ? pair.v4 : pair.v6;
  }

  configFile(net: Hypervisor | 'relay'): string {
    return path.join(this.dir, `${net}.conf`);
  }

  stateFile(net: Hypervisor | 'relay'): string {
    return path.join(this.dir, `run-${net}`, 'state.json');
  }

  controlSocket(net: Hypervisor | 'relay'): string {
    return path.join(this.dir, `run-${net}`, 'control.sock');
  }

  private writeConfig(net: Hypervisor | 'relay'): void {
    const lines = [
      `name ${net === 'relay' ? 'relay' : `hv${net}`}`,
      `key-file ${this.keyFile}`,
      `port ${SIGNALLING_PORT}`,
      `state-file ${this.stateFile(net)}`,
      `control-socket ${this.controlSocket(net)}`,
      `stream-timeout ${this.options.streamTimeoutSec ?? 0.5}`,
      'default-bridge br0',
      'log-level debug',
      net === 'S' ? `libvirt-uri test://${path.join(this.dir, 'domain.xml')}` : 'libvirt-uri test:///default',
    ];
    for (const peer of ['S', 'A', 'B'] as const) if (peer !== net) lines.push(`peer hv${peer} ${this.address(peer)}`);
    if (this.options.relay !== false && net !== 'relay') lines.push(`relay-server ${this.address('relay')}`);
    if (net === 'relay') lines.push('relay yes', 'relay-interface eth0');
    fs.writeFileSync(this.configFile(net), `${lines.join('\n')}\n`);
  }

  /** Starts (or restarts) the agent of one net, and waits for its control socket. */
  async startAgent(net: Hypervisor | 'relay'): Promise<ManagedProcess> {
    this.writeConfig(net);
    const role: Role = net === 'relay' ? 'relay' : ROLE_OF[net];
    const proc = await this.lab.spawnIn(role, process.execPath, [MCASTD_CLI, '--config', this.configFile(net), 'run']);
    this.agents.set(net, proc);
    await pollUntil(`vmm-mcastd on ${net} listening`, async () => {
      if (proc.hasExited()) throw new Error(`vmm-mcastd on ${net} exited: ${proc.output()}`);
      return fs.existsSync(this.controlSocket(net));
    }, (up) => up, 10_000, 20);
    return proc;
  }

  async start(): Promise<void> {
    const nets: (Hypervisor | 'relay')[] = this.options.relay === false ? ['S', 'A', 'B'] : ['relay', 'S', 'A', 'B'];
    await Promise.all(nets.map((n) => this.startAgent(n)));
  }

  agent(net: Hypervisor | 'relay'): ManagedProcess {
    const p = this.agents.get(net);
    if (p === undefined) throw new Error(`no agent on ${net}`);
    return p;
  }

  /** SIGKILL: an agent that dies, leaving whatever it held. */
  async kill(net: Hypervisor | 'relay'): Promise<void> {
    const p = this.agent(net);
    process.kill(p.pid, 'SIGKILL');
    await p.exited;
    await this.lab.stop(p);
  }

  /** `vmm-mcastd migrate VM DEST --prepare-only` on the source, as an operator runs it. */
  async prepare(dest: Hypervisor): Promise<PrepareOutcome> {
    const r = await runCommand(process.execPath, [MCASTD_CLI, '--config', this.configFile('S'), 'migrate', this.vmName, `hv${dest}`, '--prepare-only'], { env: process.env });
    if (r.exitCode !== 0) throw new Error(`migrate failed (${r.exitCode}): ${r.stderr}`);
    return JSON.parse(r.stdout) as PrepareOutcome;
  }

  state(net: Hypervisor | 'relay'): StateJson | null {
    try {
      return JSON.parse(fs.readFileSync(this.stateFile(net), 'utf8')) as StateJson;
    } catch {
      return null;
    }
  }

  /** Groups the host itself has joined on a hypervisor's br0 (a proxy join shows here). */
  async hostGroups(net: Hypervisor): Promise<string[]> {
    const role = ROLE_OF[net];
    const v4 = await this.lab.exec(role, 'cat', ['/proc/net/igmp']);
    const v6 = await this.lab.exec(role, 'cat', ['/proc/net/igmp6']);
    const groups: string[] = [];
    let dev = '';
    for (const line of v4.split('\n')) {
      const m = /^\d+\s+(\S+)/.exec(line);
      if (m) dev = m[1];
      const g = /^\s+([0-9A-F]{8})\s/.exec(line);
      if (g && dev === 'br0') {
        const n = parseInt(g[1], 16);
        groups.push([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24].join('.'));
      }
    }
    for (const line of v6.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[1] === 'br0' && f[2]?.length === 32) groups.push(f[2].match(/..../g)!.join(':'));
    }
    return groups;
  }

  async close(): Promise<void> {
    for (const p of this.agents.values()) await this.lab.stop(p).catch(() => undefined);
    this.agents.clear();
  }
}

/** The IPv6 text /proc/net/igmp6 gives (32 hex digits, grouped by 4) for a group. */
export function procIgmp6Form(group: string): string {
  const url = new URL(`http://[${group}]/`).hostname.slice(1, -1);
  const [head, tail = ''] = url.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const words = url.includes('::') ? [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return words.map((w) => w.padStart(4, '0')).join(':');
}
