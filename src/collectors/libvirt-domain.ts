// One domain's DomainRecord: its configuration (live XML, vCPU pinning,
// autostart, persistence, managed save), then runtime values (the current
// job among them), taken from the bulk virConnectGetAllDomainStats record
// where the driver filled the group and from per-domain calls where it did
// not (the test driver fills only state.*).
//
// The configuration is read in full only when the caller has no previous
// record to go on (a new domain, an event named it, a resync). Otherwise it
// comes from the previous record and the cached XML facts, and only what
// changes between two refreshes is asked for: counters and state, and the
// current job when one may run (jobMayRun) or its turn has come.
//
// The XML, state and info calls are essential: if one fails the domain has
// no record this refresh (the caller keeps its previous one, or drops it if
// it vanished). vCPU, pinning, block and job calls are not: a failure leaves
// the affected fields null, unless the error says the domain or the
// connection is gone.

import { createHash } from 'crypto';
import {
  autostart,
  blockInfo,
  blockStats,
  domainInfo,
  domainState,
  domainVcpuPinning,
  domainVcpus,
  domainXml,
  hasManagedSave,
  isPersistent,
  jobInfo,
  jobStats,
  legacyBlockStats,
  type JobState,
} from '../libvirt/domain-calls';
import { ErrorCode, LibvirtError } from '../libvirt/errors';
import type { DomainPtr } from '../libvirt/ffi';
import { bulkBlockNamed, type BlockCounters, type BulkBlock, type DomainStats } from '../libvirt/domain-stats';
import type { DiskRecord, DomainRecord, VcpuRecord } from '../snapshot';
import { parseDomainXml, xmlAffinity, type DomainXmlFacts, type XmlDisk } from './domain-xml';
import { sharedNumberList } from './interner';

export interface DomainTarget {
  dom: DomainPtr;
  uuid: string;
  name: string;
  id: number;
  /** This domain's virConnectGetAllDomainStats record (maybe only state.*), or NO_DOMAIN_STATS. */
  stats: DomainStats;
}

/** Answers from the bulk filtered domain lists, or null when the driver rejected the filters. */
export interface BulkFlags {
  transient: ReadonlySet<string>;
  autostart: ReadonlySet<string>;
  managedSave: ReadonlySet<string>;
}

export type Support = 'unknown' | 'yes' | 'no';

/** What this connection's driver turned out to support; learned once, kept per connection. */
export interface DriverSupport {
  blockStatsFlags: Support;
  jobStats: Support;
  jobInfo: Support;
}

export interface DomainQueryContext {
  /** Active host CPUs: "every CPU" for a vCPU the XML does not pin. */
  hostCpus: number;
  /** Highest host CPU number + 1: how many bits a cpumap has. */
  hostCpuNumbers: number;
  bulk: BulkFlags | null;
  support: DriverSupport;
  /** Parsed XML by UUID, reused while the XML text is unchanged (same SHA-256). */
  xmlCache: Map<string, { digest: string; facts: DomainXmlFacts }>;
  /** Reports a non-essential failure (the collector logs each distinct one once). */
  minorFailure(uuid: string, what: string, err: unknown): void;
  /** When a steady domain's job is asked although nothing suggests one runs (see jobMayRun). */
  jobs: JobSchedule;
}

/** The safety net under jobMayRun: each domain's job is asked at least this often. */
export interface JobSchedule {
  /** True when `uuid`'s job was last asked long enough ago, or always where no event announces a migration. */
  due(uuid: string): boolean;
  /** The job of `uuid` was asked just now. */
  asked(uuid: string): void;
}

/**
 * What queryDomain reads of a domain's previous record: its configuration
 * that only events change, and what says whether a job may run. (Not the
 * counters or disks: LastGoodRecords.previous() leaves them packed.)
 */
export interface PreviousRecord {
  readonly id: number;
  readonly state: number;
  readonly reason: number;
  readonly autostart: boolean | null;
  readonly persistent: boolean | null;
  readonly managedSave: boolean;
  readonly jobType: number | null;
  readonly vcpus: readonly Pick<VcpuRecord, 'number' | 'affinity'>[];
}

/**
 * Whether a steady domain's job should be asked this refresh without its
 * turn: a job was running at the last look (or the look failed), or the
 * state changed (a migration's switchover pauses the domain, post-copy
 * changes the reason, a save or dump pauses it). A migration's start shows
 * as its first migration-iteration event, which makes the refresh read the
 * domain in full (the collector marks it stale).
 */
export function jobMayRun(previous: PreviousRecord, state: number, reason: number): boolean {
  return previous.jobType !== 0 || state !== previous.state || reason !== previous.reason;
}

/** Errors after which no further call on this domain can succeed this refresh. */
export function isDomainFatal(err: unknown): boolean {
  return (
    err instanceof LibvirtError &&
    (err.code === ErrorCode.NO_DOMAIN || err.code === ErrorCode.INVALID_DOMAIN || err.isConnectionError)
  );
}

/**
 * The domain's record. `previous`: its last good record, whose configuration
 * still holds (no event said otherwise), or null to read everything.
 */
export async function queryDomain(t: DomainTarget, ctx: DomainQueryContext, previous: PreviousRecord | null = null): Promise<DomainRecord> {
  const built = previous === null ? null : steadyRecord(t, ctx, previous);
  if (built !== null) return built;
  // A domain that started or stopped has a new live XML; its event may have
  // been missed, so the id decides too.
  const cachedFacts = previous !== null && previous.id === t.id ? ctx.xmlCache.get(t.uuid)?.facts : undefined;
  const steady = cachedFacts !== undefined ? previous : null;
  const facts = cachedFacts ?? parsedXml(t.uuid, await domainXml(t.dom), ctx);

  const bulkState = t.stats.state;
  const { state, reason } =
    bulkState !== null ? { state: bulkState, reason: t.stats.reason ?? 0 } : await domainState(t.dom);
  const active = t.id !== -1;

  const balloon = t.stats.balloonKiB;
  const cpuTime = t.stats.cpuTimeNs;
  const { memoryKiB, cpuTimeNs } =
    balloon !== null && (cpuTime !== null || !active)
      ? { memoryKiB: balloon, cpuTimeNs: cpuTime ?? 0n }
      : await domainInfo(t.dom);

  // Non-essential calls: a failure leaves the field unknown. They are
  // awaited inline rather than through a wrapper closure: at 10,000 VMs each
  // wrapper layer costs megabytes of garbage per refresh.
  const minor = (what: string, err: unknown): null => minorFailed(ctx, t, what, err);

  let runtime: readonly VcpuRuntime[] | null = active ? vcpusFromStats(t.stats) : null;
  if (active && runtime === null) {
    try {
      runtime = await domainVcpus(t.dom, facts.maxVcpus);
    } catch (err) {
      minor('vCPU info', err);
    }
  }
  runtime ??= idleVcpus(facts);
  let vcpus: VcpuRecord[] | null;
  if (steady !== null) {
    // A vCPU the previous record lacks was plugged without an event: read everything.
    vcpus = steadyVcpus(runtime, steady);
    if (vcpus === null) return queryDomain(t, ctx, null);
  } else {
    // Pinning as libvirt resolves it: live for a running domain, the
    // configuration otherwise (defaults such as "no pin = every host CPU" are
    // driver-specific, so libvirt is asked rather than the XML interpreted).
    // The XML is the fallback when the call fails.
    let pins: number[][] | null = null;
    try {
      pins = await domainVcpuPinning(t.dom, facts.maxVcpus, ctx.hostCpuNumbers);
    } catch (err) {
      minor('vCPU pinning', err);
    }
    vcpus = runtime.map((v): VcpuRecord => vcpuRecord(v, shareable(pins?.[v.number] ?? (active ? null : xmlAffinity(facts, v.number, ctx.hostCpus)))));
  }

  // The cached facts' strings when equal, so that the name and UUID are held once, not twice.
  const uuid = facts.uuid === t.uuid ? facts.uuid : t.uuid;
  // No bulk stats group reports a job, and a job has no start event of its
  // own: a migration announces itself by its first iteration event, but one
  // that fails before moving memory sends none at all. So the job is asked
  // when the domain is read in full, when something suggests one runs, and
  // otherwise at the domain's turn (ctx.jobs).
  let job: JobState | null = null;
  if (!(ctx.support.jobStats === 'no' && ctx.support.jobInfo === 'no')) {
    if (steady === null || !active || jobMayRun(steady, state, reason) || ctx.jobs.due(uuid)) {
      job = await queryJob(t, active, ctx);
      if (active) ctx.jobs.asked(uuid);
    } else {
      job = NO_JOB;
    }
  }
  // Sized up front: an array grown by push() keeps room for 17 (~120 bytes a domain).
  const disks = new Array<DiskRecord>(facts.disks.length);
  for (let i = 0; i < disks.length; i++) {
    const disk = facts.disks[i];
    const bulk = bulkBlockNamed(t.stats, disk.target);
    // Not awaited when the bulk record has it all (the steady case on QEMU): an await per disk costs more than the rest.
    disks[i] = diskRecordFromBulk(disk, active, bulk) ?? await diskRecord(t, disk, active, bulk, ctx);
  }

  return recordFromFacts(facts, {
    uuid,
    name: facts.name === t.name ? facts.name : t.name,
    id: t.id,
    state,
    reason,
    autostart: steady !== null
      ? steady.autostart
      : ctx.bulk ? ctx.bulk.autostart.has(t.uuid) : await autostart(t.dom).catch((err) => minor('autostart', err)),
    persistent: steady !== null
      ? steady.persistent
      : ctx.bulk ? !ctx.bulk.transient.has(t.uuid) : await isPersistent(t.dom).catch((err) => minor('persistence', err)),
    managedSave: steady !== null
      ? steady.managedSave
      : ctx.bulk
        ? ctx.bulk.managedSave.has(t.uuid)
        : ((await hasManagedSave(t.dom).catch((err) => minor('managed save', err))) ?? false),
    memoryKiB,
    cpuTimeNs,
    vcpus,
    disks,
    jobType: job?.type ?? null,
    jobOperation: job?.operation ?? null,
  });
}

/**
 * The record of a steady domain (`previous` still holds, its XML is cached)
 * when its bulk stats record has every value that changes and no job call is
 * due: built with no libvirt call and no await, the usual case on QEMU.
 * Null when something must be asked; queryDomain then asks it.
 */
export function steadyRecord(t: DomainTarget, ctx: DomainQueryContext, previous: PreviousRecord): DomainRecord | null {
  if (previous.id !== t.id) return null;
  const facts = ctx.xmlCache.get(t.uuid)?.facts;
  const state = t.stats.state;
  const memoryKiB = t.stats.balloonKiB;
  const active = t.id !== -1;
  if (facts === undefined || state === null || memoryKiB === null || (active && t.stats.cpuTimeNs === null)) return null;
  const reason = t.stats.reason ?? 0;

  const runtime = active ? vcpusFromStats(t.stats) : idleVcpus(facts);
  const vcpus = runtime === null ? null : steadyVcpus(runtime, previous);
  if (vcpus === null) return null;

  let job: JobState | null = null;
  const { support } = ctx;
  if (!(support.jobStats === 'no' && support.jobInfo === 'no')) {
    if (active) {
      if (jobMayRun(previous, state, reason) || ctx.jobs.due(t.uuid)) return null;
      job = NO_JOB;
    } else {
      // What queryJob answers for an inactive domain, without a call.
      job = support.jobStats === 'yes' || support.jobInfo === 'yes' ? NO_JOB : null;
    }
  }

  const disks = new Array<DiskRecord>(facts.disks.length);
  for (let i = 0; i < disks.length; i++) {
    const disk = facts.disks[i];
    const record = diskRecordFromBulk(disk, active, bulkBlockNamed(t.stats, disk.target));
    if (record === null) return null;
    disks[i] = record;
  }

  return recordFromFacts(facts, {
    uuid: facts.uuid === t.uuid ? facts.uuid : t.uuid,
    name: facts.name === t.name ? facts.name : t.name,
    id: t.id,
    state,
    reason,
    autostart: previous.autostart,
    persistent: previous.persistent,
    managedSave: previous.managedSave,
    memoryKiB,
    cpuTimeNs: t.stats.cpuTimeNs ?? 0n,
    vcpus,
    disks,
    jobType: job?.type ?? null,
    jobOperation: job?.operation ?? null,
  });
}

/** None at the last look (as jobMayRun found) or, for an inactive domain, none possible. */
const NO_JOB: JobState = { type: 0, operation: null };

/** The vCPUs the XML puts online, with no runtime values: an inactive domain's, or where the driver gives none. */
function idleVcpus(facts: DomainXmlFacts): VcpuRuntime[] {
  return facts.onlineVcpus.map((n) => ({ number: n, state: null, cpuTimeNs: null }));
}

/**
 * A steady domain's vCPU records: runtime values with each vCPU's previous
 * affinity (pinning changes only with a tunable or lifecycle event). Null
 * when a vCPU is one the previous record lacks. Each is looked for at its
 * own place first: the vCPUs rarely change.
 */
function steadyVcpus(runtime: readonly VcpuRuntime[], previous: PreviousRecord): VcpuRecord[] | null {
  const known = previous.vcpus;
  const vcpus = new Array<VcpuRecord>(runtime.length);
  for (let i = 0; i < runtime.length; i++) {
    const v = runtime[i];
    const before = known[i]?.number === v.number ? known[i] : known.find((k) => k.number === v.number);
    if (before === undefined) return null;
    vcpus[i] = vcpuRecord(v, before.affinity);
  }
  return vcpus;
}

// Records are spelled out field by field, not spread: V8 gives every object
// made by `{ ...x, more }` a hidden class of its own, which at 10,000 VMs
// costs megabytes of maps and slows every later property access.
function vcpuRecord(v: VcpuRuntime, affinity: readonly number[] | null): VcpuRecord {
  return { number: v.number, state: v.state, cpuTimeNs: v.cpuTimeNs, affinity };
}

/** What a DomainRecord holds beyond its XML facts. */
export type DomainValues = Omit<DomainRecord, 'osType' | 'curVcpus' | 'maxVcpus' | 'maxMemoryKiB' | 'hotplugMemoryKiB' | 'nics'>;

/**
 * The record of a domain from its XML facts and its runtime values: the one
 * place that says which record fields the XML gives (last-good.ts stores
 * only the rest). Field by field, not spread, for the reason given above.
 */
export function recordFromFacts(facts: DomainXmlFacts, v: DomainValues): DomainRecord {
  return {
    uuid: v.uuid,
    name: v.name,
    id: v.id,
    state: v.state,
    reason: v.reason,
    autostart: v.autostart,
    persistent: v.persistent,
    managedSave: v.managedSave,
    osType: facts.osType,
    curVcpus: facts.curVcpus,
    maxVcpus: facts.maxVcpus,
    memoryKiB: v.memoryKiB,
    maxMemoryKiB: facts.memoryKiB,
    hotplugMemoryKiB: facts.hotplugMemoryKiB,
    cpuTimeNs: v.cpuTimeNs,
    vcpus: v.vcpus,
    disks: v.disks,
    // Shared with the cached facts: records are immutable once built.
    nics: facts.nics,
    jobType: v.jobType,
    jobOperation: v.jobOperation,
  };
}

/** A disk's record with what its XML says and every counter unknown, for the caller to fill. */
export function diskRecordFromXml(disk: XmlDisk): DiskRecord {
  return {
    target: disk.target,
    sourceKind: disk.sourceKind,
    device: disk.device,
    format: disk.format,
    source: disk.source,
    readonly: disk.readonly,
    bus: disk.bus,
    capacity: null,
    allocation: null,
    physical: null,
    rdReq: null,
    wrReq: null,
    rdBytes: null,
    wrBytes: null,
    rdTotalTimeNs: null,
    wrTotalTimeNs: null,
  };
}

/**
 * The XML's facts, parsed again only when the XML changed. The cache keeps a
 * digest of the text, not the text: ~1.6 kB a domain, 16 MB at 10,000 VMs.
 */
function parsedXml(uuid: string, xml: string, ctx: DomainQueryContext): DomainXmlFacts {
  const digest = createHash('sha256').update(xml).digest('base64');
  const cached = ctx.xmlCache.get(uuid);
  if (cached !== undefined && cached.digest === digest) return cached.facts;
  const facts = parseDomainXml(xml);
  ctx.xmlCache.set(uuid, { digest, facts });
  return facts;
}

type VcpuRuntime = Pick<VcpuRecord, 'number' | 'state' | 'cpuTimeNs'>;

/** A non-essential call failed: rethrown when the domain or connection is gone, else reported; its field is unknown. */
function minorFailed(ctx: DomainQueryContext, t: DomainTarget, what: string, err: unknown): null {
  if (isDomainFatal(err)) throw err;
  ctx.minorFailure(t.uuid, what, err);
  return null;
}

const shareable = (cpus: readonly number[] | null): readonly number[] | null => (cpus === null ? null : sharedNumberList(cpus));

/** The disk's record when the bulk record has every value it needs, else null. */
function diskRecordFromBulk(disk: XmlDisk, active: boolean, bulk: BulkBlock | null): DiskRecord | null {
  const empty = disk.source === null || disk.target === '';
  if (!empty && (bulk === null || bulk.capacity === null || (active && bulk.rdReqs === null))) return null;
  const record = diskRecordFromXml(disk);
  if (empty || bulk === null) return record;
  bulkSizes(record, bulk);
  if (active) bulkCounters(record, bulk);
  return record;
}

function bulkSizes(record: DiskRecord, bulk: BulkBlock): void {
  record.capacity = bulk.capacity;
  record.allocation = bulk.allocation;
  record.physical = bulk.physical;
}

function bulkCounters(record: DiskRecord, bulk: BlockCounters): void {
  record.rdReq = bulk.rdReqs;
  record.wrReq = bulk.wrReqs;
  record.rdBytes = bulk.rdBytes;
  record.wrBytes = bulk.wrBytes;
  record.rdTotalTimeNs = bulk.rdTimes;
  record.wrTotalTimeNs = bulk.wrTimes;
}

async function diskRecord(
  t: DomainTarget,
  disk: XmlDisk,
  active: boolean,
  bulk: BulkBlock | null,
  ctx: DomainQueryContext,
): Promise<DiskRecord> {
  const record = diskRecordFromXml(disk);
  // An empty drive (ejected CD-ROM) has nothing to size or count.
  if (disk.source === null || disk.target === '') return record;

  if (bulk !== null && bulk.capacity !== null) {
    bulkSizes(record, bulk);
  } else {
    try {
      const info = await blockInfo(t.dom, disk.target);
      record.capacity = info.capacity;
      record.allocation = info.allocation;
      record.physical = info.physical;
    } catch (err) {
      minorFailed(ctx, t, `block info of ${disk.target}`, err);
    }
  }
  if (!active) return record;

  if (bulk !== null && bulk.rdReqs !== null) {
    bulkCounters(record, bulk);
    return record;
  }
  try {
    bulkCounters(record, await blockStatsAnyApi(t.dom, disk.target, ctx.support));
  } catch (err) {
    minorFailed(ctx, t, `block stats of ${disk.target}`, err);
  }
  return record;
}

/** virDomainBlockStatsFlags, or the legacy virDomainBlockStats on drivers without it (learned once). */
async function blockStatsAnyApi(
  dom: DomainPtr,
  target: string,
  support: DriverSupport,
): Promise<BlockCounters> {
  if (support.blockStatsFlags !== 'no') {
    try {
      const stats = await blockStats(dom, target);
      support.blockStatsFlags = 'yes';
      return stats;
    } catch (err) {
      if (!(err instanceof LibvirtError && err.isUnsupported)) throw err;
      support.blockStatsFlags = 'no';
    }
  }
  return legacyBlockStats(dom, target);
}

/** An unbounded job (virDomainJobType 2) of operation migration-in (virDomainJobOperation 4). */
const INCOMING_MIGRATION = { type: 2, operation: 4 } as const;

/**
 * The current job: virDomainGetJobStats (names the operation), else
 * virDomainGetJobInfo; null when the driver has neither (learned once).
 */
async function queryJob(t: DomainTarget, active: boolean, ctx: DomainQueryContext): Promise<JobState | null> {
  const { support } = ctx;
  const apiKnown = support.jobStats === 'yes' || support.jobInfo === 'yes';
  // Jobs (migration, save, dump, backup) only run on active domains.
  if (!active) return apiKnown ? { type: 0, operation: null } : null;
  for (const [key, call] of [['jobStats', jobStats], ['jobInfo', jobInfo]] as const) {
    if (support[key] === 'no') continue;
    try {
      const job = await call(t.dom);
      support[key] = 'yes';
      return job;
    } catch (err) {
      // QEMU's driver refuses statistics of an incoming migration with
      // VIR_ERR_OPERATION_UNSUPPORTED ("available only on the source host"):
      // that refusal is the destination's only sign of the job. (A driver
      // without the API fails with VIR_ERR_NO_SUPPORT instead.)
      if (err instanceof LibvirtError && err.code === ErrorCode.OPERATION_UNSUPPORTED) {
        return { type: INCOMING_MIGRATION.type, operation: INCOMING_MIGRATION.operation };
      }
      if (err instanceof LibvirtError && err.isUnsupported) {
        support[key] = 'no';
        continue;
      }
      if (isDomainFatal(err)) throw err;
      ctx.minorFailure(t.uuid, 'job info', err);
      return null;
    }
  }
  return null;
}

/** vcpu.<n>.state / vcpu.<n>.time from the bulk stats, or null when the driver left the group out. */
function vcpusFromStats(stats: DomainStats): readonly VcpuRuntime[] | null {
  return stats.vcpuGroup ? stats.vcpus : null;
}
