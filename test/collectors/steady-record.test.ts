// steadyRecord: a steady domain built from its bulk stats record alone, and
// every reason it must leave the domain to queryDomain's calls instead.
import { parseDomainXml, type DomainXmlFacts } from '../../src/collectors/domain-xml';
import { steadyRecord, type DomainQueryContext, type DomainTarget, type PreviousRecord } from '../../src/collectors/libvirt-domain';
import { domainStatsFromParams } from '../../src/libvirt/domain-stats';
import type { DomainPtr } from '../../src/libvirt/ffi';

const UUID = '8d1c3a0e-6a5b-4b8e-9a55-0c6f4f2b1a01';
const FACTS: DomainXmlFacts = parseDomainXml(`
  <domain type='kvm'>
    <name>web-01</name>
    <uuid>${UUID}</uuid>
    <memory unit='KiB'>1048576</memory>
    <vcpu placement='static'>2</vcpu>
    <os><type>hvm</type></os>
    <devices>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/web-01.qcow2'/>
        <target dev='vda' bus='virtio'/>
      </disk>
      <interface type='bridge'>
        <mac address='52:54:00:00:00:01'/>
        <source bridge='br0'/>
        <model type='virtio'/>
      </interface>
    </devices>
  </domain>`);

/** What QEMU's virConnectGetAllDomainStats gives a running domain, with `change`s. */
function qemuStats(change: Record<string, number | bigint | string | undefined> = {}): ReturnType<typeof domainStatsFromParams> {
  const params: Record<string, number | bigint | string | undefined> = {
    'state.state': 1,
    'state.reason': 1,
    'cpu.time': 5_000_000n,
    'balloon.current': 524288n,
    'vcpu.current': 2,
    'vcpu.maximum': 2,
    'vcpu.0.state': 1,
    'vcpu.0.time': 111n,
    'vcpu.1.state': 1,
    'vcpu.1.time': 222n,
    'block.count': 1,
    'block.0.name': 'vda',
    'block.0.rd.reqs': 1n,
    'block.0.rd.bytes': 2n,
    'block.0.rd.times': 3n,
    'block.0.wr.reqs': 4n,
    'block.0.wr.bytes': 5n,
    'block.0.wr.times': 6n,
    'block.0.allocation': 7n,
    'block.0.capacity': 8n,
    'block.0.physical': 9n,
    ...change,
  };
  const defined = Object.entries(params).filter((e): e is [string, number | bigint | string] => e[1] !== undefined);
  return domainStatsFromParams(new Map(defined));
}

const target = (stats = qemuStats(), id = 7): DomainTarget => ({ dom: null as unknown as DomainPtr, uuid: UUID, name: 'web-01', id, stats });

const PREVIOUS: PreviousRecord = {
  id: 7,
  state: 1,
  reason: 1,
  autostart: true,
  persistent: true,
  managedSave: false,
  jobType: 0,
  vcpus: [{ number: 0, affinity: [0, 1] }, { number: 1, affinity: [1] }],
};

function context(jobDue = false, support: Partial<DomainQueryContext['support']> = {}): DomainQueryContext {
  return {
    hostCpus: 2,
    hostCpuNumbers: 2,
    bulk: null,
    support: { blockStatsFlags: 'yes', jobStats: 'yes', jobInfo: 'unknown', ...support },
    xmlCache: new Map([[UUID, { digest: 'x', facts: FACTS }]]),
    minorFailure: () => undefined,
    jobs: { due: () => jobDue, asked: () => undefined },
  };
}

describe('steadyRecord', () => {
  it('builds a steady running domain from its bulk record, with the configuration of its previous record', () => {
    const record = steadyRecord(target(), context(), PREVIOUS);
    expect(record).toMatchObject({
      uuid: UUID,
      name: 'web-01',
      id: 7,
      state: 1,
      reason: 1,
      autostart: true,
      persistent: true,
      managedSave: false,
      osType: 'hvm',
      memoryKiB: 524288n,
      maxMemoryKiB: 1048576n,
      cpuTimeNs: 5_000_000n,
      vcpus: [
        { number: 0, state: 1, cpuTimeNs: 111n, affinity: [0, 1] },
        { number: 1, state: 1, cpuTimeNs: 222n, affinity: [1] },
      ],
      jobType: 0,
      jobOperation: null,
    });
    expect(record?.disks).toEqual([expect.objectContaining({
      target: 'vda', source: '/var/lib/libvirt/images/web-01.qcow2', format: 'qcow2',
      capacity: 8n, allocation: 7n, physical: 9n,
      rdReq: 1n, rdBytes: 2n, rdTotalTimeNs: 3n, wrReq: 4n, wrBytes: 5n, wrTotalTimeNs: 6n,
    })]);
    expect(record?.nics).toBe(FACTS.nics);
  });

  it('leaves a domain to the per-domain calls when its job may run or its turn to be asked has come', () => {
    expect(steadyRecord(target(qemuStats({ 'state.state': 3, 'state.reason': 2 })), context(), PREVIOUS)).toBeNull();
    expect(steadyRecord(target(), context(), { ...PREVIOUS, jobType: 2 })).toBeNull();
    expect(steadyRecord(target(), context(), { ...PREVIOUS, jobType: null })).toBeNull();
    expect(steadyRecord(target(), context(true), PREVIOUS)).toBeNull();
    // A driver with neither job API is never asked.
    expect(steadyRecord(target(), context(true, { jobStats: 'no', jobInfo: 'no' }), PREVIOUS)?.jobType).toBeNull();
  });

  it('leaves a domain to the per-domain calls when the bulk record lacks a value it needs', () => {
    expect(steadyRecord(target(qemuStats({ 'balloon.current': undefined })), context(), PREVIOUS)).toBeNull();
    expect(steadyRecord(target(qemuStats({ 'cpu.time': undefined })), context(), PREVIOUS)).toBeNull();
    expect(steadyRecord(target(qemuStats({ 'block.0.rd.reqs': undefined })), context(), PREVIOUS)).toBeNull();
    expect(steadyRecord(target(qemuStats({ 'block.0.capacity': undefined })), context(), PREVIOUS)).toBeNull();
    expect(steadyRecord(target(qemuStats({ 'block.count': 0, 'block.0.name': undefined })), context(), PREVIOUS)).toBeNull();
    const noVcpuGroup = qemuStats(Object.fromEntries(
      ['vcpu.current', 'vcpu.maximum', 'vcpu.0.state', 'vcpu.0.time', 'vcpu.1.state', 'vcpu.1.time'].map((k) => [k, undefined])));
    expect(steadyRecord(target(noVcpuGroup), context(), PREVIOUS)).toBeNull();
  });

  it('leaves a domain to a full read when its configuration may have changed', () => {
    // Its id changed (it stopped and started: a new live XML).
    expect(steadyRecord(target(qemuStats(), 8), context(), PREVIOUS)).toBeNull();
    // No cached XML facts.
    const ctx = context();
    ctx.xmlCache.clear();
    expect(steadyRecord(target(), ctx, PREVIOUS)).toBeNull();
    // A vCPU the previous record lacks.
    expect(steadyRecord(target(), context(), { ...PREVIOUS, vcpus: [{ number: 0, affinity: [0] }] })).toBeNull();
  });

  it('builds an inactive domain with no job call and no runtime vCPU values', () => {
    const stats = domainStatsFromParams(new Map<string, number | bigint | string>([
      ['state.state', 5], ['state.reason', 1], ['balloon.current', 1048576n],
      ['block.count', 1], ['block.0.name', 'vda'], ['block.0.capacity', 8n], ['block.0.allocation', 7n], ['block.0.physical', 9n],
    ]));
    const record = steadyRecord(target(stats, -1), context(true), { ...PREVIOUS, id: -1, state: 5, reason: 1 });
    expect(record).toMatchObject({ id: -1, state: 5, cpuTimeNs: 0n, jobType: 0 });
    expect(record?.vcpus).toEqual([
      { number: 0, state: null, cpuTimeNs: null, affinity: [0, 1] },
      { number: 1, state: null, cpuTimeNs: null, affinity: [1] },
    ]);
    expect(record?.disks[0]).toMatchObject({ capacity: 8n, rdReq: null });
  });
});
