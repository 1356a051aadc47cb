// One shape for every source of facts, after node_exporter's Collector: a
// name and collect(), plain data out (never SNMP numbering). The registry runs
// them, times each one and keeps its failure to itself: a source that fails
// costs the columns it feeds, never the refresh or the other sources.
import type { AgentxLog } from '../../agentx';

export interface Collector<In, Out> {
  /** Short and stable: it names the source in logs and in --check. */
  readonly name: string;
  collect(input: In): Promise<Out>;
}

export type Collected<Out> = { ok: true; value: Out } | { ok: false; error: Error };

/** How a collector's last run went. */
export interface CollectorReport {
  name: string;
  ok: boolean;
  durationMs: number;
  /** The failure's message, or null. */
  error: string | null;
}

export class CollectorRegistry {
  private readonly last = new Map<string, CollectorReport>();

  constructor(private readonly log: AgentxLog) {}

  /** Runs one collector; a rejection comes back as { ok: false }, logged at debug level like every run. */
  async run<In, Out>(collector: Collector<In, Out>, input: In): Promise<Collected<Out>> {
    const started = performance.now();
    try {
      const value = await collector.collect(input);
      this.record(collector.name, started, null);
      return { ok: true, value };
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.record(collector.name, started, error.message);
      return { ok: false, error };
    }
  }

  /** The last run of every collector run so far, in the order they first ran. */
  reports(): CollectorReport[] {
    return [...this.last.values()];
  }

  private record(name: string, started: number, error: string | null): void {
    const durationMs = performance.now() - started;
    this.last.set(name, { name, ok: error === null, durationMs, error });
    this.log('debug', `collector ${name}: ${error === null ? 'ok' : `failed (${error})`} in ${durationMs.toFixed(1)} ms`);
  }
}
