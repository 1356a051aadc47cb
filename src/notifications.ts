// VM-MIB notifications (RFC 7666 §4, Appendix A) from the difference between
// two refreshes. Pure: it returns what to send; the agent sends it. Per-VM
// notifications carry the *previous* vmOperState, as the MIB describes; bulk
// ones carry one vmAffectedVMs bitmap per kind of change.
import { Oid, VarBind } from '../agentx';
import type { MigrationEvent } from './migration-tracker';
import type { MigrationState } from './snapshot';
import { migrationRow } from './model/vmm-agentx-mib';
import * as X from './model/vmm-agentx-oids';
import { adminString, integer, octets, uuidBytes } from './model/values';
import * as O from './model/vm-mib-oids';
import type { VmRow } from './model/vm-mib';
import { operState } from './model/vm-state';

export interface VmStateRecord {
  vmIndex: number;
  uuid: string;
  name: string;
  operState: O.OperState;
  persistent: O.Persistent;
}

export interface Notification {
  trapOid: Oid;
  varbinds: VarBind[];
}

/** New oper state → (per-VM, bulk) notification; states without one are absent. */
const BY_STATE = new Map<O.OperState, [O.VmNotification, O.VmNotification]>([
  [O.OperState.Running, [O.VmNotification.Running, O.VmNotification.BulkRunning]],
  [O.OperState.Shuttingdown, [O.VmNotification.Shuttingdown, O.VmNotification.BulkShuttingdown]],
  [O.OperState.Shutdown, [O.VmNotification.Shutdown, O.VmNotification.BulkShutdown]],
  [O.OperState.Paused, [O.VmNotification.Paused, O.VmNotification.BulkPaused]],
  [O.OperState.Suspending, [O.VmNotification.Suspending, O.VmNotification.BulkSuspending]],
  [O.OperState.Suspended, [O.VmNotification.Suspended, O.VmNotification.BulkSuspended]],
  [O.OperState.Resuming, [O.VmNotification.Resuming, O.VmNotification.BulkResuming]],
  [O.OperState.Migrating, [O.VmNotification.Migrating, O.VmNotification.BulkMigrating]],
  [O.OperState.Crashed, [O.VmNotification.Crashed, O.VmNotification.BulkCrashed]],
]);

export interface NotificationSettings {
  perVm: boolean;
  bulk: boolean;
}

/** One refresh's notifications: the per-VM ones (which the storm guard may hold back) and the bulk ones. */
export interface NotificationBatch {
  perVm: Notification[];
  bulk: Notification[];
}

export function notificationsFor(
  before: ReadonlyMap<string, VmStateRecord>,
  after: ReadonlyMap<string, VmStateRecord>,
  settings: NotificationSettings,
): NotificationBatch {
  const perVm: Notification[] = [];
  const bulk = new Map<O.VmNotification, number[]>();
  const emit = (kind: [O.VmNotification, O.VmNotification], vm: VmStateRecord, previous: O.OperState, extra: VarBind[] = []): void => {
    if (settings.perVm) perVm.push({ trapOid: [...O.vmNotifications, kind[0]], varbinds: [...vmVarbinds(vm, previous), ...extra] });
    const list = bulk.get(kind[1]) ?? [];
    list.push(vm.vmIndex);
    bulk.set(kind[1], list);
  };

  for (const [uuid, vm] of after) {
    const old = before.get(uuid);
    // A new row has no previous state: a VM that appears running was started
    // (from shutdown); one that appears stopped was just defined (from preparing).
    const previous = old ? old.operState : vm.operState === O.OperState.Running ? O.OperState.Shutdown : O.OperState.Preparing;
    if (old && old.operState === vm.operState) continue;
    // unknown(1) means we lost libvirt, not that the VM changed.
    if (vm.operState === O.OperState.Unknown || previous === O.OperState.Unknown) continue;
    const kind = BY_STATE.get(vm.operState);
    if (kind) emit(kind, vm, previous);
  }
  for (const [uuid, vm] of before) {
    if (after.has(uuid)) continue;
    const persistent: VarBind = { oid: [...O.vmEntry, O.VmColumn.Persistent, vm.vmIndex], ...integer(vm.persistent) };
    emit([O.VmNotification.Deleted, O.VmNotification.BulkDeleted], vm, vm.operState, [persistent]);
  }

  const bulkOut: Notification[] = [];
  if (settings.bulk) {
    for (const [kind, indexes] of [...bulk].sort((a, b) => a[0] - b[0])) {
      bulkOut.push({
        trapOid: [...O.vmNotifications, kind],
        varbinds: [{ oid: [...O.vmAffectedVMs, 0], ...octets(vmListBitmap(indexes)) }],
      });
    }
  }
  return { perVm, bulk: bulkOut };
}

function vmVarbinds(vm: VmStateRecord, previous: O.OperState): VarBind[] {
  const col = (c: O.VmColumn): Oid => [...O.vmEntry, c, vm.vmIndex];
  return [
    { oid: col(O.VmColumn.Name), ...adminString(vm.name) },
    { oid: col(O.VmColumn.UUID), ...octets(uuidBytes(vm.uuid)) },
    { oid: col(O.VmColumn.OperState), ...integer(previous) },
  ];
}

/**
 * VirtualMachineList: octet 1 covers vmIndex 1–8, octet 2 covers 9–16, ...;
 * within an octet the most significant bit is the lowest vmIndex.
 */
export function vmListBitmap(indexes: readonly number[]): Buffer {
  const max = indexes.reduce((m, i) => (i > m ? i : m), 0);
  const bytes = Buffer.alloc(Math.ceil(max / 8));
  for (const i of indexes) bytes[(i - 1) >> 3] |= 0x80 >> ((i - 1) & 7);
  return bytes;
}

/**
 * The states notifications are computed against. Only fresh data moves it:
 * while libvirt is away the last known states stand, so a VM that changed
 * meanwhile is notified (from its last known state) once libvirt is back.
 * The first refresh only sets it: nothing is sent for the agent's start.
 */
export class NotificationBaseline {
  private states: Map<string, VmStateRecord> | null = null;

  /** What changed since the last call, as notifications; the rows become the new baseline. */
  next(rows: readonly VmRow[], settings: NotificationSettings): NotificationBatch {
    const before = this.states;
    const states = new Map<string, VmStateRecord>();
    for (const { domain: d, indexes: i } of rows) {
      const state = operState(d);
      const persistent = d.persistent === null ? O.Persistent.Unknown : d.persistent ? O.Persistent.Persistent : O.Persistent.Transient;
      // An unchanged VM keeps its record: the baseline lives a whole refresh
      // interval, so new records would all be promoted to the old generation.
      const old = before?.get(d.uuid);
      const same = old !== undefined && old.vmIndex === i.vmIndex && old.name === d.name && old.operState === state &&
        old.persistent === persistent;
      states.set(d.uuid, same ? old : { vmIndex: i.vmIndex, uuid: d.uuid, name: d.name, operState: state, persistent });
    }
    this.states = states;
    return before === null ? { perVm: [], bulk: [] } : notificationsFor(before, states, settings);
  }
}

/**
 * VMM-AGENTX-MIB's migration notifications for the tracker's events. Their
 * objects carry the values the migration table serves for the same VM.
 */
export function migrationNotifications(
  events: readonly MigrationEvent[],
  rows: ReadonlyMap<string, VmRow>,
  states: ReadonlyMap<string, MigrationState>,
  uptimeTicks: number,
  now: number,
): Notification[] {
  const out: Notification[] = [];
  for (const e of events) {
    const row = rows.get(e.uuid);
    if (row === undefined) continue;
    const vmIndex = row.indexes.vmIndex;
    const values = migrationRow(states.get(e.uuid), uptimeTicks, now);
    const col = (c: X.MigrationColumn): VarBind => ({ oid: [...X.vmmMigrationEntry, c, vmIndex], ...values[c - 1] });
    const vm: VarBind[] = [
      { oid: [...O.vmEntry, O.VmColumn.Name, vmIndex], ...adminString(row.domain.name) },
      { oid: [...O.vmEntry, O.VmColumn.UUID, vmIndex], ...octets(uuidBytes(row.domain.uuid)) },
    ];
    const C = X.MigrationColumn;
    if (e.kind === 'started') {
      // The table may already show the job over (it was short): the event's own direction is what started.
      const direction: VarBind = { oid: [...X.vmmMigrationEntry, C.Direction, vmIndex],
        ...integer(e.direction === 'outgoing' ? X.MigrationDirectionValue.Outgoing : X.MigrationDirectionValue.Incoming) };
      out.push({ trapOid: [...X.vmmNotifications, X.VmmNotification.MigrationStarted], varbinds: [...vm, direction, col(C.Peer)] });
    } else if (e.last.result === 'completed') {
      out.push({
        trapOid: [...X.vmmNotifications, X.VmmNotification.MigrationCompleted],
        varbinds: [...vm, col(C.LastDirection), col(C.LastTotalTime), col(C.LastDowntime), col(C.LastDataTransferred)],
      });
    } else {
      out.push({
        trapOid: [...X.vmmNotifications, X.VmmNotification.MigrationFailed],
        varbinds: [...vm, col(C.LastDirection), col(C.LastResult), col(C.LastTotalTime)],
      });
    }
  }
  return out;
}

/**
 * The storm guard: above `limitPerSecond` per-VM notifications within one
 * second, the rest of that second sends only the bulk ones. One line is
 * logged when a storm starts, and one when a notification comes after a
 * second without any held back.
 */
export class NotificationStormGuard {
  private windowStart = -Infinity;
  private sentInWindow = 0;
  private heldInWindow = false;
  private storming = false;
  private held = 0;

  constructor(
    private readonly limitPerSecond: number,
    private readonly log: (level: 'info' | 'warn', message: string) => void,
  ) {}

  /** What to send of one batch at `now` (ms). */
  admit(batch: NotificationBatch, now: number, bulkEnabled: boolean): Notification[] {
    if (this.limitPerSecond <= 0) return [...batch.perVm, ...batch.bulk];
    if (now - this.windowStart >= 1000) {
      if (this.storming && !this.heldInWindow) this.calm();
      this.windowStart = now;
      this.sentInWindow = 0;
      this.heldInWindow = false;
    }
    if (batch.perVm.length === 0) return batch.bulk;
    if (!this.heldInWindow && this.sentInWindow + batch.perVm.length <= this.limitPerSecond) {
      this.sentInWindow += batch.perVm.length;
      return [...batch.perVm, ...batch.bulk];
    }
    this.heldInWindow = true;
    this.held += batch.perVm.length;
    if (!this.storming) {
      this.storming = true;
      this.log('warn', `more than ${this.limitPerSecond} per-VM notifications in one second (notifications-rate-limit): ` +
        (bulkEnabled ? 'sending only bulk notifications until a second passes below the limit'
          : 'holding them back until a second passes below the limit; vmBulkNotificationsEnabled is false, so nothing is ' +
            'sent meanwhile (set notifications-bulk yes to get one bulk notification per kind of change instead)'));
    }
    return batch.bulk;
  }

  private calm(): void {
    this.log('info', `notification storm over: ${this.held} per-VM notifications were held back; per-VM notifications resume`);
    this.storming = false;
    this.held = 0;
  }
}
