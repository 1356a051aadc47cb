import { adminState, operState, LibvirtState } from '../../src/model/vm-state';
import { AdminState, OperState } from '../../src/model/vm-mib-oids';

const d = (state: number, reason = 0, extra: Partial<{ managedSave: boolean; jobType: number | null; jobOperation: number | null }> = {}) =>
  ({ state, reason, managedSave: false, jobType: null, jobOperation: null, ...extra });

// [description, input, oper, admin] — the README's mapping table, case by case.
const cases: [string, ReturnType<typeof d>, OperState, AdminState][] = [
  ['running', d(LibvirtState.Running, 1), OperState.Running, AdminState.Running],
  ['blocked', d(LibvirtState.Blocked), OperState.Running, AdminState.Running],
  ['running with outgoing migration job', d(LibvirtState.Running, 1, { jobType: 2, jobOperation: 5 }), OperState.Migrating, AdminState.Running],
  ['running with incoming migration job', d(LibvirtState.Running, 1, { jobType: 1, jobOperation: 4 }), OperState.Migrating, AdminState.Running],
  ['running with a backup job', d(LibvirtState.Running, 1, { jobType: 2, jobOperation: 9 }), OperState.Running, AdminState.Running],
  ['running post-copy', d(LibvirtState.Running, 10), OperState.Migrating, AdminState.Running],
  ['paused by user', d(LibvirtState.Paused, 1), OperState.Paused, AdminState.Paused],
  ['paused for migration', d(LibvirtState.Paused, 2), OperState.Migrating, AdminState.Running],
  ['paused for save', d(LibvirtState.Paused, 3), OperState.Suspending, AdminState.Suspended],
  ['paused starting up', d(LibvirtState.Paused, 11), OperState.Preparing, AdminState.Running],
  ['paused shutting down', d(LibvirtState.Paused, 8), OperState.Shuttingdown, AdminState.Shutdown],
  ['paused after crash', d(LibvirtState.Paused, 10), OperState.Crashed, AdminState.Paused],
  ['shutting down', d(LibvirtState.Shutdown, 1), OperState.Shuttingdown, AdminState.Shutdown],
  ['shut off', d(LibvirtState.Shutoff, 1), OperState.Shutdown, AdminState.Shutdown],
  ['shut off with managed save', d(LibvirtState.Shutoff, 0, { managedSave: true }), OperState.Suspended, AdminState.Suspended],
  ['shut off, saved', d(LibvirtState.Shutoff, 5), OperState.Suspended, AdminState.Suspended],
  ['shut off after crash', d(LibvirtState.Shutoff, 3), OperState.Crashed, AdminState.Shutdown],
  ['crashed', d(LibvirtState.Crashed, 1), OperState.Crashed, AdminState.Shutdown],
  ['pm-suspended', d(LibvirtState.PmSuspended), OperState.Suspended, AdminState.Suspended],
  ['no state', d(LibvirtState.NoState), OperState.Unknown, AdminState.Running],
];

describe('libvirt state → VM-MIB state', () => {
  test.each(cases)('%s', (_name, input, oper, admin) => {
    expect(operState(input)).toBe(oper);
    expect(adminState(input)).toBe(admin);
  });
});
