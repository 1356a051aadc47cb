// LibvirtCollector behaviour beyond the plain happy path, on libvirt's
// in-process test driver: bulk stats merging, open failures, a domain that
// vanishes mid-refresh, and a domain that hangs.

import * as path from 'path';
import koffi from 'koffi';
import { LibvirtCollector } from '../../src/collectors/libvirt';
import { queryDomain } from '../../src/collectors/libvirt-domain';
import { domainStatsFromParams, type DomainStats } from '../../src/libvirt/domain-stats';
import { libvirtCallsMade } from '../../src/libvirt/calls';
import { ErrorCode, LibvirtError } from '../../src/libvirt/errors';
import type { DomainRecord } from '../../src/snapshot';

const DEMO = path.resolve(__dirname, '../../examples/libvirt/demo-host.xml');
const URI = `test://${DEMO}`;

describe('LibvirtCollector with bulk stats groups (as the qemu driver fills them)', () => {
  // The test driver fills only state.*; give web-01 the keys qemu's
  // virConnectGetAllDomainStats returns and check they win over per-domain
  // calls, and that missing ones still fall back.
  const qemuStyle = new Map<string, number | bigint | string>([
    ['state.state', 1],
    ['state.reason', 1],
    ['balloon.current', 1234567n],
    ['cpu.time', 987654321n],
    ['vcpu.current', 2],
    ['vcpu.maximum', 4],
    ['vcpu.0.state', 1],
    ['vcpu.0.time', 111n],
    ['vcpu.1.state', 2],
    ['vcpu.1.time', 222n],
    ['block.count', 2],
    ['block.0.name', 'vda'],
    ['block.0.rd.reqs', 10n],
    ['block.0.rd.bytes', 20n],
    ['block.0.rd.times', 30n],
    ['block.0.wr.reqs', 40n],
    ['block.0.wr.bytes', 50n],
    ['block.0.wr.times', 60n],
    ['block.0.allocation', 70n],
    ['block.0.capacity', 80n],
    ['block.0.physical', 90n],
    // vdb: sizes only, so its counters must come from per-domain calls; sda: not listed at all.
    ['block.1.name', 'vdb'],
    ['block.1.allocation', 7n],
    ['block.1.capacity', 8n],
    ['block.1.physical', 9n],
  ]);

  it('takes state, balloon, CPU, vCPU and block values from the bulk record', async () => {
    const collector = new LibvirtCollector({
      queryDomain: (t, ctx) => queryDomain(t.name === 'web-01' ? { ...t, stats: domainStatsFromParams(qemuStyle) } : t, ctx),
    });
    await collector.open(URI, { readOnly: true });
    try {
      const web = (await collector.collect()).find((r) => r.name === 'web-01')!;
      expect([web.state, web.reason, web.memoryKiB, web.cpuTimeNs]).toEqual([1, 1, 1234567n, 987654321n]);
      expect(web.vcpus).toEqual([
        { number: 0, state: 1, cpuTimeNs: 111n, affinity: [0, 1] },
        { number: 1, state: 2, cpuTimeNs: 222n, affinity: [2] },
      ]);
      const [vda, vdb, sda] = web.disks;
      expect(vda).toMatchObject({
        capacity: 80n, allocation: 70n, physical: 90n,
        rdReq: 10n, rdBytes: 20n, rdTotalTimeNs: 30n, wrReq: 40n, wrBytes: 50n, wrTotalTimeNs: 60n,
      });
      // Per-domain fallbacks: the test driver's fixed sizes and clock-based counters.
      expect(vdb).toMatchObject({ capacity: 8n, allocation: 7n, physical: 9n, rdTotalTimeNs: null });
      expect(vdb.rdReq! > 1_000_000n).toBe(true);
      expect(sda).toMatchObject({ capacity: 1099506450432n, allocation: 1099511627776n, physical: 1099511627776n });
      expect(sda.wrBytes! > 1_000_000n).toBe(true);
    } finally {
      await collector.close();
    }
  });
});

describe('LibvirtCollector keeping vCPU pinning between full reads', () => {
  const vcpuStats = (vcpus: number[]): DomainStats =>
    domainStatsFromParams(new Map<string, number | bigint>([
      ['state.state', 1],
      ['state.reason', 1],
      ['vcpu.current', vcpus.length],
      ...vcpus.flatMap((n): [string, number | bigint][] => [[`vcpu.${n}.state`, 1], [`vcpu.${n}.time`, BigInt(n + 1)]]),
    ]));

  it('carries each vCPU\'s affinity by number, and reads the domain in full when one appears unannounced', async () => {
    let stats = vcpuStats([0, 1]);
    const collector = new LibvirtCollector({
      queryDomain: (t, ctx, previous) => queryDomain(t.name === 'web-01' ? { ...t, stats } : t, ctx, previous),
    });
    const xmlReads = (): number => libvirtCallsMade().get('virDomainGetXMLDesc') ?? 0;
    const web = async (): Promise<DomainRecord> => (await collector.collect()).find((r) => r.name === 'web-01')!;
    await collector.open(URI, { readOnly: true });
    try {
      const full = await web();
      expect(full.vcpus.map((v) => [v.number, v.affinity])).toEqual([[0, [0, 1]], [1, [2]]]);

      // vCPU 0 gone: vCPU 1 keeps its own affinity, not the one at its old place.
      stats = vcpuStats([1]);
      let reads = xmlReads();
      const steady = await web();
      expect(xmlReads()).toBe(reads);
      expect(steady.vcpus).toEqual([{ number: 1, state: 1, cpuTimeNs: 2n, affinity: [2] }]);

      // vCPU 0 back: the previous record lacks it, so the domain is read in full.
      stats = vcpuStats([0, 1]);
      reads = xmlReads();
      const again = await web();
      expect(xmlReads()).toBe(reads + 1);
      expect(again.vcpus.map((v) => [v.number, v.affinity])).toEqual([[0, [0, 1]], [1, [2]]]);
    } finally {
      await collector.close();
    }
  });
});

describe('LibvirtCollector with bulk block stats of inactive domains and empty drives', () => {
  it('takes an inactive disk\'s sizes but no counters from the bulk record, and nothing for an empty drive', async () => {
    const erpStats = domainStatsFromParams(new Map<string, number | bigint | string>([
      ['state.state', 5],
      ['state.reason', 0],
      ['block.count', 1],
      ['block.0.name', 'hda'],
      ['block.0.capacity', 100n],
      ['block.0.allocation', 50n],
      ['block.0.physical', 60n],
      ['block.0.rd.reqs', 1n],
    ]));
    const runnerStats = domainStatsFromParams(new Map<string, number | bigint | string>([
      ['state.state', 3],
      ['state.reason', 1],
      ['block.count', 1],
      ['block.0.name', 'hdc'],
      ['block.0.capacity', 100n],
      ['block.0.allocation', 50n],
      ['block.0.physical', 60n],
      ['block.0.rd.reqs', 1n],
    ]));
    const collector = new LibvirtCollector({
      queryDomain: (t, ctx) =>
        queryDomain(t.name === 'legacy-erp' ? { ...t, stats: erpStats } : t.name === 'build-runner' ? { ...t, stats: runnerStats } : t, ctx),
    });
    await collector.open(URI, { readOnly: true });
    try {
      const records = await collector.collect();
      const erp = records.find((r) => r.name === 'legacy-erp')!;
      const [hda, fda] = erp.disks;
      expect(hda).toMatchObject({ capacity: 100n, allocation: 50n, physical: 60n, rdReq: null, wrReq: null, rdTotalTimeNs: null });
      // Not in the bulk record: the test driver's fixed sizes from a per-domain call.
      expect(fda).toMatchObject({ capacity: 1099506450432n, rdReq: null });
      const runner = records.find((r) => r.name === 'build-runner')!;
      const hdc = runner.disks.find((d) => d.target === 'hdc')!;
      expect(hdc).toMatchObject({ source: null, capacity: null, allocation: null, physical: null, rdReq: null, wrBytes: null });
    } finally {
      await collector.close();
    }
  });
});

describe('LibvirtCollector failures', () => {
  it('rejects a URI libvirt cannot open with a LibvirtError naming the URI and the reason', async () => {
    const collector = new LibvirtCollector();
    const missing = '/nonexistent/vmm-agentx/host.xml';
    const err = await collector.open(`test://${missing}`, { readOnly: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    const e = err as LibvirtError;
    expect(e.message).toContain(`virConnectOpenAuth(test://${missing})`);
    expect(e.message).toContain(missing);
    // The test driver reports an unreadable node file as an XML error.
    expect(e.code).toBe(ErrorCode.XML_ERROR);
    expect(collector.isConnected()).toBe(false);
    await expect(collector.collect()).rejects.toMatchObject({ code: ErrorCode.NO_CONNECT });
    await collector.close();
  });

  it('rejects an unknown URI scheme with a LibvirtError', async () => {
    const collector = new LibvirtCollector();
    const err = await collector.open('frobnicate:///system', { readOnly: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LibvirtError);
    expect((err as Error).message).toMatch(/^virConnectOpenAuth\(frobnicate:\/\/\/system\): \S/);
  });
});

describe('LibvirtCollector on test:///default, changed through a second connection', () => {
  // Connections to test:///default in one process share one driver, so a
  // second connection made here can undefine a domain under the collector.
  const lib = koffi.load('libvirt.so.0');
  const connectOpen = lib.func('virConnectOpen', 'void *', ['const char *']);
  const connectClose = lib.func('virConnectClose', 'int', ['void *']);
  const lookupByName = lib.func('virDomainLookupByName', 'void *', ['void *', 'const char *']);
  const destroy = lib.func('virDomainDestroy', 'int', ['void *']);
  const undefine = lib.func('virDomainUndefine', 'int', ['void *']);
  const domainFree = lib.func('virDomainFree', 'int', ['void *']);
  const setAutostart = lib.func('virDomainSetAutostart', 'int', ['void *', 'int']);

  it('sees an autostart change at the resync, drops a domain that vanishes mid-refresh silently, and reports lifecycle events', async () => {
    const logs: Array<[string, string]> = [];
    let vanish = false;
    let now = 1_000_000;
    const control = connectOpen('test:///default') as bigint;
    const collector = new LibvirtCollector({
      log: (level, message) => logs.push([level, message]),
      resyncMs: 60_000,
      clock: () => now,
      afterListing: () => {
        if (!vanish) return;
        const dom = lookupByName(control, 'test') as bigint;
        expect(destroy(dom)).toBe(0);
        expect(undefine(dom)).toBe(0);
        domainFree(dom);
      },
    });
    const events: Array<[string, number, number]> = [];
    const gotUndefined = new Promise<void>((resolve) => {
      collector.onLifecycle((uuid, event, detail) => {
        events.push([uuid, event, detail]);
        if (event === 1) resolve(); // VIR_DOMAIN_EVENT_UNDEFINED
      });
    });
    try {
      await collector.open('test:///default', { readOnly: true });
      const first = await collector.collect();
      expect(first.map((r) => r.name)).toEqual(['test']);
      expect(first[0].autostart).toBe(false);
      const uuid = first[0].uuid;

      // Autostart cannot be set in a node file; set it through the API. libvirt
      // sends no event for it, so refreshes keep what they read until the resync.
      const dom = lookupByName(control, 'test') as bigint;
      expect(setAutostart(dom, 1)).toBe(0);
      domainFree(dom);
      expect((await collector.collect())[0].autostart).toBe(false);
      now += 60_000;
      expect((await collector.collect())[0].autostart).toBe(true);
      expect(logs).toContainEqual(['info', `resync: domain test (${uuid}): autostart changed with no event from libvirt; served from now on`]);
      // The next resync finds nothing new.
      now += 60_000;
      await collector.collect();
      expect(logs.filter(([, m]) => m.startsWith('resync:'))).toHaveLength(1);

      vanish = true;
      await expect(collector.collect()).resolves.toEqual([]);
      expect(logs.filter(([level]) => level === 'warn' || level === 'error')).toEqual([]);
      expect(logs).toContainEqual(['debug', `domain test (${uuid}) vanished during the refresh`]);

      await gotUndefined;
      // VIR_DOMAIN_EVENT_STOPPED (5) / DESTROYED (1), then UNDEFINED (1) / REMOVED (0).
      expect(events).toEqual([
        [uuid, 5, 1],
        [uuid, 1, 0],
      ]);
    } finally {
      await collector.close();
      connectClose(control);
    }
  });
});

describe('LibvirtCollector and a domain that hangs', () => {
  it('serves its previous record within the deadline, logs once, and takes the late answer', async () => {
    const logs: Array<[string, string]> = [];
    let hang: Promise<void> | null = null;
    let release: () => void = () => undefined;
    const collector = new LibvirtCollector({
      domainTimeoutMs: 300,
      log: (level, message) => logs.push([level, message]),
      queryDomain: async (target, ctx) => {
        if (target.name === 'build-runner' && hang !== null) await hang;
        return queryDomain(target, ctx);
      },
    });
    await collector.open(URI, { readOnly: true });
    try {
      const first = await collector.collect();
      const previous = first.find((r) => r.name === 'build-runner')!;

      hang = new Promise<void>((resolve) => {
        release = resolve;
      });
      const t0 = Date.now();
      const second = await collector.collect();
      const elapsed = Date.now() - t0;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1500);
      expect(second).toHaveLength(9);
      expect(second.find((r) => r.name === 'build-runner')).toEqual(previous);
      // The others are fresh: the test driver's CPU time follows the clock.
      const web = (rs: DomainRecord[]): bigint => rs.find((r) => r.name === 'web-01')!.cpuTimeNs;
      expect(web(second)).toBeGreaterThan(web(first));

      // Still hung: no new call, no new log line, no wait for the deadline.
      const t1 = Date.now();
      await collector.collect();
      expect(Date.now() - t1).toBeLessThan(250);
      const warns = logs.filter(([level]) => level === 'warn');
      expect(warns).toHaveLength(1);
      expect(warns[0][1]).toMatch(/domain build-runner \(12b3ba45-cf8f-424e-952d-59edc6307cad\) did not answer within 300 ms/);

      release();
      hang = null;
      await new Promise((resolve) => setTimeout(resolve, 50));
      const fourth = await collector.collect();
      expect(fourth.find((r) => r.name === 'build-runner')!.vcpus[0].cpuTimeNs).toBeGreaterThan(previous.vcpus[0].cpuTimeNs!);
      expect(logs.some(([level, m]) => level === 'info' && /build-runner .* answers again/.test(m))).toBe(true);
    } finally {
      release();
      await collector.close();
    }
  });
});

describe('LibvirtCollector asked about the domains an event named', () => {
  it('queries only those (and domains it has no record of); the others keep their values with the listed state', async () => {
    const asked: string[] = [];
    const collector = new LibvirtCollector({
      queryDomain: (t, ctx) => {
        asked.push(t.name);
        return queryDomain(t, ctx);
      },
    });
    await collector.open(URI, { readOnly: true });
    try {
      const first = await collector.collect();
      expect(asked).toHaveLength(9);
      const web = first.find((r) => r.name === 'web-01')!;
      const runner = first.find((r) => r.name === 'build-runner')!;
      asked.length = 0;
      await new Promise((resolve) => setTimeout(resolve, 20));
      const second = await collector.collect(new Set([web.uuid]));
      expect(asked).toEqual(['web-01']);
      expect(second).toHaveLength(9);
      // Asked: fresh (the test driver's CPU time follows the clock); kept: its last values.
      expect(second.find((r) => r.name === 'web-01')!.cpuTimeNs).toBeGreaterThan(web.cpuTimeNs);
      expect(second.find((r) => r.name === 'build-runner')).toEqual(runner);
      asked.length = 0;
      await collector.collect();
      expect(asked).toHaveLength(9);
    } finally {
      await collector.close();
    }
  });
});
