// Collector records for model and agent tests: a plausible running domain
// with two vCPUs, two disks and two NICs, any field overridable.
import type { DiskRecord, DomainRecord } from '../../src/snapshot';

export const diskRecord = (over: Partial<DiskRecord> = {}): DiskRecord => ({
  target: 'vda', sourceKind: 'file', device: 'disk', format: 'qcow2', source: '/srv/images/a.qcow2', readonly: false,
  bus: 'virtio', capacity: 10n * 1024n ** 3n, allocation: 3n * 1024n ** 3n + 1n, physical: null,
  rdReq: 10n, wrReq: 20n, rdBytes: 4096n, wrBytes: 8192n, rdTotalTimeNs: 5_000_000n, wrTotalTimeNs: null, ...over,
});

export const domainRecord = (over: Partial<DomainRecord> = {}): DomainRecord => ({
  uuid: '11111111-2222-3333-4444-555555555555', name: 'web-01', id: 3, state: 1, reason: 1, autostart: true,
  persistent: true, managedSave: false, osType: 'hvm', curVcpus: 2, maxVcpus: 4, memoryKiB: 2097152n,
  maxMemoryKiB: 4194304n, hotplugMemoryKiB: null, cpuTimeNs: 12_345_678_000n,
  vcpus: [
    { number: 1, state: 1, cpuTimeNs: 2_000_000n, affinity: [1] },
    { number: 0, state: 1, cpuTimeNs: 1_000_000n, affinity: [0, 1] },
  ],
  disks: [diskRecord(), diskRecord({ target: 'vdb', sourceKind: 'block', format: 'raw', source: '/dev/sdb', allocation: 0n })],
  nics: [
    { kind: 'bridge', mac: '52:54:00:aa:bb:cc', model: 'virtio', hostDevice: 'tap-web01', source: 'br0' },
    { kind: 'network', mac: '52:54:00:aa:bb:cd', model: 'e1000', hostDevice: 'gone0', source: 'br0' },
  ],
  jobType: null, jobOperation: null, ...over,
});
