// LibvirtCollector against libvirt's in-process test driver. Every field of
// every DomainRecord is checked against virsh (a separate process with its
// own copy of the same node file) as an independent oracle. The test driver
// derives CPU times and block counters from the clock, so those are checked
// to lie between virsh's answers just before and just after collect().

import { spawnSync } from 'child_process';
import * as path from 'path';
import { LibvirtCollector } from '../../src/collectors/libvirt';
import type { DomainRecord } from '../../src/snapshot';
import { toolEnv } from '../harness/process';
import { describeUnless, missingTools } from '../harness/prereq';
import {
  attrIn,
  dash,
  diskBlocks,
  expandCpuList,
  keyValues,
  seconds,
  STATE_NAMES,
  virsh,
  virshView,
  type VirshView,
} from './virsh-oracle';

const DEMO = path.resolve(__dirname, '../../examples/libvirt/demo-host.xml');
const URI = `test://${DEMO}`;

// ------------------------------------------------------------------ tests

describeUnless(missingTools('virsh'))('LibvirtCollector on the demo host (test driver)', () => {
  const logs: Array<[string, string]> = [];
  const collector = new LibvirtCollector({ log: (level, message) => logs.push([level, message]) });
  let records: DomainRecord[];
  let before: Map<string, VirshView>;
  let after: Map<string, VirshView>;

  beforeAll(async () => {
    await collector.open(URI, { readOnly: true });
    const names = virsh(URI, ['list --all --name'])[0].split('\n').map((n) => n.trim());
    // Block stats exist only for running domains' disks with a source.
    const warm = await collector.collect();
    const activeDisks = new Map(
      warm.filter((r) => r.id !== -1).map((r) => [r.name, r.disks.filter((d) => d.source !== null).map((d) => d.target)]),
    );
    before = virshView(URI, names, activeDisks);
    records = await collector.collect();
    after = virshView(URI, names, activeDisks);
  });

  afterAll(async () => {
    await collector.close();
  });

  const record = (name: string): DomainRecord => {
    const r = records.find((d) => d.name === name);
    if (r === undefined) throw new Error(`no record for ${name}`);
    return r;
  };

  it('lists every domain, active and inactive, exactly once', () => {
    const uuids = virsh(URI, ['list --all --uuid'])[0].split('\n').map((u) => u.trim());
    expect(records.map((r) => r.uuid).sort()).toEqual([...uuids].sort());
    expect(records).toHaveLength(9);
  });

  it('reports the hypervisor like virsh version / uri', () => {
    const [version, uri] = virsh(URI, ['version', 'uri']);
    const v = keyValues(version);
    expect(collector.hypervisorInfo()).toEqual({
      type: v.get('Using API')?.split(' ')[0],
      version: v.get('Running hypervisor')?.split(' ')[1],
      libvirtVersion: v.get('Using library')?.split(' ')[1],
      uri,
    });
    expect(collector.isConnected()).toBe(true);
  });

  it('matches dominfo and domstate --reason for identity, state, flags, memory and CPU time', () => {
    for (const r of records) {
      const info = before.get(r.name)!.dominfo;
      expect([r.name, r.uuid]).toEqual([info.get('Name'), info.get('UUID')]);
      expect(r.id).toBe(info.get('Id') === '-' ? -1 : Number(info.get('Id')));
      expect(STATE_NAMES[r.state]).toBe(info.get('State'));
      const [stateText, reasonText] = /^(.*) \((.*)\)$/.exec(before.get(r.name)!.domstate)!.slice(1);
      expect(STATE_NAMES[r.state]).toBe(stateText);
      expect([r.reason, reasonText]).toEqual([0, 'unknown']);
      expect(r.persistent).toBe(info.get('Persistent') === 'yes');
      expect(r.autostart).toBe(info.get('Autostart') === 'enable');
      expect(r.managedSave).toBe(info.get('Managed save') === 'yes');
      expect(`${r.maxMemoryKiB} KiB`).toBe(info.get('Max memory'));
      expect(`${r.memoryKiB} KiB`).toBe(info.get('Used memory'));
      expect(r.curVcpus).toBe(Number(info.get('CPU(s)')));
      const cpuSeconds = Number(r.cpuTimeNs) / 1e9;
      expect(cpuSeconds).toBeGreaterThanOrEqual(seconds(info.get('CPU time')!) - 0.1);
      expect(cpuSeconds).toBeLessThanOrEqual(seconds(after.get(r.name)!.dominfo.get('CPU time')!) + 0.1);
    }
    // The fixture's special cases really are special.
    expect(record('ci-ephemeral-7').persistent).toBe(false);
    expect(record('mail-relay').managedSave).toBe(true);
    expect(records.map((r) => r.state).sort()).toEqual([1, 1, 1, 1, 3, 5, 5, 6, 7]);
  });

  it('matches dumpxml for OS type and hot-plug memory bound', () => {
    for (const r of records) {
      const xml = before.get(r.name)!.xml;
      const osinfo = /<libosinfo:os id="([^"]+)"/.exec(xml)?.[1];
      const osTypeText = /<os>\s*<type[^>]*>([^<]+)<\/type>/.exec(xml)?.[1];
      expect(r.osType).toBe(osinfo ?? osTypeText);
      const maxMemory = /<maxMemory slots='\d+' unit='KiB'>(\d+)<\/maxMemory>/.exec(xml)?.[1];
      expect(r.hotplugMemoryKiB).toBe(maxMemory === undefined ? null : BigInt(maxMemory));
    }
    expect(record('web-01').osType).toBe('http://debian.org/debian/12');
    expect(record('legacy-erp').osType).toBe('hvm');
    expect(record('web-01').hotplugMemoryKiB).toBe(16777216n);
  });

  it('matches vcpucount, vcpuinfo and vcpupin for vCPUs, their times and pinning', () => {
    for (const r of records) {
      const view = before.get(r.name)!;
      const count = new Map(view.vcpucount.map(([kind, scope, n]) => [`${kind} ${scope}`, Number(n)]));
      // A transient domain has only live values.
      expect(r.maxVcpus).toBe(count.get('maximum config') ?? count.get('maximum live'));
      expect(r.curVcpus).toBe(count.get(r.id !== -1 ? 'current live' : 'current config'));

      const pins = new Map(view.vcpupin.map(([vcpu, list]) => [Number(vcpu), expandCpuList(list)]));
      expect(r.vcpus.map((v) => v.number)).toEqual(view.vcpuinfo.map((b) => Number(b.get('VCPU'))));
      r.vcpus.forEach((v, i) => {
        expect(v.affinity).toEqual(pins.get(v.number));
        const info = view.vcpuinfo[i];
        if (r.id === -1) {
          expect([v.state, v.cpuTimeNs, info.get('State'), info.get('CPU time')]).toEqual([null, null, 'N/A', 'N/A']);
          return;
        }
        expect(v.state).toBe(info.get('State') === 'running' ? 1 : -1);
        const s = Number(v.cpuTimeNs) / 1e9;
        expect(s).toBeGreaterThanOrEqual(seconds(info.get('CPU time')!) - 0.1);
        expect(s).toBeLessThanOrEqual(seconds(after.get(r.name)!.vcpuinfo[i].get('CPU time')!) + 0.1);
      });
    }
    expect(record('web-01').vcpus.map((v) => v.affinity)).toEqual([[0, 1], [2]]);
    expect(record('legacy-erp').vcpus.map((v) => v.affinity)).toEqual([[0, 2], [1, 3]]);
  });

  it('matches domblklist --details, dumpxml and domblkinfo --all for every disk', () => {
    for (const r of records) {
      const view = before.get(r.name)!;
      const blocks = diskBlocks(view.xml);
      expect(r.disks.map((d) => [d.sourceKind, d.device, d.target])).toEqual(view.blklist.map(([t, d, target]) => [t, d, target]));
      r.disks.forEach((d, i) => {
        const listed = dash(view.blklist[i][3]);
        const block = blocks[i];
        expect(d.format).toBe(attrIn(block, 'driver', 'type'));
        expect(d.bus).toBe(attrIn(block, 'target', 'bus'));
        expect(d.readonly).toBe(block.includes('<readonly/>'));
        if (d.sourceKind === 'network') {
          const host = attrIn(block, 'host', 'name');
          const port = attrIn(block, 'host', 'port');
          expect(d.source).toBe(`${attrIn(block, 'source', 'protocol')}://${host}:${port}/${listed}`);
        } else {
          expect(d.source).toBe(listed);
        }
        const [target, capacity, allocation, physical] = view.blkinfo[i];
        expect(target).toBe(d.target);
        const big = (v: string): bigint | null => (v === '-' ? null : BigInt(v));
        expect([d.capacity, d.allocation, d.physical]).toEqual([big(capacity), big(allocation), big(physical)]);
      });
    }
    expect(record('db-primary').disks[1].source).toBe('rbd://ceph-mon1.example.net:6789/ssd-pool/db-primary-wal');
    expect(record('build-runner').disks[2]).toMatchObject({ device: 'cdrom', source: null, capacity: null });
  });

  it('matches domblkstat for running domains; inactive domains have no counters', () => {
    for (const r of records) {
      for (const d of r.disks) {
        const lo = before.get(r.name)!.blkstat.get(d.target);
        const hi = after.get(r.name)!.blkstat.get(d.target);
        const counters = [d.rdReq, d.rdBytes, d.wrReq, d.wrBytes];
        if (lo === undefined || hi === undefined) {
          expect(counters).toEqual([null, null, null, null]);
          continue;
        }
        ['rd_req', 'rd_bytes', 'wr_req', 'wr_bytes'].forEach((key, k) => {
          expect(counters[k]).not.toBeNull();
          expect(counters[k]! >= lo.get(key)! && counters[k]! <= hi.get(key)!).toBe(true);
        });
        // The test driver only has the legacy API, which reports no latency totals.
        expect([lo.has('rd_total_times'), d.rdTotalTimeNs, d.wrTotalTimeNs]).toEqual([false, null, null]);
      }
    }
  });

  it('matches domiflist for every NIC', () => {
    for (const r of records) {
      const listed = before.get(r.name)!.iflist.map(([dev, kind, source, model, mac]) => ({
        kind,
        mac,
        model: dash(model),
        hostDevice: dash(dev),
        source: dash(source),
      }));
      expect(r.nics).toEqual(listed);
    }
    expect(record('db-primary').nics[0]).toEqual({
      kind: 'direct',
      mac: '52:54:00:f1:f3:0b',
      model: 'virtio',
      hostDevice: 'mvtap-db0',
      source: 'eth0',
    });
  });

  it('reports no job state where the driver has no job API (virsh domjobinfo fails too)', () => {
    const r = spawnSync('virsh', ['-c', URI, 'domjobinfo', 'web-01'], { encoding: 'utf8', env: toolEnv() });
    expect(r.stderr).toMatch(/not supported by the connection driver/);
    expect(records.every((d) => d.jobType === null && d.jobOperation === null)).toBe(true);
  });

  it('keeps the non-ASCII name intact', () => {
    const r = record('fileserver-größe');
    expect(r.uuid).toBe('f37447a6-3368-4953-9f4d-bc31f66d965d');
    expect(Buffer.byteLength(r.name)).toBe(r.name.length + 2);
    expect(r.disks[0].source).toBe('/var/lib/libvirt/images/fileserver-größe.qcow2');
  });

  it('logs nothing above debug on a healthy host, and subscribed to every event', () => {
    expect(logs.filter(([level]) => level !== 'debug')).toEqual([]);
    // Registering job-completed events and the close callback both worked.
    expect(logs.filter(([, m]) => /events unavailable|callback unavailable/.test(m))).toEqual([]);
  });
});
