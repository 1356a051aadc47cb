// A network-namespace lab for multicast across a live migration (issue 14):
// a stream sender, three hypervisor networks with snooping bridges, a
// join-driven router, and a VM stand-in whose interface moves from one
// hypervisor's bridge to another's without losing carrier.
//
//            src (eth0 .10)   relay (eth0 .20)
//                 \              /
//    hvS: br0 (.1, snooping) ── vnet0 ──────────┐
//                 |  up0                         │
//          mrS ⊃ netS (.254)                     │        nic: nicbr (no snooping)
//    router ─┬─ mrA ⊃ netA (.254)                ├─ toS ┐
//            └─ mrB ⊃ netB (.254)                │       ├─ vm0 ── vm: eth0 (.100)
//                 |  up0            up0          │  toA ┤
//    hvA: br0 (.1) ── vnet1 ──────────────────────┘  toB ┘
//    hvB: br0 (.1) ── vnet2 ─────────────────────────┘
//
// Networks (IPv4 /24, IPv6 ULA /64; every namespace's default route is the router's .254 / ::fe):
//   S 10.70.0.0/24 fd00:70::/64: the sender's link, hvS's bridge. The VM's own address is here (.100).
//   A 10.71.0.0/24 fd00:71::/64: downstream of the router's multicast proxy: a join on A gets the stream.
//   B 10.72.0.0/24 fd00:72::/64: no multicast from the router, ever (it needs a relay).
// Every bridge snoops (IGMPv3/MLDv2, the lab's query and membership timers). The router's side of
// each net is a one-port bridge too (mrS, mrA, mrB, which carry its addresses), so that either side
// can be the querier: `querier: 'hypervisor'` (default; queries from the bridge's address, fe80::1
// for MLD) or 'router' (from .254 / fe80::fe). Only one side queries: a Linux bridge yields to any
// querier it hears rather than to the lowest address, so two on a link suppress each other.
// Note what a querier hypervisor bridge does that a querier router does not: it sends general
// queries on a port as soon as it comes up (its per-port startup queries), so a VM arriving there
// answers within the query response interval, not at the next periodic query.
//
// The router: IPv4 and IPv6 forwarding; multicast by mcast-lab-router.js (a join-driven proxy,
// upstream netS, downstream netA only), because the kernel this project's machines run has no
// multicast routing (CONFIG_IP_MROUTE is off: igmpproxy cannot start). Membership on A is the
// kernel's snooping database of mrA, forwarding a tc mirred copy per (group, downstream), polled
// every 20 ms; forwarding stops when mrA's entry expires (membership interval = 2 × query interval
// + query response interval after the last report). See that file.
//
// The VM: `vm` holds eth0 (MAC lab.addresses.vmMac), a veth to `nic`, whose non-snooping bridge has
// one port to each hypervisor's bridge: vnet0/vnet1/vnet2, named and addressed as libvirt names a
// tap (the guest MAC with first byte 0xfe). Only the current hypervisor's vnet is up; a switchover
// sets the source vnet down (its bridge drops the port's MDB entries, as when the source tap goes),
// waits the pause, and sets the destination vnet up: a fresh port the destination bridge knows no
// group of. The VM's eth0 keeps its carrier throughout (its own veth never changes), so it sends no
// report until the destination's querier asks.
//
//   const lab = await McastLab.create({ family: 4, queryIntervalSec: 5 });
//   await lab.startStream({ pps: 174 });                   // receiver in vm joins, sender starts
//   const sw = await lab.switchover({ to: 'A', pauseMs: 300 });
//   await sleep(8000);
//   const r = await lab.stopStream();                      // { received, lost, duplicates, interruptionMs, … }
//   await lab.close();                                     // processes stopped by PID, namespaces deleted
//
// Namespace names carry a random tag (parallel labs never collide) and are recorded for the run's
// reaper (reaper.js reapNamespaces); every process is a spawnManaged child stopped by PID.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pollUntil } from './poll';
import { ManagedProcess, reaper, runCommand, sleep, spawnManaged, stopProcess } from './process';
import { firstReason, missingTools, needsRoot } from './prereq';

export type Family = 4 | 6;
export type Hypervisor = 'S' | 'A' | 'B';
export type Role = 'src' | 'relay' | 'router' | 'hvS' | 'hvA' | 'hvB' | 'nic' | 'vm';
const ROLES: readonly Role[] = ['src', 'relay', 'router', 'hvS', 'hvA', 'hvB', 'nic', 'vm'];

/** Why the lab cannot run here, or null. */
export function mcastLabMissing(): string | null {
  return firstReason(needsRoot('ip netns add (the multicast lab)'), missingTools('ip', 'bridge', 'tc'));
}

export interface McastLabOptions {
  /** The stream's and the receiver's family (the lab's unicast is dual-stack either way). */
  family: Family;
  /** The hypervisors' and the router's IGMP/MLD query interval (the bridges' querier; default 125 s). */
  queryIntervalSec?: number;
  /** Maximum response delay in queries (default 10 s, the standard; a host answers at random within it). */
  queryResponseSec?: number;
  /** Where the VM starts (default S, the sender's network). */
  start?: Hypervisor;
  /** Who sends the queries on every net: the hypervisors' bridges (default) or the router. */
  querier?: 'hypervisor' | 'router';
}

export interface NetAddresses {
  v4: string;
  v6: string;
}

export interface LabAddresses {
  /** Per network: prefix and each member's unicast address. */
  nets: Record<Hypervisor, { v4Prefix: string; v6Prefix: string; bridge: NetAddresses; router: NetAddresses }>;
  src: NetAddresses;
  relay: NetAddresses;
  /** The VM's (home) address, on S: it keeps it when it moves. */
  vm: NetAddresses;
  vmMac: string;
  /** The VM's tap-like port on each hypervisor's bridge (MAC: vmMac with first byte 0xfe). */
  ports: Record<Hypervisor, string>;
  tapMac: string;
  /** Every hypervisor's bridge is br0; its uplink port to the router is up0. */
  bridge: 'br0';
  uplink: 'up0';
  /** The router's interface on each net (the port of a one-port bridge, which has the addresses). */
  routerIfaces: Record<Hypervisor, string>;
  routerBridges: Record<Hypervisor, string>;
}

export interface StreamOptions {
  group?: string;
  port?: number;
  /** Packets per second: 174 (2 Mbps) or 1,725 (20 Mbps) in the paper. */
  pps?: number;
  /** Stop sending by itself after this long (0: only at stopStream). */
  durationMs?: number;
  /** Datagram size (default 1,450). */
  size?: number;
}

export interface SwitchoverResult {
  from: Hypervisor;
  to: Hypervisor;
  /** process.hrtime.bigint() just before the source port went down / just after the destination port was up. */
  downAtNs: bigint;
  upAtNs: bigint;
  /** upAt − downAt (the pause asked for plus two `ip link` commands). */
  pauseMs: number;
}

export interface SwitchoverEffect extends SwitchoverResult {
  /** Arrival of the first datagram after upAt, in ms after downAt / upAt; null when none came. */
  firstAfterDownMs: number | null;
  firstAfterUpMs: number | null;
}

export interface StreamResult {
  group: string;
  port: number;
  pps: number;
  /** Datagrams the sender sent and its achieved rate. */
  sent: number;
  achievedPps: number;
  /** Datagrams the receiver got (duplicates included), distinct sequence numbers, duplicates. */
  received: number;
  distinct: number;
  duplicates: number;
  /** First sequence number received; lost counts from there to the last one sent. */
  firstSeq: number | null;
  lost: number;
  /**
   * The paper's interruption: the longest run of consecutive lost sequence numbers plus one, times
   * the packet interval (so 1000/pps with no loss). A run still open at the end counts to the last sent.
   */
  interruptionMs: number;
  /** Whether every loss run closed (the stream came back after the longest one). */
  resumed: boolean;
  /** The longest wall-clock gap between two consecutive arrivals. */
  gapMs: number;
  switchovers: SwitchoverEffect[];
}

interface Stream {
  options: Required<StreamOptions>;
  sender: ManagedProcess;
  receiver: ManagedProcess;
  outFile: string;
  switchovers: SwitchoverResult[];
}

const NETS: Record<Hypervisor, { v4: string; v6: string }> = {
  S: { v4: '10.70.0', v6: 'fd00:70:' },
  A: { v4: '10.71.0', v6: 'fd00:71:' },
  B: { v4: '10.72.0', v6: 'fd00:72:' },
};
const HV_ROLE: Record<Hypervisor, Role> = { S: 'hvS', A: 'hvA', B: 'hvB' };
const TAP: Record<Hypervisor, string> = { S: 'vnet0', A: 'vnet1', B: 'vnet2' };
const NIC_PORT: Record<Hypervisor, string> = { S: 'toS', A: 'toA', B: 'toB' };
const SCRIPTS = { sender: 'mcast-lab-sender.js', receiver: 'mcast-lab-receiver.js', router: 'mcast-lab-router.js' };
const DEFAULT_GROUP: Record<Family, string> = { 4: '239.70.0.1', 6: 'ff0e::70:1' };

function addressesOf(net: Hypervisor, host: number): NetAddresses {
  return { v4: `${NETS[net].v4}.${host}`, v6: `${NETS[net].v6}:${host.toString(16)}` };
}

function centiseconds(seconds: number): string {
  return String(Math.round(seconds * 100));
}

/** A random locally administered unicast MAC in QEMU's 52:54:00 range. */
function vmMacAddress(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export class McastLab {
  /** Namespace names by role. */
  readonly ns: Record<Role, string>;
  readonly addresses: LabAddresses;
  readonly family: Family;
  readonly queryIntervalSec: number;
  readonly queryResponseSec: number;
  readonly querier: 'hypervisor' | 'router';
  /** Where the VM is now. */
  vmOn: Hypervisor;
  /** The router's log: one JSON line per forwarding change ({t, event, group, downstream}). */
  router: ManagedProcess | undefined;
  readonly dir: string;
  private readonly created: Array<{ name: string; record: string | undefined }> = [];
  private readonly processes = new Set<ManagedProcess>();
  private stream: Stream | undefined;

  private constructor(options: McastLabOptions) {
    const tag = randomBytes(3).toString('hex');
    this.ns = Object.fromEntries(ROLES.map((r) => [r, `vmm-ml-${r}-${tag}`])) as Record<Role, string>;
    this.family = options.family;
    this.queryIntervalSec = options.queryIntervalSec ?? 125;
    this.queryResponseSec = options.queryResponseSec ?? 10;
    this.vmOn = options.start ?? 'S';
    this.querier = options.querier ?? 'hypervisor';
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-mcast-lab-'));
    const mac = vmMacAddress();
    const nets = Object.fromEntries((['S', 'A', 'B'] as const).map((n) => [n, {
      v4Prefix: `${NETS[n].v4}.0/24`, v6Prefix: `${NETS[n].v6}:/64`, bridge: addressesOf(n, 1), router: addressesOf(n, 254),
    }])) as LabAddresses['nets'];
    this.addresses = {
      nets, src: addressesOf('S', 10), relay: addressesOf('S', 20), vm: addressesOf('S', 100), vmMac: mac,
      ports: { ...TAP }, tapMac: `fe${mac.slice(2)}`, bridge: 'br0', uplink: 'up0', routerIfaces: { S: 'netS', A: 'netA', B: 'netB' },
      routerBridges: { S: 'mrS', A: 'mrA', B: 'mrB' },
    };
  }

  /** Builds the lab; on any failure, removes what it made and rethrows. */
  static async create(options: McastLabOptions): Promise<McastLab> {
    const lab = new McastLab(options);
    try {
      await lab.build();
    } catch (err) {
      await lab.close().catch(() => undefined);
      throw err;
    }
    return lab;
  }

  /** Runs `cmd args` inside a namespace; throws on a non-zero exit. Returns stdout. */
  async exec(role: Role, cmd: string, args: readonly string[]): Promise<string> {
    return run('ip', ['netns', 'exec', this.ns[role], cmd, ...args]);
  }

  /** `ip -n NS args`. */
  ip(role: Role, ...args: string[]): Promise<string> {
    return run('ip', ['-n', this.ns[role], ...args]);
  }

  /** Starts a process inside a namespace (spawnManaged: stopped by PID at close()). */
  async spawnIn(role: Role, cmd: string, args: readonly string[]): Promise<ManagedProcess> {
    const proc = await spawnManaged('ip', ['netns', 'exec', this.ns[role], cmd, ...args], { env: process.env });
    this.processes.add(proc);
    return proc;
  }

  /** Stops a process started by spawnIn. */
  async stop(proc: ManagedProcess): Promise<void> {
    await stopProcess(proc);
    this.processes.delete(proc);
  }

  private async build(): Promise<void> {
    for (const role of ROLES) {
      await run('ip', ['netns', 'add', this.ns[role]]);
      this.created.push({ name: this.ns[role], record: reaper.recordNamespace(this.ns[role]) });
      await this.ip(role, 'link', 'set', 'lo', 'up');
      // No duplicate address detection: addresses (and MLD reports' link-local source) usable at once.
      await this.exec(role, 'sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    }
    await this.exec('router', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // The NIC plumbing is a wire: no IPv6 of its own, so no MLD report from it reaches a hypervisor.
    await this.exec('nic', 'sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    const qi = this.queryIntervalSec;
    const qri = this.queryResponseSec;
    // RFC 3376/3810 timers from the query interval, robustness 2.
    const snooping = [
      'mcast_snooping', '1', 'mcast_query_use_ifaddr', '1', 'mcast_stats_enabled', '1', 'mcast_igmp_version', '3', 'mcast_mld_version', '2',
      'mcast_query_interval', centiseconds(qi), 'mcast_startup_query_interval', centiseconds(qi),
      'mcast_query_response_interval', centiseconds(qri), 'mcast_membership_interval', centiseconds(2 * qi + qri),
      'mcast_querier_interval', centiseconds(2 * qi + qri / 2),
    ];
    const a = this.addresses;
    for (const net of ['S', 'A', 'B'] as const) {
      const hv = HV_ROLE[net];
      await this.ip(hv, 'link', 'add', 'br0', 'type', 'bridge', 'stp_state', '0', ...snooping,
        'mcast_querier', this.querier === 'hypervisor' ? '1' : '0');
      await this.ip(hv, 'link', 'set', 'br0', 'addrgenmode', 'none');
      await this.addAddresses(hv, 'br0', a.nets[net].bridge, 'fe80::1/64');
      await this.ip(hv, 'link', 'set', 'br0', 'up');
      await this.defaultRoute(hv, net);
    }
    // Router: each net's interface is the one port of a snooping bridge with the addresses (mrA's
    // database is A's membership for the proxy; netS's ingress is where the proxy's filters sit).
    for (const net of ['S', 'A', 'B'] as const) {
      const iface = a.routerIfaces[net];
      const bridge = a.routerBridges[net];
      await this.ip('router', 'link', 'add', bridge, 'type', 'bridge', 'stp_state', '0', ...snooping,
        'mcast_querier', this.querier === 'router' ? '1' : '0');
      await this.ip('router', 'link', 'set', bridge, 'addrgenmode', 'none');
      await this.ip('router', 'link', 'add', iface, 'type', 'veth', 'peer', 'name', 'up0', 'netns', this.ns[HV_ROLE[net]]);
      await this.ip(HV_ROLE[net], 'link', 'set', 'up0', 'master', 'br0');
      await this.ip(HV_ROLE[net], 'link', 'set', 'up0', 'up');
      await this.ip('router', 'link', 'set', iface, 'master', bridge);
      await this.addAddresses('router', bridge, a.nets[net].router, 'fe80::fe/64');
      await this.ip('router', 'link', 'set', bridge, 'up');
      await this.ip('router', 'link', 'set', iface, 'up');
    }
    // Reports from A and B go up to the router at once (on S it is a member port like any other:
    // it gets a group's stream when it joins upstream).
    await run('bridge', ['-n', this.ns.hvA, 'link', 'set', 'dev', 'up0', 'mcast_router', '2']);
    await run('bridge', ['-n', this.ns.hvB, 'link', 'set', 'dev', 'up0', 'mcast_router', '2']);
    await run('tc', ['-n', this.ns.router, 'qdisc', 'add', 'dev', 'netS', 'ingress']);
    // The sender and the relay host on S.
    for (const [role, port, addresses] of [['src', 'src0', a.src], ['relay', 'relay0', a.relay]] as const) {
      await this.plugInto(role, port, 'S', addresses);
    }
    // The VM: eth0 ↔ vm0 in nic's bridge; nic ↔ each hypervisor's tap-like port.
    await this.ip('nic', 'link', 'add', 'nicbr', 'type', 'bridge', 'stp_state', '0', 'mcast_snooping', '0');
    await this.ip('nic', 'link', 'set', 'nicbr', 'addrgenmode', 'none');
    await this.ip('nic', 'link', 'set', 'nicbr', 'up');
    await this.ip('nic', 'link', 'add', 'vm0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns.vm);
    await this.ip('nic', 'link', 'set', 'vm0', 'master', 'nicbr');
    await this.ip('nic', 'link', 'set', 'vm0', 'up');
    await this.ip('vm', 'link', 'set', 'eth0', 'address', a.vmMac);
    await this.addAddresses('vm', 'eth0', a.vm);
    await this.ip('vm', 'link', 'set', 'eth0', 'up');
    await this.defaultRoute('vm', 'S');
    for (const net of ['S', 'A', 'B'] as const) {
      const hv = HV_ROLE[net];
      await this.ip('nic', 'link', 'add', NIC_PORT[net], 'type', 'veth', 'peer', 'name', TAP[net], 'netns', this.ns[hv]);
      await this.ip('nic', 'link', 'set', NIC_PORT[net], 'master', 'nicbr');
      await this.ip('nic', 'link', 'set', NIC_PORT[net], 'up');
      await this.ip(hv, 'link', 'set', TAP[net], 'address', a.tapMac);
      await this.ip(hv, 'link', 'set', TAP[net], 'master', 'br0');
      if (net === this.vmOn) await this.ip(hv, 'link', 'set', TAP[net], 'up');
    }
    this.router = await this.spawnIn('router', process.execPath, [script('router'), 'mrS:netS', a.nets.S.router.v4, 'mrA:netA']);
    await pollUntil('the lab router', () => this.router?.output() ?? '', (o) => o.includes('"ready"'), 10_000);
  }

  private async addAddresses(role: Role, iface: string, addresses: NetAddresses, linkLocal?: string): Promise<void> {
    await this.ip(role, 'addr', 'add', `${addresses.v4}/24`, 'dev', iface);
    await this.ip(role, '-6', 'addr', 'add', `${addresses.v6}/64`, 'dev', iface, 'nodad');
    if (linkLocal) await this.ip(role, '-6', 'addr', 'add', linkLocal, 'dev', iface, 'nodad');
  }

  private async defaultRoute(role: Role, net: Hypervisor): Promise<void> {
    await this.ip(role, 'route', 'add', 'default', 'via', this.addresses.nets[net].router.v4);
    await this.ip(role, '-6', 'route', 'add', 'default', 'via', this.addresses.nets[net].router.v6);
  }

  /** A host namespace with eth0 on a hypervisor's bridge (port `port`). */
  private async plugInto(role: Role, port: string, net: Hypervisor, addresses: NetAddresses): Promise<void> {
    const hv = HV_ROLE[net];
    await this.ip(hv, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns[role]);
    await this.ip(hv, 'link', 'set', port, 'master', 'br0');
    await this.ip(hv, 'link', 'set', port, 'up');
    await this.addAddresses(role, 'eth0', addresses);
    await this.ip(role, 'link', 'set', 'eth0', 'up');
    await this.defaultRoute(role, net);
  }

  /** The hypervisor namespace of a network. */
  hv(net: Hypervisor): Role {
    return HV_ROLE[net];
  }

  /** /sys/class/net/eth0/carrier_changes in the VM (a switchover must not change it). */
  async vmCarrierChanges(): Promise<number> {
    return Number((await this.exec('vm', 'cat', ['/sys/class/net/eth0/carrier_changes'])).trim());
  }

  /** The MDB entries of a hypervisor's bridge ({port, grp, state, …} as `bridge -j mdb show` prints them). */
  async mdb(net: Hypervisor): Promise<Array<{ port: string; grp: string; state: string }>> {
    const out = await run('bridge', ['-n', this.ns[HV_ROLE[net]], '-j', 'mdb', 'show', 'dev', 'br0']);
    return (JSON.parse(out) as Array<{ mdb?: Array<{ port: string; grp: string; state: string }> }>).flatMap((t) => t.mdb ?? []);
  }

  /** The router's forwarding log so far: [{t (hrtime ns), event: forward|stop|join-upstream|leave-upstream, group, downstream}]. */
  routerEvents(): Array<{ t: bigint; event: string; group?: string; downstream?: string }> {
    return (this.router?.output() ?? '').split('\n').filter((l) => l.startsWith('{')).map((l) => {
      const e = JSON.parse(l) as { t: string; event: string; group?: string; downstream?: string };
      return { ...e, t: BigInt(e.t) };
    });
  }

  /** Starts the receiver in the VM (joined once it says ready), then the sender in src. */
  async startStream(options: StreamOptions = {}): Promise<void> {
    if (this.stream) throw new Error('a stream is already running');
    const o: Required<StreamOptions> = {
      group: options.group ?? DEFAULT_GROUP[this.family], port: options.port ?? 5001, pps: options.pps ?? 174,
      durationMs: options.durationMs ?? 0, size: options.size ?? 1450,
    };
    const v6 = this.family === 6;
    const outFile = path.join(this.dir, `arrivals-${Date.now()}.bin`);
    const receiver = await this.spawnIn('vm', process.execPath,
      [script('receiver'), String(this.family), o.group, String(o.port), v6 ? 'eth0' : this.addresses.vm.v4, outFile]);
    try {
      await pollUntil('the receiver to join', () => receiver.output(), (out) => out.includes('ready'), 10_000);
    } catch (err) {
      await this.stop(receiver);
      throw err;
    }
    const sender = await this.spawnIn('src', process.execPath, [script('sender'), String(this.family), o.group, String(o.port),
      String(o.pps), String(o.durationMs), String(o.size), '16', v6 ? 'eth0' : this.addresses.src.v4]);
    this.stream = { options: o, sender, receiver, outFile, switchovers: [] };
  }

  /**
   * Moves the VM: its port on the current hypervisor's bridge goes down, `pauseMs` later its
   * port on `to`'s bridge comes up (the first time, with no MDB entry for it there).
   */
  async switchover(options: { to: Hypervisor; pauseMs: number; from?: Hypervisor }): Promise<SwitchoverResult> {
    const from = options.from ?? this.vmOn;
    if (from !== this.vmOn) throw new Error(`the VM is on ${this.vmOn}, not ${from}`);
    if (options.to === from) throw new Error(`the VM is on ${from} already`);
    const downAtNs = process.hrtime.bigint();
    await this.ip(HV_ROLE[from], 'link', 'set', TAP[from], 'down');
    const left = options.pauseMs - Number(process.hrtime.bigint() - downAtNs) / 1e6;
    if (left > 0) await sleep(left);
    await this.ip(HV_ROLE[options.to], 'link', 'set', TAP[options.to], 'up');
    const upAtNs = process.hrtime.bigint();
    this.vmOn = options.to;
    const result = { from, to: options.to, downAtNs, upAtNs, pauseMs: Number(upAtNs - downAtNs) / 1e6 };
    this.stream?.switchovers.push(result);
    return result;
  }

  /** Datagrams received so far (read from the receiver's file, up to its last 100 ms flush). */
  receivedSoFar(): number {
    if (!this.stream) return 0;
    try {
      return Math.floor(fs.statSync(this.stream.outFile).size / 16);
    } catch {
      return 0;
    }
  }

  /** Stops the sender, lets the last datagrams land, stops the receiver, and analyses the arrivals. */
  async stopStream(): Promise<StreamResult> {
    const stream = this.stream;
    if (!stream) throw new Error('no stream is running');
    this.stream = undefined;
    await this.stop(stream.sender);
    await sleep(200);
    await this.stop(stream.receiver);
    const stats = JSON.parse(stream.sender.output().split('\n').find((l) => l.startsWith('{')) ?? '{"sent":0,"achievedPps":0}') as
      { sent: number; achievedPps: number };
    const data = fs.readFileSync(stream.outFile);
    fs.rmSync(stream.outFile, { force: true });
    const arrivals: Array<{ seq: number; t: bigint }> = [];
    for (let off = 0; off + 16 <= data.length; off += 16) {
      arrivals.push({ seq: Number(data.readBigUInt64BE(off)), t: data.readBigUInt64BE(off + 8) });
    }
    return {
      group: stream.options.group, port: stream.options.port, pps: stream.options.pps, sent: stats.sent, achievedPps: stats.achievedPps,
      ...analyseArrivals(arrivals, stats.sent, stream.options.pps, stream.switchovers),
    };
  }

  /** Stops every process the lab started and deletes its namespaces and files. Safe to call twice. */
  async close(): Promise<void> {
    this.stream = undefined;
    const errors: unknown[] = [];
    for (const proc of [...this.processes]) {
      await this.stop(proc).catch((err: unknown) => errors.push(err));
    }
    for (const { name, record } of this.created.splice(0).reverse()) {
      await run('ip', ['netns', 'del', name]).catch((err: unknown) => errors.push(err));
      reaper.forget(record);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new Error(`closing the multicast lab: ${errors.map(String).join('; ')}`);
  }
}

/** The paper's figures from the receiver's (sequence, arrival) records, in arrival order. */
export function analyseArrivals(
  arrivals: ReadonlyArray<{ seq: number; t: bigint }>,
  sent: number,
  pps: number,
  switchovers: readonly SwitchoverResult[] = [],
): Omit<StreamResult, 'group' | 'port' | 'pps' | 'sent' | 'achievedPps'> {
  const intervalMs = 1000 / pps;
  const seqs = [...new Set(arrivals.map((a) => a.seq))].sort((x, y) => x - y);
  const distinct = seqs.length;
  let longestRun = 0;
  let resumed = true;
  for (let i = 1; i < seqs.length; i++) longestRun = Math.max(longestRun, seqs[i] - seqs[i - 1] - 1);
  const last = seqs.at(-1);
  if (last !== undefined && sent - 1 - last > longestRun) {
    longestRun = sent - 1 - last;
    resumed = false;
  }
  let gapNs = 0n;
  for (let i = 1; i < arrivals.length; i++) {
    const d = arrivals[i].t - arrivals[i - 1].t;
    if (d > gapNs) gapNs = d;
  }
  const effects = switchovers.map((s): SwitchoverEffect => {
    const first = arrivals.find((a) => a.t > s.upAtNs);
    return {
      ...s,
      firstAfterDownMs: first ? Number(first.t - s.downAtNs) / 1e6 : null,
      firstAfterUpMs: first ? Number(first.t - s.upAtNs) / 1e6 : null,
    };
  });
  return {
    received: arrivals.length, distinct, duplicates: arrivals.length - distinct,
    firstSeq: seqs[0] ?? null, lost: seqs.length === 0 ? sent : sent - seqs[0] - distinct,
    interruptionMs: (longestRun + 1) * intervalMs, resumed, gapMs: Number(gapNs) / 1e6, switchovers: effects,
  };
}

/** The repository (the directory of package.json), from test/harness or from its compiled copy in dist/. */
export function repositoryRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${__dirname}`);
    dir = up;
  }
  return dir;
}

/** The lab's scripts are plain JS in test/harness (dist/ has no copy). */
function script(name: keyof typeof SCRIPTS): string {
  return path.join(repositoryRoot(), 'test', 'harness', SCRIPTS[name]);
}

async function run(cmd: string, args: readonly string[]): Promise<string> {
  const r = await runCommand(cmd, args, { env: process.env });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}
