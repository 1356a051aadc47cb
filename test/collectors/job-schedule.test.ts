// When a steady domain's job is asked: jobMayRun (something suggests a job)
// and JobPollSchedule (each domain's turn, spread over the period).
import { JobPollSchedule } from '../../src/collectors/job-schedule';
import { jobMayRun } from '../../src/collectors/libvirt-domain';
import type { DomainRecord } from '../../src/snapshot';

const RUNNING = 1;
const PAUSED = 3;
const BOOTED = 1;
const PAUSED_MIGRATION = 2;

function previous(state: number, reason: number, jobType: number | null): DomainRecord {
  return { state, reason, jobType, jobOperation: null } as unknown as DomainRecord;
}

describe('jobMayRun', () => {
  it('is false for a domain whose state is unchanged and which had no job', () => {
    expect(jobMayRun(previous(RUNNING, BOOTED, 0), RUNNING, BOOTED)).toBe(false);
    expect(jobMayRun(previous(PAUSED, 1, 0), PAUSED, 1)).toBe(false);
  });

  it('is true while a job was running at the last look, or the look failed', () => {
    expect(jobMayRun(previous(RUNNING, BOOTED, 2), RUNNING, BOOTED)).toBe(true);
    expect(jobMayRun(previous(RUNNING, BOOTED, null), RUNNING, BOOTED)).toBe(true);
  });

  it('is true when the state or its reason changed (a switchover pauses the domain)', () => {
    expect(jobMayRun(previous(RUNNING, BOOTED, 0), PAUSED, PAUSED_MIGRATION)).toBe(true);
    expect(jobMayRun(previous(RUNNING, BOOTED, 0), RUNNING, 10)).toBe(true);
  });
});

describe('JobPollSchedule', () => {
  const A = '00000000-aaaa-4000-8000-000000000001'; // turn after ~0 of the period
  const B = '7fffffff-bbbb-4000-8000-000000000002'; // after half of it
  const C = 'ffffffff-cccc-4000-8000-000000000003'; // after all of it

  function schedule(periodMs: number, announced = true): { s: JobPollSchedule; at: (ms: number) => void } {
    let now = 1_000_000;
    const s = new JobPollSchedule(periodMs, () => now, () => announced);
    return { s, at: (ms) => void (now = 1_000_000 + ms) };
  }

  it('makes a domain never asked due', () => {
    const { s } = schedule(30_000);
    expect(s.due(A)).toBe(true);
  });

  it('spreads the first turns of domains asked together over the period, then keeps each a period apart', () => {
    const { s, at } = schedule(30_000);
    for (const uuid of [A, B, C]) s.asked(uuid);
    at(1);
    expect([s.due(A), s.due(B), s.due(C)]).toEqual([true, false, false]);
    at(15_001);
    expect([s.due(A), s.due(B), s.due(C)]).toEqual([true, true, false]);
    at(30_000);
    expect(s.due(C)).toBe(true);
    // Asked at 30 s: next due at 60 s, whatever its first share was.
    s.asked(B);
    at(59_999);
    expect(s.due(B)).toBe(false);
    at(60_000);
    expect(s.due(B)).toBe(true);
  });

  it('makes every domain due every refresh when the period is 0 or migrations are not announced', () => {
    const zero = schedule(0);
    zero.s.asked(C);
    expect(zero.s.due(C)).toBe(true);
    const silent = schedule(30_000, false);
    silent.s.asked(C);
    expect(silent.s.due(C)).toBe(true);
  });

  it('forgets a domain: it is due again at once', () => {
    const { s } = schedule(30_000);
    s.asked(C);
    expect(s.due(C)).toBe(false);
    s.forget(C);
    expect(s.due(C)).toBe(true);
  });
});
