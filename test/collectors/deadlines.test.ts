import { Deadlines, MISSED } from '../../src/collectors/deadlines';

/** A promise settled by hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What `p` has settled with so far, after pending callbacks ran. */
async function stateOf<T>(p: Promise<T>): Promise<{ value: T | undefined; error: unknown; settled: boolean }> {
  const state = { value: undefined as T | undefined, error: undefined as unknown, settled: false };
  p.then((v) => Object.assign(state, { value: v, settled: true }), (e: unknown) => Object.assign(state, { error: e, settled: true }));
  await jest.advanceTimersByTimeAsync(0);
  return state;
}

describe('Deadlines', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('passes on an answer or a failure in time, with one timer that ends at the deadline', async () => {
    const deadlines = new Deadlines(100, () => Date.now());
    const a = deferred<string>();
    const b = deferred<string>();
    const ra = deadlines.race(a.promise);
    const rbFailure = deadlines.race(b.promise).catch((e: unknown) => e);
    expect(jest.getTimerCount()).toBe(1);
    a.resolve('a');
    b.reject(new Error('b failed'));
    expect(await stateOf(ra)).toEqual({ value: 'a', error: undefined, settled: true });
    expect(await rbFailure).toEqual(new Error('b failed'));
    expect(deadlines.pending).toBe(0);
    // Not re-armed: nothing is under way.
    await deadlines.race(Promise.resolve('c'));
    expect(jest.getTimerCount()).toBe(1);
    await jest.advanceTimersByTimeAsync(100);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('resolves a call with no answer with MISSED at its own deadline, and ignores its late answer', async () => {
    const deadlines = new Deadlines(100, () => Date.now());
    const first = deferred<string>();
    const quick = deferred<string>();
    const second = deferred<string>();
    const r1 = deadlines.race(first.promise);
    const rq = deadlines.race(quick.promise);
    await jest.advanceTimersByTimeAsync(30);
    const r2 = deadlines.race(second.promise);
    quick.resolve('quick');
    expect((await stateOf(rq)).value).toBe('quick');

    await jest.advanceTimersByTimeAsync(69);
    expect((await stateOf(r1)).settled).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    expect((await stateOf(r1)).value).toBe(MISSED);
    expect((await stateOf(r2)).settled).toBe(false);
    expect(deadlines.pending).toBe(1);

    first.resolve('too late');
    await jest.advanceTimersByTimeAsync(29);
    expect((await stateOf(r2)).settled).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    expect((await stateOf(r2)).value).toBe(MISSED);
    expect((await stateOf(r1)).value).toBe(MISSED);
    expect(deadlines.pending).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('watches calls started after the queue emptied', async () => {
    const deadlines = new Deadlines(50, () => Date.now());
    await deadlines.race(Promise.resolve(1));
    await jest.advanceTimersByTimeAsync(50);
    expect(jest.getTimerCount()).toBe(0);
    const hung = deadlines.race(new Promise<number>(() => undefined));
    await jest.advanceTimersByTimeAsync(50);
    expect((await stateOf(hung)).value).toBe(MISSED);
  });
});
