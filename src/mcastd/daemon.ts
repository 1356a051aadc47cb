// vmm-mcastd, the multicast mobility agent: one per hypervisor (and on a
// relay host). It wires the roles — source, destination, relay server — to
// the signalling socket, the control socket and the state file, and on start
// undoes what a predecessor that died left on the host.
import type { CollectorLog } from '../collectors/paths';
import { loadKeyFile } from './auth';
import { BridgeHost } from './bridge-ports';
import type { McastdConfig } from './config';
import { resolvePeer } from './config';
import { Resenders, StreamWatches, type AgentContext, type Signalling } from './context';
import { ControlClient, ControlServer, type ControlRequest } from './control';
import { DestinationRole } from './destination';
import { ProxyJoins } from './proxy-joins';
import { RelayClient } from './relay-client';
import { RelayServerRole } from './relay-server';
import { openSignalling, type SignallingHandle } from './signalling-adapter';
import { SourceRole } from './source';
import { emptyState, StateFile, type LeftBehind, type McastdState } from './state-file';
import { MessageType } from './wire';
import { vmFacts } from './libvirt-vm';

/** RELEASE of whatever a VM holds, whichever migration it came with. */
const ANY_MIGRATION = '*';

export class Mcastd {
  private constructor(
    private readonly ctx: AgentContext,
    private readonly stateFile: StateFile,
    private readonly signalling: SignallingHandle,
    private readonly control: ControlServer,
    private readonly source: SourceRole,
    private readonly destination: DestinationRole,
    private readonly relayClient: RelayClient,
    private readonly relayServer: RelayServerRole | null,
  ) {}

  static async start(config: McastdConfig, log: CollectorLog): Promise<Mcastd> {
    // Before anything is read or undone: a second daemon must not take the first one's state for a dead one's.
    if (await ControlClient.reachable(config.controlSocket)) {
      throw new Error(`${config.controlSocket}: another vmm-mcastd is running (stop it, or give this one its own control-socket and state-file)`);
    }
    const key = await loadKeyFile(config.keyFile);
    const state: McastdState = emptyState();
    const stateFile = new StateFile(config.stateFile, () => state, log);
    const left = await stateFile.readLeftBehind();
    const bridges = new BridgeHost();
    const signalling = await openSignalling(config, key, log);
    const ctx: AgentContext = {
      config, log, state, stateChanged: () => stateFile.changed(), bridges,
      joins: new ProxyJoins(), signalling, streams: new StreamWatches(log), resenders: new Resenders(log),
    };
    const relayClient = new RelayClient(ctx);
    const destination = new DestinationRole(ctx, relayClient);
    const source = new SourceRole(ctx);
    const relayServer = config.relay && config.relayInterface !== null ? new RelayServerRole(ctx, config.relayInterface) : null;
    // The control socket starts listening only at the end, once the daemon exists.
    const control: ControlServer = new ControlServer(config.controlSocket, (r, progress): Promise<unknown> => daemon.command(r, progress), log);
    const daemon: Mcastd = new Mcastd(ctx, stateFile, signalling, control, source, destination, relayClient, relayServer);
    daemon.listen(signalling);
    await daemon.undo(left);
    stateFile.changed();
    await stateFile.settled();
    await control.start();
    log('info', `vmm-mcastd ${config.name}: signalling on ${config.listen.join(', ')} port ${signalling.port}` +
      `${relayServer !== null ? `, relay server on ${config.relayInterface}` : ''}; control socket ${config.controlSocket}`);
    return daemon;
  }

  private listen(s: Signalling): void {
    const d = this.destination;
    s.onRequest(MessageType.AGENT_REQUEST, (body, from) => d.handleAgentRequest(body, from));
    s.onRequest(MessageType.START_MIGRATION, (body) => {
      if (!d.handleStart(body.migrationId)) throw new Error(`no migration ${body.migrationId} is prepared here`);
      return {};
    });
    s.onRequest(MessageType.RELEASE, (body) => {
      if (body.migrationId === ANY_MIGRATION || !d.handleRelease(body.migrationId)) d.releaseVm(body.vm.uuid);
      return {};
    });
    // A migration controller (the paper's requester) asks this host, the source, to prepare a migration and,
    // when libvirt is writable here and it names the destination's libvirt URI, to run it.
    s.onRequest(MessageType.MIGRATION_REQUEST, async (body, from) => {
      const dest = { name: body.destination.address, ...body.destination, libvirtUri: body.destinationUri ?? null };
      const log = (line: string): void => this.ctx.log('info', `migration requested by ${from.address}: ${line}`);
      try {
        const prepared = await this.source.prepare(body.vm.uuid, dest, log);
        if (this.ctx.config.libvirtReadWrite && dest.libvirtUri !== null) {
          this.source.run(prepared, dest, log).catch((err: Error) => this.ctx.log('error', err.message));
        }
        return { migrationId: body.migrationId, accepted: true, groups: prepared.groups };
      } catch (err) {
        return { migrationId: body.migrationId, accepted: false, reason: (err as Error).message };
      }
    });
    // Answered for any MAC: --check on a peer uses it to prove the address and the key.
    s.onRequest(MessageType.AGENT_SEARCH, (body) => ({ agent: this.ctx.config.name, mac: body.mac }));
    const relay = this.relayServer;
    s.onRequest(MessageType.RELAY_REQUEST, (body, from) => {
      if (relay === null) return { group: body.group, accepted: false, reason: `${this.ctx.config.name} is not a relay server` };
      return relay.handleRequest(body, from);
    });
    s.onRequest(MessageType.RELAY_STOP, async (body, from) => {
      await relay?.handleStop(body, from);
      return {};
    });
    s.onDatagram(MessageType.RELAY_DATA, (body, from) => this.relayClient.onData(body, from));
  }

  /**
   * A predecessor that died may have left temporary MDB entries for a
   * migrated VM (its joins died with it) and relays still forwarding here:
   * both are undone, so nothing it held outlives it.
   */
  private async undo(left: LeftBehind | null): Promise<void> {
    if (left === null || (left.portEntries.length === 0 && left.relays.length === 0)) return;
    const { ctx } = this;
    for (const e of left.portEntries) {
      await ctx.bridges.removePortGroup(e.bridge, e.port, e.group)
        .catch((err: Error) => ctx.log('warn', `cannot remove ${e.group} from port ${e.port} on ${e.bridge}: ${err.message}`));
    }
    const relays = new Map(left.relays.map((r) => [`${r.group} ${r.server} ${r.port}`, r]));
    for (const r of relays.values()) this.relayClient.stop(r.group, { address: r.server, port: r.port });
    ctx.log('info', `undid what the previous vmm-mcastd (pid ${left.pid ?? '?'}) left: ${left.portEntries.length} MDB ` +
      `entr${left.portEntries.length === 1 ? 'y' : 'ies'}, ${relays.size} relay${relays.size === 1 ? '' : 's'}`);
  }

  private async command(r: ControlRequest, progress: (line: string) => void): Promise<unknown> {
    switch (r.cmd) {
      case 'migrate':
        return this.source.migrate(r.vm, resolvePeer(this.ctx.config, r.dest), r.prepareOnly, progress);
      case 'release': {
        const dest = resolvePeer(this.ctx.config, r.dest);
        let vm: { uuid: string; name: string };
        if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(r.vm)) {
          vm = { uuid: r.vm.toLowerCase(), name: r.vm };
        } else {
          try {
            vm = await vmFacts(this.ctx.config.libvirtUri, r.vm);
          } catch (err) {
            throw new Error(`${r.vm}: ${(err as Error).message}; a VM no longer defined here is named by its UUID`);
          }
        }
        await this.source.release(vm.uuid, vm.name, dest, ANY_MIGRATION, 'released by the operator');
        return { released: vm.name, at: dest.name };
      }
      case 'status':
        return this.status();
    }
  }

  status(): unknown {
    return {
      name: this.ctx.config.name,
      state: this.ctx.state,
      incoming: this.destination.summary(),
      relayServer: this.relayServer?.summary() ?? null,
      signalling: this.signalling.counters(),
    };
  }

  get signallingPort(): number {
    return this.signalling.port;
  }

  /** Leaves every join, stops relays, removes the state file (no agent, no state). */
  async stop(): Promise<void> {
    await this.control.close();
    await this.destination.close();
    this.relayClient.close();
    await this.relayServer?.close();
    this.ctx.joins.close();
    await this.ctx.streams.close();
    await this.ctx.resenders.close();
    // RELAY_STOP requests are in flight: give them a moment before the socket closes.
    await new Promise((r) => setTimeout(r, 200));
    await this.signalling.close();
    await this.stateFile.remove();
  }
}
