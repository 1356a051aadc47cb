// The migration rig itself (migration-lab.ts): two session libvirtds under
// two users, the churn guest, and real live migrations between them — one
// aborted, two failing after the source job started, one converging by itself,
// and one held in progress and then released. The order matters: the guest
// stays on the source until the successful migration moves it.
import * as fs from 'node:fs';
import { checkImage, churnGuestImage } from './guest-image';
import { JOB_OPERATION, JOB_TYPE, JobInfo, MigrationLab, migrationMissing, startMigrationLab } from './migration-lab';
import { describeUnless } from './prereq';
import { sleep } from './process';

const MiB = 1024 * 1024;
const UNSUPPORTED_ON_DESTINATION = 'error: Operation not supported: migration statistics are available only on the source host';

const describeWithLab = describeUnless(migrationMissing());

function report(line: string): void {
  process.stdout.write(`migration-lab: ${line}\n`);
}

const isActive = (j: JobInfo): boolean => j.type === JOB_TYPE.unbounded;
const transferring = (j: JobInfo): boolean => isActive(j) && (j.stats.data_processed ?? 0) > 0;

describeWithLab('migration lab: live migrations between two session libvirtds', () => {
  let lab: MigrationLab;

  beforeAll(async () => {
    lab = await startMigrationLab();
    report(`lab up in ${lab.timings.totalMs} ms (${JSON.stringify(lab.timings)})`);
  }, 120_000);

  afterAll(async () => {
    await lab?.dispose();
  }, 60_000);

  test('the guest image is a 32-bit multiboot ELF, and both daemons run as their own users', async () => {
    expect(checkImage(churnGuestImage())).toBeNull();
    expect(lab.uids.src).toBe(65534);
    expect(lab.uids.dst).not.toBe(lab.uids.src);
    for (const side of ['src', 'dst'] as const) {
      const status = fs.readFileSync(`/proc/${lab.pids[side]}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(lab.uids[side]));
      expect(lab.uris[side]).toMatch(/^qemu\+unix:\/\/\/session\?socket=\//);
    }
    // Distinct host UUIDs: libvirt refuses a migration to "the same host" otherwise.
    const uuid = async (side: 'src' | 'dst'): Promise<string | undefined> =>
      /<uuid>([^<]+)<\/uuid>/.exec((await lab.virsh(side, ['capabilities'])).stdout)?.[1];
    expect(await uuid('src')).not.toBe(await uuid('dst'));
    expect(await lab.domState('src')).toEqual({ state: 'running', reason: 'booted' });
    expect(await lab.domState('dst')).toBeNull();
    expect(lab.serialLog()).toMatch(/^churn: filled 160 MiB$/m);
  });

  test('domjobabort cancels a migration in progress; the destination has no job stats meanwhile', async () => {
    const srcEvents = lab.events('src').length;
    const dstEvents = lab.events('dst').length;
    const run = await lab.migrate({ bandwidth: 40 });
    const during = await run.waitForJob(transferring, 20_000);
    expect(during.stats.operation).toBe(JOB_OPERATION.migrationOut);
    const onDestination = await lab.jobInfo('dst');
    expect(onDestination.type).toBeNull();
    expect(onDestination.error).toBe(UNSUPPORTED_ON_DESTINATION);
    expect(await lab.jobInfoText('dst')).toEqual({ error: UNSUPPORTED_ON_DESTINATION });
    expect(await lab.domState('src')).toEqual({ state: 'running', reason: 'booted' });
    expect(await lab.domState('dst')).toEqual({ state: 'paused', reason: 'migrating' });

    const abortedAt = Date.now();
    const abort = await lab.abort();
    expect(abort.exitCode).toBe(0);
    const result = await run.done;
    report(`aborted after ${during.stats.data_processed} bytes; virsh migrate exited ${Date.now() - abortedAt} ms after domjobabort; wall ${result.wallMs} ms`);
    expect(result.exitCode).toBe(1);
    expect(result.output).toContain("error: operation aborted: job 'migration out' canceled by client");
    expect(lab.guestSide).toBe('src');
    expect(await lab.domState('src')).toEqual({ state: 'running', reason: 'booted' });
    expect((await lab.jobInfo('src')).type).toBe(JOB_TYPE.none);
    expect((await lab.completedStats('src')).type).toBe(JOB_TYPE.none);
    await lab.waitForEvent('dst', /event 'lifecycle' for domain 'churn': Stopped Failed/, 10_000, dstEvents);
    expect(lab.events('src').slice(srcEvents).filter((e) => !/migration-iteration/.test(e))).toEqual([]);
  }, 60_000);

  test('with its port taken, the destination cannot listen: a source job starts, then the migration fails', async () => {
    const srcEvents = lab.events('src').length;
    const run = await lab.migrateWithPortTaken({ bandwidth: 40 });
    const during = await run.waitForJob(isActive, 20_000, 50);
    expect(during.stats.operation).toBe(JOB_OPERATION.migrationOut);
    while (!run.isDone()) {
      await run.sample();
      await sleep(50);
    }
    const result = await run.done;
    const activeMs = run.samples.filter((s) => isActive(s.info)).map((s) => s.atMs);
    report(`port taken: source job seen active from ${activeMs[0]} to ${activeMs.at(-1)} ms, data_processed ${during.stats.data_processed}; wall ${result.wallMs} ms; ${result.output.trim()}`);
    expect(result.exitCode).toBe(1);
    expect(result.output).toMatch(/Failed to find an available port: Address already in use/);
    expect(lab.guestSide).toBe('src');
    expect(await lab.domState('src')).toEqual({ state: 'running', reason: 'booted' });
    expect((await lab.completedStats('src')).type).toBe(JOB_TYPE.none);
    expect(lab.events('src').slice(srcEvents)).toEqual([]);
  }, 60_000);

  test('destroying the incoming domain mid-transfer fails the source job', async () => {
    const dstEvents = lab.events('dst').length;
    const run = await lab.migrate({ bandwidth: 40 });
    const during = await run.waitForJob(transferring, 20_000);
    const destroy = await lab.destroyIncoming();
    expect(destroy.exitCode).toBe(0);
    const result = await run.done;
    report(`destination destroyed after ${during.stats.data_processed} bytes; wall ${result.wallMs} ms; ${result.output.trim()}`);
    expect(result.exitCode).toBe(1);
    // Which side's failure virsh reports is a race: the source's job, the
    // destination's QEMU dying with its stream half read (libvirt passes that
    // error back through the finish step), or the finish step no longer
    // finding the destroyed domain at all.
    expect(result.output).toMatch(/error: operation failed: job 'migration out' failed|error: internal error: qemu unexpectedly closed the monitor: .*load of migration failed|error: Domain not found: no domain with matching name 'churn'/s);
    expect(await lab.domState('src')).toEqual({ state: 'running', reason: 'booted' });
    expect((await lab.completedStats('src')).type).toBe(JOB_TYPE.none);
    await lab.waitForEvent('dst', /Stopped Destroyed/, 10_000, dstEvents);
  }, 60_000);

  test('a paced migration at 40 MiB/s converges by itself: Completed on both sides, same figures', async () => {
    const srcEvents = lab.events('src').length;
    const dstEvents = lab.events('dst').length;
    const serialMark = lab.serialLog().length;
    // --timeout only as an upper bound: the guest's pace lets it converge first.
    const run = await lab.migrate({ bandwidth: 40, timeoutSeconds: 60 });
    await run.waitForJob((j) => j.error !== null || (j.stats.memory_dirty_rate ?? 0) > 0, 40_000, 50)
      .catch(() => undefined);
    const result = await run.done;
    expect(result.output.trim()).toBe('');
    expect(result.exitCode).toBe(0);
    expect(lab.guestSide).toBe('dst');

    const src = await lab.completedStats('src');
    const dst = await lab.completedStats('dst');
    const text = await lab.jobInfoText('src', { completed: true });
    const f = src.stats;
    report(`completed: wall ${result.wallMs} ms, time_elapsed ${f.time_elapsed} ms (dst ${dst.stats.time_elapsed}), downtime ${f.downtime} ms, setup_time ${f.setup_time} ms, ` +
      `data ${(f.data_processed / MiB).toFixed(1)} of ${(f.data_total / MiB).toFixed(1)} MiB, iterations ${f.memory_iteration}, ` +
      `max dirty rate seen ${Math.max(0, ...run.samples.map((s) => s.info.stats.memory_dirty_rate ?? 0))} pages/s in ${run.samples.length} samples`);
    expect(src.type).toBe(JOB_TYPE.completed);
    expect(f.operation).toBe(JOB_OPERATION.migrationOut);
    expect(dst.type).toBe(JOB_TYPE.completed);
    expect(dst.stats.operation).toBe(JOB_OPERATION.migrationIn);
    expect(f.time_elapsed).toBeGreaterThan(1000);
    expect(f.downtime).toBeGreaterThan(0);
    expect(f.downtime).toBeLessThan(5000);
    expect(f.data_processed).toBeGreaterThan(160 * MiB);
    expect(f.data_remaining).toBe(0);
    expect(f.memory_iteration).toBeGreaterThanOrEqual(2);
    for (const key of ['data_processed', 'data_total', 'downtime', 'memory_iteration', 'memory_normal']) {
      expect([key, dst.stats[key]]).toEqual([key, f[key]]);
    }
    expect(text['Job type']).toBe('Completed');
    expect(text.Operation).toBe('Outgoing migration');
    expect(text['Total downtime']).toMatch(/^\d+ ms$/);
    // --keep-completed: a second reader still sees them.
    expect((await lab.completedStats('src')).type).toBe(JOB_TYPE.completed);
    // A dirty rate above zero while it ran (reported from iteration 2 on).
    expect(run.samples.some((s) => (s.info.stats.memory_dirty_rate ?? 0) > 0)).toBe(true);

    expect(await lab.domState('src')).toEqual({ state: 'shut off', reason: 'migrated' });
    expect(await lab.domState('dst')).toEqual({ state: 'running', reason: 'migrated' });
    await lab.waitForEvent('src', /event 'job-completed' for domain 'churn':.*operation: 5/, 10_000, srcEvents);
    expect(lab.events('src').slice(srcEvents).some((e) => /Stopped Migrated/.test(e))).toBe(true);
    expect(lab.events('src').slice(srcEvents).filter((e) => /migration-iteration/.test(e)).length).toBe(f.memory_iteration);
    await lab.waitForEvent('dst', /Resumed Migrated/, 10_000, dstEvents);
    // The guest carries on where it was: its seconds counter continues on the destination.
    await lab.waitForSerial(/^churn: t=\d+ /m, 5000, serialMark);
  }, 90_000);

  test('hold: a migration iterates with a high dirty rate until released', async () => {
    const srcSide = lab.guestSide;
    const run = await lab.migrate({ bandwidth: 40, hold: true });
    const held = await run.waitForJob((j) => isActive(j) && (j.stats.memory_iteration ?? 0) >= 2 && (j.stats.memory_dirty_rate ?? 0) > 0, 40_000);
    const atHold = Date.now();
    await sleep(1000);
    const stillHeld = await run.sample();
    expect(isActive(stillHeld)).toBe(true);
    await lab.release();
    const result = await run.done;
    report(`held: iteration ${held.stats.memory_iteration} → ${stillHeld.stats.memory_iteration}, dirty rate ${held.stats.memory_dirty_rate} pages/s, ` +
      `expected downtime ${held.stats.downtime} ms; released → exit after ${Date.now() - atHold - 1000} ms; wall ${result.wallMs} ms`);
    expect(result.exitCode).toBe(0);
    expect(lab.guestSide).not.toBe(srcSide);
    const done = await lab.completedStats(run.from);
    expect(done.type).toBe(JOB_TYPE.completed);
    expect(done.stats.memory_iteration).toBeGreaterThanOrEqual(2);
    await lab.setGuestMode('calm');
    expect(lab.guestMode).toBe('calm');
  }, 90_000);
});
