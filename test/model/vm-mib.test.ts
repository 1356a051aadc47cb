import { buildVmMibView, buildVmMibViewInSlices, indexKeys, ModelState, vmRows } from '../../src/model/vm-mib';
import type { HostLinkage } from '../../src/model/linkage';
import type { DomainRecord, Snapshot } from '../../src/snapshot';
import { VmIndexStore } from '../../src/state/index-store';
import { domainRecord } from '../harness/records';
import { MibView, parseOid, Value, ValueType } from '../../agentx';

const domain = domainRecord;

function snapshot(domains: DomainRecord[]): Snapshot {
  return {
    takenAt: 1_000_000,
    hypervisor: { type: 'QEMU', version: '7.2.0', libvirtVersion: '9.0.0', uri: 'qemu:///system' },
    domains,
    host: {
      uptimeSeconds: 1234.567,
      cpus: [0, 1],
      interfaces: new Map([
        ['tap-web01', { name: 'tap-web01', ifIndex: 7, parentIfIndex: 5 }],
        ['br0', { name: 'br0', ifIndex: 5, parentIfIndex: 0 }],
      ]),
      mounts: [],
    },
    imagePaths: new Map(),
    migrations: new Map(),
    multicast: { mdb: [], hostGroups: [], agent: null },
  };
}

/** snmpd's numbering of the host above, as model/linkage.ts gives it (its own tests cover how). */
const HOST: HostLinkage = {
  cpuDeviceIndex: new Map([[0, 196608], [1, 196609]]),
  filesystems: [{ mountPoint: '/', hrStorageIndex: 36 }, { mountPoint: '/srv', hrStorageIndex: 41 }, { mountPoint: '/dev', hrStorageIndex: 0 }],
};

const state: ModelState = { tableLastChange: 50, perVmNotificationsEnabled: true, bulkNotificationsEnabled: false, libvirtLost: false, now: 1_000_000 };

function modelInput(domains: DomainRecord[]): { snap: Snapshot; rows: ReturnType<typeof vmRows> } {
  const snap = snapshot(domains);
  const store = VmIndexStore.memory(() => undefined);
  const idx = store.assign(indexKeys(domains, new Map()), 1_000_000 - 4200);
  return { snap, rows: vmRows(snap, idx) };
}

function build(domains: DomainRecord[], st: ModelState = state): MibView {
  const { snap, rows } = modelInput(domains);
  return buildVmMibView(snap, rows, HOST, st);
}

describe('building the view in slices', () => {
  test('gives the same view, and lets the event loop run between tables', async () => {
    const domains = [domain({}), domain({ uuid: '11111111-2222-3333-4444-555555555556', name: 'db-01', id: -1, state: 5 })];
    const { snap, rows } = modelInput(domains);
    const whole = [...buildVmMibView(snap, rows, HOST, state)];
    // Another task that needs the event loop: it counts its turns while the build runs.
    let turns = 0;
    let done = false;
    const other = (): void => {
      turns++;
      if (!done) setImmediate(other);
    };
    setImmediate(other);
    const view = await buildVmMibViewInSlices(snap, rows, HOST, state);
    done = true;
    expect([...view]).toEqual(whole);
    expect(turns).toBeGreaterThanOrEqual(4);
  });
});

const get = (view: MibView, oid: string): Value | undefined => view.get(parseOid(oid));
const int = (v: Value | undefined) => (v && v.type === ValueType.Integer ? v.value : undefined);
const P = '1.3.6.1.2.1.236.1';

describe('snapshot → VM-MIB view', () => {
  const view = build([domain({})]);

  test('hypervisor scalars', () => {
    expect(get(view, `${P}.1.1.0`)).toEqual({ type: ValueType.OctetString, value: Buffer.from('QEMU') });
    expect(get(view, `${P}.1.2.0`)).toEqual({ type: ValueType.OctetString, value: Buffer.from('7.2.0') });
    expect(get(view, `${P}.1.3.0`)).toEqual({ type: ValueType.ObjectIdentifier, value: [0, 0] });
    expect(get(view, `${P}.1.4.0`)).toEqual({ type: ValueType.TimeTicks, value: 123456 });
    expect(int(get(view, `${P}.2.0`))).toBe(1);
    expect(get(view, `${P}.3.0`)).toEqual({ type: ValueType.TimeTicks, value: 50 });
    expect(int(get(view, `${P}.9.0`))).toBe(1);
    expect(int(get(view, `${P}.10.0`))).toBe(2);
  });

  test('vmTable row', () => {
    expect(int(get(view, `${P}.4.1.5.1`))).toBe(1); // running
    expect(int(get(view, `${P}.4.1.6.1`))).toBe(4);
    expect(int(get(view, `${P}.4.1.7.1`))).toBe(2); // autostart enabled
    expect(int(get(view, `${P}.4.1.8.1`))).toBe(2); // persistent
    expect([9, 10, 11, 12, 13, 14, 15].map((c) => int(get(view, `${P}.4.1.${c}.1`)))).toEqual([2, -1, 4, 1024, 2097152, -1, 4194304]);
    expect(get(view, `${P}.4.1.16.1`)).toEqual({ type: ValueType.TimeTicks, value: 420 });
    expect(get(view, `${P}.4.1.17.1`)).toEqual({ type: ValueType.Counter64, value: 12_345_678n });
  });

  test('vCPU rows are numbered from 1 in vCPU order; affinity uses snmpd hrDeviceIndex', () => {
    expect(get(view, `${P}.5.1.2.1.1`)).toEqual({ type: ValueType.Counter64, value: 1000n });
    expect(get(view, `${P}.5.1.2.1.2`)).toEqual({ type: ValueType.Counter64, value: 2000n });
    expect(int(get(view, `${P}.6.1.3.1.1.196608`))).toBe(1);
    expect(int(get(view, `${P}.6.1.3.1.1.196609`))).toBe(1);
    expect(int(get(view, `${P}.6.1.3.1.2.196608`))).toBe(2);
    expect(int(get(view, `${P}.6.1.3.1.2.196609`))).toBe(1);
  });

  test('storage: parent filesystem, types, sizes in MiB rounded up, block allocated = defined, absent stats stay absent', () => {
    expect([3, 4, 7, 8, 10, 11, 12].map((c) => int(get(view, `${P}.7.1.${c}.1.1`)))).toEqual([41, 5, 2, 3, 1048576, 10240, 3073]);
    expect(get(view, `${P}.7.1.5.1.1`)).toEqual({ type: ValueType.OctetString, value: Buffer.from('qcow2') });
    expect(get(view, `${P}.7.1.9.1.1`)).toEqual({ type: ValueType.OctetString, value: Buffer.from('virtio') });
    expect(get(view, `${P}.7.1.17.1.1`)).toEqual({ type: ValueType.Counter64, value: 5000n });
    expect(get(view, `${P}.7.1.18.1.1`)).toBeUndefined();
    expect(view.objectOf(parseOid(`${P}.7.1.18.1.1`))).toEqual(parseOid(`${P}.7.1.18`));
    // block device: no filesystem parent, raw-like sizes
    expect([3, 4, 11, 12].map((c) => int(get(view, `${P}.7.1.${c}.1.2`)))).toEqual([0, 3, 10240, 10240]);
  });

  test('network: ifIndex and parent from the host, 0 when the interface is absent', () => {
    expect([2, 3].map((c) => int(get(view, `${P}.8.1.${c}.1.1`)))).toEqual([7, 5]);
    expect([2, 3].map((c) => int(get(view, `${P}.8.1.${c}.1.2`)))).toEqual([0, 5]);
    expect(get(view, `${P}.8.1.4.1.2`)).toEqual({ type: ValueType.OctetString, value: Buffer.from('e1000') });
    expect(get(view, `${P}.8.1.5.1.1`)).toEqual({ type: ValueType.OctetString, value: Buffer.from([0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]) });
  });

  test('an inactive VM has zero CPU time and uptime; libvirt lost reads unknown', () => {
    const off = build([domain({ id: -1, state: 5, reason: 1, cpuTimeNs: 99n })]);
    expect(get(off, `${P}.4.1.17.1`)).toEqual({ type: ValueType.Counter64, value: 0n });
    expect(get(off, `${P}.4.1.16.1`)).toEqual({ type: ValueType.TimeTicks, value: 0 });
    expect(get(off, `${P}.5.1.2.1.1`)).toEqual({ type: ValueType.Counter64, value: 0n });
    const lost = build([domain({})], { ...state, libvirtLost: true });
    expect(int(get(lost, `${P}.4.1.6.1`))).toBe(1);
  });

  test('huge memory switches vmMemUnit so values fit an Integer32', () => {
    const big = build([domain({ memoryKiB: 3n << 30n, maxMemoryKiB: 4n << 30n })]);
    expect(int(get(big, `${P}.4.1.12.1`))).toBe(1048576);
    expect(int(get(big, `${P}.4.1.13.1`))).toBe(3 << 20);
  });

  test('the view walks in strictly increasing OID order', () => {
    const v = build([domain({}), domain({ uuid: '99999999-2222-3333-4444-555555555555', name: 'db' })]);
    let prev: readonly number[] | null = null;
    let n = 0;
    for (const vb of v) {
      if (prev) {
        const a = prev, b = vb.oid;
        let c = 0;
        for (let i = 0; i < Math.min(a.length, b.length) && c === 0; i++) c = a[i] - b[i];
        expect(c !== 0 ? c : a.length - b.length).toBeLessThan(0);
      }
      prev = vb.oid;
      n++;
    }
    expect(n).toBe(v.size);
  });
});
