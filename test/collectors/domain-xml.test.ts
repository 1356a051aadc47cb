import { readFileSync } from 'fs';
import * as path from 'path';
import {
  DomainXmlError,
  parseCpuset,
  parseDomainXml,
  toKiB,
  xmlAffinity,
  type DomainXmlFacts,
} from '../../src/collectors/domain-xml';

const fixture = (name: string): string => readFileSync(path.join(__dirname, '../fixtures/libvirt', name), 'utf8');

describe('parseCpuset', () => {
  it.each([
    ['0', [0]],
    ['0-3', [0, 1, 2, 3]],
    ['0-3,^2,8', [0, 1, 3, 8]],
    ['1-3,^2', [1, 3]],
    [' 4 - 6 , 1 ', [1, 4, 5, 6]],
    ['0-7,^2-5', [0, 1, 6, 7]],
    ['3,3,1', [1, 3]],
    ['^1,0-2', [0, 2]],
  ])('%j → %j', (spec, cpus) => {
    expect(parseCpuset(spec)).toEqual(cpus);
  });

  it.each(['', '0-', 'a', '3-1', '0,,1', '0-3,^', '1-99999'])('rejects %j', (spec) => {
    expect(() => parseCpuset(spec)).toThrow(DomainXmlError);
  });
});

describe('toKiB', () => {
  it.each([
    ['4194304', undefined, 4194304n],
    ['4194304', 'KiB', 4194304n],
    ['4194304', 'k', 4194304n],
    ['4', 'GiB', 4194304n],
    ['4', 'G', 4194304n],
    ['2048', 'MiB', 2097152n],
    ['2048', 'M', 2097152n],
    ['1', 'TiB', 1073741824n],
    ['1024', 'b', 1n],
    ['1024', 'bytes', 1n],
    // Partial KiB rounds up, as libvirt does.
    ['1025', 'b', 2n],
    ['1', 'b', 1n],
    ['1000', 'KB', 977n],
    ['1000', 'MB', 976563n],
    ['2', 'GB', 1953125n],
    ['0', 'KiB', 0n],
    // Beyond 2^53 the value must stay exact.
    ['9007199254740993', 'KiB', 9007199254740993n],
  ])('%s %s → %s KiB', (value, unit, kib) => {
    expect(toKiB(value, unit)).toBe(kib);
  });

  it('rejects unknown units and non-numbers', () => {
    expect(() => toKiB('4', 'furlong')).toThrow(/unknown memory unit "furlong"/);
    expect(() => toKiB('4.5', 'GiB')).toThrow(DomainXmlError);
    expect(() => toKiB('-1', 'KiB')).toThrow(DomainXmlError);
  });
});

describe('parseDomainXml: running qemu domain (qemu-running.xml)', () => {
  let facts: DomainXmlFacts;
  beforeAll(() => {
    facts = parseDomainXml(fixture('qemu-running.xml'));
  });

  it('reads identity and the libosinfo OS id, ignoring other metadata namespaces', () => {
    expect(facts.name).toBe('web-frontend-03');
    expect(facts.uuid).toBe('6f2b4c1e-9d3a-4e57-8b21-0c4d5e6f7a8b');
    expect(facts.osType).toBe('http://ubuntu.com/ubuntu/22.04');
  });

  it('reads vCPU counts, the online set from <vcpus>, and pinning', () => {
    expect(facts.maxVcpus).toBe(8);
    expect(facts.curVcpus).toBe(3);
    expect(facts.onlineVcpus).toEqual([0, 1, 4]);
    expect(facts.vcpuPins).toEqual([[2], [3], null, null, [4, 5, 7]]);
    expect(facts.defaultCpuset).toBeNull();
    expect(facts.placementAuto).toBe(false);
    expect(xmlAffinity(facts, 4, 8)).toEqual([4, 5, 7]);
    // Pins beyond the host's CPUs are dropped; an unpinned vCPU may use all host CPUs.
    expect(xmlAffinity(facts, 4, 6)).toEqual([4, 5]);
    expect(xmlAffinity(facts, 2, 4)).toEqual([0, 1, 2, 3]);
  });

  it('reads memory in KiB', () => {
    expect(facts.memoryKiB).toBe(8388608n);
    expect(facts.currentMemoryKiB).toBe(6291456n);
    expect(facts.hotplugMemoryKiB).toBe(33554432n);
  });

  it('reads every disk kind with its source', () => {
    expect(facts.disks).toEqual([
      {
        target: 'vda',
        sourceKind: 'file',
        device: 'disk',
        format: 'qcow2',
        source: '/var/lib/libvirt/images/web-frontend-03.qcow2',
        readonly: false,
        bus: 'virtio',
      },
      {
        target: 'vdb',
        sourceKind: 'network',
        device: 'disk',
        format: 'raw',
        source: 'rbd://10.0.0.11:6789/volumes/volume-5e1f',
        readonly: false,
        bus: 'virtio',
      },
      {
        target: 'sdb',
        sourceKind: 'network',
        device: 'lun',
        format: 'raw',
        source: 'iscsi://[fd00::17]:3260/iqn.2001-05.com.example:storage.lun1/0',
        readonly: false,
        bus: 'scsi',
      },
      {
        target: 'vdc',
        sourceKind: 'network',
        device: 'disk',
        format: 'raw',
        source: 'nbd+unix:///scratch?socket=/run/nbd/scratch.sock',
        readonly: true,
        bus: 'virtio',
      },
      // An ejected CD-ROM: no <source>.
      { target: 'sda', sourceKind: 'file', device: 'cdrom', format: 'raw', source: null, readonly: true, bus: 'sata' },
      {
        target: 'vdd',
        sourceKind: 'volume',
        device: 'disk',
        format: 'raw',
        source: 'ssd-pool/web-frontend-03-cache',
        readonly: false,
        bus: 'virtio',
      },
    ]);
  });

  it('reads interfaces; a network NIC hangs off the bridge its network made', () => {
    expect(facts.nics).toEqual([
      { kind: 'network', mac: '52:54:00:3e:21:9a', model: 'virtio', hostDevice: 'vnet12', source: 'virbr0' },
      { kind: 'bridge', mac: '52:54:00:7c:11:02', model: 'virtio', hostDevice: 'vnet13', source: 'br-prod' },
      { kind: 'direct', mac: '52:54:00:a0:b1:c2', model: 'e1000e', hostDevice: 'macvtap4', source: 'enp3s0f1' },
      { kind: 'user', mac: '52:54:00:12:34:56', model: 'rtl8139', hostDevice: null, source: null },
    ]);
  });
});

describe('parseDomainXml: inactive definition with other units (inactive-units.xml)', () => {
  let facts: DomainXmlFacts;
  beforeAll(() => {
    facts = parseDomainXml(fixture('inactive-units.xml'));
  });

  it('decodes entities and UTF-8 in the name; falls back to <os><type>', () => {
    expect(facts.name).toBe('archiv-größe & co');
    expect(facts.osType).toBe('hvm');
  });

  it('converts GiB and SI megabytes; has no hotplug bound', () => {
    expect(facts.memoryKiB).toBe(4194304n);
    expect(facts.currentMemoryKiB).toBe(976563n);
    expect(facts.hotplugMemoryKiB).toBeNull();
  });

  it('uses <vcpu cpuset> for vCPUs without their own <vcpupin>', () => {
    expect(facts.curVcpus).toBe(2);
    expect(facts.onlineVcpus).toEqual([0, 1]);
    expect(facts.defaultCpuset).toEqual([0, 1, 2, 4, 5]);
    expect(xmlAffinity(facts, 0, 16)).toEqual([0, 1, 2, 4, 5]);
    expect(xmlAffinity(facts, 1, 16)).toEqual([7]);
  });

  it('reads block, floppy, nvme and vhost-user disks', () => {
    expect(facts.disks.map((d) => [d.target, d.sourceKind, d.device, d.format, d.source, d.bus])).toEqual([
      ['hda', 'block', 'disk', 'raw', '/dev/mapper/vg0-archiv', 'ide'],
      ['fda', 'file', 'floppy', null, '/srv/floppies/boot.img', 'fdc'],
      ['vde', 'nvme', 'disk', 'raw', 'nvme://0000:3b:00.0/2', 'virtio'],
      ['vdf', 'vhostuser', 'disk', 'raw', '/run/vhost-blk/archiv.sock', 'virtio'],
    ]);
  });

  it('reports an interface without target or source as nulls', () => {
    expect(facts.nics).toEqual([{ kind: 'ethernet', mac: '52:54:00:00:00:01', model: null, hostDevice: null, source: null }]);
  });
});

describe('parseDomainXml: numad placement and another libosinfo prefix (numad-custom-prefix.xml)', () => {
  it('matches libosinfo by namespace URI, not prefix', () => {
    expect(parseDomainXml(fixture('numad-custom-prefix.xml')).osType).toBe('http://fedoraproject.org/fedora/39');
  });

  it('has unknown affinity under placement=auto, and defaults <vcpu current>', () => {
    const facts = parseDomainXml(fixture('numad-custom-prefix.xml'));
    expect(facts.placementAuto).toBe(true);
    expect(xmlAffinity(facts, 0, 8)).toBeNull();
    expect(facts.curVcpus).toBe(4);
    expect(facts.maxVcpus).toBe(4);
    expect(facts.memoryKiB).toBe(1048577n);
    expect(facts.currentMemoryKiB).toBeNull();
    expect(facts.disks).toEqual([]);
    expect(facts.nics).toEqual([]);
  });
});

describe('parseDomainXml: bad input', () => {
  it.each([
    ['not XML at all <', /not well-formed|no <domain>/],
    ['<network><name>x</name></network>', /no <domain> root/],
    ['<domain><name>x</name></domain>', /lacks <name> or <uuid>/],
    ["<domain><name>x</name><uuid>u</uuid><vcpu>two</vcpu><memory>1</memory></domain>", /<vcpu> is not a whole number/],
    ['<domain><name>x</name><uuid>u</uuid></domain>', /lacks <memory>/],
    ["<domain><name>x</name><uuid>u</uuid><memory unit='parsec'>1</memory></domain>", /unknown memory unit/],
  ])('%j fails with a DomainXmlError', (xml, message) => {
    expect(() => parseDomainXml(xml)).toThrow(DomainXmlError);
    expect(() => parseDomainXml(xml)).toThrow(message);
  });
});

describe('vCPU pin lists', () => {
  const pinned = (pins: string): DomainXmlFacts =>
    parseDomainXml(`<domain type='kvm'><name>p</name><uuid>6a3c1a9e-0000-4000-8000-000000000001</uuid>
      <memory>1024</memory><vcpu>2</vcpu><cputune>${pins}</cputune></domain>`);

  test('domains pinned alike share one frozen list; a pin of a vCPU the domain lacks is ignored', () => {
    const a = pinned("<vcpupin vcpu='0' cpuset='0-1'/><vcpupin vcpu='1' cpuset='2'/>");
    const b = pinned("<vcpupin vcpu='1' cpuset='2'/><vcpupin vcpu='0' cpuset='0,1'/>");
    expect(a.vcpuPins).toEqual([[0, 1], [2]]);
    expect(b.vcpuPins).toBe(a.vcpuPins);
    expect(Object.isFrozen(a.vcpuPins)).toBe(true);
    expect(pinned("<vcpupin vcpu='1' cpuset='3'/><vcpupin vcpu='100000' cpuset='1'/>").vcpuPins).toEqual([null, [3]]);
  });
});
