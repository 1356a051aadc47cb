import { NotificationStormGuard, notificationsFor as batchFor, vmListBitmap, VmStateRecord } from '../../src/notifications';
import { OperState, Persistent } from '../../src/model/vm-mib-oids';
import { formatOid, ValueType } from '../../agentx';

const rec = (vmIndex: number, operState: OperState, name = `vm${vmIndex}`): VmStateRecord =>
  ({ vmIndex, uuid: `00000000-0000-0000-0000-${String(vmIndex).padStart(12, '0')}`, name, operState, persistent: Persistent.Persistent });
const map = (...r: VmStateRecord[]) => new Map(r.map((x) => [x.uuid, x]));
/** A batch as sent when the storm guard lets everything through: per-VM first, then bulk. */
const notificationsFor = (...args: Parameters<typeof batchFor>) => {
  const { perVm, bulk } = batchFor(...args);
  return [...perVm, ...bulk];
};
const trap = (n: { trapOid: readonly number[] }) => formatOid(n.trapOid);

describe('VM-MIB notifications from two refreshes', () => {
  test('a state change sends the per-VM notification with the previous vmOperState', () => {
    const out = notificationsFor(map(rec(3, OperState.Running)), map(rec(3, OperState.Paused)), { perVm: true, bulk: false });
    expect(out).toHaveLength(1);
    expect(trap(out[0])).toBe('1.3.6.1.2.1.236.0.4');
    const vbs = out[0].varbinds;
    expect(vbs.map((v) => formatOid(v.oid))).toEqual(['1.3.6.1.2.1.236.1.4.1.2.3', '1.3.6.1.2.1.236.1.4.1.3.3', '1.3.6.1.2.1.236.1.4.1.6.3']);
    expect(vbs[2]).toMatchObject({ type: ValueType.Integer, value: OperState.Running });
    expect(vbs[1].type === ValueType.OctetString && vbs[1].value).toHaveLength(16);
  });

  test('no change, no notification; unknown (libvirt lost) is never a change', () => {
    expect(notificationsFor(map(rec(1, OperState.Running)), map(rec(1, OperState.Running)), { perVm: true, bulk: true })).toEqual([]);
    expect(notificationsFor(map(rec(1, OperState.Running)), map(rec(1, OperState.Unknown)), { perVm: true, bulk: true })).toEqual([]);
    expect(notificationsFor(map(rec(1, OperState.Unknown)), map(rec(1, OperState.Running)), { perVm: true, bulk: true })).toEqual([]);
  });

  test('a deleted VM sends vmDeleted with vmPersistent; a new running VM sends vmRunning from shutdown', () => {
    const out = notificationsFor(map(rec(1, OperState.Shutdown)), map(rec(2, OperState.Running)), { perVm: true, bulk: false });
    expect(out.map(trap)).toEqual(['1.3.6.1.2.1.236.0.1', '1.3.6.1.2.1.236.0.10']);
    expect(out[0].varbinds[2]).toMatchObject({ value: OperState.Shutdown });
    expect(out[1].varbinds.map((v) => formatOid(v.oid))).toContain('1.3.6.1.2.1.236.1.4.1.8.1');
    expect(out[1].varbinds[2]).toMatchObject({ value: OperState.Shutdown });
  });

  test('bulk: one notification per kind with the vmAffectedVMs bitmap; per-VM off', () => {
    const before = map(rec(1, OperState.Running), rec(10, OperState.Running), rec(4, OperState.Running));
    const after = map(rec(1, OperState.Paused), rec(10, OperState.Paused), rec(4, OperState.Crashed));
    const out = notificationsFor(before, after, { perVm: false, bulk: true });
    expect(out.map(trap)).toEqual(['1.3.6.1.2.1.236.0.14', '1.3.6.1.2.1.236.0.19']);
    const paused = out[0].varbinds[0];
    expect(formatOid(paused.oid)).toBe('1.3.6.1.2.1.236.1.11.0');
    expect(paused.type === ValueType.OctetString && paused.value).toEqual(Buffer.from([0x80, 0x40]));
  });

  test('VirtualMachineList bitmap: octet k covers 8k+1..8k+8, most significant bit first', () => {
    expect(vmListBitmap([1, 10])).toEqual(Buffer.from([0x80, 0x40]));
    expect(vmListBitmap([8, 9, 16])).toEqual(Buffer.from([0x01, 0x81]));
    expect(vmListBitmap([])).toEqual(Buffer.alloc(0));
  });
});

describe('NotificationStormGuard', () => {
  const n = (k: number) => ({ trapOid: [1, 3, 6, 1, 2, 1, 236, 0, k], varbinds: [] });
  const batch = (perVm: number, bulk = 1) => ({
    perVm: Array.from({ length: perVm }, () => n(1)),
    bulk: Array.from({ length: bulk }, () => n(11)),
  });

  test('per-VM notifications pass up to the limit within a second; above it only bulk ones, for the rest of that second', () => {
    const lines: string[] = [];
    const guard = new NotificationStormGuard(20, (level, m) => lines.push(`${level}: ${m}`));
    expect(guard.admit(batch(15), 0, true)).toHaveLength(16);
    expect(guard.admit(batch(5), 100, true)).toHaveLength(6);
    // The 21st within the second: held back, and so is everything after it in that second.
    expect(guard.admit(batch(1), 200, true)).toHaveLength(1);
    expect(guard.admit(batch(1, 0), 900, true)).toHaveLength(0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^warn: more than 20 per-VM notifications in one second.*only bulk/);
    // A new second starts below the limit again, still storming (it held some back in the last second).
    expect(guard.admit(batch(3), 1000, true)).toHaveLength(4);
    // After a second without any held back, the storm is declared over.
    expect(guard.admit(batch(1), 2100, true)).toHaveLength(2);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('info: notification storm over: 2 per-VM notifications were held back; per-VM notifications resume');
  });

  test('one batch above the limit sends only its bulk part; limit 0 lets everything through', () => {
    const lines: string[] = [];
    expect(new NotificationStormGuard(20, (_l, m) => lines.push(m)).admit(batch(500, 1), 0, false)).toHaveLength(1);
    expect(lines[0]).toContain('vmBulkNotificationsEnabled is false');
    expect(new NotificationStormGuard(0, () => undefined).admit(batch(500, 1), 0, true)).toHaveLength(501);
  });
});
