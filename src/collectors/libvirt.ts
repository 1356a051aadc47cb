// LibvirtCollector: owns the libvirt connection and turns it into
// DomainRecord[] for the model, plus lifecycle and job-completed events.
//
// Threading: every libvirt call that reaches a driver runs with koffi's
// `.async` form on the libuv thread pool (src/libvirt/calls.ts); the main
// thread only decodes results. We chose this over a worker_threads Worker
// because (1) the per-domain calls must run concurrently anyway so that one
// hung domain cannot hold up the others, and a single Worker making
// synchronous calls could not give that; (2) a pool call costs the main
// thread only ~5-7 µs of CPU (measured: 8,000 sequential virDomainGetInfo
// calls, 36-54 ms); and (3) a Worker needs a separately compiled entry file,
// which ts-jest and dist/ would resolve differently. Events use the same
// pool (event-loop.ts). libvirt's per-thread error state is handled in
// errors.ts. The one exception is the test driver opened in this process:
// it does no I/O and takes no job lock, so what its bulk stats lack is asked
// directly on the main thread (domain-stats-now.ts), in slices of 0.05 ms.
//
// Cost: a steady refresh reads only what changes: one bulk stats call, and
// per domain only what the driver's bulk stats lack (counters, and the job
// where one may run or the domain's turn has come: job-schedule.ts). A
// domain's configuration (XML, pinning, autostart, persistence,
// managed save) is read again only when an event says it may have changed,
// after a reconnect, when its id changed, and at the resync
// (options.resyncMs), a full read of every domain that logs whatever changed
// without an event.
//
// Isolation: domains are queried a few at a time (options.concurrency), each
// against its own deadline (options.domainTimeoutMs). A domain that misses
// it keeps its last good record, logged once. Its call may still be running
// on a pool thread; that domain gets no new calls until it returns, so one
// hung domain occupies at most one pool thread. The late answer, if good,
// becomes the domain's last good record.

import type { AgentxLog } from '../../agentx';
import {
  allDomainStats,
  answersFromMemory,
  closeConnection,
  domainId,
  domainName,
  ListingUuids,
  listDomainsWithoutStats,
  listDomainUuids,
  lookupDomain,
  releaseDomainLater,
  retainConnection,
  retainDomain,
  type DomainList,
} from '../libvirt/calls';
import { LibvirtConnection } from '../libvirt/connection';
import type { ConfigChangeListener, JobCompletedListener, LifecycleListener, MigrationIterationListener } from '../libvirt/domain-events';
import { jobStatistics, type JobStatistics } from '../libvirt/domain-calls';
import { ErrorCode, LibvirtError } from '../libvirt/errors';
import { GET_ALL_DOMAINS_STATS_NOWAIT, JobStatsFlag, ListDomainsFlag, StatsGroup, type ConnectPtr } from '../libvirt/ffi';
import type { DomainRecord, HypervisorInfo } from '../snapshot';
import type { DomainXmlFacts } from './domain-xml';
import {
  queryDomain,
  steadyRecord,
  type BulkFlags,
  type DomainQueryContext,
  type DomainTarget,
  type DriverSupport,
  type PreviousRecord,
} from './libvirt-domain';
import { JobPollSchedule } from './job-schedule';
import { Deadlines, MISSED } from './deadlines';
import { LastGoodRecords } from './last-good';
import { forEachLimited } from './limited';
import { statsCompletedNow } from './domain-stats-now';

export type { ConfigChangeListener, JobCompletedListener, LifecycleListener, MigrationIterationListener } from '../libvirt/domain-events';
export type { JobStatistics } from '../libvirt/domain-calls';
export type { TypedParamValue } from '../libvirt/typed-params';

export interface LibvirtCollectorOptions {
  /** Deadline for one domain's queries in one collect(), in ms. Default 2000. */
  domainTimeoutMs?: number;
  /** Deadline for connection-wide calls (domain list, bulk stats), in ms. Default 10000. */
  listTimeoutMs?: number;
  /** Domains queried at the same time. Default 4. */
  concurrency?: number;
  /** Delays before reconnect attempts, in ms; the last one repeats. Default 250, 500, 1000, 2000, 4000, 5000. */
  reconnectDelaysMs?: readonly number[];
  log?: AgentxLog;
  /** Test seam: runs after the domain list is taken and before any per-domain call. */
  afterListing?: () => Promise<void> | void;
  /** Test seam: replaces the per-domain query (e.g. to make one domain hang). */
  queryDomain?: typeof queryDomain;
  /** Every domain's configuration is read again this often, in ms; 0: never. Default 300000. */
  resyncMs?: number;
  /**
   * A running domain's job is asked at least this often, in ms, when nothing
   * suggests one runs (libvirt-domain.ts, jobMayRun); 0: every refresh.
   * Default 30000.
   */
  jobPollMs?: number;
  clock?: () => number;
  /**
   * Calls made directly on the main thread (an in-process driver) hand the
   * event loop back after this many ms, so that the responder can answer in
   * between. Default 0.05: snmpd sends its next AgentX request only once the
   * last one is answered, so each request waits about half a slice. With
   * 2 ms slices a walk of 10,000 VMs refreshed back to back took 2.8 ms a
   * varbind, with 0.05 ms 0.3 ms (0.2 before the calls were made here); the
   * refresh's CPU did not change measurably.
   */
  sliceMs?: number;
}

export interface OpenOptions {
  /** Open with VIR_CONNECT_RO: enough for everything this collector does. */
  readOnly: boolean;
}

const STATS_GROUPS = StatsGroup.STATE | StatsGroup.CPU_TOTAL | StatsGroup.BALLOON | StatsGroup.VCPU | StatsGroup.BLOCK;
/**
 * Up to this many configuration reads in one refresh ask each domain for its
 * flags (3 calls each); more take the 3 filtered lists of all domains.
 */
const FLAGS_PER_DOMAIN_UP_TO = 8;

/**
 * Last good records are packed from this many domains on: below it they are
 * a megabyte or so as objects, and packing them would cost ~7 µs a domain
 * every refresh for nothing (docs/memory.md, "Last good records").
 */
const PACK_LAST_GOOD_FROM = 1000;

/** 'late': missed its deadline; 'kept': not asked this time (a collection of the domains an event named). */
type Outcome = { kind: 'ok'; record: DomainRecord } | { kind: 'failed'; error: unknown } | { kind: 'late' } | { kind: 'kept' };

const KEPT: Outcome = Object.freeze({ kind: 'kept' });

/**
 * A listed domain and what asking it gave this collection. (On the target
 * rather than in a map by UUID: a map of 10,000 would be built anew by every
 * refresh, its table straight in the old generation.)
 */
interface ListedDomain extends DomainTarget {
  outcome: Outcome;
}

/** What one connection's driver turned out to support; relearned after a reconnect. */
interface DriverKnowledge extends DriverSupport {
  conn: ConnectPtr;
  /** A driver in this process that does no I/O (answersFromMemory): per-domain calls may be made directly. */
  fromMemory: boolean;
  statsNoWait: boolean;
  bulkFlags: boolean;
}

export class LibvirtCollector {
  private readonly domainTimeoutMs: number;
  private readonly listTimeoutMs: number;
  private readonly concurrency: number;
  private readonly log: AgentxLog;
  private readonly connection: LibvirtConnection;
  private driver: DriverKnowledge | null = null;
  private collecting: Promise<DomainRecord[]> | null = null;
  private listPending = false;

  private readonly inFlight = new Set<string>();
  /** Domains whose job statistics call has not returned yet (one at a time each). */
  private readonly jobCallsInFlight = new Set<string>();
  private readonly uuids = new ListingUuids();
  private readonly xmlCache = new Map<string, { digest: string; facts: DomainXmlFacts }>();
  private readonly lastGood = new LastGoodRecords((uuid) => this.xmlCache.get(uuid)?.facts, PACK_LAST_GOOD_FROM);
  /** Problem key → message last logged for it, so each distinct problem is logged once. */
  private readonly logged = new Map<string, string>();
  /** Domains logged as late or failing, whose recovery is to be logged (the keys are not built for the others). */
  private readonly unwell = new Set<string>();
  /** Domains whose configuration an event said may have changed since it was read. */
  private readonly stale = new Set<string>();
  /** Every domain's configuration is to be read (a new connection). */
  private allStale = true;
  private readonly resyncMs: number;
  private nextResyncAt = 0;
  private readonly clock: () => number;
  private readonly jobs: JobPollSchedule;
  /** Each domain's query in a collection is under this deadline (domainTimeoutMs). */
  private readonly queryDeadlines: Deadlines;

  constructor(private readonly options: LibvirtCollectorOptions = {}) {
    this.domainTimeoutMs = options.domainTimeoutMs ?? 2000;
    this.listTimeoutMs = options.listTimeoutMs ?? 10000;
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.queryDeadlines = new Deadlines(this.domainTimeoutMs);
    this.log = options.log ?? (() => undefined);
    this.connection = new LibvirtConnection({
      reconnectDelaysMs: options.reconnectDelaysMs ?? [250, 500, 1000, 2000, 4000, 5000],
      log: this.log,
    });
    this.resyncMs = options.resyncMs ?? 300_000;
    this.clock = options.clock ?? Date.now;
    this.jobs = new JobPollSchedule(options.jobPollMs ?? 30_000, this.clock, () => {
      const conn = this.connection.current;
      return conn !== null && this.connection.events.announcesMigrations(conn);
    });
    // Marked before any listener of the agent's runs (these subscribe first),
    // so the refresh an event triggers reads the domain's configuration.
    const markStale = (uuid: string): void => void this.stale.add(uuid);
    this.connection.events.onLifecycle(markStale);
    this.connection.events.onJobCompleted(markStale);
    this.connection.events.onMigrationIteration(markStale);
    this.connection.events.onConfigChange(markStale);
  }

  /** Opens the connection (null URI: libvirt's default). Rejects with a LibvirtError if libvirt refuses. */
  async open(uri: string | null, opts: OpenOptions): Promise<void> {
    await this.connection.open(uri, opts.readOnly);
  }

  /** False while closed and while a lost connection is being reopened. */
  isConnected(): boolean {
    return this.connection.current !== null;
  }

  /** Driver, versions and URI of the connection (the last one seen while reconnecting). */
  hypervisorInfo(): HypervisorInfo {
    const facts = this.connection.facts;
    if (facts === null) throw new Error('LibvirtCollector.hypervisorInfo: never connected');
    const { type, version, libvirtVersion, uri } = facts;
    return { type, version, libvirtVersion, uri };
  }

  /** Domain lifecycle events (virDomainEventType, detail); returns an unsubscribe function. */
  onLifecycle(cb: LifecycleListener): () => void {
    return this.connection.events.onLifecycle(cb);
  }

  /** Connection lost (false) or restored (true); returns an unsubscribe function. */
  onConnectionChange(cb: (connected: boolean) => void): () => void {
    return this.connection.onChange(cb);
  }

  /** Completed jobs (migration, save, dump, ...) with their statistics; returns an unsubscribe function. */
  onJobCompleted(cb: JobCompletedListener): () => void {
    return this.connection.events.onJobCompleted(cb);
  }

  /** A domain's configuration or devices changed (device, tunable, metadata, media events); returns an unsubscribe function. */
  onConfigChange(cb: ConfigChangeListener): () => void {
    return this.connection.events.onConfigChange(cb);
  }

  /** Each pass of an outgoing migration (source host only); returns an unsubscribe function. */
  onMigrationIteration(cb: MigrationIterationListener): () => void {
    return this.connection.events.onMigrationIteration(cb);
  }

  /**
   * One domain's job statistics: its current job, or (`completed`) its last
   * completed one, which libvirt keeps for the next reader (an operator's
   * `virsh domjobinfo --completed` still sees it). Under the domain
   * deadline; a call that misses it keeps the domain from further job calls
   * until it returns. Rejects with a LibvirtError (VIR_ERR_NO_DOMAIN when the
   * domain is gone).
   */
  async jobStatistics(uuid: string, which: 'current' | 'completed'): Promise<JobStatistics> {
    const conn = this.connection.current;
    if (conn === null) {
      throw new LibvirtError('virDomainGetJobStats', ErrorCode.NO_CONNECT, 0, `not connected to ${this.connection.describeUri()}`);
    }
    if (this.jobCallsInFlight.has(uuid)) {
      throw new LibvirtError('virDomainGetJobStats', ErrorCode.OPERATION_TIMEOUT, 0, `domain ${uuid} has not answered the previous call yet`);
    }
    this.jobCallsInFlight.add(uuid);
    retainConnection(conn);
    const flags = which === 'completed' ? JobStatsFlag.COMPLETED | JobStatsFlag.KEEP_COMPLETED : 0;
    const call = lookupDomain(conn, uuid).then(async (dom) => {
      try {
        return await jobStatistics(dom, flags);
      } finally {
        await releaseDomainLater(dom);
      }
    });
    // Cleanup waits for the call itself, not for the deadline.
    void call.catch(() => undefined).finally(() => {
      this.jobCallsInFlight.delete(uuid);
      void closeConnection(conn).catch(() => undefined);
    });
    try {
      return await withDeadline(call, this.domainTimeoutMs, `job statistics of ${uuid}`);
    } catch (err) {
      await this.connection.checkAfterError(conn, err);
      throw err;
    }
  }

  /**
   * Every domain, active and inactive. Rejects with a LibvirtError while the
   * connection is down (a reconnect is already under way then). Concurrent
   * calls share one collection. `only`: the domains an event named; the
   * others keep their last good values (with the state this collection's
   * domain list reports), and domains not seen before are queried too.
   */
  collect(only?: ReadonlySet<string>): Promise<DomainRecord[]> {
    if (this.collecting === null) {
      this.collecting = this.collectOnce(only).finally(() => {
        this.collecting = null;
      });
    }
    return this.collecting;
  }

  /**
   * The last good record of every domain listed by the last collection (or
   * answering late since): what to serve while libvirt is unreachable.
   */
  lastKnown(): DomainRecord[] {
    return this.lastGood.values();
  }

  /** Deregisters callbacks and closes the connection; the process can then exit. */
  async close(): Promise<void> {
    await this.collecting?.catch(() => undefined);
    await this.connection.close();
  }

  // ---------------------------------------------------------------- collect

  private async collectOnce(only: ReadonlySet<string> | undefined): Promise<DomainRecord[]> {
    // The previous collection's records are packed now rather than when it
    // ended: the agent was still building its view from them then, so both
    // forms would have been held at once, at the refresh's memory peak. (Also
    // while libvirt is down: they are then what lastKnown() serves.)
    this.lastGood.pack();
    const conn = this.connection.current;
    if (conn === null) {
      throw new LibvirtError('collect', ErrorCode.NO_CONNECT, 0, `not connected to ${this.connection.describeUri()}`);
    }
    if (this.listPending) {
      // A list that missed its deadline still holds a pool thread; do not add another.
      throw new LibvirtError('collect', ErrorCode.OPERATION_TIMEOUT, 0, 'libvirt has not answered the previous domain list yet');
    }
    retainConnection(conn);
    try {
      return await this.collectFrom(conn, only);
    } finally {
      await closeConnection(conn).catch(() => undefined);
    }
  }

  private async collectFrom(conn: ConnectPtr, only: ReadonlySet<string> | undefined): Promise<DomainRecord[]> {
    const driver = this.knowledgeOf(conn);
    let list: DomainList;
    try {
      list = await this.connectionWide(this.listDomains(conn, driver), 'listing domains', (late) => void late.freeLater());
    } catch (err) {
      await this.connection.checkAfterError(conn, err);
      throw err;
    }
    try {
      const targets = list.entries.map(({ dom, stats }, position): ListedDomain => ({
        dom,
        uuid: this.uuids.at(dom, position),
        name: domainName(dom),
        id: domainId(dom),
        stats,
        outcome: KEPT,
      }));
      this.uuids.truncate(targets.length);
      const everything = only === undefined;
      const asked = everything ? targets : targets.filter((t) => only.has(t.uuid) || !this.lastGood.has(t.uuid));
      const resync = everything && !this.allStale && this.resyncMs > 0 && this.clock() >= this.nextResyncAt;
      // Whose configuration is read in full: every domain's, or those events
      // named and those with no good record. The others' previous records are
      // read as each domain's turn comes, not all up front: held through the
      // whole collection, 10,000 of them would outlive the young generation.
      const readEverything = this.allStale || resync;
      const readInFull = new Set<string>();
      if (!readEverything) for (const t of asked) if (this.stale.has(t.uuid) || !this.lastGood.has(t.uuid)) readInFull.add(t.uuid);
      const configReads = readEverything ? asked.length : readInFull.size;
      const previousOf = (uuid: string): PreviousRecord | null =>
        readEverything || readInFull.has(uuid) ? null : this.lastGood.previous(uuid) ?? null;
      // Unmarked as the reads are planned: an event arriving from here on marks the domain for the next refresh.
      const changedByEvent = resync ? new Set(this.stale) : null;
      if (everything) {
        this.stale.clear();
        if (this.allStale || resync) this.nextResyncAt = this.clock() + this.resyncMs;
        // Only a collection of every domain ends "all stale": one of a few domains leaves the others to it.
        this.allStale = false;
      } else {
        for (const t of asked) this.stale.delete(t.uuid);
      }

      let bulk: BulkFlags | null = null;
      if (configReads > FLAGS_PER_DOMAIN_UP_TO) {
        try {
          bulk = await this.connectionWide(this.bulkFlags(conn, driver), 'listing domain flags');
        } catch (err) {
          await this.connection.checkAfterError(conn, err);
          throw err;
        }
      }
      await this.options.afterListing?.();
      const ctx: DomainQueryContext = {
        hostCpus: this.connection.facts?.hostCpus ?? 0,
        hostCpuNumbers: this.connection.facts?.hostCpuNumbers ?? 0,
        bulk,
        support: driver,
        xmlCache: this.xmlCache,
        jobs: this.jobs,
        minorFailure: (uuid, what, err) =>
          this.logOnce(`${uuid}:${what}`, 'debug', `domain ${uuid}: ${what} unavailable: ${errorText(err)}`),
      };
      // A steady domain whose bulk record has it all is built here, with no
      // call to wait for: a promise chain per domain cost more than the rest
      // of its query on QEMU. (Not with the test seam: that replaces queryDomain.)
      const seam = this.options.queryDomain !== undefined;
      const toQuery: ListedDomain[] = [];
      const slices = new Slices(this.options.sliceMs ?? 0.05);
      for (const t of asked) {
        let record: DomainRecord | null = null;
        if (!seam && !this.inFlight.has(t.uuid)) {
          const last = previousOf(t.uuid);
          if (last !== null) {
            const listed = t.stats;
            // A driver in this process: what its bulk record lacks is asked
            // here, directly, in slices short enough not to hold up the
            // responder (options.sliceMs).
            if (driver.fromMemory) {
              const facts = last.id === t.id ? this.xmlCache.get(t.uuid)?.facts : undefined;
              const completed = facts === undefined ? null : statsCompletedNow(t, facts, driver);
              if (completed !== null) t.stats = completed;
              // Awaited only when due: an await per domain is a promise and a turn each.
              if (slices.due()) await slices.handBack();
            }
            record = steadyRecord(t, ctx, last);
            // The completed stats are in the record now; the target, which
            // lives as long as the collection, keeps only what was listed.
            if (record !== null) t.stats = listed;
          }
        }
        if (record === null) {
          toQuery.push(t);
          continue;
        }
        t.outcome = { kind: 'ok', record };
        this.lastGood.set(t.uuid, record);
      }
      await forEachLimited(toQuery, this.concurrency, async (t) => {
        const before = resync && changedByEvent !== null && !changedByEvent.has(t.uuid) ? this.configOf(t.uuid) : null;
        const outcome = await this.queryWithDeadline(t, ctx, previousOf(t.uuid));
        t.outcome = outcome;
        if (outcome.kind !== 'ok') this.stale.add(t.uuid);
        else if (before !== null) this.reportMissedEvent(t, before, outcome.record);
      });
      return await this.assemble(conn, targets);
    } finally {
      list.free();
    }
  }

  /** What a resync compares: the domain's configuration as last read. */
  private configOf(uuid: string): { record: DomainRecord; facts: DomainXmlFacts } | null {
    const record = this.lastGood.get(uuid);
    const facts = this.xmlCache.get(uuid)?.facts;
    return record === undefined || facts === undefined ? null : { record, facts };
  }

  /** A resync found a configuration that changed with no event saying so: one line, naming what changed. */
  private reportMissedEvent(t: DomainTarget, before: { record: DomainRecord; facts: DomainXmlFacts }, after: DomainRecord): void {
    const facts = this.xmlCache.get(t.uuid)?.facts;
    if (facts === undefined) return;
    const changed = configDifferences(before, { record: after, facts });
    if (changed.length === 0) return;
    this.log('info', `resync: domain ${t.name} (${t.uuid}): ${changed.join(', ')} changed with no event from libvirt; ` +
      'served from now on');
  }

  /**
   * A connection-wide call under the list deadline. If it misses it, the
   * call keeps running: `listPending` holds off further collections until it
   * returns, and `cleanup` frees whatever it returns then.
   */
  private async connectionWide<T>(call: Promise<T>, what: string, cleanup?: (late: T) => void): Promise<T> {
    try {
      return await withDeadline(call, this.listTimeoutMs, what);
    } catch (err) {
      if (err instanceof LibvirtError && err.code === ErrorCode.OPERATION_TIMEOUT && err.operation === what) {
        this.listPending = true;
        void call.then(cleanup, () => undefined).finally(() => {
          this.listPending = false;
        });
      }
      throw err;
    }
  }

  private knowledgeOf(conn: ConnectPtr): DriverKnowledge {
    if (this.driver?.conn !== conn) {
      // A new connection: events may have been missed while there was none.
      this.allStale = true;
      this.driver = {
        conn,
        fromMemory: answersFromMemory(this.connection.requestedUri),
        statsNoWait: true,
        bulkFlags: true,
        blockStatsFlags: 'unknown',
        jobStats: 'unknown',
        jobInfo: 'unknown',
      };
    }
    return this.driver;
  }

  /** All domains with their bulk stats; a plain list where the driver lacks virConnectGetAllDomainStats. */
  private async listDomains(conn: ConnectPtr, driver: DriverKnowledge): Promise<DomainList> {
    try {
      return await allDomainStats(conn, STATS_GROUPS, driver.statsNoWait ? GET_ALL_DOMAINS_STATS_NOWAIT : 0);
    } catch (err) {
      if (!(err instanceof LibvirtError) || err.isConnectionError) throw err;
      if (driver.statsNoWait && (err.code === ErrorCode.INVALID_ARG || err.isUnsupported)) {
        // Daemons older than libvirt 6.0 reject the NOWAIT flag.
        driver.statsNoWait = false;
        return this.listDomains(conn, driver);
      }
      this.logOnce('bulk-stats', 'debug', `bulk domain stats unavailable (${err.libvirtMessage}); querying per domain`);
      return listDomainsWithoutStats(conn, 0);
    }
  }

  /** Autostart, persistence and managed save of all domains from 3 filtered lists, not 3 calls per domain. */
  private async bulkFlags(conn: ConnectPtr, driver: DriverKnowledge): Promise<BulkFlags | null> {
    if (!driver.bulkFlags) return null;
    try {
      const [transient, autostart, managedSave] = await Promise.all([
        listDomainUuids(conn, ListDomainsFlag.TRANSIENT),
        listDomainUuids(conn, ListDomainsFlag.AUTOSTART),
        listDomainUuids(conn, ListDomainsFlag.MANAGEDSAVE),
      ]);
      return { transient, autostart, managedSave };
    } catch (err) {
      if (!(err instanceof LibvirtError) || err.isConnectionError) throw err;
      driver.bulkFlags = false;
      this.logOnce('bulk-flags', 'debug', `filtered domain lists unavailable (${err.libvirtMessage}); querying per domain`);
      return null;
    }
  }

  private async queryWithDeadline(t: DomainTarget, ctx: DomainQueryContext, previous: PreviousRecord | null): Promise<Outcome> {
    // Still busy with an earlier refresh's call: do not stack another one on it.
    if (this.inFlight.has(t.uuid)) return { kind: 'late' };
    this.inFlight.add(t.uuid);
    const work: Promise<Outcome> = (this.options.queryDomain ?? queryDomain)(t, ctx, previous).then(
      (record): Outcome => ({ kind: 'ok', record }),
      (error: unknown): Outcome => ({ kind: 'failed', error }),
    );
    const outcome = await this.queryDeadlines.race(work);
    if (outcome !== MISSED) {
      this.inFlight.delete(t.uuid);
      // Replaced now rather than when the collection ends, so that the old
      // record can be freed while the other domains are still being asked.
      if (outcome.kind === 'ok') this.lastGood.set(t.uuid, outcome.record);
      return outcome;
    }
    this.unwell.add(t.uuid);
    this.logOnce(`${t.uuid}:late`, 'warn',
      `domain ${t.name} (${t.uuid}) did not answer within ${this.domainTimeoutMs} ms; serving its previous values`);
    // The late query outlives the domain list: it holds a reference of its own, dropped when it returns.
    retainDomain(t.dom);
    void work.then((late) => {
      this.inFlight.delete(t.uuid);
      void releaseDomainLater(t.dom);
      if (late.kind === 'ok' && this.isConnected()) this.lastGood.set(t.uuid, late.record);
    });
    return { kind: 'late' };
  }

  private async assemble(conn: ConnectPtr, targets: readonly ListedDomain[]): Promise<DomainRecord[]> {
    const failed: unknown[] = [];
    for (const { outcome: o } of targets) if (o.kind === 'failed') failed.push(o.error);
    let stillListed: Set<string> | null = null;
    if (failed.length > 0) {
      for (const error of failed) await this.connection.checkAfterError(conn, error);
      if (this.connection.current !== conn) {
        throw new LibvirtError('collect', ErrorCode.NO_CONNECT, 0, `connection to ${this.connection.describeUri()} lost`);
      }
      // Which failed domains vanished (undefined or destroyed while we asked)?
      // Decided from a fresh list rather than from error codes (errors.ts).
      stillListed = await this.connectionWide(listDomainUuids(conn, 0), 'relisting domains');
    }

    const records: DomainRecord[] = [];
    for (const t of targets) {
      const o = t.outcome;
      if (o.kind === 'ok') {
        if (this.unwell.delete(t.uuid)) {
          const wasLate = this.logged.delete(`${t.uuid}:late`);
          const wasFailing = this.logged.delete(`${t.uuid}:failed`);
          if (wasLate || wasFailing) this.log('info', `domain ${t.name} (${t.uuid}) answers again`);
        }
        records.push(o.record);
        continue;
      }
      if (o.kind === 'failed') {
        if (stillListed !== null && !stillListed.has(t.uuid)) {
          this.log('debug', `domain ${t.name} (${t.uuid}) vanished during the refresh`);
          this.forget(t.uuid);
          continue;
        }
        this.unwell.add(t.uuid);
        this.logOnce(`${t.uuid}:failed`, 'warn', `domain ${t.name} (${t.uuid}): ${errorText(o.error)}; serving its previous values`);
      }
      // A domain with no good record yet is left out until it answers.
      const previous = this.lastGood.get(t.uuid);
      if (previous !== undefined) records.push(withFreshState(previous, t));
    }

    // Domains no longer listed are forgotten. Every listed one that has a
    // record is counted first: usually that is all of them, and no set of
    // the listed UUIDs is needed.
    let kept = 0;
    for (const t of targets) if (this.lastGood.has(t.uuid)) kept++;
    if (kept < this.lastGood.size) {
      const listed = new Set(targets.map((t) => t.uuid));
      for (const uuid of this.lastGood.uuids()) if (!listed.has(uuid)) this.forget(uuid);
    }
    return records;
  }

  private forget(uuid: string): void {
    this.unwell.delete(uuid);
    this.lastGood.delete(uuid);
    this.xmlCache.delete(uuid);
    this.stale.delete(uuid);
    this.jobs.forget(uuid);
    for (const key of [...this.logged.keys()]) if (key.startsWith(`${uuid}:`)) this.logged.delete(key);
  }

  private logOnce(key: string, level: 'debug' | 'info' | 'warn' | 'error', message: string): void {
    if (this.logged.get(key) === message) return;
    this.logged.set(key, message);
    this.log(level, message);
  }
}

/** A stale record with the state, reason and id this refresh's bulk list did report. */
function withFreshState(previous: DomainRecord, t: DomainTarget): DomainRecord {
  return {
    ...previous,
    id: t.id,
    state: t.stats.state ?? previous.state,
    reason: t.stats.reason ?? previous.reason,
  };
}

/**
 * The parts of a domain's configuration that differ, by name. The current
 * memory is left out: it is the balloon's runtime value, read every refresh.
 */
export function configDifferences(
  a: { record: DomainRecord; facts: DomainXmlFacts },
  b: { record: DomainRecord; facts: DomainXmlFacts },
): string[] {
  const changed: string[] = [];
  if (a.facts !== b.facts) {
    for (const key of Object.keys(b.facts) as (keyof DomainXmlFacts)[]) {
      if (key !== 'currentMemoryKiB' && asText(a.facts[key]) !== asText(b.facts[key])) changed.push(`XML ${key}`);
    }
  }
  if (asText(a.record.vcpus.map((v) => v.affinity)) !== asText(b.record.vcpus.map((v) => v.affinity))) changed.push('vCPU pinning');
  if (a.record.autostart !== b.record.autostart) changed.push('autostart');
  if (a.record.persistent !== b.record.persistent) changed.push('persistence');
  if (a.record.managedSave !== b.record.managedSave) changed.push('managed save');
  return changed;
}

const asText = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Work in slices of `sliceMs`: due() says when the slice is over, handBack() gives the event loop a turn. */
class Slices {
  private start = performance.now();

  constructor(private readonly sliceMs: number) {}

  due(): boolean {
    return performance.now() - this.start >= this.sliceMs;
  }

  async handBack(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.start = performance.now();
  }
}

async function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LibvirtError(what, ErrorCode.OPERATION_TIMEOUT, 0, `no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
