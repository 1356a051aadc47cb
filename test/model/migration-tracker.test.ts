// The migration tracker's rules, with job statistics the test sets (the real
// libvirt behaviour is proven by test/integration/migration.test.ts): when a
// job starts and ends, which result an ended job gets from what libvirt still
// says, and that the last migration survives a restart through the state dir.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CollectorRegistry } from '../../src/collectors/collector';
import { MigrationJobCollector } from '../../src/collectors/migration-jobs';
import { ErrorCode, LibvirtError } from '../../src/libvirt/errors';
import type { TypedParamValue } from '../../src/libvirt/typed-params';
import { MigrationTracker } from '../../src/migration-tracker';
import { migrationRow } from '../../src/model/vmm-agentx-mib';
import { MigrationColumn } from '../../src/model/vmm-agentx-oids';
import type { DomainRecord } from '../../src/snapshot';
import { MigrationStore } from '../../src/state/migration-store';
import type { Value } from '../../agentx';
import { recordingLog } from '../harness/log';
import { domainRecord } from '../harness/records';

type Answer = { type: number; params: Map<string, TypedParamValue> } | LibvirtError;

const UUID = '11111111-2222-3333-4444-555555555555';
const OUT = 5;
const IN = 4;

/** Job statistics answered from what the test puts in `current` and `completed`. */
class Jobs {
  current: Answer = { type: 0, params: new Map() };
  completed: Answer = { type: 0, params: new Map() };
  calls: string[] = [];
  async jobStatistics(_uuid: string, which: 'current' | 'completed') {
    this.calls.push(which);
    const a = which === 'current' ? this.current : this.completed;
    if (a instanceof LibvirtError) throw a;
    return a;
  }
}

const stats = (type: number, values: Record<string, number | bigint | boolean | string>) =>
  ({ type, params: new Map<string, TypedParamValue>(Object.entries(values)) });

const migrating = (operation: number, over: Partial<DomainRecord> = {}) => domainRecord({ jobType: 2, jobOperation: operation, ...over });
const idle = (over: Partial<DomainRecord> = {}) => domainRecord({ jobType: 0, jobOperation: null, ...over });

function setup(store = MigrationStore.memory(() => undefined)) {
  const jobs = new Jobs();
  const { lines, log } = recordingLog();
  let now = 1_900_000_000_000;
  const tracker = new MigrationTracker(new MigrationJobCollector(jobs), new CollectorRegistry(log), store, log, () => now);
  return { jobs, tracker, lines, store, advance: (ms: number) => { now += ms; } };
}

describe('MigrationTracker', () => {
  test('an outgoing job: started once, sampled, completed from the job-completed event', async () => {
    const { jobs, tracker, advance } = setup();
    jobs.current = stats(2, { operation: OUT, time_elapsed: 800n, data_processed: 1000n, data_total: 5000n, memory_dirty_rate: 0n });
    const first = await tracker.observe([migrating(OUT)], true, 10_000);
    expect(first.events).toEqual([{ kind: 'started', uuid: UUID, direction: 'outgoing' }]);
    expect(first.states.get(UUID)?.active).toMatchObject({ direction: 'outgoing', postcopy: false });
    expect(first.states.get(UUID)?.active?.figures).toMatchObject({ elapsedMs: 800, dataProcessed: 1000n, dataTotal: 5000n });
    expect(tracker.hasActive()).toBe(true);

    jobs.current = stats(2, { operation: OUT, time_elapsed: 1800n, data_processed: 3000n, memory_dirty_rate: 9000n, memory_iteration: 2n });
    advance(1000);
    const sampled = await tracker.sample();
    expect(sampled.over.size).toBe(0);
    expect(sampled.states.get(UUID)?.active?.figures).toMatchObject({ dataProcessed: 3000n, dirtyRate: 9000, iteration: 2 });
    expect((await tracker.observe([migrating(OUT)], true, 10_100)).events).toEqual([]);

    tracker.jobCompleted(UUID, new Map<string, TypedParamValue>([
      ['operation', OUT], ['time_elapsed', 5100n], ['downtime', 587n], ['setup_time', 1n], ['data_processed', 202_500_000n],
    ]));
    advance(2000);
    // The source keeps a persistent domain, shut off.
    const after = await tracker.observe([idle({ id: -1, state: 5, reason: 3 })], true, 10_300);
    expect(after.events).toHaveLength(1);
    const last = after.states.get(UUID)?.last;
    expect(last).toMatchObject({ result: 'completed', direction: 'outgoing', totalTimeMs: 5100, downtimeMs: 587, setupTimeMs: 1, dataTransferred: 202_500_000n });
    // Ended when the event came, 2 s before this refresh: 200 ticks earlier.
    expect(last?.endedUptimeTicks).toBe(10_100);
    expect(after.states.get(UUID)?.active).toBeNull();
    expect(tracker.hasActive()).toBe(false);
  });

  test('an outgoing job that ends with the VM still running here and no statistics was cancelled (virDomainAbortJob)', async () => {
    const { jobs, tracker } = setup();
    jobs.current = stats(2, { operation: OUT, time_elapsed: 1500n, data_processed: 4000n });
    await tracker.observe([migrating(OUT)], true, 100);
    const after = await tracker.observe([idle()], true, 200);
    expect(jobs.calls).toContain('completed');
    expect(after.states.get(UUID)?.last).toMatchObject({ result: 'cancelled', totalTimeMs: 1500, downtimeMs: null, dataTransferred: 4000n });
  });

  test('a job that never moved memory and ended with the VM still here could not reach its destination: failed', async () => {
    const { jobs, tracker } = setup();
    // Prepare: only the elapsed time; libvirt fills the data figures once QEMU migrates.
    jobs.current = stats(2, { operation: OUT, time_elapsed: 2500n, data_total: 0n, data_processed: 0n });
    await tracker.observe([migrating(OUT)], true, 100);
    const after = await tracker.observe([idle()], true, 200);
    expect(after.states.get(UUID)?.last).toMatchObject({ result: 'failed', totalTimeMs: 2500 });
  });

  test('completed statistics of a failed job give failed, with their own figures', async () => {
    const { jobs, tracker, lines } = setup();
    await tracker.observe([migrating(OUT)], true, 100);
    jobs.completed = stats(4, { operation: OUT, time_elapsed: 30n, errmsg: 'unable to connect to destination' });
    const after = await tracker.observe([idle()], true, 200);
    expect(after.states.get(UUID)?.last).toMatchObject({ result: 'failed', totalTimeMs: 30 });
    expect(lines.some((l) => l.includes('failed: unable to connect to destination'))).toBe(true);
  });

  test('an incoming job completes when the VM runs here, with the completed statistics; fails when it goes', async () => {
    const { jobs, tracker } = setup();
    const paused = { state: 3, reason: 2 };
    const start = await tracker.observe([migrating(IN, paused)], true, 100);
    expect(start.events).toEqual([{ kind: 'started', uuid: UUID, direction: 'incoming' }]);
    // Nothing is read on the destination while the job runs: libvirt refuses it.
    expect(jobs.calls).toEqual([]);
    jobs.current = new LibvirtError('virDomainGetJobStats', ErrorCode.OPERATION_UNSUPPORTED, 0, 'only on the source host');
    expect(await tracker.sample()).toEqual({ states: new Map(), over: new Set() });
    jobs.current = stats(0, {});
    expect([...(await tracker.sample()).over]).toEqual([UUID]);
    jobs.completed = stats(3, { operation: IN, time_elapsed: 5100n, downtime: 587n, data_processed: 7n });
    const done = await tracker.observe([idle()], true, 200);
    expect(done.states.get(UUID)?.last).toMatchObject({ result: 'completed', direction: 'incoming', downtimeMs: 587, dataTransferred: 7n });

    const other = setup();
    await other.tracker.observe([migrating(IN, paused)], true, 100);
    const gone = await other.tracker.observe([idle({ id: -1, state: 5, reason: 5 })], true, 200);
    expect(gone.states.get(UUID)?.last?.result).toBe('failed');
  });

  test('stale records (libvirt away) end nothing; a VM that vanished takes its job along silently', async () => {
    const { tracker } = setup();
    await tracker.observe([migrating(OUT)], true, 100);
    expect((await tracker.observe([idle()], false, 200)).events).toEqual([]);
    expect(tracker.hasActive()).toBe(true);
    expect((await tracker.observe([], true, 300)).events).toEqual([]);
    expect(tracker.hasActive()).toBe(false);
  });

  test('a sample that finds the job over says so; a domain gone counts as over too', async () => {
    const { jobs, tracker } = setup();
    jobs.current = stats(2, { operation: OUT });
    await tracker.observe([migrating(OUT)], true, 100);
    jobs.current = stats(0, {});
    expect([...(await tracker.sample()).over]).toEqual([UUID]);
    jobs.current = new LibvirtError('virDomainLookupByUUIDString', ErrorCode.NO_DOMAIN, 0, 'no domain');
    expect([...(await tracker.sample()).over]).toEqual([UUID]);
  });

  test('the last migration survives a restart through the state dir, and a VM undefined here is forgotten', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-migrations-'));
    try {
      const a = setup(await MigrationStore.load(dir, () => undefined));
      a.jobs.completed = stats(3, { operation: OUT, time_elapsed: 5100n, downtime: 587n, data_processed: (1n << 40n) });
      await a.tracker.observe([migrating(OUT)], true, 100);
      await a.tracker.observe([idle({ id: -1, state: 5 })], true, 200);
      await a.store.flushed();
      const restarted = setup(await MigrationStore.load(dir, () => undefined));
      const seen = await restarted.tracker.observe([idle({ id: -1, state: 5 })], true, 300);
      expect(seen.events).toEqual([]);
      expect(seen.states.get(UUID)?.last).toMatchObject({ result: 'completed', downtimeMs: 587, dataTransferred: 1n << 40n });
      await restarted.tracker.observe([], true, 400);
      await restarted.store.flushed();
      expect((await MigrationStore.load(dir, () => undefined)).get(UUID)).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a state file this agent did not write is left alone, with one line naming it and the fix', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-migrations-'));
    try {
      fs.writeFileSync(path.join(dir, 'vm-migrations.json'), '{"version": 1, "vms": {"x": {"result": "exploded"}}}');
      const { lines, log } = recordingLog();
      const store = await MigrationStore.load(dir, log);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/vm-migrations\.json is not a migration history.*move it away/);
      await store.set(UUID, { result: 'completed', direction: 'outgoing', endedAt: 1, endedUptimeTicks: 1,
        totalTimeMs: 1, downtimeMs: 1, setupTimeMs: 1, dataTransferred: 1n });
      expect(fs.readFileSync(path.join(dir, 'vm-migrations.json'), 'utf8')).toContain('exploded');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('vmmMigrationEntry values', () => {
  const col = (row: readonly Value[], c: MigrationColumn) => {
    const v = row[c - 1];
    return 'value' in v ? v.value : undefined;
  };

  test('a VM that never migrated reads none and zeros; a running job shows its figures; the last one its result', () => {
    const idleRow = migrationRow(undefined, 1000, 0);
    expect(col(idleRow, MigrationColumn.JobState)).toBe(1);
    expect(col(idleRow, MigrationColumn.LastResult)).toBe(1);
    expect(col(idleRow, MigrationColumn.DataTotal)).toBe(0n);
    const now = 1_900_000_000_000;
    const last = { result: 'cancelled' as const, direction: 'outgoing' as const, endedAt: now - 5000, endedUptimeTicks: 99_500,
      totalTimeMs: 1500, downtimeMs: null, setupTimeMs: 2, dataTransferred: 4000n };
    const running = migrationRow({ active: { direction: 'outgoing', postcopy: true, figures: {
      elapsedMs: 900, dataTotal: 10n, dataProcessed: 5n, dataRemaining: 5n, memoryTotal: 8n, memoryProcessed: 4n, memoryRemaining: 4n,
      dirtyRate: 1200, iteration: 3, expectedDowntimeMs: 40, downtimeMs: null, setupTimeMs: null } }, last }, 100_000, now);
    expect(col(running, MigrationColumn.JobState)).toBe(6);
    expect(col(running, MigrationColumn.Direction)).toBe(2);
    expect(col(running, MigrationColumn.DirtyRate)).toBe(1200);
    expect(col(running, MigrationColumn.ExpectedDowntime)).toBe(40);
    expect(col(running, MigrationColumn.LastResult)).toBe(5);
    expect(col(running, MigrationColumn.LastEnded)).toBe(99_500);
    const ended = migrationRow({ active: null, last }, 100_000, now);
    expect(col(ended, MigrationColumn.JobState)).toBe(5);
    expect(col(ended, MigrationColumn.Direction)).toBe(1);
    expect(col(ended, MigrationColumn.Elapsed)).toBe(0);
    // Ended before the host last booted: at no vmHvUpTime of this boot.
    expect(col(migrationRow({ active: null, last }, 100, now), MigrationColumn.LastEnded)).toBe(0);
  });
});
