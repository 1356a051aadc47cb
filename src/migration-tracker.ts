// Which VMs are migrating, how far each job has got, and how the last one
// ended. libvirt reports a job only while it runs (and, on the host that
// ends it, sometimes its completed statistics), so the tracker remembers
// what it saw: a job that was running and no longer is has ended, and its
// result comes from the completed statistics, the job-completed event or,
// failing both, from where the VM is now.
//
// Facts in, facts out: the model numbers them, the notifications module
// words the started/ended events.
import type { AgentxLog } from '../agentx';
import { CollectorRegistry } from './collectors/collector';
import { JobOperation, JobType, jobReading, MigrationJobCollector, type JobProbe, type JobReading } from './collectors/migration-jobs';
import type { TypedParamValue } from './libvirt/typed-params';
import { LibvirtState } from './model/vm-state';
import type {
  ActiveMigration, DomainRecord, FinishedMigration, MigrationDirection, MigrationFigures, MigrationResult, MigrationState,
} from './snapshot';
import type { MigrationStore } from './state/migration-store';

export type MigrationEvent =
  | { kind: 'started'; uuid: string; direction: MigrationDirection }
  | { kind: 'ended'; uuid: string; last: FinishedMigration };

/** virDomainRunningReason / virDomainPausedReason / virDomainShutoffReason values that concern migration. */
const RunningReason = { Postcopy: 10 } as const;
const PausedReason = { Migration: 2, Postcopy: 12, PostcopyFailed: 13 } as const;

/** The migration job a domain record shows, if any. */
export function migrationJobOf(d: DomainRecord): { direction: MigrationDirection; postcopy: boolean } | null {
  if (d.jobType === null || d.jobType === JobType.None) return null;
  const direction = d.jobOperation === JobOperation.MigrationOut ? 'outgoing' : d.jobOperation === JobOperation.MigrationIn ? 'incoming' : null;
  if (direction === null) return null;
  const postcopy = (d.state === LibvirtState.Running && d.reason === RunningReason.Postcopy) ||
    (d.state === LibvirtState.Paused && (d.reason === PausedReason.Postcopy || d.reason === PausedReason.PostcopyFailed));
  return { direction, postcopy };
}

interface Tracked {
  name: string;
  direction: MigrationDirection;
  postcopy: boolean;
  /** When the tracker first saw the job (ms since the epoch). */
  seenAt: number;
  figures: MigrationFigures | null;
}

interface CompletedEvent {
  reading: JobReading;
  at: number;
}

export interface Observation {
  /** The migration state of every listed VM that has one. */
  states: Map<string, MigrationState>;
  events: MigrationEvent[];
}

export class MigrationTracker {
  private readonly active = new Map<string, Tracked>();
  /** Statistics of job-completed events not yet matched to an ended job, by UUID. */
  private readonly completedEvents = new Map<string, CompletedEvent>();

  constructor(
    private readonly jobs: MigrationJobCollector,
    private readonly registry: CollectorRegistry,
    private readonly store: MigrationStore,
    private readonly log: AgentxLog,
    private readonly clock: () => number = Date.now,
  ) {}

  /** Whether a migration job is running. */
  hasActive(): boolean {
    return this.active.size > 0;
  }

  isActive(uuid: string): boolean {
    return this.active.has(uuid);
  }

  /** libvirt's job-completed event (source host): the completed job's statistics. */
  jobCompleted(uuid: string, params: ReadonlyMap<string, TypedParamValue>): void {
    this.completedEvents.set(uuid, { reading: jobReading(JobType.Completed, params), at: this.clock() });
  }

  /**
   * One refresh's domains (`fresh`: libvirt's answer, not the last known
   * records). Starts and ends jobs, samples the running outgoing ones and
   * reads the completed statistics of those that ended.
   */
  async observe(domains: readonly DomainRecord[], fresh: boolean, uptimeTicks: number): Promise<Observation> {
    const now = this.clock();
    const events: MigrationEvent[] = [];
    const probes: JobProbe[] = [];
    const ended: { uuid: string; t: Tracked; d: DomainRecord | null }[] = [];
    const listed = new Set<string>();
    for (const d of domains) {
      listed.add(d.uuid);
      const job = migrationJobOf(d);
      const t = this.active.get(d.uuid);
      if (job !== null) {
        if (t === undefined) {
          this.active.set(d.uuid, { name: d.name, direction: job.direction, postcopy: job.postcopy, seenAt: now, figures: null });
          events.push({ kind: 'started', uuid: d.uuid, direction: job.direction });
          // An event of an earlier job must not end this one.
          this.completedEvents.delete(d.uuid);
        } else {
          t.postcopy = job.postcopy;
        }
        if (job.direction === 'outgoing') probes.push({ uuid: d.uuid, which: 'current' });
      } else if (t !== undefined && fresh) {
        ended.push({ uuid: d.uuid, t, d });
        // A persistent source keeps the domain, shut off, with the completed statistics.
        if (!this.completedEvents.has(d.uuid)) probes.push({ uuid: d.uuid, which: 'completed' });
      }
    }
    if (fresh) {
      for (const [uuid, t] of this.active) if (!listed.has(uuid)) ended.push({ uuid, t, d: null });
    }

    const readings = probes.length > 0 ? await this.read(probes) : new Map<string, JobReading>();
    for (const { uuid, which } of probes) {
      const r = readings.get(uuid);
      const t = this.active.get(uuid);
      if (which === 'current' && t !== undefined && r?.kind === 'job' && isRunning(r.jobType)) t.figures = r.figures;
    }
    for (const { uuid, t, d } of ended) {
      const event = this.completedEvents.get(uuid);
      this.completedEvents.delete(uuid);
      const last = this.finish(uuid, t, d, event?.reading ?? readings.get(uuid) ?? null, uptimeTicks, now, event?.at ?? now);
      this.active.delete(uuid);
      if (d !== null) {
        events.push({ kind: 'ended', uuid, last });
        void this.store.set(uuid, last);
      }
    }
    if (fresh) void this.store.retainOnly(listed);

    const states = new Map<string, MigrationState>();
    for (const d of domains) {
      const t = this.active.get(d.uuid);
      const last = this.store.get(d.uuid) ?? null;
      if (t !== undefined || last !== null) states.set(d.uuid, { active: t === undefined ? null : activeOf(t), last });
    }
    return { states, events };
  }

  /**
   * Between refreshes: samples the running jobs. `states` holds the VMs
   * whose figures changed; `over` the VMs whose job seems to have ended,
   * which a refresh of them settles. (An incoming job has no figures: libvirt refuses
   * them until the job is over.)
   */
  async sample(): Promise<{ states: Map<string, MigrationState>; over: Set<string> }> {
    const probes: JobProbe[] = [];
    for (const uuid of this.active.keys()) probes.push({ uuid, which: 'current' });
    const states = new Map<string, MigrationState>();
    const over = new Set<string>();
    if (probes.length === 0) return { states, over };
    const readings = await this.read(probes);
    for (const { uuid } of probes) {
      const t = this.active.get(uuid);
      const r = readings.get(uuid);
      if (t === undefined || r === undefined) continue;
      if (r.kind === 'job' && isRunning(r.jobType)) {
        if (t.direction === 'outgoing') {
          t.figures = r.figures;
          states.set(uuid, { active: activeOf(t), last: this.store.get(uuid) ?? null });
        }
      } else if (r.kind === 'job' || r.kind === 'gone' || (r.kind === 'refused' && t.direction === 'outgoing')) {
        over.add(uuid);
      }
    }
    return { states, over };
  }

  private async read(probes: readonly JobProbe[]): Promise<Map<string, JobReading>> {
    const result = await this.registry.run(this.jobs, probes);
    if (result.ok) return result.value;
    this.log('debug', `migration job statistics unavailable: ${result.error.message}`);
    return new Map();
  }

  /** How an ended job went, from what libvirt still says about it and where the VM is now. */
  private finish(uuid: string, t: Tracked, d: DomainRecord | null, r: JobReading | null, uptimeTicks: number, now: number, endedAt: number): FinishedMigration {
    const stats = r?.kind === 'job' && r.jobType >= JobType.Completed ? r : null;
    let result: MigrationResult;
    if (stats !== null) {
      result = stats.jobType === JobType.Failed || stats.success === false ? 'failed'
        : stats.jobType === JobType.Cancelled ? 'cancelled' : 'completed';
    } else if (t.direction === 'outgoing') {
      // No statistics. A VM that left this host (gone, or shut off since)
      // was migrated. One still running here had its job end early, and
      // libvirt (9.0) tells an abort from a failure neither by the job type
      // nor by an event: both go from unbounded straight to none. What the
      // samples saw decides: a job that never started moving memory could
      // not reach its destination; one that was moving it was stopped.
      const seen = t.figures;
      const moving = (seen?.dataTotal ?? 0n) > 0n || (seen?.dataProcessed ?? 0n) > 0n || (seen?.memoryProcessed ?? 0n) > 0n;
      result = d === null || d.id < 0 ? 'completed' : moving ? 'cancelled' : 'failed';
    } else {
      // Incoming: the VM runs here now, or the migration did not bring it.
      result = d !== null && d.id >= 0 && migrationJobOf(d) === null ? 'completed' : 'failed';
    }
    const f = stats?.figures ?? null;
    const sampled = t.figures;
    const last: FinishedMigration = {
      result,
      direction: t.direction,
      endedAt,
      endedUptimeTicks: Math.max(0, uptimeTicks - Math.round((now - endedAt) / 10)),
      totalTimeMs: f?.elapsedMs ?? sampled?.elapsedMs ?? null,
      downtimeMs: result === 'completed' ? f?.downtimeMs ?? null : null,
      setupTimeMs: f?.setupTimeMs ?? sampled?.setupTimeMs ?? null,
      dataTransferred: f?.dataProcessed ?? sampled?.dataProcessed ?? null,
    };
    const error = stats?.error ? `: ${stats.error}` : '';
    this.log('info', `${t.direction} migration of VM ${t.name} (${uuid}) ${result}${error}`);
    return last;
  }
}

function isRunning(jobType: number): boolean {
  return jobType === JobType.Bounded || jobType === JobType.Unbounded;
}

function activeOf(t: Tracked): ActiveMigration {
  return { direction: t.direction, postcopy: t.postcopy, figures: t.figures };
}
