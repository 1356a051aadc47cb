// When each domain's current job is asked although nothing suggests one
// runs: at least every `periodMs`, the domains' turns spread over the period
// so that a refresh asks about the same share of them each time rather than
// all of them at once. Where libvirt announces no migration (no
// migration-iteration events on the connection) or periodMs is 0, every
// domain is due every refresh.
import type { JobSchedule } from './libvirt-domain';

export class JobPollSchedule implements JobSchedule {
  /** UUID → when its job is next due (ms, the clock's). */
  private readonly next = new Map<string, number>();

  constructor(
    private readonly periodMs: number,
    private readonly clock: () => number,
    /** False where migrations are not announced by events: then the turn is every refresh. */
    private readonly announced: () => boolean,
  ) {}

  due(uuid: string): boolean {
    if (this.periodMs <= 0 || !this.announced()) return true;
    const at = this.next.get(uuid);
    return at === undefined || this.clock() >= at;
  }

  asked(uuid: string): void {
    const now = this.clock();
    // A domain's first turn comes after a share of the period its UUID picks,
    // so that domains first read together are not all due together again.
    const wait = this.next.has(uuid) ? this.periodMs : this.periodMs * spread(uuid);
    this.next.set(uuid, now + wait);
  }

  forget(uuid: string): void {
    this.next.delete(uuid);
  }
}

/** A fraction in (0, 1] from a UUID's first 8 hex digits (libvirt's UUIDs are random). */
function spread(uuid: string): number {
  const n = Number.parseInt(uuid.slice(0, 8), 16);
  return Number.isNaN(n) ? 1 : (n + 1) / 0x1_0000_0000;
}
