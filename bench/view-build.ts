// The model's share of a steady refresh, alone: building the VM-MIB view of
// N VMs from a snapshot, given the view it replaces, when only counters
// changed (the usual refresh). No libvirt, no agent, no snmpd: the records
// are made up (test/harness/records.ts: 2 vCPUs, 2 disks, 2 NICs a VM), so
// the figure moves only with the model and the view builder.
//
//   npm run build && node dist/bench/view-build.js
//   BENCH_VMS=100,1000,10000 (default 1000,10000)  BENCH_HOST_CPUS=2 (vmCpuAffinityTable has vCPUs x host CPUs rows a VM)
import { buildVmMibView, indexKeys, vmRows, type ModelState } from '../src/model/vm-mib';
import type { HostLinkage } from '../src/model/linkage';
import type { DomainRecord, Snapshot } from '../src/snapshot';
import { VmIndexStore } from '../src/state/index-store';
import { domainRecord, diskRecord } from '../test/harness/records';
import type { MibView } from '../agentx';
import { speedProbe } from './speed-probe';

const SIZES = (process.env.BENCH_VMS ?? '1000,10000').split(',').filter((v) => v.trim() !== '').map(Number);
const HOST_CPUS = Number(process.env.BENCH_HOST_CPUS ?? 2);
/** Builds timed per size, after as many untimed ones (V8 optimises the hot functions meanwhile). */
const BUILDS = 30;

function domains(n: number, tick: number): DomainRecord[] {
  const out: DomainRecord[] = [];
  for (let i = 0; i < n; i++) {
    const hex = i.toString(16).padStart(12, '0');
    const t = BigInt(tick);
    out.push(domainRecord({
      uuid: `11111111-2222-3333-4444-${hex}`,
      name: `vm-${i}`,
      id: i + 1,
      cpuTimeNs: 1_000_000_000n * t + BigInt(i),
      vcpus: [
        { number: 0, state: 1, cpuTimeNs: 500_000_000n * t, affinity: null },
        { number: 1, state: 1, cpuTimeNs: 400_000_000n * t, affinity: null },
      ],
      disks: [
        diskRecord({ source: `/srv/images/vm-${i}.qcow2`, rdReq: 10n * t, wrReq: 20n * t, rdBytes: 4096n * t, wrBytes: 8192n * t }),
        diskRecord({ target: 'vdb', sourceKind: 'block', format: 'raw', source: `/dev/vg/vm-${i}`, allocation: 0n, rdReq: t }),
      ],
      nics: [
        { kind: 'bridge', mac: `52:54:00:${hex.slice(6, 8)}:${hex.slice(8, 10)}:${hex.slice(10, 12)}`, model: 'virtio', hostDevice: `vnet${i}`, source: 'br0' },
      ],
    }));
  }
  return out;
}

function snapshot(doms: DomainRecord[], tick: number): Snapshot {
  const interfaces = new Map(doms.map((d, i) => [`vnet${i}`, { name: `vnet${i}`, ifIndex: 10 + i, parentIfIndex: 5 }]));
  interfaces.set('br0', { name: 'br0', ifIndex: 5, parentIfIndex: 0 });
  return {
    takenAt: 1_000_000 + tick * 5000,
    hypervisor: { type: 'QEMU', version: '7.2.0', libvirtVersion: '9.0.0', uri: 'qemu:///system' },
    domains: doms,
    host: { uptimeSeconds: 1234 + tick * 5, cpus: Array.from({ length: HOST_CPUS }, (_, c) => c), interfaces, mounts: [] },
    imagePaths: new Map(),
    migrations: new Map(),
    multicast: { mdb: [], hostGroups: [], agent: null },
  };
}

function main(): void {
  const host: HostLinkage = {
    cpuDeviceIndex: new Map(Array.from({ length: HOST_CPUS }, (_, c) => [c, 196608 + c])),
    filesystems: [{ mountPoint: '/', hrStorageIndex: 36 }, { mountPoint: '/srv', hrStorageIndex: 41 }],
  };
  const probe = speedProbe();
  console.log(`view build, ${HOST_CPUS} host CPUs, median of ${BUILDS} builds after ${BUILDS} more (probe ${probe.toFixed(0)} ms)`);
  for (const n of SIZES) {
    const store = VmIndexStore.memory(() => undefined);
    let previous: MibView | undefined;
    const times: number[] = [];
    for (let tick = 0; tick < 2 * BUILDS; tick++) {
      const doms = domains(n, tick);
      const snap = snapshot(doms, tick);
      const state: ModelState = { tableLastChange: 0, perVmNotificationsEnabled: true, bulkNotificationsEnabled: false, libvirtLost: false, now: snap.takenAt };
      const idx = store.assign(indexKeys(doms, new Map()), 0);
      const start = process.cpuUsage();
      const rows = vmRows(snap, idx);
      previous = buildVmMibView(snap, rows, host, state, previous);
      const used = process.cpuUsage(start);
      if (tick >= BUILDS) times.push((used.user + used.system) / 1000);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)];
    console.log(`  ${n} VMs, ${previous?.size} instances: ${median.toFixed(1)} ms CPU a build = ${((1000 * median) / n).toFixed(1)} µs per VM`);
  }
}

main();
