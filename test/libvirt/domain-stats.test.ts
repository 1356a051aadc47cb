import { bulkBlockNamed, decodeDomainStats, domainStatsFromParams, NO_DOMAIN_STATS, slotOf, type DomainStats } from '../../src/libvirt/domain-stats';
import { TypedParamType } from '../../src/libvirt/ffi';
import { decodeTypedParams } from '../../src/libvirt/typed-params';
import { double, encodeTypedParams, int, ullong, uint, unknownType, type EncodedParam } from '../harness/typed-params';

/** A QEMU driver's record for a running domain with 2 vCPUs and 2 disks (virsh domstats --raw), minus its string paths. */
const qemuRecord: EncodedParam[] = [
  int('state.state', 1),
  int('state.reason', 1),
  ullong('cpu.time', 890000000n),
  ullong('cpu.user', 460000000n),
  ullong('cpu.system', 430000000n),
  uint('cpu.cache.monitor.count', 0),
  ullong('balloon.current', 16384n),
  ullong('balloon.maximum', 16384n),
  ullong('balloon.rss', 45464n),
  uint('vcpu.current', 2),
  uint('vcpu.maximum', 4),
  int('vcpu.0.state', 1),
  ullong('vcpu.0.time', 110000000n),
  ullong('vcpu.0.wait', 0n),
  ullong('vcpu.0.delay', 188378205n),
  int('vcpu.2.state', 2),
  ullong('vcpu.2.time', 2n ** 64n - 1n),
  uint('block.count', 3),
  uint('block.0.backingIndex', 1),
  ullong('block.0.rd.reqs', 1n),
  ullong('block.0.rd.bytes', 2n),
  ullong('block.0.rd.times', 3n),
  ullong('block.0.wr.reqs', 4n),
  ullong('block.0.wr.bytes', 5n),
  ullong('block.0.wr.times', 6n),
  ullong('block.0.fl.reqs', 7n),
  ullong('block.0.allocation', 8n),
  ullong('block.0.capacity', 9n),
  ullong('block.0.physical', 10n),
  ullong('block.1.allocation', 11n),
  ullong('block.1.capacity', 12n),
];

/** Strings cannot be encoded without native memory; names are set on the decoded map instead. */
function withNames(params: Map<string, unknown>, names: Record<string, string>): Map<string, never> {
  for (const [k, v] of Object.entries(names)) params.set(k, v);
  return params as Map<string, never>;
}

describe('decodeDomainStats', () => {
  it('reads the values the collector uses from a QEMU record and skips the rest', () => {
    const stats = decodeDomainStats(encodeTypedParams(qemuRecord), qemuRecord.length);
    expect(stats).toEqual({
      state: 1,
      reason: 1,
      balloonKiB: 16384n,
      cpuTimeNs: 890000000n,
      vcpuGroup: true,
      vcpus: [
        { number: 0, state: 1, cpuTimeNs: 110000000n },
        { number: 2, state: 2, cpuTimeNs: 2n ** 64n - 1n },
      ],
      blockCount: 3,
      blocks: [
        {
          name: null, capacity: 9n, allocation: 8n, physical: 10n,
          rdReqs: 1n, rdBytes: 2n, rdTimes: 3n, wrReqs: 4n, wrBytes: 5n, wrTimes: 6n,
        },
        {
          name: null, capacity: 12n, allocation: 11n, physical: null,
          rdReqs: null, rdBytes: null, rdTimes: null, wrReqs: null, wrBytes: null, wrTimes: null,
        },
      ],
    });
  });

  it('gives what domainStatsFromParams gives for the decoded map, for the same records decoded again', () => {
    const odd: EncodedParam[] = [
      // A later duplicate wins, as in a map; one of an unknown type is skipped.
      ...qemuRecord,
      int('state.state', 3),
      unknownType('state.reason'),
      // Non-integer and differently typed values convert as paramNumber / paramBigInt convert them.
      double('balloon.current', 1.5),
      int('cpu.time', 77),
      ullong('state.reason', 5n),
      // A time without a state makes no vCPU; a state without a time does.
      ullong('vcpu.7.time', 1n),
      int('vcpu.5.state', 0),
      // Indexes libvirt never prints are not read.
      int('vcpu.01.state', 1),
      ullong('block.1000000.capacity', 1n),
      ullong('block.x.capacity', 1n),
      [`vcpu.3.state`, TypedParamType.BOOLEAN, (v, at) => v.setInt8(at, 1)],
    ];
    for (const record of [qemuRecord, odd, qemuRecord.slice(0, 3), []]) {
      const bytes = encodeTypedParams(record);
      const expected = domainStatsFromParams(decodeTypedParams(bytes, record.length));
      expect(decodeDomainStats(bytes, record.length)).toEqual(expected);
      expect(decodeDomainStats(bytes, record.length)).toEqual(expected);
    }
    const stats = decodeDomainStats(encodeTypedParams(odd), odd.length);
    expect([stats.state, stats.reason, stats.balloonKiB, stats.cpuTimeNs]).toEqual([3, 5, null, 77n]);
    expect(stats.vcpus).toEqual([
      { number: 0, state: 1, cpuTimeNs: 110000000n },
      { number: 2, state: 2, cpuTimeNs: 2n ** 64n - 1n },
      { number: 3, state: null, cpuTimeNs: null },
      { number: 5, state: 0, cpuTimeNs: null },
    ]);
  });

  it('reads nothing from a record of other groups', () => {
    const record = [ullong('net.count', 1n), ullong('balloon.rss', 1n)];
    expect(decodeDomainStats(encodeTypedParams(record), record.length)).toEqual(NO_DOMAIN_STATS);
  });
});

describe('domainStatsFromParams', () => {
  it('takes block names, which only strings carry', () => {
    const params = withNames(decodeTypedParams(encodeTypedParams(qemuRecord), qemuRecord.length), {
      'block.0.name': 'vda',
      'block.1.name': 'vdb',
      'block.2.name': 'vda',
    });
    const stats = domainStatsFromParams(params);
    expect(stats.blocks.map((b) => b?.name)).toEqual(['vda', 'vdb', 'vda']);
    // The top image, not its backing image.
    expect(bulkBlockNamed(stats, 'vda')).toBe(stats.blocks[0]);
    expect(bulkBlockNamed(stats, 'vdb')).toBe(stats.blocks[1]);
  });
});

describe('bulkBlockNamed', () => {
  it('finds only blocks below block.count, and none without it', () => {
    const named = (count: number | null): DomainStats => {
      const params = withNames(new Map(), { 'block.0.name': 'vda', 'block.1.name': 'vdb' });
      if (count !== null) params.set('block.count', count as never);
      return domainStatsFromParams(params);
    };
    const found = (stats: DomainStats): (string | null | undefined)[] => ['vda', 'vdb', 'sda'].map((n) => bulkBlockNamed(stats, n)?.name);
    expect(found(named(1))).toEqual(['vda', undefined, undefined]);
    expect(found(named(5))).toEqual(['vda', 'vdb', undefined]);
    expect(found(named(null))).toEqual([undefined, undefined, undefined]);
    expect(found(named(4e9))).toEqual(['vda', 'vdb', undefined]);
  });
});

describe('slotOf', () => {
  it('tells fields apart by group, index and name', () => {
    const names = [
      'state.state', 'state.reason', 'balloon.current', 'cpu.time', 'vcpu.current', 'block.count',
      'vcpu.0.state', 'vcpu.0.time', 'vcpu.1.state', 'vcpu.10.time',
      'block.0.name', 'block.0.capacity', 'block.0.allocation', 'block.0.physical', 'block.0.rd.reqs', 'block.0.rd.bytes',
      'block.0.rd.times', 'block.0.wr.reqs', 'block.0.wr.bytes', 'block.0.wr.times', 'block.1.name', 'block.999999.wr.times',
    ];
    const slots = names.map(slotOf);
    expect(slots.every((s) => s > 0)).toBe(true);
    expect(new Set(slots).size).toBe(names.length);
    for (const other of ['vcpu.0.wait', 'block.0.fl.reqs', 'block.0.path', 'vcpu.maximum', 'cpu.user', 'vcpu.00.state',
      'block.-1.name', 'block..name', 'vcpu.1', 'block.1000000.name', 'state', '']) {
      expect(slotOf(other)).toBe(0);
    }
  });
});
