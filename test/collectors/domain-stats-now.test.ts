// The in-process test driver's missing stats groups, asked on the main
// thread (statsCompletedNow): the same records as through the pool, the
// fall-backs to the ordinary query, and the event loop handed back while a
// large host is asked.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { generateNodeXml } from '../../bench/gen-fixture';
import { statsCompletedNow } from '../../src/collectors/domain-stats-now';
import { parseDomainXml, type DomainXmlFacts } from '../../src/collectors/domain-xml';
import { LibvirtCollector } from '../../src/collectors/libvirt';
import { queryDomain, type DomainTarget, type DriverSupport } from '../../src/collectors/libvirt-domain';
import {
  allDomainStats,
  answersFromMemory,
  closeConnection,
  libvirtCallsMade,
  domainId,
  domainName,
  domainUuid,
  ListingUuids,
  openConnection,
  type DomainList,
} from '../../src/libvirt/calls';
import { domainXml } from '../../src/libvirt/domain-calls';
import { installErrorHandler } from '../../src/libvirt/errors';
import { StatsGroup, type ConnectPtr } from '../../src/libvirt/ffi';
import type { DomainRecord } from '../../src/snapshot';

const DEMO = path.resolve(__dirname, '../../examples/libvirt/demo-host.xml');
const URI = `test://${DEMO}`;

/** A record with every value the test driver derives from the clock replaced by whether it is known. */
function timeless(r: DomainRecord): unknown {
  const known = (v: bigint | null): string => (v === null ? 'null' : 'known');
  return {
    ...r,
    cpuTimeNs: known(r.cpuTimeNs),
    vcpus: r.vcpus.map((v) => ({ ...v, cpuTimeNs: known(v.cpuTimeNs) })),
    disks: r.disks.map((d) => ({
      ...d,
      rdReq: known(d.rdReq),
      wrReq: known(d.wrReq),
      rdBytes: known(d.rdBytes),
      wrBytes: known(d.wrBytes),
      rdTotalTimeNs: known(d.rdTotalTimeNs),
      wrTotalTimeNs: known(d.wrTotalTimeNs),
    })),
  };
}

describe('answersFromMemory', () => {
  it('is true only for the test driver opened in this process', () => {
    expect(answersFromMemory('test:///default')).toBe(true);
    expect(answersFromMemory(URI)).toBe(true);
    expect(answersFromMemory('test+unix:///default?socket=/tmp/x')).toBe(false);
    expect(answersFromMemory('test://host.example/default')).toBe(false);
    expect(answersFromMemory('qemu:///system')).toBe(false);
    expect(answersFromMemory(null)).toBe(false);
  });
});

describe('LibvirtCollector on the in-process test driver, steady', () => {
  it('gives the same records as the ordinary per-domain query through the pool', async () => {
    // The test seam turns the direct calls off: that collector asks through the pool.
    const direct = new LibvirtCollector();
    const pooled = new LibvirtCollector({ queryDomain });
    await direct.open(URI, { readOnly: true });
    await pooled.open(URI, { readOnly: true });
    try {
      await direct.collect();
      await pooled.collect();
      const a = await direct.collect();
      const b = await pooled.collect();
      expect(a.length).toBeGreaterThan(5);
      expect(a.map(timeless)).toEqual(b.map(timeless));
      // Counters really were read: every running domain has its CPU time and disk counters.
      const running = a.filter((r) => r.state === 1);
      expect(running.length).toBeGreaterThan(2);
      for (const r of running) {
        expect(r.cpuTimeNs).not.toBeNull();
        for (const d of r.disks) if (d.source !== null) expect(d.rdReq).not.toBeNull();
      }
    } finally {
      await direct.close();
      await pooled.close();
    }
  });

  it('hands the event loop back between slices of direct calls', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stats-now-'));
    const file = path.join(dir, 'host.xml');
    fs.writeFileSync(file, generateNodeXml(200));
    /**
     * How many different counts of virDomainGetInfo calls the event loop
     * sees, turning as often as it can through a steady collection with
     * slices of `sliceMs`: 2 (before, after) when it never turns in between.
     */
    const countsSeen = async (sliceMs: number): Promise<number> => {
      const seen = new Set<number>();
      let spinning = true;
      const spin = (): void => {
        seen.add(libvirtCallsMade().get('virDomainGetInfo') ?? 0);
        if (spinning) setImmediate(spin);
      };
      const collector = new LibvirtCollector({ sliceMs });
      await collector.open(`test://${file}`, { readOnly: true });
      try {
        await collector.collect();
        setImmediate(spin);
        expect(await collector.collect()).toHaveLength(200);
        spinning = false;
        return seen.size;
      } finally {
        await collector.close();
      }
    };
    try {
      // Slices of 0 ms: a turn after every domain. A minute-long slice: none.
      expect(await countsSeen(0)).toBeGreaterThanOrEqual(150);
      expect(await countsSeen(60_000)).toBeLessThanOrEqual(2);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('statsCompletedNow', () => {
  let conn: ConnectPtr;
  let list: DomainList;
  let targets: DomainTarget[];
  const facts = new Map<string, DomainXmlFacts>();
  const support = (blockStatsFlags: DriverSupport['blockStatsFlags'] = 'no'): DriverSupport =>
    ({ blockStatsFlags, jobStats: 'unknown', jobInfo: 'unknown' });

  beforeAll(async () => {
    installErrorHandler();
    conn = await openConnection(URI, true);
    list = await allDomainStats(conn, StatsGroup.STATE, 0);
    targets = list.entries.map(({ dom, stats }) => ({ dom, uuid: domainUuid(dom), name: domainName(dom), id: domainId(dom), stats }));
    for (const t of targets) facts.set(t.uuid, parseDomainXml(await domainXml(t.dom)));
  });
  afterAll(async () => {
    await list.freeLater();
    await closeConnection(conn);
  });

  it('ListingUuids gives each domain its own UUID whatever position it is listed at', () => {
    const uuids = new ListingUuids();
    const doms = targets.map((t) => t.dom);
    const expected = targets.map((t) => t.uuid);
    expect(new Set(expected).size).toBe(doms.length);
    expect(doms.map((dom, i) => uuids.at(dom, i))).toEqual(expected);
    // Listed again in another order, then shorter, then as at first: no position keeps a UUID that moved.
    const reversed = doms.slice().reverse();
    expect(reversed.map((dom, i) => uuids.at(dom, i))).toEqual(expected.slice().reverse());
    uuids.truncate(2);
    expect(doms.slice(1, 3).map((dom, i) => uuids.at(dom, i))).toEqual(expected.slice(1, 3));
    expect(doms.map((dom, i) => uuids.at(dom, i))).toEqual(expected);
  });

  const running = (): DomainTarget => targets.find((t) => t.id !== -1 && facts.get(t.uuid)!.disks.length > 0)!;
  const inactive = (): DomainTarget => targets.find((t) => t.id === -1 && facts.get(t.uuid)!.disks.some((d) => d.source !== null))!;

  it('fills CPU, memory, vCPUs and every disk of a running domain', () => {
    const t = running();
    const f = facts.get(t.uuid)!;
    const s = statsCompletedNow(t, f, support())!;
    expect(s).not.toBeNull();
    expect(s.state).toBe(t.stats.state);
    expect(s.balloonKiB).toBeGreaterThan(0n);
    expect(s.cpuTimeNs).not.toBeNull();
    expect(s.vcpuGroup).toBe(true);
    expect(s.vcpus.map((v) => v.number)).toEqual(f.onlineVcpus);
    expect(s.blocks.map((b) => b?.name)).toEqual(f.disks.map((d) => d.target));
    const withSource = s.blocks.filter((_, i) => f.disks[i].source !== null);
    expect(withSource.length).toBeGreaterThan(0);
    for (const b of withSource) {
      expect(b!.capacity).not.toBeNull();
      expect(b!.rdReqs).not.toBeNull();
      // virDomainBlockStats has no latency totals.
      expect(b!.rdTimes).toBeNull();
    }
  });

  it('asks an inactive domain for its memory and disk sizes only', () => {
    const t = inactive();
    const s = statsCompletedNow(t, facts.get(t.uuid)!, support())!;
    expect(s.balloonKiB).toBeGreaterThan(0n);
    expect(s.vcpuGroup).toBe(false);
    const sized = s.blocks.filter((b) => b?.capacity !== null);
    expect(sized.length).toBeGreaterThan(0);
    for (const b of sized) expect(b!.rdReqs).toBeNull();
  });

  it('gives null when a call fails, and before the block stats API is learned', () => {
    const t = running();
    const f = facts.get(t.uuid)!;
    const gone = { ...f, disks: f.disks.map((d) => ({ ...d, target: 'nosuchdisk', source: d.source ?? '/x' })) };
    expect(statsCompletedNow(t, gone, support())).toBeNull();
    expect(statsCompletedNow(t, f, support('unknown'))).toBeNull();
  });

  it('returns the bulk record itself when it lacks nothing', () => {
    const t = running();
    const f = facts.get(t.uuid)!;
    const full = statsCompletedNow(t, f, support())!;
    expect(statsCompletedNow({ ...t, stats: full }, f, support())).toBe(full);
  });
});
