// libvirt's default event loop, driven from Node.
//
// libvirt delivers domain events, connection-close notifications and remote
// keepalives only while some thread runs virEventRunDefaultImpl(). Each call
// runs one iteration and blocks until something is dispatched, so it runs
// with koffi's `.async` form on a libuv pool thread and is re-issued when it
// returns. libvirt calls our callbacks on that pool thread; koffi relays them
// to the main thread (the pool thread waits meanwhile).
//
// A periodic timeout (virEventAddTimeout) makes every iteration return
// within PERIOD_MS even when nothing happens, so stop() can end the loop and
// the process can exit (platform-notes §6.2). stop() and barrier() also set
// the timeout to 0 ms to wake the loop at once: libvirt's GLib-based loop
// takes its lock only briefly in virEventUpdateTimeout and never while it
// runs a callback, so this is safe from the main thread.
//
// virEventRegisterDefaultImpl() must run before the first connection is
// opened (platform-notes §6.2); ensureRegistered() does that and is idempotent.

import koffi from 'koffi';
import { libvirt, type NativePtr } from './ffi';
import { installErrorHandler } from './errors';

const PERIOD_MS = 500;

class DefaultEventLoop {
  private registered = false;
  private users = 0;
  private timer = -1;
  private timerCallback: NativePtr | null = null;
  private running: Promise<void> | null = null;
  private stopRequested = false;
  private iterating = false;
  private iterationWaiters: Array<() => void> = [];

  /** Registers libvirt's default event implementation and the error handler (once per process). */
  ensureRegistered(): void {
    if (this.registered) return;
    installErrorHandler();
    if (libvirt().api.virEventRegisterDefaultImpl() < 0) {
      throw new Error('virEventRegisterDefaultImpl failed: libvirt cannot deliver events');
    }
    this.registered = true;
  }

  /** Starts the loop for one more user (a connection). */
  acquire(): void {
    this.ensureRegistered();
    this.users += 1;
    if (this.running === null) this.start();
  }

  /** Drops one user; the last one stops the loop and waits for it to end. */
  async release(): Promise<void> {
    if (this.users === 0) return;
    this.users -= 1;
    if (this.users === 0) await this.stop();
  }

  /**
   * Resolves once the iteration in progress (if any) has ended. After
   * deregistering a libvirt callback, awaiting this guarantees libvirt will
   * not call it again, so its koffi trampoline may be released.
   */
  async barrier(): Promise<void> {
    if (!this.iterating) return;
    const done = new Promise<void>((resolve) => this.iterationWaiters.push(resolve));
    this.wake();
    await done;
  }

  private start(): void {
    const { api, protos } = libvirt();
    // Nothing to do in the callback: firing at all is what ends the iteration.
    this.timerCallback = koffi.register(() => undefined, koffi.pointer(protos.timeoutCallback));
    this.timer = api.virEventAddTimeout(PERIOD_MS, this.timerCallback, null, null);
    this.stopRequested = false;
    this.running = this.run();
  }

  /**
   * Iterates until stopped. Each iteration is re-queued from the callback of
   * the last one, with no Promise per iteration: a 10,000-VM refresh wakes
   * the loop ~60,000 times (measured), one per RPC reply.
   */
  private run(): Promise<void> {
    const { api } = libvirt();
    this.iterating = true;
    return new Promise<void>((finished) => {
      const finish = (): void => {
        this.iterating = false;
        const waiters = this.iterationWaiters;
        this.iterationWaiters = [];
        for (const resolve of waiters) resolve();
        finished();
      };
      const iterate = (): void => {
        if (this.stopRequested) return finish();
        try {
          api.virEventRunDefaultImpl.async(afterIteration);
        } catch {
          // koffi could not queue the call (its async queue is full): events
          // stop, collection still works.
          finish();
        }
      };
      const afterIteration = (err: unknown, rc: number): void => {
        // rc -1 only when no event implementation is registered: nothing to loop on.
        if (err || rc < 0) return finish();
        if (this.iterationWaiters.length > 0) {
          const waiters = this.iterationWaiters;
          this.iterationWaiters = [];
          if (!this.stopRequested) api.virEventUpdateTimeout(this.timer, PERIOD_MS);
          for (const resolve of waiters) resolve();
        }
        iterate();
      };
      iterate();
    });
  }

  private wake(): void {
    if (this.timer >= 0) libvirt().api.virEventUpdateTimeout(this.timer, 0);
  }

  private async stop(): Promise<void> {
    const running = this.running;
    if (running === null) return;
    this.stopRequested = true;
    this.wake();
    await running;
    const { api } = libvirt();
    api.virEventRemoveTimeout(this.timer);
    this.timer = -1;
    // GLib frees a removed timeout from an idle callback in a later
    // iteration; the timer callback is never called again after removal, so
    // the trampoline can go now.
    if (this.timerCallback !== null) koffi.unregister(this.timerCallback);
    this.timerCallback = null;
    this.running = null;
  }
}

/** The process-wide loop: libvirt has exactly one default event implementation. */
export const eventLoop = new DefaultEventLoop();
