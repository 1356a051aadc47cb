// "Has group G started arriving on interface I from the network?" The
// destination agent proxy-joins a migrating VM's groups on its bridge and
// waits here for each stream; one that does not come within its timeout
// needs a relay. Later, a group that stops arriving (relay needed again, or
// the stream ended) is reported after a configured silence.
//
// "From the network" excludes what this host sends: a capture reports our own
// re-sent copies as outgoing, and a packet whose source is one of this host's
// addresses is ours too, however it came back.
import * as os from 'node:os';
import type { CollectorLog } from '../collectors/paths';
import { canonicalGroup, CapturedDatagram, MulticastCapture } from './capture';

export interface StreamArrival {
  group: string;
  /** process.hrtime.bigint() when the first datagram was read. */
  at: bigint;
  source: string;
  port: number;
}

export interface StreamSilence {
  group: string;
  /** When the last datagram was read (hrtime ns). */
  lastAt: bigint;
  /** How long it had been silent when this was noticed. */
  silentMs: number;
}

export interface StreamWatchOptions {
  log: CollectorLog;
  /** A group that was arriving and has had nothing for this long is reported silent. */
  silenceMs: number;
  /** A group's first datagram from the network, and the first one after a silence. */
  onArrival?: (arrival: StreamArrival) => void;
  onSilence?: (silence: StreamSilence) => void;
  /** Passed to the capture (default 4 MiB). */
  receiveBufferBytes?: number;
}

interface Watched {
  /** The arrival since the last silence, or null while waiting. */
  arrival: StreamArrival | null;
  lastAt: bigint;
  /** Pending waitForArrival calls: an arrival, or null when the group is unwatched. */
  waiters: Array<(arrival: StreamArrival | null) => void>;
}

/** How often the own-address list is re-read at most (addresses change rarely). */
const OWN_ADDRESSES_NS = 1_000_000_000n;

/** Watches groups on one interface. Needs CAP_NET_RAW. */
export class StreamWatch {
  private readonly capture: MulticastCapture;
  private readonly watched = new Map<string, Watched>();
  private readonly silenceNs: bigint;
  private readonly timer: NodeJS.Timeout;
  private ownAddresses = new Set<string>();
  private ownAddressesAt = -OWN_ADDRESSES_NS;
  private readonly log: CollectorLog;

  constructor(readonly iface: string, private readonly options: StreamWatchOptions) {
    this.log = options.log;
    this.silenceNs = BigInt(Math.round(options.silenceMs * 1e6));
    this.capture = new MulticastCapture(iface, (d) => this.received(d), { log: options.log, receiveBufferBytes: options.receiveBufferBytes });
    // Silence is noticed within a quarter of its length (10–250 ms).
    const checkMs = Math.max(10, Math.min(250, Math.floor(options.silenceMs / 4)));
    this.timer = setInterval(() => this.checkSilence(), checkMs);
    this.timer.unref();
  }

  /** Starts watching `group` (waiting for its first datagram); returns its canonical form. */
  watch(group: string): string {
    const canonical = this.capture.add(group);
    if (!this.watched.has(canonical)) this.watched.set(canonical, { arrival: null, lastAt: 0n, waiters: [] });
    return canonical;
  }

  /** Stops watching; a pending waitForArrival resolves null. */
  unwatch(group: string): void {
    const canonical = canonicalGroup(group);
    const w = this.watched.get(canonical);
    if (w === undefined) return;
    this.watched.delete(canonical);
    this.capture.remove(canonical);
    for (const wake of [...w.waiters]) wake(null);
  }

  /** How many groups are watched (none: the watch can be closed). */
  get watching(): number {
    return this.watched.size;
  }

  /** The group's arrival since its last silence, or null (not arriving, or not watched). */
  arrival(group: string): StreamArrival | null {
    return this.watched.get(canonicalGroup(group))?.arrival ?? null;
  }

  /**
   * Watches `group` if not yet, and resolves with its arrival — at once if it
   * is arriving — or null after `timeoutMs` without one (or when unwatched).
   */
  waitForArrival(group: string, timeoutMs: number): Promise<StreamArrival | null> {
    const canonical = this.watch(group);
    const w = this.watched.get(canonical) as Watched;
    if (w.arrival !== null) return Promise.resolve(w.arrival);
    return new Promise((resolve) => {
      const wake = (arrival: StreamArrival | null): void => {
        clearTimeout(timer);
        const i = w.waiters.indexOf(wake);
        if (i >= 0) w.waiters.splice(i, 1);
        resolve(arrival);
      };
      const timer = setTimeout(() => wake(null), timeoutMs);
      w.waiters.push(wake);
    });
  }

  private received(d: CapturedDatagram): void {
    if (d.outgoing || this.isOwnAddress(d.source, d.at)) return;
    const w = this.watched.get(d.group);
    if (w === undefined) return;
    w.lastAt = d.at;
    if (w.arrival !== null) return;
    const arrival: StreamArrival = { group: d.group, at: d.at, source: d.source, port: d.port };
    w.arrival = arrival;
    this.log('debug', `stream watch: ${d.group} arrives on ${this.iface} from ${d.source} (port ${d.port})`);
    for (const wake of [...w.waiters]) wake(arrival);
    this.options.onArrival?.(arrival);
  }

  private isOwnAddress(source: string, now: bigint): boolean {
    if (now - this.ownAddressesAt >= OWN_ADDRESSES_NS) {
      this.ownAddressesAt = now;
      this.ownAddresses = new Set(Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)));
    }
    return this.ownAddresses.has(source);
  }

  private checkSilence(): void {
    const now = process.hrtime.bigint();
    for (const [group, w] of this.watched) {
      if (w.arrival === null || now - w.lastAt < this.silenceNs) continue;
      w.arrival = null;
      const silence: StreamSilence = { group, lastAt: w.lastAt, silentMs: Number(now - w.lastAt) / 1e6 };
      this.log('debug', `stream watch: ${group} on ${this.iface} silent for ${Math.round(silence.silentMs)} ms`);
      this.options.onSilence?.(silence);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const group of [...this.watched.keys()]) this.unwatch(group);
    await this.capture.close();
  }
}
