// Job statistics of the VMs that are migrating (or just stopped migrating):
// libvirt's virDomainGetJobStats, current or completed, as plain figures. Run
// only for the few VMs the migration tracker names, never for every VM.
import type { Collector } from './collector';
import { ErrorCode, LibvirtError } from '../libvirt/errors';
import { paramBigInt, paramNumber, type TypedParamValue } from '../libvirt/typed-params';
import type { MigrationFigures } from '../snapshot';

/** virDomainJobType. */
export const JobType = { None: 0, Bounded: 1, Unbounded: 2, Completed: 3, Failed: 4, Cancelled: 5 } as const;
/** virDomainJobOperation values of migrations. */
export const JobOperation = { MigrationIn: 4, MigrationOut: 5 } as const;

/** What the collector asks libvirt for one VM. */
export interface JobProbe {
  uuid: string;
  which: 'current' | 'completed';
}

export type JobReading =
  /** The job libvirt reports: `jobType` a virDomainJobType, `operation` a virDomainJobOperation or null. */
  | { kind: 'job'; jobType: number; operation: number | null; figures: MigrationFigures; success: boolean | null; error: string | null }
  /**
   * libvirt refuses statistics for this VM's job: QEMU's driver does so
   * for an incoming migration ("available only on the source host").
   */
  | { kind: 'refused' }
  /** The VM is no longer defined here. */
  | { kind: 'gone' }
  | { kind: 'failed'; message: string };

export interface JobStatisticsSource {
  jobStatistics(uuid: string, which: 'current' | 'completed'): Promise<{ type: number; params: ReadonlyMap<string, TypedParamValue> }>;
}

export class MigrationJobCollector implements Collector<readonly JobProbe[], Map<string, JobReading>> {
  readonly name = 'migration-jobs';

  constructor(private readonly source: JobStatisticsSource) {}

  /** One reading per probe (by UUID); the probes run at once, each under the source's own deadline. */
  async collect(probes: readonly JobProbe[]): Promise<Map<string, JobReading>> {
    const readings = await Promise.all(probes.map((p) => this.read(p)));
    return new Map(probes.map((p, i) => [p.uuid, readings[i]]));
  }

  private async read({ uuid, which }: JobProbe): Promise<JobReading> {
    try {
      const { type, params } = await this.source.jobStatistics(uuid, which);
      return jobReading(type, params);
    } catch (err) {
      if (err instanceof LibvirtError) {
        if (err.code === ErrorCode.NO_DOMAIN) return { kind: 'gone' };
        if (err.code === ErrorCode.OPERATION_UNSUPPORTED) return { kind: 'refused' };
        return { kind: 'failed', message: err.libvirtMessage };
      }
      return { kind: 'failed', message: err instanceof Error ? err.message : String(err) };
    }
  }
}

/** A job statistics answer as a reading; exported for the job-completed event, which carries the same parameters. */
export function jobReading(type: number, params: ReadonlyMap<string, TypedParamValue>): JobReading {
  const success = params.get('success');
  const error = params.get('errmsg');
  return {
    kind: 'job',
    jobType: type,
    operation: paramNumber(params, 'operation'),
    figures: migrationFigures(params, type >= JobType.Completed),
    success: typeof success === 'boolean' ? success : null,
    error: typeof error === 'string' ? error : null,
  };
}

/**
 * The VIR_DOMAIN_JOB_* parameters as figures. "downtime" is the expected
 * downtime while a job runs and the real one once it has ended.
 */
export function migrationFigures(params: ReadonlyMap<string, TypedParamValue>, ended: boolean): MigrationFigures {
  const ms = (name: string): number | null => {
    const v = paramBigInt(params, name);
    return v === null ? null : Number(v);
  };
  const downtime = ms('downtime');
  return {
    elapsedMs: ms('time_elapsed'),
    dataTotal: paramBigInt(params, 'data_total'),
    dataProcessed: paramBigInt(params, 'data_processed'),
    dataRemaining: paramBigInt(params, 'data_remaining'),
    memoryTotal: paramBigInt(params, 'memory_total'),
    memoryProcessed: paramBigInt(params, 'memory_processed'),
    memoryRemaining: paramBigInt(params, 'memory_remaining'),
    dirtyRate: ms('memory_dirty_rate'),
    iteration: ms('memory_iteration'),
    expectedDowntimeMs: ended ? null : downtime,
    downtimeMs: ended ? downtime : null,
    setupTimeMs: ms('setup_time'),
  };
}
