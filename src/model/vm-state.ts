// libvirt domain state (virDomainState + reason) → VM-MIB admin and oper state.
// RFC 7666 leaves the mapping to the implementation; this is ours, and the
// README documents it. Numbers are libvirt's public enums (libvirt-domain.h).
import { AdminState, OperState } from './vm-mib-oids';

export enum LibvirtState { NoState = 0, Running = 1, Blocked = 2, Paused = 3, Shutdown = 4, Shutoff = 5, Crashed = 6, PmSuspended = 7 }
const PausedReason = { Migration: 2, Save: 3, ShuttingDown: 8, Crashed: 10, StartingUp: 11, Postcopy: 12 } as const;
const RunningReason = { Postcopy: 10 } as const;
const ShutoffReason = { Crashed: 3, Saved: 5 } as const;
const JobOperation = { MigrationIn: 4, MigrationOut: 5 } as const;

export interface StateInput {
  state: number;
  reason: number;
  managedSave: boolean;
  jobType: number | null;
  jobOperation: number | null;
}

function migrating(d: StateInput): boolean {
  return (d.jobType ?? 0) > 0 && (d.jobOperation === JobOperation.MigrationIn || d.jobOperation === JobOperation.MigrationOut);
}

export function operState(d: StateInput): OperState {
  switch (d.state) {
    case LibvirtState.Running:
    case LibvirtState.Blocked:
      return migrating(d) || d.reason === RunningReason.Postcopy ? OperState.Migrating : OperState.Running;
    case LibvirtState.Paused:
      if (migrating(d) || d.reason === PausedReason.Migration || d.reason === PausedReason.Postcopy) return OperState.Migrating;
      if (d.reason === PausedReason.Save) return OperState.Suspending;
      if (d.reason === PausedReason.StartingUp) return OperState.Preparing;
      if (d.reason === PausedReason.ShuttingDown) return OperState.Shuttingdown;
      if (d.reason === PausedReason.Crashed) return OperState.Crashed;
      return OperState.Paused;
    case LibvirtState.Shutdown:
      return OperState.Shuttingdown;
    case LibvirtState.Shutoff:
      if (d.managedSave || d.reason === ShutoffReason.Saved) return OperState.Suspended;
      if (d.reason === ShutoffReason.Crashed) return OperState.Crashed;
      return OperState.Shutdown;
    case LibvirtState.Crashed:
      return OperState.Crashed;
    case LibvirtState.PmSuspended:
      return OperState.Suspended;
    default:
      return OperState.Unknown;
  }
}

export function adminState(d: StateInput): AdminState {
  switch (d.state) {
    case LibvirtState.Paused:
      if (d.reason === PausedReason.Save) return AdminState.Suspended;
      if (d.reason === PausedReason.ShuttingDown) return AdminState.Shutdown;
      if (d.reason === PausedReason.Migration || d.reason === PausedReason.StartingUp || d.reason === PausedReason.Postcopy) {
        return AdminState.Running;
      }
      return AdminState.Paused;
    case LibvirtState.Shutdown:
    case LibvirtState.Crashed:
      return AdminState.Shutdown;
    case LibvirtState.Shutoff:
      return d.managedSave || d.reason === ShutoffReason.Saved ? AdminState.Suspended : AdminState.Shutdown;
    case LibvirtState.PmSuspended:
      return AdminState.Suspended;
    default:
      return AdminState.Running;
  }
}
