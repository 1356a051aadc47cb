// Collectors → one immutable Snapshot per refresh. Runs every source through
// the registry (each timed, each failing alone) in two stages: libvirt and
// the host at once, then what needs the domains first (image paths, QEMU
// start times, the migration jobs). While libvirt is unreachable the last
// known domains stand in.
import type { AgentxLog } from '../agentx';
import { Collector, CollectorRegistry, CollectorReport } from './collectors/collector';
import { HostCollector } from './collectors/host';
import { ImagePathResolver } from './collectors/mounts';
import type { HostPaths } from './collectors/paths';
import { QemuStartTimeCollector } from './collectors/qemu-processes';
import { MigrationJobCollector, type JobStatisticsSource } from './collectors/migration-jobs';
import { BridgeMdbCollector, watchBridgeMdb } from './collectors/bridge-mdb';
import { HostMulticastCollector } from './collectors/host-mcast';
import { McastAgentStateFile } from './collectors/mcast-agent-state';
import type { NetlinkSubscription } from './collectors/netlink';
import type { TypedParamValue } from './libvirt/typed-params';
import { MigrationTracker, type MigrationEvent } from './migration-tracker';
import { hvUpTimeTicks } from './model/vm-mib';
import type { MigrationStore } from './state/migration-store';
import { imageFile } from './snapshot';
import type { DomainRecord, HostGroup, HostInfo, HypervisorInfo, MigrationState, Snapshot } from './snapshot';

/** libvirt's job events: a migration's passes (source) and a finished job's statistics. */
export type JobEvent =
  | { kind: 'iteration'; uuid: string; iteration: number }
  | { kind: 'completed'; uuid: string; params: ReadonlyMap<string, TypedParamValue> };

/** What the agent needs from libvirt; LibvirtDomainSource provides it. */
export interface DomainSource extends Collector<ReadonlySet<string> | undefined, DomainRecord[]> {
  hypervisorInfo(): HypervisorInfo | null;
  /**
   * Every domain, or a rejection while libvirt is unreachable. `only`: the
   * domains that need asking now (an event named them); the others may keep
   * their last values.
   */
  collect(only?: ReadonlySet<string>): Promise<DomainRecord[]>;
  /** The last good record of every domain, served while libvirt is unreachable. */
  lastKnown(): DomainRecord[];
  onEvent(cb: (uuid: string) => void): void;
  close(): Promise<void>;
  /** Job statistics (migration progress); absent where the source has none. */
  jobStatistics?: JobStatisticsSource['jobStatistics'];
  onJobEvent?(cb: (e: JobEvent) => void): void;
  /** Calls made to libvirt so far, by function (the refresh log reports the difference). */
  callsMade?(): ReadonlyMap<string, number>;
}

export interface Collection {
  snapshot: Snapshot;
  /** The domains are libvirt's answer of this refresh, not the last known ones. */
  fresh: boolean;
  /** Since when (ms since the epoch) libvirt has been unreachable, or null. */
  libvirtDownSince: number | null;
  /** When the runs asked about really started (QEMU hosts only). */
  runStarts: ReadonlyMap<string, number>;
  /** Migrations that started or ended since the last collection. */
  migrationEvents: MigrationEvent[];
}

const NO_HOST: HostInfo = { uptimeSeconds: 0, cpus: [], interfaces: new Map(), mounts: [] };
const NONE: ReadonlyMap<string, never> = new Map<string, never>();
/** How often a running migration's statistics are sampled between refreshes. */
export const MIGRATION_SAMPLE_MS = 1000;

export class SnapshotCollector {
  private readonly registry: CollectorRegistry;
  private readonly host: HostCollector;
  private readonly imagePaths = new ImagePathResolver();
  private readonly runStartTimes: QemuStartTimeCollector;
  private readonly migrations: MigrationTracker | null;
  private readonly mdb = new BridgeMdbCollector();
  private readonly hostGroups: HostMulticastCollector;
  private readonly mcastAgent: McastAgentStateFile;
  private mdbWatch: NetlinkSubscription | null = null;
  private lastHostGroups: readonly HostGroup[] = [];
  /** Whether any collection has reached libvirt: before one, there are no domains to serve, not zero. */
  private collectedOnce = false;
  private libvirtDownSince: number | null = null;
  private lastHost: HostInfo = NO_HOST;

  constructor(
    private readonly domains: DomainSource,
    paths: HostPaths,
    private readonly log: AgentxLog,
    private readonly libvirtGraceSeconds: number,
    migrationStore: MigrationStore,
    mcastAgentStateFile: string,
  ) {
    this.registry = new CollectorRegistry(log);
    this.host = new HostCollector(paths, log);
    this.hostGroups = new HostMulticastCollector(paths);
    this.mcastAgent = new McastAgentStateFile(mcastAgentStateFile, log, () => this.onSourceChange?.());
    this.runStartTimes = new QemuStartTimeCollector(paths);
    const jobStatistics = domains.jobStatistics?.bind(domains);
    this.migrations = jobStatistics
      ? new MigrationTracker(new MigrationJobCollector({ jobStatistics }), this.registry, migrationStore, log)
      : null;
  }

  /** Called when a watched source (bridge multicast databases, the mobility agent's state) changes. */
  private onSourceChange: (() => void) | null = null;

  /**
   * Watches the sources that say when they change (bridge multicast
   * databases, the mobility agent's state file); `onChange` should refresh.
   */
  async watch(onChange: () => void): Promise<void> {
    this.onSourceChange = onChange;
    this.host.watchLinks();
    try {
      this.mdbWatch = watchBridgeMdb(onChange, (err) => {
        this.log('warn', `bridge multicast changes: ${err.message}; they now show at the next refresh only`);
      });
    } catch (err) {
      this.log('warn', `cannot watch the bridges' multicast databases (${(err as Error).message}); ` +
        'changes show at the next refresh only');
    }
    await this.mcastAgent.start();
  }

  /** Stops watching; the netlink socket closes within half a second, without anyone waiting for it. */
  unwatch(): void {
    this.onSourceChange = null;
    this.host.unwatchLinks();
    this.mcastAgent.close();
    void this.mdbWatch?.close();
    this.mdbWatch = null;
  }

  /** A job-completed event's statistics, for the refresh it triggers. */
  jobCompleted(uuid: string, params: ReadonlyMap<string, TypedParamValue>): void {
    this.migrations?.jobCompleted(uuid, params);
  }

  /** Whether this VM's migration is known (an iteration event of an unknown one calls for a refresh). */
  migrationKnown(uuid: string): boolean {
    return this.migrations?.isActive(uuid) ?? false;
  }

  /** Whether a running migration wants sampling between refreshes. */
  hasActiveMigration(): boolean {
    return this.migrations?.hasActive() ?? false;
  }

  /** Samples the running migrations (see MigrationTracker.sample). */
  sampleMigrations(): Promise<{ states: Map<string, MigrationState>; over: Set<string> }> {
    return this.migrations?.sample() ?? Promise.resolve({ states: new Map<string, MigrationState>(), over: new Set<string>() });
  }

  /** Calls made to libvirt so far, or null where the source does not count them. */
  libvirtCallsMade(): ReadonlyMap<string, number> | null {
    return this.domains.callsMade?.() ?? null;
  }

  /** How each collector's last run went (for --check). */
  reports(): CollectorReport[] {
    return this.registry.reports();
  }

  /**
   * One snapshot. `isNewRun` tells which running domains' start the index
   * store has not recorded yet: only those are looked up. `only`: ask
   * libvirt about these domains alone (see DomainSource.collect).
   */
  async collect(
    takenAt: number,
    isNewRun: (uuid: string, domainId: number) => boolean,
    only?: ReadonlySet<string>,
  ): Promise<Collection> {
    const [host, domains, mdb, hostGroups] = await Promise.all([
      this.registry.run(this.host, undefined),
      this.registry.run(this.domains, only),
      this.registry.run(this.mdb, undefined),
      this.registry.run(this.hostGroups, undefined),
      this.mcastAgent.check(),
    ]);
    if (hostGroups.ok) this.lastHostGroups = hostGroups.value;
    // The host collector reports unreadable files itself and does not reject;
    // should it, the last host facts stand in.
    if (host.ok) this.lastHost = host.value;
    if (domains.ok) {
      if (this.libvirtDownSince !== null) this.log('info', 'libvirt is back; serving fresh values');
      this.libvirtDownSince = null;
      this.collectedOnce = true;
    } else if (this.libvirtDownSince === null) {
      this.log('error', `libvirt unavailable: ${domains.error.message}; serving the last values` +
        ` (vmOperState becomes unknown after ${this.libvirtGraceSeconds} s)`);
      this.libvirtDownSince = takenAt;
    }
    const served = domains.ok ? domains.value : this.collectedOnce ? this.domains.lastKnown() : null;
    const hypervisor = this.domains.hypervisorInfo();

    const imageFiles: string[] = [];
    const newRuns = new Set<string>();
    for (const d of served ?? []) {
      for (const disk of d.disks) {
        const image = imageFile(disk);
        if (image !== null) imageFiles.push(image);
      }
      if (d.id >= 0 && isNewRun(d.uuid, d.id)) newRuns.add(d.uuid);
    }
    // libvirt has no start time for a domain; QEMU's process has one.
    const wantStarts = hypervisor?.type === 'QEMU' && newRuns.size > 0;
    const [imagePaths, runStarts, migrations] = await Promise.all([
      this.registry.run(this.imagePaths, imageFiles),
      wantStarts ? this.registry.run(this.runStartTimes, newRuns) : null,
      served !== null && this.migrations !== null
        ? this.migrations.observe(served, domains.ok, hvUpTimeTicks(this.lastHost))
        : null,
    ]);
    return {
      snapshot: {
        takenAt,
        hypervisor,
        domains: served,
        host: this.lastHost,
        imagePaths: imagePaths.ok ? imagePaths.value : NONE,
        migrations: migrations?.states ?? NONE,
        multicast: {
          mdb: mdb.ok ? mdb.value : null,
          hostGroups: this.lastHostGroups,
          agent: this.mcastAgent.current(),
        },
      },
      fresh: domains.ok,
      libvirtDownSince: this.libvirtDownSince,
      runStarts: runStarts?.ok ? runStarts.value : NONE,
      migrationEvents: migrations?.events ?? [],
    };
  }
}
