// The destination's side of a migration with multicast. On AGENT_REQUEST it
// proxy-joins the VM's groups on the bridge the VM will land on and waits
// for each stream; one that does not come within stream-timeout is asked of
// the relay server and re-sent on the bridge. When the VM's port appears
// (its tap's MAC gives it away) it gets temporary MDB entries for the
// groups, so the snooping bridge forwards at once rather than after the
// VM's next report. The joins are held until the VM's own report shows on
// its port; a relay runs until the real stream arrives or the VM leaves.
import { randomUUID } from 'crypto';
import type { Endpoint } from './config';
import type { AgentContext } from './context';
import { tapMacOf } from './bridge-ports';
import { canonicalGroup } from './groups';
import { isMulticastAddress } from './wire';
import { NetlinkSubscription } from '../collectors/netlink';
import type { AgentRequest, AgentResponse, GroupDelivery } from './wire';
import type { RelayClient } from './relay-client';

const RTNLGRP_LINK = 1;
/** How often a VM's port is checked for its own report (and for the VM leaving). */
const REPORT_POLL_MS = 500;
/** Safety net for a link notification the kernel dropped. */
const PORT_SWEEP_MS = 1000;

interface IncomingNic {
  mac: string;
  tapMac: string;
  bridge: string;
  groups: string[];
  port: string | null;
  portIfIndex: number | null;
  reportsAtArrival: number | null;
}

interface Incoming {
  id: string;
  vm: { uuid: string; name: string };
  from: Endpoint;
  nics: IncomingNic[];
  via: Map<string, GroupDelivery['via']>;
  response: Promise<AgentResponse>;
  timer: NodeJS.Timeout | null;
  poll: NodeJS.Timeout | null;
  /** Groups (bridge%group) whose proxy join is still held. */
  holding: Set<string>;
  ended: boolean;
}

const k = (bridge: string, group: string): string => `${bridge}%${group}`;

export class DestinationRole {
  private readonly incoming = new Map<string, Incoming>();
  private links: NetlinkSubscription | null = null;
  private sweep: NodeJS.Timeout | null = null;
  private checking = false;
  private checkAgain = false;

  constructor(private readonly ctx: AgentContext, private readonly relays: RelayClient) {
    ctx.streams.onArrival((bridge, group) => this.streamArrived(bridge, group));
  }

  /** AGENT_REQUEST: resolves once every group arrives or has a relay (or none could be had). */
  handleAgentRequest(body: AgentRequest, from: Endpoint): Promise<AgentResponse> {
    const existing = this.incoming.get(body.migrationId);
    if (existing !== undefined) return existing.response;
    const nics: IncomingNic[] = [];
    const inc: Incoming = {
      id: body.migrationId, vm: body.vm, from, nics, via: new Map(), timer: null, poll: null,
      holding: new Set(), ended: false, response: Promise.resolve({ migrationId: body.migrationId, groups: [] }),
    };
    inc.response = this.prepare(inc, body);
    this.incoming.set(inc.id, inc);
    inc.response.catch(() => this.end(inc, 'failed'));
    return inc.response;
  }

  /** START_MIGRATION: the source is starting the migration now; wait arrival-timeout for the VM from here. */
  handleStart(migrationId: string): boolean {
    const inc = this.incoming.get(migrationId);
    if (inc === undefined || inc.ended) return false;
    // Unless the VM is already here (then the report timer runs).
    if (inc.nics.some((n) => n.port === null)) this.armArrivalTimer(inc);
    return true;
  }

  /** RELEASE: the migration will not happen (or VM stays where it is); drop everything held for it. */
  handleRelease(migrationId: string): boolean {
    const inc = this.incoming.get(migrationId);
    if (inc === undefined) return false;
    this.ctx.log('info', `migration ${inc.id} of ${inc.vm.name}: released by the source agent; joins and relays dropped`);
    void this.end(inc, 'failed');
    return true;
  }

  /** Releases what a VM holds, by UUID (the operator's `release VM DEST` reaching this host). */
  releaseVm(uuid: string): number {
    let n = 0;
    for (const inc of this.incoming.values()) {
      if (inc.vm.uuid === uuid.toLowerCase()) {
        this.ctx.log('info', `migration ${inc.id} of ${inc.vm.name}: released; joins and relays dropped`);
        void this.end(inc, 'failed');
        n++;
      }
    }
    return n;
  }

  private async prepare(inc: Incoming, body: AgentRequest): Promise<AgentResponse> {
    const { ctx } = this;
    const since = Date.now();
    ctx.state.migrations.push({
      id: inc.id, vm: inc.vm, role: 'destination', peer: `${inc.from.address} ${inc.from.port}`,
      phase: 'signalling', since, groups: [],
    });
    for (const nic of body.nics) {
      let bridge = nic.bridge;
      if (!(await ctx.bridges.exists(bridge))) {
        if (ctx.config.defaultBridge === null) {
          throw new Error(`no bridge ${nic.bridge} here for ${inc.vm.name}'s NIC ${nic.mac}, and no default-bridge is set`);
        }
        bridge = ctx.config.defaultBridge;
      }
      const groups = nic.groups.map((g) => g.address).filter(isMulticastAddress).map(canonicalGroup);
      inc.nics.push({ mac: nic.mac, tapMac: tapMacOf(nic.mac), bridge, groups, port: null, portIfIndex: null, reportsAtArrival: null });
    }
    // Watch before joining, so that a stream arriving at once is seen.
    for (const nic of inc.nics) {
      for (const group of nic.groups) {
        ctx.streams.on(nic.bridge).watch(group);
        await ctx.joins.join(group, nic.bridge);
        inc.holding.add(k(nic.bridge, group));
        ctx.state.proxyJoins.push({ group, bridge: nic.bridge, vm: inc.vm.uuid, since, reason: 'incoming-migration', migration: inc.id });
      }
    }
    this.setPhase(inc, 'signalling');
    ctx.stateChanged();
    this.watchLinks();
    this.armArrivalTimer(inc);
    const timeoutMs = ctx.config.streamTimeoutSeconds * 1000;
    const deliveries = await Promise.all(inc.nics.flatMap((nic) => nic.groups.map(async (group): Promise<GroupDelivery> => {
      const arrived = await ctx.streams.on(nic.bridge).waitForArrival(group, timeoutMs);
      let d: GroupDelivery;
      if (arrived !== null) {
        d = { address: group, via: 'direct' };
      } else if (inc.ended) {
        d = { address: group, via: 'none', reason: 'released' };
      } else {
        try {
          const relay = await this.relays.subscribe(group, nic.bridge, inc.id);
          d = { address: group, via: 'relay', relay };
        } catch (err) {
          ctx.log('warn', `migration ${inc.id} of ${inc.vm.name}: ${group} does not arrive on ${nic.bridge} within ` +
            `${ctx.config.streamTimeoutSeconds} s and no relay could be had (${(err as Error).message}); the VM will miss it after the move`);
          d = { address: group, via: 'none', reason: (err as Error).message };
        }
      }
      inc.via.set(k(nic.bridge, group), d.via);
      return d;
    })));
    this.setPhase(inc, 'awaiting-vm');
    ctx.log('info', `migration ${inc.id} of ${inc.vm.name} from ${inc.from.address}: ready (` +
      `${deliveries.map((d) => `${d.address} ${d.via}`).join(', ') || 'no groups'})`);
    // The VM's port may already be here (a migration started before the answer).
    this.checkPorts();
    return { migrationId: inc.id, groups: deliveries };
  }

  private setPhase(inc: Incoming, phase: 'signalling' | 'awaiting-vm' | 'awaiting-report' | 'done' | 'failed'): void {
    const m = this.ctx.state.migrations.find((x) => x.id === inc.id);
    if (m === undefined) return;
    m.phase = phase;
    m.groups = inc.nics.flatMap((n) => n.groups.map((group) => {
      const via = inc.via.get(k(n.bridge, group));
      return { group, via: via === 'direct' || via === 'relay' ? via : 'pending' as const };
    }));
    this.ctx.stateChanged();
  }

  private armArrivalTimer(inc: Incoming): void {
    if (inc.timer !== null) clearTimeout(inc.timer);
    inc.timer = setTimeout(() => {
      this.ctx.log('warn', `migration ${inc.id} of ${inc.vm.name}: the VM did not arrive within ${this.ctx.config.arrivalTimeoutSeconds} s; ` +
        'joins and relays dropped (raise arrival-timeout for longer migrations)');
      void this.end(inc, 'failed');
    }, this.ctx.config.arrivalTimeoutSeconds * 1000);
    inc.timer.unref();
  }

  private watchLinks(): void {
    if (this.links !== null) return;
    try {
      this.links = new NetlinkSubscription(RTNLGRP_LINK, () => this.checkPorts(), (err) => {
        this.ctx.log('error', `link notifications stopped (${err.message}); a migrated VM's port is found by a once-a-second check instead`);
        this.links = null;
      });
    } catch (err) {
      this.ctx.log('error', `cannot subscribe to link notifications (${(err as Error).message}); a migrated VM's port is found by a once-a-second check`);
    }
    this.sweep = setInterval(() => this.checkPorts(), PORT_SWEEP_MS);
    this.sweep.unref();
  }

  private stopWatchingLinks(): void {
    if ([...this.incoming.values()].some((i) => !i.ended && i.nics.some((n) => n.port === null))) return;
    if (this.sweep !== null) clearInterval(this.sweep);
    this.sweep = null;
    void this.links?.close();
    this.links = null;
  }

  /** Looks for the ports of VMs still expected (a link changed somewhere). */
  private checkPorts(): void {
    if (this.checking) {
      this.checkAgain = true;
      return;
    }
    this.checking = true;
    void (async () => {
      try {
        do {
          this.checkAgain = false;
          await this.findPorts();
        } while (this.checkAgain);
      } catch (err) {
        this.ctx.log('error', `looking for migrated VMs' ports: ${(err as Error).message}`);
      } finally {
        this.checking = false;
      }
    })();
  }

  private async findPorts(): Promise<void> {
    const waiting = [...this.incoming.values()].filter((i) => !i.ended && i.nics.some((n) => n.port === null));
    const byBridge = new Map<string, Awaited<ReturnType<AgentContext['bridges']['ports']>>>();
    for (const inc of waiting) {
      for (const nic of inc.nics) {
        if (nic.port !== null) continue;
        let ports = byBridge.get(nic.bridge);
        if (ports === undefined) {
          ports = await this.ctx.bridges.ports(nic.bridge);
          byBridge.set(nic.bridge, ports);
        }
        const port = ports.find((p) => p.mac === nic.tapMac && p.up);
        if (port === undefined) continue;
        nic.port = port.name;
        nic.portIfIndex = port.ifIndex;
        await this.arrived(inc, nic);
      }
    }
    this.stopWatchingLinks();
  }

  /** The VM's port is up on the bridge: give it the groups at once, then wait for its own report. */
  private async arrived(inc: Incoming, nic: IncomingNic): Promise<void> {
    const { ctx } = this;
    const port = nic.port as string;
    await Promise.all(nic.groups.map(async (group) => {
      ctx.state.portEntries.push({ bridge: nic.bridge, port, group, vm: inc.vm.uuid });
      try {
        await ctx.bridges.addPortGroup(nic.bridge, port, group);
      } catch (err) {
        ctx.log('error', `migration ${inc.id}: cannot add ${group} for port ${port} on ${nic.bridge} (${(err as Error).message}); ` +
          'the VM receives it after its next report');
      }
    }));
    ctx.log('info', `migration ${inc.id}: ${inc.vm.name} arrived on ${nic.bridge} port ${port}; forwarding ${nic.groups.join(', ') || 'no groups'}`);
    try {
      nic.reportsAtArrival = await ctx.bridges.reportsReceived(port);
    } catch (err) {
      ctx.log('warn', `migration ${inc.id}: cannot read ${port}'s report counters (${(err as Error).message}); ` +
        `the proxy joins are held for report-timeout (${ctx.config.reportTimeoutSeconds} s) — set mcast_stats_enabled on ${nic.bridge}`);
    }
    for (const j of ctx.state.proxyJoins) if (j.migration === inc.id && j.bridge === nic.bridge) j.reason = 'awaiting-report';
    if (inc.nics.every((n) => n.port !== null)) {
      if (inc.timer !== null) clearTimeout(inc.timer);
      inc.timer = setTimeout(() => {
        ctx.log('info', `migration ${inc.id}: ${inc.vm.name} sent no report within ${ctx.config.reportTimeoutSeconds} s; ` +
          'it does not want its groups any more — joins and relays dropped');
        void this.end(inc, 'done');
      }, ctx.config.reportTimeoutSeconds * 1000);
      inc.timer.unref();
    }
    this.setPhase(inc, 'awaiting-report');
    if (inc.poll === null) {
      inc.poll = setInterval(() => void this.pollReports(inc), REPORT_POLL_MS);
      inc.poll.unref();
    }
  }

  private async pollReports(inc: Incoming): Promise<void> {
    const { ctx } = this;
    for (const nic of inc.nics) {
      if (nic.port === null || nic.reportsAtArrival === null || inc.ended) continue;
      let reports: number;
      let groupsNow: string[];
      try {
        reports = await ctx.bridges.reportsReceived(nic.port);
        groupsNow = await ctx.bridges.portGroups(nic.portIfIndex as number);
      } catch {
        // The port went away: the VM left (migrated on, or was stopped).
        for (const group of nic.groups) await this.releaseGroup(inc, nic, group, 'its port is gone');
        continue;
      }
      const reported = reports > nic.reportsAtArrival;
      for (const group of nic.groups) {
        if (!inc.holding.has(k(nic.bridge, group)) && !this.relays.serving(group, nic.bridge, inc.id)) continue;
        if (!groupsNow.includes(group)) {
          await this.releaseGroup(inc, nic, group, 'the VM left the group');
        } else if (reported && inc.via.get(k(nic.bridge, group)) !== 'relay') {
          await this.releaseGroup(inc, nic, group, 'the VM reported it itself');
        }
      }
    }
    this.finishIfDone(inc);
  }

  /** The real stream reached a bridge: relays for it there are not needed any more. */
  private streamArrived(bridge: string, group: string): void {
    for (const inc of this.incoming.values()) {
      if (inc.ended || inc.via.get(k(bridge, group)) !== 'relay') continue;
      this.ctx.log('info', `migration ${inc.id}: ${group} now arrives on ${bridge} from the network; its relay stops`);
      inc.via.set(k(bridge, group), 'direct');
      this.relays.unsubscribe(group, bridge, inc.id);
      this.setPhase(inc, inc.nics.every((n) => n.port !== null) ? 'awaiting-report' : 'awaiting-vm');
    }
  }

  private async releaseGroup(inc: Incoming, nic: IncomingNic, group: string, why: string): Promise<void> {
    const key = k(nic.bridge, group);
    const relayed = this.relays.serving(group, nic.bridge, inc.id);
    if (!inc.holding.has(key) && !relayed) return;
    inc.holding.delete(key);
    this.ctx.joins.leave(group, nic.bridge);
    if (relayed) this.relays.unsubscribe(group, nic.bridge, inc.id);
    const { state } = this.ctx;
    state.proxyJoins = state.proxyJoins.filter((j) => !(j.migration === inc.id && j.bridge === nic.bridge && j.group === group));
    // From here the entry is the VM's own (its reports refresh it): no longer ours to undo.
    state.portEntries = state.portEntries.filter((e) => !(e.port === nic.port && e.group === group && e.bridge === nic.bridge));
    this.ctx.stateChanged();
    this.ctx.log('info', `migration ${inc.id}: ${group} on ${nic.bridge} released (${why})`);
  }

  private finishIfDone(inc: Incoming): void {
    const busy = inc.nics.some((n) => n.groups.some((g) => inc.holding.has(k(n.bridge, g)) || this.relays.serving(g, n.bridge, inc.id)));
    if (!busy && inc.nics.every((n) => n.port !== null)) void this.end(inc, 'done');
  }

  /** Ends an incoming migration: leaves its joins, stops its relays, removes the MDB entries it still owns. */
  private async end(inc: Incoming, outcome: 'done' | 'failed'): Promise<void> {
    if (inc.ended) return;
    inc.ended = true;
    if (inc.timer !== null) clearTimeout(inc.timer);
    if (inc.poll !== null) clearInterval(inc.poll);
    const { ctx } = this;
    for (const nic of inc.nics) {
      for (const group of nic.groups) {
        if (inc.holding.delete(k(nic.bridge, group))) ctx.joins.leave(group, nic.bridge);
        this.relays.unsubscribe(group, nic.bridge, inc.id);
        if (!ctx.joins.isHeld(group, nic.bridge)) ctx.streams.unwatch(nic.bridge, group);
      }
    }
    const owned = ctx.state.portEntries.filter((e) => inc.nics.some((n) => n.port === e.port && n.bridge === e.bridge));
    if (outcome === 'failed') {
      await Promise.all(owned.map((e) => ctx.bridges.removePortGroup(e.bridge, e.port, e.group).catch(() => undefined)));
    }
    ctx.state.portEntries = ctx.state.portEntries.filter((e) => !owned.includes(e));
    ctx.state.proxyJoins = ctx.state.proxyJoins.filter((j) => j.migration !== inc.id);
    ctx.state.migrations = ctx.state.migrations.filter((m) => m.id !== inc.id);
    ctx.stateChanged();
    this.incoming.delete(inc.id);
    if (outcome === 'done') ctx.log('info', `migration ${inc.id} of ${inc.vm.name}: done; nothing held for it any more`);
    this.stopWatchingLinks();
  }

  /** Drops everything (daemon stopping). */
  async close(): Promise<void> {
    await Promise.all([...this.incoming.values()].map((i) => this.end(i, 'failed')));
    if (this.sweep !== null) clearInterval(this.sweep);
    await this.links?.close();
    this.links = null;
  }

  /** For status: the migrations this host expects. */
  summary(): { id: string; vm: string; from: string; ports: (string | null)[] }[] {
    return [...this.incoming.values()].map((i) => ({ id: i.id, vm: i.vm.name, from: i.from.address, ports: i.nics.map((n) => n.port) }));
  }
}

export function newMigrationId(): string {
  return randomUUID();
}
