// Domain lifecycle, migration-iteration and job-completed events, the events
// that say a domain's configuration or devices changed, and the connection
// close callback, for one LibvirtCollector.
//
// libvirt calls these from the thread running its event loop (a libuv pool
// thread, see event-loop.ts); koffi relays each call to the main thread, so
// the listeners run as ordinary JavaScript. Pointers libvirt passes (the
// domain, the typed parameters) are valid only during the callback, so
// everything is decoded before the listeners see it.

import koffi from 'koffi';
import type { AgentxLog } from '../../agentx';
import {
  deregisterDomainEvent,
  domainUuid,
  registerCloseCallback,
  registerDomainEvent,
  unregisterCloseCallback,
} from './calls';
import { eventLoop } from './event-loop';
import { DomainEventId, libvirt, type ConnectPtr, type DomainPtr, type NativePtr } from './ffi';
import { decodeNativeTypedParams, type TypedParamValue } from './typed-params';

/** `event` is virDomainEventType (0 defined … 8 crashed), `detail` its per-type reason. */
export type LifecycleListener = (uuid: string, event: number, detail: number) => void;
/** `params` are the job statistics (VIR_DOMAIN_JOB_*), e.g. "operation", "time_elapsed". */
export type JobCompletedListener = (uuid: string, params: ReadonlyMap<string, TypedParamValue>) => void;
/** An outgoing migration began pass `iteration` over guest memory (source host only). */
export type MigrationIterationListener = (uuid: string, iteration: number) => void;
/** The domain's configuration or devices changed; `what` is the event's name (e.g. "device-added"). */
export type ConfigChangeListener = (uuid: string, what: string) => void;

/**
 * Events after which a domain's XML, vCPU pinning or devices may differ:
 * a device plugged or unplugged, a tunable (pinning, vCPUs) or metadata
 * changed, a medium changed or ejected, a block job pivoted to another
 * image, a memory device resized. Lifecycle events (define, start, ...) say
 * so too and are handled on their own.
 */
const CONFIG_EVENTS: readonly [number, string][] = [
  [DomainEventId.DEVICE_ADDED, 'device-added'],
  [DomainEventId.DEVICE_REMOVED, 'device-removed'],
  [DomainEventId.TUNABLE, 'tunable'],
  [DomainEventId.METADATA_CHANGE, 'metadata-change'],
  [DomainEventId.DISK_CHANGE, 'disk-change'],
  [DomainEventId.TRAY_CHANGE, 'tray-change'],
  [DomainEventId.BLOCK_JOB_2, 'block-job-2'],
  [DomainEventId.MEMORY_DEVICE_SIZE_CHANGE, 'memory-device-size-change'],
];

/** virConnectCloseReason. */
const CLOSE_REASONS = ['error', 'end of file', 'keepalive timeout', 'client closed'];

interface Trampolines {
  lifecycle: NativePtr;
  jobCompleted: NativePtr;
  migrationIteration: NativePtr;
  /** One per CONFIG_EVENTS entry, in its order. */
  configChange: NativePtr[];
  close: NativePtr;
}

interface Registration {
  lifecycleId: number | null;
  jobCompletedId: number | null;
  migrationIterationId: number | null;
  configChangeIds: number[];
  closeRegistered: boolean;
}

export class DomainEvents {
  private readonly lifecycle = new Set<LifecycleListener>();
  private readonly jobCompleted = new Set<JobCompletedListener>();
  private readonly migrationIteration = new Set<MigrationIterationListener>();
  private readonly configChange = new Set<ConfigChangeListener>();
  private trampolines: Trampolines | null = null;
  private readonly registrations = new Map<ConnectPtr, Registration>();

  constructor(
    /** Called when libvirt reports the connection closed. */
    private readonly onClose: (conn: ConnectPtr, why: string) => void,
    private readonly log: AgentxLog,
  ) {}

  onLifecycle(cb: LifecycleListener): () => void {
    this.lifecycle.add(cb);
    return () => void this.lifecycle.delete(cb);
  }

  onJobCompleted(cb: JobCompletedListener): () => void {
    this.jobCompleted.add(cb);
    return () => void this.jobCompleted.delete(cb);
  }

  onMigrationIteration(cb: MigrationIterationListener): () => void {
    this.migrationIteration.add(cb);
    return () => void this.migrationIteration.delete(cb);
  }

  onConfigChange(cb: ConfigChangeListener): () => void {
    this.configChange.add(cb);
    return () => void this.configChange.delete(cb);
  }

  /** Registers all callbacks on a new connection. Only the lifecycle registration is required. */
  async subscribe(conn: ConnectPtr): Promise<void> {
    const t = this.ensureTrampolines();
    const reg: Registration = {
      lifecycleId: null, jobCompletedId: null, migrationIterationId: null, configChangeIds: [], closeRegistered: false,
    };
    this.registrations.set(conn, reg);
    reg.lifecycleId = await registerDomainEvent(conn, DomainEventId.LIFECYCLE, t.lifecycle);
    try {
      reg.jobCompletedId = await registerDomainEvent(conn, DomainEventId.JOB_COMPLETED, t.jobCompleted);
    } catch (err) {
      this.log('debug', `job-completed events unavailable: ${(err as Error).message}`);
    }
    try {
      reg.migrationIterationId = await registerDomainEvent(conn, DomainEventId.MIGRATION_ITERATION, t.migrationIteration);
    } catch (err) {
      this.log('debug', `migration-iteration events unavailable: ${(err as Error).message}`);
    }
    const unavailable: string[] = [];
    for (const [i, [eventId, name]] of CONFIG_EVENTS.entries()) {
      try {
        reg.configChangeIds.push(await registerDomainEvent(conn, eventId, t.configChange[i]));
      } catch {
        unavailable.push(name);
      }
    }
    if (unavailable.length > 0) {
      // The periodic resync still catches what these would have said.
      this.log('debug', `domain events unavailable: ${unavailable.join(', ')}; changes they report wait for the next resync`);
    }
    try {
      await registerCloseCallback(conn, t.close);
      reg.closeRegistered = true;
    } catch (err) {
      // Only remote connections can close under us; in-process drivers need no callback.
      this.log('debug', `close callback unavailable: ${(err as Error).message}`);
    }
  }

  /**
   * Whether libvirt tells this connection of each pass of an outgoing
   * migration (QEMU sends the first as the migration starts).
   */
  announcesMigrations(conn: ConnectPtr): boolean {
    return (this.registrations.get(conn)?.migrationIterationId ?? null) !== null;
  }

  /** Deregisters from a connection (errors ignored: the connection may already be dead). */
  async unsubscribe(conn: ConnectPtr): Promise<void> {
    const reg = this.registrations.get(conn);
    if (reg === undefined || this.trampolines === null) return;
    this.registrations.delete(conn);
    const ignore = (): undefined => undefined;
    if (reg.lifecycleId !== null) await deregisterDomainEvent(conn, reg.lifecycleId).catch(ignore);
    if (reg.jobCompletedId !== null) await deregisterDomainEvent(conn, reg.jobCompletedId).catch(ignore);
    if (reg.migrationIterationId !== null) await deregisterDomainEvent(conn, reg.migrationIterationId).catch(ignore);
    for (const id of reg.configChangeIds) await deregisterDomainEvent(conn, id).catch(ignore);
    if (reg.closeRegistered) await unregisterCloseCallback(conn, this.trampolines.close).catch(ignore);
  }

  /** Frees the koffi trampolines once libvirt can no longer call them. */
  async releaseCallbacks(): Promise<void> {
    if (this.trampolines === null || this.registrations.size > 0) return;
    // An event dispatch already under way finishes within the current
    // event-loop iteration; after that the deregistrations are in force.
    await eventLoop.barrier();
    const { configChange, ...single } = this.trampolines;
    for (const p of [...Object.values(single), ...configChange]) koffi.unregister(p);
    this.trampolines = null;
  }

  private ensureTrampolines(): Trampolines {
    if (this.trampolines !== null) return this.trampolines;
    const { protos } = libvirt();
    this.trampolines = {
      lifecycle: koffi.register(
        (_conn: NativePtr, dom: NativePtr, event: number, detail: number) => this.emitLifecycle(dom as DomainPtr, event, detail),
        koffi.pointer(protos.lifecycleCallback),
      ),
      jobCompleted: koffi.register(
        (_conn: NativePtr, dom: NativePtr, params: NativePtr | null, nparams: number) =>
          this.emitJobCompleted(dom as DomainPtr, params, nparams),
        koffi.pointer(protos.jobCompletedCallback),
      ),
      migrationIteration: koffi.register(
        (_conn: NativePtr, dom: NativePtr, iteration: number) => this.emitMigrationIteration(dom as DomainPtr, iteration),
        koffi.pointer(protos.migrationIterationCallback),
      ),
      configChange: CONFIG_EVENTS.map(([, name]) =>
        koffi.register((_conn: NativePtr, dom: NativePtr) => this.emitConfigChange(dom as DomainPtr, name), koffi.pointer(protos.domainCallback)),
      ),
      close: koffi.register(
        (conn: NativePtr, reason: number) => this.onClose(conn as ConnectPtr, CLOSE_REASONS[reason] ?? `reason ${reason}`),
        koffi.pointer(protos.closeFunc),
      ),
    };
    return this.trampolines;
  }

  private emitLifecycle(dom: DomainPtr, event: number, detail: number): void {
    const uuid = domainUuid(dom);
    for (const cb of this.lifecycle) this.safely(() => cb(uuid, event, detail));
  }

  private emitJobCompleted(dom: DomainPtr, params: NativePtr | null, nparams: number): void {
    const uuid = domainUuid(dom);
    const decoded = decodeNativeTypedParams(params, nparams);
    for (const cb of this.jobCompleted) this.safely(() => cb(uuid, decoded));
  }

  private emitMigrationIteration(dom: DomainPtr, iteration: number): void {
    const uuid = domainUuid(dom);
    for (const cb of this.migrationIteration) this.safely(() => cb(uuid, iteration));
  }

  private emitConfigChange(dom: DomainPtr, what: string): void {
    const uuid = domainUuid(dom);
    for (const cb of this.configChange) this.safely(() => cb(uuid, what));
  }

  /** A throwing listener must not unwind into libvirt's dispatch. */
  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log('error', `domain event listener failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
    }
  }
}
