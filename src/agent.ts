// The running agent: a scheduler and view publisher. Each refresh collects a
// snapshot (src/snapshot-collector.ts), numbers its VMs (the index store),
// lets the model turn them into a view (model/vm-mib.ts) and serves it;
// notifications come from the difference to the last fresh refresh and from
// the migrations that started or ended. Refreshes run on a timer and on
// libvirt events; while a VM migrates, its job is sampled every second in
// between and the served view patched. Requests are answered from the
// last view and never wait for a refresh.
import { AgentxLog, AgentxSession, MibView, Responder, formatOid } from '../agentx';
import type { Config } from './config';
import { hvUpTimeTicks, ModelState, notificationSwitches, indexKeys, vmMibView, vmMibWritables } from './model/vm-mib';
import { NetSnmpLinkage } from './model/linkage';
import { migrationNotifications, Notification, NotificationBaseline, NotificationStormGuard } from './notifications';
import { migrationVarbinds } from './model/vmm-agentx-mib';
import { NativeMemoryTrims, releaseFreedNativeMemory } from './native-memory';
import { CollectorReport } from './collectors/collector';
import { DomainSource, MIGRATION_SAMPLE_MS, SnapshotCollector } from './snapshot-collector';
import { MigrationStore } from './state/migration-store';
import type { VmIndexes, VmIndexStore } from './state/index-store';

export type { DomainSource } from './snapshot-collector';

export interface AgentDeps {
  config: Config;
  domains: DomainSource;
  store: VmIndexStore;
  /** The last migration of each VM (an in-memory store when absent). */
  migrations?: MigrationStore;
  log: AgentxLog;
  /** Wall clock (ms since the epoch); tests pass their own. */
  clock?: () => number;
}

/**
 * Which domains a refresh asks libvirt about: those events named, or all
 * (timer, reconnect, start).
 */
type Scope = ReadonlySet<string> | 'all';

/** How soon domains named by an event are asked again when their refresh could not reach libvirt. */
const EVENT_RETRY_MS = 1000;

function widen(a: Scope | null, b: Scope): Scope {
  if (a === null) return b;
  if (a === 'all' || b === 'all') return 'all';
  return new Set([...a, ...b]);
}

/** Scopes added before its timer fires, `delayMs` after the first, become one call of `fire`. */
class ScopeBatch {
  private scope: Scope | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly delayMs: number, private readonly fire: (scope: Scope) => void) {}

  add(scope: Scope): void {
    this.scope = widen(this.scope, scope);
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const batch = this.scope ?? 'all';
      this.scope = null;
      this.fire(batch);
    }, this.delayMs);
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.scope = null;
  }
}

export class VmmAgent {
  readonly responder: Responder;
  // Between refreshes the agent keeps no snapshot or records: the view holds
  // every value served and a Set patches it (the replaced snapshot would
  // otherwise live on beside the next one at every refresh's memory peak).
  private readonly collector: SnapshotCollector;
  private readonly migrationStore: MigrationStore;
  private readonly notifications = new NotificationBaseline();
  private readonly stormGuard: NotificationStormGuard;
  /** snmpd's memory of the host's CPUs and mounts, for its hrDeviceIndex and hrStorageIndex. */
  private readonly linkage = new NetSnmpLinkage();
  private readonly trims = new NativeMemoryTrims();
  /** VM indexes of the last refresh, null before the first: another set of VMs changes vmTableLastChange. */
  private indexes: ReadonlyMap<string, VmIndexes> | null = null;
  private modelState: ModelState;
  private currentView: MibView | null = null;
  private refreshing: Promise<void> | null = null;
  /** What the refresh after the running one must cover, or null for none. */
  private refreshAgain: Scope | null = null;
  /** Domains named by events, refreshed once the events already queued have been read. */
  private readonly eventBatch = new ScopeBatch(0, (scope) => void this.refresh(scope));
  /** Domains whose event-driven refresh did not reach libvirt, asked again after EVENT_RETRY_MS. */
  private readonly retryBatch = new ScopeBatch(EVENT_RETRY_MS, (scope) => this.refreshSoon(scope));
  /** After stop(): no new refresh starts (a libvirt event may still arrive). */
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private sampleTimer: NodeJS.Timeout | null = null;
  private sampling = false;
  private uptimeTicks = 0;
  private notify: ((n: Notification) => Promise<void>) | null = null;

  constructor(private readonly deps: AgentDeps) {
    const { config, log } = deps;
    this.responder = new Responder({ log });
    this.migrationStore = deps.migrations ?? MigrationStore.memory(log);
    this.collector = new SnapshotCollector(deps.domains,
      { procRoot: config.procRoot, sysRoot: config.sysRoot, mountsFile: config.mountsFile }, log, config.libvirtGraceSeconds,
      this.migrationStore, config.mcastAgentState);
    this.stormGuard = new NotificationStormGuard(config.notificationRateLimit, log);
    this.modelState = {
      tableLastChange: 0,
      perVmNotificationsEnabled: config.perVmNotifications,
      bulkNotificationsEnabled: config.bulkNotifications,
      libvirtLost: false,
      now: this.now(),
    };
    const writable = {
      get: () => this.modelState,
      set: (next: ModelState, object: string) => {
        this.modelState = next;
        if (this.currentView) this.publish(this.currentView.withValues(notificationSwitches(next)));
        log('info', `${object} set by SNMP SET: notifications per VM ${next.perVmNotificationsEnabled ? 'on' : 'off'}, ` +
          `bulk ${next.bulkNotificationsEnabled ? 'on' : 'off'}`);
      },
    };
    for (const { oid, object } of vmMibWritables(writable)) this.responder.addWritable(oid, object);
    // A libvirt event refreshes at once; a burst of events (a host booting
    // fifty VMs) becomes one refresh.
    // uuid '': the connection was lost or restored, which concerns every domain.
    deps.domains.onEvent((uuid) => this.refreshSoon(uuid === '' ? 'all' : new Set([uuid])));
    // A job-completed event also triggers a refresh (onEvent); the first
    // pass of a migration the agent does not know yet is its earliest sign.
    deps.domains.onJobEvent?.((e) => {
      if (e.kind === 'completed') this.collector.jobCompleted(e.uuid, e.params);
      else if (!this.collector.migrationKnown(e.uuid)) this.refreshSoon(new Set([e.uuid]));
    });
  }

  /**
   * A refresh of the domains events named, as soon as the events already
   * queued have been read: a burst of them becomes one refresh (and events
   * during a refresh, one more).
   */
  private refreshSoon(scope: Scope): void {
    if (!this.stopped) this.eventBatch.add(scope);
  }

  /**
   * The domains an event named could not be asked (libvirt did not answer
   * the list in time, or failed): they are asked again shortly rather than
   * at the next interval, which may be minutes away. A lost connection needs
   * no retry: its return refreshes everything.
   */
  private retryLater(scope: Scope): void {
    if (!this.stopped) this.retryBatch.add(scope);
  }

  private now(): number {
    return this.deps.clock?.() ?? Date.now();
  }

  /** Where notifications go; until set (and in --dump) none are sent. */
  setNotifier(notify: (n: Notification) => Promise<void>): void {
    this.notify = notify;
  }

  /** The current view (for --dump and tests). */
  get view(): MibView | null {
    return this.currentView;
  }

  /** VMs in the last refresh (for --check). */
  vmCount(): number {
    return this.indexes?.size ?? 0;
  }

  /** How each collector's last run went (for --check). */
  collectorReports(): CollectorReport[] {
    return this.collector.reports();
  }

  /** Watches the sources that report changes, then the first refresh, then one every refresh interval. */
  async start(): Promise<void> {
    // A change of multicast membership or of the mobility agent's state asks libvirt about no domain.
    await this.collector.watch(() => this.refreshSoon(new Set()));
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.deps.config.refreshSeconds * 1000);
  }

  /**
   * Stops refreshing and saves the indexes. A refresh under way gets
   * `refreshGraceMs` to finish: one stuck on a libvirt that no longer answers
   * must not hold the shutdown.
   */
  async stop(refreshGraceMs = 500): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.eventBatch.cancel();
    this.retryBatch.cancel();
    if (this.sampleTimer) clearInterval(this.sampleTimer);
    this.timer = null;
    this.sampleTimer = null;
    this.stopped = true;
    if (this.refreshing) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.refreshing, new Promise((resolve) => { timer = setTimeout(resolve, refreshGraceMs); })]);
      clearTimeout(timer);
    }
    this.collector.unwatch();
    await Promise.all([this.deps.store.save(), this.migrationStore.flushed()]);
  }

  /**
   * One refresh; concurrent callers share it, and a call during a refresh
   * causes one more. `scope`: the domains to ask libvirt about (the others
   * keep their last values); all by default.
   */
  refresh(scope: Scope = 'all'): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.refreshing) {
      this.refreshAgain = widen(this.refreshAgain, scope);
      return this.refreshing;
    }
    this.refreshAgain = scope;
    this.refreshing = (async () => {
      try {
        while (this.refreshAgain !== null && !this.stopped) {
          const current = this.refreshAgain;
          this.refreshAgain = null;
          try {
            await this.refreshOnce(current);
          } catch (err) {
            // A refresh that fails (a bug, or data no rule foresaw) must not
            // take the agent down: the last view keeps being served.
            this.deps.log('error', `refresh failed, serving the previous values: ${(err as Error).stack ?? String(err)}`);
          }
        }
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private async refreshOnce(scope: Scope): Promise<void> {
    const { config, store, log } = this.deps;
    // Wall time and CPU of the whole process (every thread: the libuv pool runs
    // the libvirt calls), so an operator can see what one refresh costs.
    const wallBefore = performance.now();
    const cpuBefore = process.cpuUsage();
    const callsBefore = this.collector.libvirtCallsMade();
    const takenAt = this.now();
    const collection = await this.collector.collect(takenAt, (uuid, id) => store.isNewRun(uuid, id), scope === 'all' ? undefined : scope);
    const { snapshot } = collection;
    if (!collection.fresh && scope !== 'all' && scope.size > 0) this.retryLater(scope);
    const indexes = store.assign(indexKeys(snapshot.domains ?? [], collection.runStarts), takenAt);
    const down = collection.libvirtDownSince;
    const tableChanged = this.indexes === null || !sameVms(this.indexes, indexes);
    this.indexes = indexes;
    const state: ModelState = this.modelState = {
      ...this.modelState,
      libvirtLost: down !== null && takenAt - down >= config.libvirtGraceSeconds * 1000,
      now: takenAt,
      tableLastChange: tableChanged ? hvUpTimeTicks(snapshot.host) : this.modelState.tableLastChange,
    };
    const numbering = { vms: indexes, host: this.linkage.update(snapshot.host) };
    const { rows, view } = await vmMibView(snapshot, numbering, state, this.currentView ?? undefined);
    // A Set of a notification switch may have changed the model state meanwhile.
    this.publish(this.modelState === state ? view : view.withValues(notificationSwitches(this.modelState)));

    this.uptimeTicks = hvUpTimeTicks(snapshot.host);
    const { perVmNotificationsEnabled: perVm, bulkNotificationsEnabled: bulk } = this.modelState;
    if (collection.fresh) {
      const batch = this.notifications.next(rows, { perVm, bulk });
      if (perVm) {
        const byUuid = new Map(collection.migrationEvents.length === 0 ? [] : rows.map((r) => [r.domain.uuid, r]));
        batch.perVm.push(...migrationNotifications(collection.migrationEvents, byUuid, snapshot.migrations,
          this.uptimeTicks, takenAt));
      }
      this.send(this.stormGuard.admit(batch, takenAt, bulk));
    }
    this.scheduleMigrationSamples();
    await store.save();
    // Not awaited: it runs on the pool while the agent goes back to answering.
    if (this.trims.due(rows.length)) void releaseFreedNativeMemory();
    const cpu = process.cpuUsage(cpuBefore);
    const calls = callsSince(callsBefore, this.collector.libvirtCallsMade());
    log('debug', `refresh: ${rows.length} VMs, ${view.size} instances, ${(performance.now() - wallBefore).toFixed(1)} ms wall, ` +
      `${((cpu.user + cpu.system) / 1000).toFixed(1)} ms CPU (user ${(cpu.user / 1000).toFixed(1)}, system ${(cpu.system / 1000).toFixed(1)})` +
      (calls === null ? '' : `, ${calls.total} libvirt calls (${calls.byFunction})`) +
      (scope === 'all' ? '' : `; libvirt asked about ${scope.size} domain(s) events named`));
  }

  /** Samples running migrations every MIGRATION_SAMPLE_MS while there are any. */
  private scheduleMigrationSamples(): void {
    if (!this.collector.hasActiveMigration()) {
      if (this.sampleTimer) clearInterval(this.sampleTimer);
      this.sampleTimer = null;
      return;
    }
    if (this.sampleTimer || this.stopped) return;
    this.sampleTimer = setInterval(() => void this.sampleMigrations(), MIGRATION_SAMPLE_MS);
  }

  private async sampleMigrations(): Promise<void> {
    // A refresh samples the jobs too, and a slow sample must not stack up.
    if (this.sampling || this.refreshing || this.stopped) return;
    this.sampling = true;
    try {
      const { states, over } = await this.collector.sampleMigrations();
      const view = this.currentView;
      if (view && states.size > 0 && !this.refreshing) {
        const now = this.now();
        const changes = [];
        for (const [uuid, state] of states) {
          // The last refresh's numbering (the agent keeps no rows between refreshes).
          const vmIndex = this.indexes?.get(uuid)?.vmIndex;
          if (vmIndex !== undefined) changes.push(...migrationVarbinds(vmIndex, state, this.uptimeTicks, now));
        }
        if (changes.length > 0) this.publish(view.withValues(changes));
      }
      if (over.size > 0) void this.refresh(over);
    } catch (err) {
      this.deps.log('warn', `migration sample failed: ${(err as Error).message}`);
    } finally {
      this.sampling = false;
    }
  }

  /** Serves `view`; the responder releases the one it replaces (unless `view` was patched from it). */
  private publish(view: MibView): void {
    this.responder.publish(view);
    this.currentView = view;
  }

  private send(list: Notification[]): void {
    if (!this.notify) return;
    for (const n of list) {
      this.notify(n).catch((err: Error) => {
        this.deps.log('warn', `notification ${formatOid(n.trapOid)} not delivered: ${err.message}`);
      });
    }
  }
}

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

/** The libvirt calls between two readings: their number, and "function count" pairs, most frequent first. */
function callsSince(
  before: ReadonlyMap<string, number> | null,
  after: ReadonlyMap<string, number> | null,
): { total: number; byFunction: string } | null {
  if (before === null || after === null) return null;
  const made: [string, number][] = [];
  for (const [name, count] of after) {
    const n = count - (before.get(name) ?? 0);
    if (n > 0) made.push([name, n]);
  }
  made.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  return { total: made.reduce((sum, [, n]) => sum + n, 0), byFunction: made.map(([name, n]) => `${name} ${n}`).join(', ') };
}
