import { LastGoodRecords } from '../../src/collectors/last-good';
import type { DomainXmlFacts } from '../../src/collectors/domain-xml';
import type { DiskRecord, DomainRecord, NicRecord } from '../../src/snapshot';
import { mulberry32 } from '../harness/mulberry32';

const U64_MAX = (1n << 64n) - 1n;

/** Facts and a record built from them the way queryDomain builds one, with random values and nulls. */
function randomDomain(seed: number): { facts: DomainXmlFacts; record: DomainRecord } {
  const next = mulberry32(seed);
  const pick = <T>(...options: T[]): T => options[next() % options.length];
  const big = (): bigint => pick(0n, 1n, U64_MAX, (BigInt(next()) << 32n) | BigInt(next()));
  const orNull = <T>(value: T): T | null => (next() % 4 === 0 ? null : value);
  const uuid = `${seed.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
  const nics: NicRecord[] = [{ kind: 'bridge', mac: '52:54:00:00:00:01', model: 'virtio', hostDevice: 'vnet0', source: 'br0' }];
  const disks = Array.from({ length: next() % 4 }, (_, i) => ({
    target: `vd${String.fromCharCode(97 + i)}`,
    sourceKind: pick('file', 'block', 'network'),
    device: 'disk',
    format: orNull('qcow2'),
    source: orNull(`/images/${seed}-${i}.qcow2`),
    readonly: next() % 2 === 0,
    bus: orNull('virtio'),
  }));
  const facts: DomainXmlFacts = {
    name: `vm-${seed}`,
    uuid,
    osType: 'hvm',
    curVcpus: 2,
    maxVcpus: 4,
    onlineVcpus: [0, 1],
    memoryKiB: 4194304n,
    currentMemoryKiB: null,
    hotplugMemoryKiB: orNull(8388608n),
    vcpuPins: [],
    defaultCpuset: null,
    placementAuto: false,
    disks,
    nics,
  };
  const lists = [Object.freeze([0, 1]), Object.freeze([2]), Object.freeze([0, 1, 2, 3])];
  const record: DomainRecord = {
    uuid,
    name: next() % 5 === 0 ? `renamed-ä-${seed}` : facts.name,
    id: pick(-1, 7, 2147483647),
    state: next() % 8,
    reason: next() % 12,
    autostart: pick(null, true, false),
    persistent: pick(null, true, false),
    managedSave: next() % 2 === 0,
    osType: facts.osType,
    curVcpus: facts.curVcpus,
    maxVcpus: facts.maxVcpus,
    memoryKiB: big(),
    maxMemoryKiB: facts.memoryKiB,
    hotplugMemoryKiB: facts.hotplugMemoryKiB,
    cpuTimeNs: big(),
    vcpus: Array.from({ length: next() % 5 }, (_, i) => ({
      number: pick(i, 4294967295),
      state: orNull(pick(0, 1, -2147483648)),
      cpuTimeNs: orNull(big()),
      affinity: orNull(pick(...lists)),
    })),
    disks: disks.map((d): DiskRecord => ({
      ...d,
      capacity: orNull(big()),
      allocation: orNull(big()),
      physical: orNull(big()),
      rdReq: orNull(big()),
      wrReq: orNull(big()),
      rdBytes: orNull(big()),
      wrBytes: orNull(big()),
      rdTotalTimeNs: orNull(big()),
      wrTotalTimeNs: orNull(big()),
    })),
    nics,
    jobType: orNull(pick(0, 1, 2)),
    jobOperation: orNull(pick(0, 5)),
  };
  return { facts, record };
}

/** A store holding these records, whose facts lookup is `facts` (the collector's XML cache). */
function storeOf(
  domains: { facts: DomainXmlFacts; record: DomainRecord }[],
  facts = new Map(domains.map((d) => [d.facts.uuid, d.facts])),
): LastGoodRecords {
  const store = new LastGoodRecords((uuid) => facts.get(uuid));
  for (const d of domains) store.set(d.record.uuid, d.record);
  return store;
}

describe('LastGoodRecords', () => {
  test('a packed record reads back equal to the one set, nulls, extremes and a stored name included', () => {
    const domains = Array.from({ length: 300 }, (_, i) => randomDomain(i + 1));
    const store = storeOf(domains);
    store.pack();
    expect(store.packed.records).toBe(300);
    for (const { record } of domains) {
      const back = store.get(record.uuid);
      expect(back).not.toBe(record);
      expect(back).toStrictEqual(record);
      // Shared parts come back shared, not copied.
      expect(back!.nics).toBe(record.nics);
      back!.vcpus.forEach((v, i) => expect(v.affinity).toBe(record.vcpus[i].affinity));
    }
  });

  test('the packed form is the changing values only: a few hundred bytes for 2 vCPUs and 2 disks', () => {
    const domains = Array.from({ length: 1000 }, (_, i) => randomDomain(i + 1));
    const store = storeOf(domains);
    store.pack();
    const perRecord = store.packed.bytes / store.packed.records;
    // These domains have 0-4 vCPUs and 0-3 disks. 32-bit words: up to 7 + 4 a vCPU + 1 a disk; 64-bit
    // values: 2 + up to 1 a vCPU + up to 9 a disk. For 2 vCPUs and 2 full disks: 68 + 176 = 244 bytes.
    expect(perRecord).toBeLessThan(260);
    expect(perRecord).toBeGreaterThan(60);
  });

  test('with packFrom, fewer records than that stay as they were set', () => {
    const domains = Array.from({ length: 20 }, (_, i) => randomDomain(i + 1));
    const facts = new Map(domains.map((d) => [d.facts.uuid, d.facts]));
    const store = new LastGoodRecords((uuid) => facts.get(uuid), 21);
    for (const d of domains) store.set(d.record.uuid, d.record);
    store.pack();
    expect(store.packed.records).toBe(0);
    for (const { record } of domains) expect(store.get(record.uuid)).toBe(record);
    const more = randomDomain(21);
    facts.set(more.facts.uuid, more.facts);
    store.set(more.record.uuid, more.record);
    store.pack();
    expect(store.packed.records).toBe(21);
  });

  test('records set since the last pack are served as set, then packed with the ones that were not set again', () => {
    const domains = Array.from({ length: 20 }, (_, i) => randomDomain(i + 1));
    const facts = new Map(domains.map((d) => [d.facts.uuid, d.facts]));
    const store = storeOf(domains, facts);
    store.pack();
    // Domain 5 answers again, with new XML facts.
    const fresh = randomDomain(5);
    facts.set(fresh.facts.uuid, fresh.facts);
    store.set(fresh.record.uuid, fresh.record);
    expect(store.get(fresh.record.uuid)).toBe(fresh.record);
    expect(store.packed.records).toBe(19);
    store.pack();
    expect(store.packed.records).toBe(20);
    domains[4] = fresh;
    for (const { record } of domains) expect(store.get(record.uuid)).toStrictEqual(record);
  });

  test('a record that does not match its facts, or holds what the packed form cannot, stays as it is', () => {
    const changedDisk = randomDomain(1);
    changedDisk.record = { ...changedDisk.record, disks: [] };
    changedDisk.facts.disks.push({ target: 'sdz', sourceKind: 'file', device: 'cdrom', format: null, source: null, readonly: true, bus: 'sata' });
    const negative = randomDomain(2);
    negative.record = { ...negative.record, cpuTimeNs: -1n };
    const wideState = randomDomain(4);
    wideState.record = { ...wideState.record, state: 2 ** 31 };
    // Values of the wrong type would not read back as they are: a tri-state that is not a boolean, a list that is not one.
    const notBoolean = randomDomain(5);
    notBoolean.record = { ...notBoolean.record, autostart: 1 as unknown as boolean };
    const notList = randomDomain(6);
    notList.record = { ...notList.record, vcpus: [{ number: 0, state: null, cpuTimeNs: null, affinity: 3 as unknown as number[] }] };
    const unknownFacts = randomDomain(3);
    const store = storeOf([changedDisk, negative, wideState, notBoolean, notList]);
    store.set(unknownFacts.record.uuid, unknownFacts.record);
    store.pack();
    expect(store.packed.records).toBe(0);
    for (const d of [changedDisk, negative, wideState, notBoolean, notList, unknownFacts]) expect(store.get(d.record.uuid)).toBe(d.record);
    expect(store.size).toBe(6);
  });

  test('records that cannot be packed, found part way through, take no room and leave the records after them packed right', () => {
    const domains = Array.from({ length: 40 }, (_, i) => randomDomain(i + 100));
    const unpackable = new Set<string>();
    domains.forEach((d, i) => {
      if (i % 3 !== 1 || d.record.disks.length === 0) return;
      // The last disk's last counter: everything before it was counted already.
      const disks = d.record.disks.map((disk, k) => (k === d.record.disks.length - 1 ? { ...disk, wrTotalTimeNs: 2n ** 64n } : disk));
      d.record = { ...d.record, disks };
      unpackable.add(d.record.uuid);
    });
    expect(unpackable.size).toBeGreaterThan(5);
    const store = storeOf(domains);
    store.pack();
    expect(store.packed.records).toBe(domains.length - unpackable.size);
    for (const { record } of domains) {
      const back = store.get(record.uuid);
      if (unpackable.has(record.uuid)) expect(back).toBe(record);
      else expect(back).toStrictEqual(record);
    }
    // The arrays are sized for the packed records only.
    const packableOnly = storeOf(domains.filter((d) => !unpackable.has(d.record.uuid)));
    packableOnly.pack();
    expect(store.packed.bytes).toBe(packableOnly.packed.bytes);
  });

  test('previous() gives what queryDomain reads of a record, packed or not, without its counters', () => {
    const domains = Array.from({ length: 100 }, (_, i) => randomDomain(i + 500));
    const store = storeOf(domains);
    const loose = domains[0].record;
    expect(store.previous(loose.uuid)).toBe(loose);
    store.pack();
    expect(store.previous('no-such-uuid')).toBeUndefined();
    for (const { record } of domains) {
      const previous = store.previous(record.uuid)!;
      expect(previous).toMatchObject({
        id: record.id,
        state: record.state,
        reason: record.reason,
        autostart: record.autostart,
        persistent: record.persistent,
        managedSave: record.managedSave,
        jobType: record.jobType,
        vcpus: record.vcpus.map((v) => ({ number: v.number, affinity: v.affinity })),
      });
      previous.vcpus.forEach((v, i) => expect(v.affinity).toBe(record.vcpus[i].affinity));
      expect(previous).not.toHaveProperty('cpuTimeNs');
      expect(previous).not.toHaveProperty('disks');
      // Reading it leaves the packed record whole.
      expect(store.get(record.uuid)).toStrictEqual(record);
    }
  });

  test('delete forgets packed and unpacked records; uuids and values list each kept record once', () => {
    const domains = Array.from({ length: 4 }, (_, i) => randomDomain(i + 1));
    const store = storeOf(domains.slice(0, 3));
    store.pack();
    store.set(domains[3].record.uuid, domains[3].record);
    store.set(domains[0].record.uuid, domains[0].record);
    store.delete(domains[1].record.uuid);
    expect(store.get(domains[1].record.uuid)).toBeUndefined();
    expect(store.uuids().sort()).toEqual([0, 2, 3].map((i) => domains[i].record.uuid).sort());
    expect(store.values()).toHaveLength(3);
    expect(store.size).toBe(3);
  });

  test('a steady host\'s records are packed into the same arrays; arrays too small are replaced and freed at once', () => {
    const all = Array.from({ length: 100 }, (_, i) => randomDomain(i + 1));
    const store = storeOf(all.slice(0, 50), new Map(all.map((d) => [d.facts.uuid, d.facts])));
    store.pack();
    const arrays = (): ArrayBufferLike[] => {
      const packed = store as unknown as { words: Int32Array; wide: BigUint64Array };
      return [packed.words.buffer, packed.wide.buffer];
    };
    const first = arrays();
    for (const buffer of first) expect(buffer.byteLength).toBeGreaterThan(0);

    // Every record set again, as at a steady refresh: the same room, the same arrays.
    for (const d of all.slice(0, 50)) store.set(d.record.uuid, d.record);
    store.pack();
    expect(arrays()).toEqual(first);
    expect(arrays().every((buffer, k) => buffer === first[k])).toBe(true);
    expect(store.packed.records).toBe(50);
    for (const d of all.slice(0, 50)) expect(store.get(d.record.uuid)).toEqual(d.record);

    // Twice the domains: new arrays, and the old ones are freed now, not at a later GC.
    for (const d of all) store.set(d.record.uuid, d.record);
    store.pack();
    for (const buffer of first) expect(buffer.byteLength).toBe(0);
    expect(arrays()[0].byteLength).toBeGreaterThan(0);
    expect(store.packed.records).toBe(100);
    for (const d of all) expect(store.get(d.record.uuid)).toEqual(d.record);
  });
});
