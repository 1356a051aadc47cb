// The running agent: collectors → immutable snapshot → sorted view → AgentX
// responder. Refreshes run on a timer and on libvirt events; requests are
// answered from the last view and never wait for a refresh.
import { AgentxLog, AgentxSession, MibView, Responder, formatOid } from '../agentx';
import type { Config } from './config';
import { collectHost, HostCollectorState } from './collectors/host';
import { ImagePathResolver } from './collectors/mounts';
import { qemuStartTimes } from './collectors/qemu-processes';
import type { HostPaths } from './collectors/paths';
import { buildVmMibViewInSlices, hvUpTimeTicks, imageFile, ModelState, nicKey, notificationSwitches, vmMibWritables, vmRows } from './model/vm-mib';
import * as O from './model/vm-mib-oids';
import { operState } from './model/vm-state';
import { Notification, notificationsFor, VmStateRecord } from './notifications';
import { releaseFreedNativeMemory } from './native-memory';
import type { DomainRecord, HypervisorInfo, Snapshot } from './snapshot';
import { VmIndexes, VmIndexStore } from './state/index-store';

/** What the agent needs from libvirt; LibvirtCollector provides it. */
export interface DomainSource {
  hypervisorInfo(): HypervisorInfo | null;
  /** Every domain, or a rejection while libvirt is unreachable. */
  collect(): Promise<DomainRecord[]>;
  /** The last good record of every domain, served while libvirt is unreachable. */
  lastKnown(): DomainRecord[];
  onEvent(cb: (uuid: string) => void): void;
  close(): Promise<void>;
}

export interface AgentDeps {
  config: Config;
  domains: DomainSource;
  store: VmIndexStore;
  log: AgentxLog;
}

export class VmmAgent {
  readonly responder: Responder;
  // No snapshot, rows or domain records are kept between refreshes: the view
  // holds every value served, a Set patches the view, and while libvirt is
  // away the collector's last records are used. Holding the last snapshot
  // kept 10,000 VMs' records alive while the next refresh made new ones,
  // both sets at once at the memory peak of every refresh.
  /** VM indexes of the last refresh, null before the first: a different set of VMs changes vmTableLastChange. */
  private indexes: Map<string, VmIndexes> | null = null;
  /** Oper states of the last refresh that reached libvirt; null until one has. */
  private states: Map<string, VmStateRecord> | null = null;
  private modelState: ModelState;
  /** Whether any collection has succeeded: before one, there are no domains to serve, not zero. */
  private collectedOnce = false;
  private libvirtDownSince: number | null = null;
  private refreshing: Promise<void> | null = null;
  private refreshAgain = false;
  /** After stop(): no new refresh starts (a libvirt event may still arrive). */
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private eventTimer: NodeJS.Timeout | null = null;
  private readonly paths: HostPaths;
  /** Kept across refreshes: snmpd never forgets a CPU or mount it has seen, so neither may we. */
  private readonly hostState = new HostCollectorState();
  private readonly imagePaths = new ImagePathResolver();
  private notify: ((n: Notification) => Promise<void>) | null = null;

  constructor(private readonly deps: AgentDeps) {
    this.responder = new Responder({ log: deps.log });
    this.paths = { procRoot: deps.config.procRoot, sysRoot: deps.config.sysRoot, mountsFile: deps.config.mountsFile };
    this.modelState = {
      tableLastChange: 0,
      perVmNotificationsEnabled: deps.config.perVmNotifications,
      bulkNotificationsEnabled: deps.config.bulkNotifications,
      libvirtLost: false,
      now: Date.now(),
    };
    const writable = {
      get: () => this.modelState,
      set: (next: ModelState, object: string) => {
        this.modelState = next;
        this.applySwitches();
        deps.log('info', `${object} set by SNMP SET: notifications per VM ${next.perVmNotificationsEnabled ? 'on' : 'off'}, ` +
          `bulk ${next.bulkNotificationsEnabled ? 'on' : 'off'}`);
      },
    };
    for (const { oid, object } of vmMibWritables(writable)) this.responder.addWritable(oid, object);
    // A libvirt event refreshes at once; a burst of events (a host booting
    // fifty VMs) becomes one refresh.
    deps.domains.onEvent(() => {
      if (this.eventTimer) return;
      this.eventTimer = setTimeout(() => {
        this.eventTimer = null;
        void this.refresh();
      }, 50);
    });
  }

  /** Where notifications go; until set (and in --dump) none are sent. */
  setNotifier(notify: (n: Notification) => Promise<void>): void {
    this.notify = notify;
  }

  /** The current view (for --dump and tests). */
  get view(): MibView | null {
    return this.currentView;
  }

  private currentView: MibView | null = null;

  /** First refresh, then one every refresh interval. */
  async start(): Promise<void> {
    await this.refresh();
    const every = this.deps.config.refreshSeconds * 1000;
    this.timer = setInterval(() => void this.refresh(), every);
  }

  /**
   * Stops refreshing and saves the indexes. A refresh under way gets
   * `refreshGraceMs` to finish: one stuck on a libvirt that no longer answers
   * must not hold the shutdown.
   */
  async stop(refreshGraceMs = 500): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.eventTimer) clearTimeout(this.eventTimer);
    this.timer = null;
    this.eventTimer = null;
    this.stopped = true;
    if (this.refreshing) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.refreshing, new Promise((resolve) => { timer = setTimeout(resolve, refreshGraceMs); })]);
      clearTimeout(timer);
    }
    await this.deps.store.save();
  }

  /** One refresh; concurrent callers share it, and a call during a refresh causes one more. */
  refresh(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.refreshing) {
      this.refreshAgain = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.refreshAgain = false;
          try {
            await this.refreshOnce();
          } catch (err) {
            // A refresh that fails (a bug, or data no rule foresaw) must not
            // take the agent down: the last view keeps being served.
            this.deps.log('error', `refresh failed, serving the previous values: ${(err as Error).stack ?? String(err)}`);
          }
        } while (this.refreshAgain && !this.stopped);
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    const { config, log } = this.deps;
    // Wall time and CPU of the whole process (every thread: the libuv pool runs
    // the libvirt calls), so an operator can see what one refresh costs.
    const wallBefore = performance.now();
    const cpuBefore = process.cpuUsage();
    const takenAt = Date.now();
    const [host, domains] = await Promise.all([
      collectHost(this.paths, log, this.hostState),
      this.deps.domains.collect().then(
        (d) => d,
        (err: Error) => {
          if (this.libvirtDownSince === null) {
            log('error', `libvirt unavailable: ${err.message}; serving the last values` +
              ` (vmOperState becomes unknown after ${config.libvirtGraceSeconds} s)`);
          }
          return null;
        },
      ),
    ]);
    if (domains) {
      if (this.libvirtDownSince !== null) log('info', 'libvirt is back; serving fresh values');
      this.libvirtDownSince = null;
      this.collectedOnce = true;
    } else if (this.libvirtDownSince === null) {
      this.libvirtDownSince = takenAt;
    }
    const served = domains ?? (this.collectedOnce ? this.deps.domains.lastKnown() : null);
    const imageFiles: string[] = [];
    for (const d of served ?? []) {
      for (const disk of d.disks) {
        const image = imageFile(disk);
        if (image !== null) imageFiles.push(image);
      }
    }
    const snapshot: Snapshot = {
      takenAt,
      hypervisor: this.deps.domains.hypervisorInfo(),
      domains: served,
      host,
      imagePaths: await this.imagePaths.resolve(imageFiles, takenAt),
    };
    // In UUID order, so that a fresh state dir numbers the same VMs the same way on every host run.
    const byUuid = (snapshot.domains ?? []).slice().sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
    const startedAt = await this.runStartTimes(byUuid, snapshot.hypervisor, takenAt);
    const indexes = this.deps.store.assign(byUuid.map((d) => ({
      uuid: d.uuid,
      name: d.name,
      running: d.id >= 0,
      domainId: d.id,
      disks: d.disks.map((disk) => disk.target),
      nics: d.nics.map((nic, pos) => nicKey(nic, pos)),
      startedAt: startedAt.get(d.uuid) ?? null,
    })), takenAt);
    const rows = vmRows(snapshot, indexes);
    const lost = this.libvirtDownSince !== null && takenAt - this.libvirtDownSince >= config.libvirtGraceSeconds * 1000;
    const tableChanged = this.indexes === null || !sameVms(this.indexes, indexes);
    this.indexes = indexes;
    this.modelState = {
      ...this.modelState,
      libvirtLost: lost,
      now: takenAt,
      tableLastChange: tableChanged ? hvUpTimeTicks(host) : this.modelState.tableLastChange,
    };
    const state = this.modelState;
    let view = await buildVmMibViewInSlices(snapshot, rows, state, this.currentView ?? undefined);
    // A Set of a notification switch may have changed the model state meanwhile.
    if (this.modelState !== state) view = view.withValues(notificationSwitches(this.modelState));
    const replaced = this.currentView;
    this.responder.setView(view);
    this.currentView = view;
    // Nothing reads the replaced view any more (requests are answered from
    // the current one, synchronously), and the new one was built anew, not
    // patched from it: its values can go now rather than at the next GC.
    replaced?.release();

    if (domains) {
      // Only fresh data moves the notification baseline: while libvirt is
      // away the last known states stand, so a VM that changed meanwhile is
      // notified (from its last known state) once libvirt is back.
      const states = new Map<string, VmStateRecord>(rows.map(({ domain: d, indexes: i }) => [d.uuid, {
        vmIndex: i.vmIndex,
        uuid: d.uuid,
        name: d.name,
        operState: operState(d),
        persistent: d.persistent === null ? O.Persistent.Unknown : d.persistent ? O.Persistent.Persistent : O.Persistent.Transient,
      }]));
      if (this.states && this.notify) this.send(notificationsFor(this.states, states, this.notificationSettings()));
      this.states = states;
    }
    await this.deps.store.save();
    // Not awaited: it runs on the pool while the agent goes back to answering.
    void releaseFreedNativeMemory();
    const cpu = process.cpuUsage(cpuBefore);
    log('debug', `refresh: ${rows.length} VMs, ${view.size} instances, ${(performance.now() - wallBefore).toFixed(1)} ms wall, ` +
      `${((cpu.user + cpu.system) / 1000).toFixed(1)} ms CPU (user ${(cpu.user / 1000).toFixed(1)}, system ${(cpu.system / 1000).toFixed(1)})`);
  }

  /**
   * When the runs the store has not seen yet really started: on a QEMU host,
   * the start of each domain's QEMU process (a VM running before the agent
   * started reports its true vmUpTime); elsewhere none, and the first
   * sighting counts. /proc is scanned only when such a run exists.
   */
  private async runStartTimes(domains: readonly DomainRecord[], hypervisor: HypervisorInfo | null, now: number): Promise<ReadonlyMap<string, number>> {
    if (hypervisor?.type !== 'QEMU') return NO_START_TIMES;
    const newRuns = new Set<string>();
    for (const d of domains) if (d.id >= 0 && this.deps.store.isNewRun(d.uuid, d.id)) newRuns.add(d.uuid);
    return newRuns.size === 0 ? NO_START_TIMES : qemuStartTimes(this.paths, newRuns, now);
  }

  private notificationSettings(): { perVm: boolean; bulk: boolean } {
    return { perVm: this.modelState.perVmNotificationsEnabled, bulk: this.modelState.bulkNotificationsEnabled };
  }

  private send(list: Notification[]): void {
    for (const n of list) {
      this.notify?.(n).catch((err: Error) => {
        this.deps.log('warn', `notification ${formatOid(n.trapOid)} not delivered: ${err.message}`);
      });
    }
  }

  /** Serves the notification switches of the model state after a Set changed them. */
  private applySwitches(): void {
    if (!this.currentView) return;
    const view = this.currentView.withValues(notificationSwitches(this.modelState));
    this.responder.setView(view);
    this.currentView = view;
  }
}

const NO_START_TIMES: ReadonlyMap<string, number> = new Map();

/** Whether two refreshes saw the same VMs (by UUID). */
function sameVms(a: ReadonlyMap<string, unknown>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const uuid of b.keys()) if (!a.has(uuid)) return false;
  return true;
}

/** Wires a session's notify to the agent. */
export function sessionNotifier(session: AgentxSession): (n: Notification) => Promise<void> {
  return (n) => session.notify(n.trapOid, n.varbinds);
}
