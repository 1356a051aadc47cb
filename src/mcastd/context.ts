// What the roles of vmm-mcastd (source, destination, relay server) share:
// configuration, the log, the state they publish, and the host's plumbing.
import type { CollectorLog } from '../collectors/paths';
import type { BridgeHost } from './bridge-ports';
import type { McastdConfig } from './config';
import type { ProxyJoins } from './proxy-joins';
import type { McastdState } from './state-file';
import type { SignallingEndpoint } from './signalling';
import { StreamWatch } from './stream-watch';
import { Resender } from './relay';

/** The signalling the roles use: authenticated requests with retries, and unacknowledged datagrams. */
export type Signalling = SignallingEndpoint;

export interface AgentContext {
  config: McastdConfig;
  log: CollectorLog;
  state: McastdState;
  /** Call after every change of `state`: it is written out (atomically, coalesced). */
  stateChanged(): void;
  bridges: BridgeHost;
  joins: ProxyJoins;
  signalling: Signalling;
  streams: StreamWatches;
  resenders: Resenders;
}

/** Silence after which a stream that was arriving counts as stopped. */
const STREAM_SILENCE_MS = 1000;

/** One StreamWatch per bridge, opened when first needed. */
export class StreamWatches {
  private readonly byBridge = new Map<string, StreamWatch>();
  private readonly arrivalListeners = new Set<(bridge: string, group: string, source: string) => void>();

  constructor(private readonly log: CollectorLog) {}

  on(bridge: string): StreamWatch {
    let w = this.byBridge.get(bridge);
    if (w === undefined) {
      w = new StreamWatch(bridge, {
        log: this.log,
        silenceMs: STREAM_SILENCE_MS,
        onArrival: (a) => { for (const l of this.arrivalListeners) l(bridge, a.group, a.source); },
      });
      this.byBridge.set(bridge, w);
    }
    return w;
  }

  /**
   * Unwatches `group` on `bridge`, and closes that bridge's watch once it
   * watches nothing: an idle capture would still wake for every multicast
   * datagram on a busy bridge.
   */
  unwatch(bridge: string, group: string): void {
    const w = this.byBridge.get(bridge);
    if (w === undefined) return;
    w.unwatch(group);
    if (w.watching > 0) return;
    this.byBridge.delete(bridge);
    void w.close();
  }

  /** Called for a group's first datagram from the network (and the first after a silence). */
  onArrival(listener: (bridge: string, group: string, source: string) => void): void {
    this.arrivalListeners.add(listener);
  }

  async close(): Promise<void> {
    const all = [...this.byBridge.values()];
    this.byBridge.clear();
    await Promise.all(all.map((w) => w.close()));
  }
}

/** One Resender per bridge. */
export class Resenders {
  private readonly byBridge = new Map<string, Promise<Resender>>();

  constructor(private readonly log: CollectorLog) {}

  on(bridge: string): Promise<Resender> {
    let r = this.byBridge.get(bridge);
    if (r === undefined) {
      r = Resender.open(bridge, this.log);
      this.byBridge.set(bridge, r);
      r.catch(() => this.byBridge.delete(bridge));
    }
    return r;
  }

  async close(): Promise<void> {
    const all = [...this.byBridge.values()];
    this.byBridge.clear();
    await Promise.all(all.map(async (r) => (await r.catch(() => null))?.close()));
  }
}
