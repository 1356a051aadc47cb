// Adapts LibvirtCollector to what the agent needs (DomainSource): opening per
// the configuration, a hypervisorInfo that is null instead of throwing, one
// event stream for lifecycle and job-completed events, and the job events and
// statistics the migration tracker reads.
import type { AgentxLog } from '../agentx';
import type { DomainSource, JobEvent } from './snapshot-collector';
import type { JobStatistics } from './collectors/libvirt';
import { LibvirtCollector } from './collectors/libvirt';
import { libvirtCallsMade } from './libvirt/calls';
import type { Config } from './config';
import type { DomainRecord, HypervisorInfo } from './snapshot';

export class LibvirtDomainSource implements DomainSource {
  readonly name = 'libvirt';
  private constructor(private readonly collector: LibvirtCollector) {}

  static async open(config: Config, log: AgentxLog): Promise<LibvirtDomainSource> {
    const collector = new LibvirtCollector({
      domainTimeoutMs: config.domainTimeoutSeconds * 1000,
      resyncMs: config.libvirtResyncSeconds * 1000,
      jobPollMs: config.libvirtJobPollSeconds * 1000,
      log,
    });
    await collector.open(config.libvirtUri, { readOnly: !config.libvirtReadWrite });
    return new LibvirtDomainSource(collector);
  }

  hypervisorInfo(): HypervisorInfo | null {
    try {
      return this.collector.hypervisorInfo();
    } catch {
      return null;
    }
  }

  collect(only?: ReadonlySet<string>): Promise<DomainRecord[]> {
    return this.collector.collect(only);
  }

  lastKnown(): DomainRecord[] {
    return this.collector.lastKnown();
  }

  /**
   * Lifecycle, job and configuration events name a domain; losing or regaining the
   * connection concerns all of them (uuid ''): either way the agent refreshes
   * now rather than at its next tick, so a restored libvirt is served at once.
   */
  onEvent(cb: (uuid: string) => void): void {
    this.collector.onLifecycle((uuid) => cb(uuid));
    this.collector.onJobCompleted((uuid) => cb(uuid));
    this.collector.onConfigChange((uuid) => cb(uuid));
    this.collector.onConnectionChange(() => cb(''));
  }

  jobStatistics(uuid: string, which: 'current' | 'completed'): Promise<JobStatistics> {
    return this.collector.jobStatistics(uuid, which);
  }

  onJobEvent(cb: (e: JobEvent) => void): void {
    this.collector.onMigrationIteration((uuid, iteration) => cb({ kind: 'iteration', uuid, iteration }));
    this.collector.onJobCompleted((uuid, params) => cb({ kind: 'completed', uuid, params }));
  }

  callsMade(): ReadonlyMap<string, number> {
    return libvirtCallsMade();
  }

  close(): Promise<void> {
    return this.collector.close();
  }
}
