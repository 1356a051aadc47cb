// The source's side of a migration with multicast: read which groups each of
// the VM's NICs receives (the bridge's snooping database, per port), have
// the destination's agent prepare them (AGENT_REQUEST: it answers once each
// stream arrives there or is relayed), then start the live migration through
// libvirt — or stop there for a migration another tool runs.
import { newMigrationId } from './destination';
import { tapMacOf } from './bridge-ports';
import type { AgentContext } from './context';
import type { Peer } from './config';
import { isLinkLocalGroup } from './groups';
import { migrateVm, vmFacts, type VmFacts } from './libvirt-vm';
import { MessageType, type GroupDelivery, type NicGroups } from './wire';

export interface PrepareResult {
  migrationId: string;
  vm: { uuid: string; name: string };
  /** Signalling time before the migration may start (the paper's T_PRE), ms. */
  tPreMs: number;
  groups: GroupDelivery[];
  migrated: boolean;
}

/**
 * Retransmissions of an AGENT_REQUEST (500 ms, doubling: the 4th goes out at
 * 7.5 s and the request gives up at 15.5 s): the destination answers only once
 * each stream arrived there or was relayed, which takes stream-timeout and a
 * relay request. A retransmitted request repeats its timestamp, so the last one
 * must leave within the 15 s a receiver accepts it for.
 */
const AGENT_REQUEST_FIRST_RETRY_MS = 500;
const AGENT_REQUEST_RETRIES = 4;

export class SourceRole {
  constructor(private readonly ctx: AgentContext) {}

  /**
   * What each bridged NIC of the VM receives now (groups a host joins on
   * every link left out). Its port is the bridge port with the tap's MAC,
   * as on the destination, else the one the domain XML names.
   */
  async nicGroups(vm: VmFacts): Promise<NicGroups[]> {
    const out: NicGroups[] = [];
    for (const nic of vm.nics) {
      const byMac = (await this.ctx.bridges.ports(nic.bridge)).find((p) => p.mac === tapMacOf(nic.mac));
      const ifIndex = byMac?.ifIndex ?? await this.ctx.bridges.ifIndex(nic.port);
      const groups = ifIndex === null ? [] : (await this.ctx.bridges.portGroups(ifIndex)).filter((g) => !isLinkLocalGroup(g));
      out.push({ mac: nic.mac, bridge: nic.bridge, groups: groups.map((address) => ({ address, family: address.includes(':') ? 6 : 4 })) });
    }
    return out;
  }

  /**
   * Prepares DEST for the VM and, unless `prepareOnly`, migrates it there and
   * resolves when the migration has ended.
   */
  async migrate(vmName: string, dest: Peer, prepareOnly: boolean, progress: (line: string) => void): Promise<PrepareResult> {
    if (!prepareOnly && !this.ctx.config.libvirtReadWrite) {
      throw new Error('a migration through libvirt needs libvirt-readwrite yes in the configuration (or --prepare-only, for a migration another tool runs)');
    }
    const prepared = await this.prepare(vmName, dest, progress);
    if (prepareOnly) return prepared;
    await this.run(prepared, dest, progress);
    return { ...prepared, migrated: true };
  }

  /**
   * Has DEST proxy-join (or relay) each of the VM's groups; resolves once DEST
   * answered. Another tool migrates when `run` is not called; DEST then holds
   * its joins until the VM arrives (or arrival-timeout).
   */
  async prepare(vmName: string, dest: Peer, progress: (line: string) => void): Promise<PrepareResult> {
    const { ctx } = this;
    const vm = await vmFacts(ctx.config.libvirtUri, vmName);
    const nics = await this.nicGroups(vm);
    const migrationId = newMigrationId();
    const record = {
      id: migrationId, vm: { uuid: vm.uuid, name: vm.name }, role: 'source' as const, peer: `${dest.address} ${dest.port}`,
      phase: 'signalling' as const, since: Date.now(),
      groups: nics.flatMap((n) => n.groups.map((g) => ({ group: g.address, via: 'pending' as const }))),
    };
    ctx.state.migrations.push(record);
    ctx.stateChanged();
    const groupList = nics.flatMap((n) => n.groups.map((g) => g.address));
    progress(`${vm.name} receives ${groupList.join(', ') || 'no multicast group'}; asking ${dest.name} to prepare`);
    const started = process.hrtime.bigint();
    let groups: GroupDelivery[];
    try {
      // The destination answers retransmissions of a request it is still working on from its reply cache.
      const reply = await ctx.signalling.request(dest, MessageType.AGENT_REQUEST, { migrationId, vm: record.vm, nics }, {
        timeoutMs: AGENT_REQUEST_FIRST_RETRY_MS, retries: AGENT_REQUEST_RETRIES,
      });
      groups = reply.body.groups;
    } catch (err) {
      this.forget(migrationId);
      throw new Error(`${dest.name} did not prepare ${vm.name}'s groups: ${(err as Error).message}`);
    }
    const tPreMs = Number(process.hrtime.bigint() - started) / 1e6;
    // Prepared: what happens next is up to the caller (run, or another tool), not this record.
    this.forget(migrationId);
    progress(`${dest.name} is ready in ${tPreMs.toFixed(1)} ms: ${groups.map((g) => `${g.address} ${g.via}`).join(', ') || 'nothing to prepare'}`);
    return { migrationId, vm: record.vm, tPreMs, groups, migrated: false };
  }

  /** The live migration of a prepared VM, through libvirt; on failure DEST is told to release. */
  async run(prepared: PrepareResult, dest: Peer, progress: (line: string) => void): Promise<void> {
    const { ctx } = this;
    const { migrationId, vm } = prepared;
    ctx.state.migrations.push({
      id: migrationId, vm, role: 'source', peer: `${dest.address} ${dest.port}`, phase: 'migrating', since: Date.now(),
      groups: prepared.groups.map((g) => ({ group: g.address, via: g.via === 'none' ? 'pending' : g.via })),
    });
    ctx.stateChanged();
    try {
      await ctx.signalling.request(dest, MessageType.START_MIGRATION, { migrationId, vm });
      const destUri = dest.libvirtUri ?? `qemu+ssh://${dest.name}/system`;
      progress(`migrating ${vm.name} to ${destUri}`);
      await migrateVm(ctx.config.libvirtUri, vm.uuid, destUri);
    } catch (err) {
      await this.release(vm.uuid, vm.name, dest, migrationId, 'migration failed').catch(() => undefined);
      this.forget(migrationId);
      throw new Error(`migration of ${vm.name} to ${dest.name} failed: ${(err as Error).message}; ${dest.name}'s joins were released`);
    }
    this.forget(migrationId);
    progress(`${vm.name} migrated`);
  }

  /** Tells DEST to drop what it holds for the VM (by migration id, or all of the VM's when the id is unknown). */
  async release(vmUuid: string, vmName: string, dest: Peer, migrationId: string, reason: string): Promise<void> {
    await this.ctx.signalling.request(dest, MessageType.RELEASE, { migrationId, vm: { uuid: vmUuid, name: vmName }, reason });
  }

  private forget(migrationId: string): void {
    this.ctx.state.migrations = this.ctx.state.migrations.filter((m) => m.id !== migrationId);
    this.ctx.stateChanged();
  }
}
