// One deadline, the same length for every call, watched by one timer for
// all calls under way: a refresh puts each domain's query under its own
// deadline, and a timer armed and cleared per domain cost ~5 µs of main
// thread each (CPU profile of a 50-VM QEMU host), more than most steady
// queries, which make no libvirt call at all.
//
// Calls are queued in order of start, so their deadlines are in order too:
// the timer is armed for the oldest unsettled call only and re-armed for the
// next when it fires. It is left to fire when the queue empties (a refresh
// empties it every few domains, and arming again each time cost as much as
// the timers it replaces), then not re-armed: it runs at most once per
// deadline while calls are made. Unreferenced: a call under way on the
// libuv pool keeps the process alive by itself.

/** What a call that missed its deadline resolves with. */
export const MISSED: unique symbol = Symbol('missed its deadline');

/** A call under way: settled once it answers or misses its deadline. */
interface Watched {
  readonly dueAt: number;
  settled: boolean;
  readonly miss: () => void;
}

export class Deadlines {
  private readonly queue: Watched[] = [];
  /** queue[head] is the oldest call not yet dropped from the queue. */
  private head = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ms: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Settles as `work` does, or resolves with MISSED once `ms` have passed with no answer. */
  race<T>(work: Promise<T>): Promise<T | typeof MISSED> {
    return new Promise<T | typeof MISSED>((resolve, reject) => {
      const call: Watched = { dueAt: this.clock() + this.ms, settled: false, miss: () => resolve(MISSED) };
      this.queue.push(call);
      if (this.timer === null) this.arm(this.ms);
      work.then(
        (value) => {
          if (this.settle(call)) resolve(value);
        },
        (err: unknown) => {
          if (this.settle(call)) reject(err);
        },
      );
    });
  }

  /** Calls under way (for tests). */
  get pending(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (!this.queue[i].settled) n++;
    return n;
  }

  /** Marks `call` answered; false when it had missed its deadline already. */
  private settle(call: Watched): boolean {
    if (call.settled) return false;
    call.settled = true;
    this.dropSettled();
    return true;
  }

  private dropSettled(): void {
    while (this.head < this.queue.length && this.queue[this.head].settled) this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.expire(), Math.max(0, ms));
    this.timer.unref();
  }

  private expire(): void {
    this.timer = null;
    const now = this.clock();
    while (this.head < this.queue.length) {
      const call = this.queue[this.head];
      if (!call.settled) {
        if (call.dueAt > now) break;
        call.settled = true;
        call.miss();
      }
      this.head++;
    }
    this.dropSettled();
    if (this.head < this.queue.length && this.timer === null) this.arm(this.queue[this.head].dueAt - now);
  }
}
