// Host collectors on fixtures: parsers on real captures and hand-made
// variants, readers on fixture roots, and collectHost's handling of missing
// and unreadable files. Expected hrStorageIndex values for mtab-variety were
// measured on snmpd 5.9.3 (see host-linkage.test.ts, which re-checks them).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HostCollectorState, collectHost } from '../../src/collectors/host';
import {
  FsysIndexRegistry,
  classifyFsType,
  filesystemFor,
  resolveImagePaths,
  ImagePathResolver,
  parseMounts,
  readMounts,
  storageIndexes,
} from '../../src/collectors/mounts';
import { CollectorLogLevel, HostPaths, hostPaths, reportTo } from '../../src/collectors/paths';
import {
  cpuDeviceIndexes,
  hrProcessorIndex,
  parseCpuinfoProcessors,
  parseStatCpus,
  parseUptime,
  readProcfs,
} from '../../src/collectors/procfs';
import { SysfsInterfaceRecord, parseIfIndex, readInterfaces, resolveParents } from '../../src/collectors/sysfs-net';
import type { HostFilesystem, HostInterface } from '../../src/snapshot';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'host');
const fixture = (...parts: string[]): string => path.join(FIXTURES, ...parts);
const readFixture = (...parts: string[]): string => fs.readFileSync(fixture(...parts), 'utf8');

interface SysNetDescription {
  interfaces: Record<string, { ifindex: number; master?: string; lower?: string[] }>;
  classFiles?: Record<string, string>;
}

/**
 * Builds <root>/class/net/<name> → ../../devices/virtual/net/<name> with
 * ifindex, master → ../<master>, lower_<x> → ../<x> and upper_<master>, the
 * layout the kernel creates, from a JSON description (git and jest need no
 * symlinks in the checked-in tree).
 */
function materializeSysfs(descriptionFile: string, root: string): void {
  const description = JSON.parse(readFixture(descriptionFile)) as SysNetDescription;
  const classDir = path.join(root, 'class', 'net');
  const devicesDir = path.join(root, 'devices', 'virtual', 'net');
  fs.mkdirSync(classDir, { recursive: true });
  fs.mkdirSync(devicesDir, { recursive: true });
  for (const [name, iface] of Object.entries(description.interfaces)) {
    const deviceDir = path.join(devicesDir, name);
    fs.mkdirSync(deviceDir);
    fs.writeFileSync(path.join(deviceDir, 'ifindex'), `${iface.ifindex}\n`);
    fs.writeFileSync(path.join(deviceDir, 'mtu'), '1500\n');
    if (iface.master) {
      fs.symlinkSync(`../${iface.master}`, path.join(deviceDir, 'master'));
      fs.symlinkSync(`../${iface.master}`, path.join(deviceDir, `upper_${iface.master}`));
    }
    for (const lower of iface.lower ?? []) fs.symlinkSync(`../${lower}`, path.join(deviceDir, `lower_${lower}`));
    fs.symlinkSync(`../../devices/virtual/net/${name}`, path.join(classDir, name));
  }
  for (const [file, text] of Object.entries(description.classFiles ?? {})) fs.writeFileSync(path.join(classDir, file), text);
}

interface LogLine {
  level: CollectorLogLevel;
  message: string;
}

function recordingLog(): { lines: LogLine[]; log: (level: CollectorLogLevel, message: string) => void } {
  const lines: LogLine[] = [];
  return { lines, log: (level, message) => lines.push({ level, message }) };
}

const iface = (name: string, ifIndex: number, parentIfIndex = 0): [string, HostInterface] => [
  name,
  { name, ifIndex, parentIfIndex },
];

let scratch: string;
beforeAll(() => {
  scratch = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-host-test-')));
});
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('procfs parsers', () => {
  it('reads seconds since boot from /proc/uptime', () => {
    expect(parseUptime(readFixture('proc', 'uptime'))).toBe(535.36);
    expect(parseUptime('42 7\n')).toBe(42);
  });

  it('rejects text that is not an uptime', () => {
    expect(parseUptime('')).toBeNull();
    expect(parseUptime('up 3 days\n')).toBeNull();
    expect(parseUptime('12abc 4\n')).toBeNull();
  });

  it('lists the processors of /proc/cpuinfo, gaps included', () => {
    expect(parseCpuinfoProcessors(readFixture('proc', 'cpuinfo'))).toEqual([0, 1]);
    expect(parseCpuinfoProcessors(readFixture('proc-cpu1-offline', 'cpuinfo'))).toEqual([0, 2, 3]);
    expect(parseCpuinfoProcessors('processor:7\nprocessors : 9\nmodel name : processor : 5\n')).toEqual([7]);
  });

  it('lists the per-CPU lines of /proc/stat, not the "cpu" total', () => {
    expect(parseStatCpus(readFixture('proc', 'stat'))).toEqual([0, 1]);
    expect(parseStatCpus(readFixture('proc-cpu1-offline', 'stat'))).toEqual([0, 2, 3]);
  });

  it('numbers CPU N as (HRDEV_PROC << 16) + N, sorted', () => {
    expect(hrProcessorIndex(0)).toBe(196608);
    expect([...cpuDeviceIndexes([3, 0, 2, 0])]).toEqual([
      [0, 196608],
      [2, 196610],
      [3, 196611],
    ]);
  });
});

describe('readProcfs', () => {
  it('reads the captured /proc', async () => {
    const info = await readProcfs(hostPaths({ procRoot: fixture('proc') }));
    expect(info.uptimeSeconds).toBe(535.36);
    expect([...info.cpuDeviceIndex]).toEqual([
      [0, 196608],
      [1, 196609],
    ]);
  });

  it('leaves an offline CPU out and keeps the others at their kernel numbers', async () => {
    const info = await readProcfs(hostPaths({ procRoot: fixture('proc-cpu1-offline') }));
    expect([...info.cpuDeviceIndex.keys()]).toEqual([0, 2, 3]);
    expect(info.cpuDeviceIndex.get(3)).toBe(196611);
  });

  it('keeps a CPU that went offline, as snmpd never drops one', async () => {
    const seen = new Set<number>();
    await readProcfs(hostPaths({ procRoot: fixture('proc-cpu1-offline') }), undefined, seen);
    const later = await readProcfs(hostPaths({ procRoot: fixture('proc') }), undefined, seen);
    expect([...later.cpuDeviceIndex.keys()]).toEqual([0, 1, 2, 3]);
  });

  it('takes CPUs from /proc/stat too (snmpd adds them on its next 5-second sample)', async () => {
    const root = path.join(scratch, 'proc-stat-only');
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'uptime'), '10.00 20.00\n');
    fs.writeFileSync(path.join(root, 'cpuinfo'), 'processor\t: 0\n\nprocessor\t: 1\n');
    fs.writeFileSync(path.join(root, 'stat'), 'cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu7 1 2 3 4\nintr 5\n');
    const info = await readProcfs(hostPaths({ procRoot: root }));
    expect([...info.cpuDeviceIndex.values()]).toEqual([196608, 196609, 196615]);
  });
});

describe('parseMounts', () => {
  it('parses the captured mount table line by line, duplicates kept', () => {
    const mounts = parseMounts(readFixture('mtab'));
    expect(mounts).toHaveLength(20);
    expect(mounts[5]).toEqual({ device: '/dev/vda', mountPoint: '/', fsType: 'ext4', options: expect.stringMatching(/^rw,/) });
    expect(mounts.filter((m) => m.mountPoint === '/dev/pts')).toHaveLength(2);
  });

  it('follows getmntent: comments, blank lines, tabs, octal escapes, empty fields', () => {
    const mounts = parseMounts(readFixture('mtab-variety'));
    const byPoint = new Map(mounts.map((m) => [m.mountPoint, m]));
    expect(mounts).toHaveLength(32);
    expect(byPoint.get('/mnt/with space')?.fsType).toBe('ext3');
    expect(byPoint.get('/bs\\x')?.device).toBe('/dev/vdn');
    expect(byPoint.get('/tabbed')).toEqual({ device: '/dev/vdm', mountPoint: '/tabbed', fsType: 'xfs', options: 'rw' });
    // "none /mnt/empty  rw 0 0": the double blank is one separator, so the type is "rw".
    expect(byPoint.get('/mnt/empty')?.fsType).toBe('rw');
    expect(parseMounts('a\\011b /p\\012q t\\\\u o\n')).toEqual([
      { device: 'a\tb', mountPoint: '/p\nq', fsType: 't\\u', options: 'o' },
    ]);
    expect(parseMounts('/dev/x /only-two\n')).toEqual([{ device: '/dev/x', mountPoint: '/only-two', fsType: '', options: '' }]);
  });
});

describe('classifyFsType (fsys_mntent.c _fsys_type)', () => {
  it.each([
    ['ext4', 'local'], ['xfs', 'local'], ['btrfs', 'local'], ['tmpfs', 'local'], ['vfat', 'local'],
    ['iso9660', 'local'], ['zfs', 'local'], ['fuse.glusterfs', 'local'], ['', 'local'],
    ['nfs', 'remote'], ['nfs4', 'remote'], ['cifs', 'remote'], ['smbfs', 'remote'], ['mvfs', 'remote'],
    ['autofs', 'autofs'],
    ['proc', 'skipped'], ['sysfs', 'skipped'], ['devtmpfs', 'skipped'], ['devpts', 'skipped'],
    ['cgroup2', 'skipped'], ['overlay', 'skipped'], ['squashfs', 'skipped'], ['fuse.sshfs', 'skipped'],
    ['ntfs3', 'skipped'], ['exfat', 'skipped'], ['ceph', 'skipped'],
  ])('%j is %s', (fsType, expected) => {
    expect(classifyFsType(fsType)).toBe(expected);
  });
});

// Measured: snmpd 5.9.3 on this VM's mount table (mtab fixture) showed
// hrStorageTable 34 /dev/shm, 36 /, 37 /mnt/sandboxing/..., 38 /sys/fs/cgroup.
const LISTED_ON_CAPTURE: HostFilesystem[] = [
  { mountPoint: '/dev/shm', hrStorageIndex: 34 },
  { mountPoint: '/', hrStorageIndex: 36 },
  { mountPoint: '/mnt/sandboxing/model_tools_env/v1/python', hrStorageIndex: 37 },
  { mountPoint: '/sys/fs/cgroup', hrStorageIndex: 38 },
];

// Measured on snmpd 5.9.3 with mtab-variety as its /etc/mtab.
const LISTED_ON_VARIETY: Array<[string, number]> = [
  ['/', 32], ['/mnt/nfs', 33], ['/mnt/nfs4', 34], ['/mnt/cifs', 35], ['/srv/xfs', 36], ['/srv/btrfs', 37],
  ['/boot/efi', 39], ['/tank', 43], ['/mnt/with space', 44], ['/run', 45], ['/media/cd', 48], ['/mnt/gl', 49],
  ['/mnt/f2', 50], ['/mnt/ntfs', 51], ['/mnt/reiser', 54], ['/x', 55], ['/tabbed', 57], ['/bs\\x', 58],
  ['/var/lib/libvirt/images', 59],
];

const listed = (filesystems: HostFilesystem[]): Array<[string, number]> =>
  filesystems.filter((f) => f.hrStorageIndex !== 0).map((f) => [f.mountPoint, f.hrStorageIndex]);

describe('storageIndexes', () => {
  it('reproduces snmpd on the captured mount table', () => {
    const filesystems = storageIndexes(parseMounts(readFixture('mtab')));
    expect(filesystems.filter((f) => f.hrStorageIndex !== 0)).toEqual(LISTED_ON_CAPTURE);
    // Every distinct mount point is there, the unlisted ones with 0.
    expect(filesystems.map((f) => f.mountPoint).slice(0, 6)).toEqual(['/proc', '/sys', '/dev', '/dev/shm', '/dev/pts', '/']);
    expect(filesystems).toHaveLength(18);
  });

  it('reproduces snmpd on every fs-type case of mtab-variety', () => {
    const filesystems = storageIndexes(parseMounts(readFixture('mtab-variety')));
    expect(listed(filesystems)).toEqual(LISTED_ON_VARIETY);
    const zero = filesystems.filter((f) => f.hrStorageIndex === 0).map((f) => f.mountPoint);
    expect(zero).toEqual([
      '/proc', '/mnt/auto', '/var/lib/docker/overlay2/x/merged', '/mnt/sshfs', '/snap/core', '/dev', '/mnt/empty',
      '/mnt/ntfs3', '/mnt/exfat', '/y',
    ]);
  });

  it('hides remote filesystems under skipNFSInHostResources without renumbering', () => {
    const filesystems = storageIndexes(parseMounts(readFixture('mtab-variety')), { skipNfsInHostResources: true });
    expect(listed(filesystems)).toEqual(
      LISTED_ON_VARIETY.filter(([p]) => !['/mnt/nfs', '/mnt/nfs4', '/mnt/cifs'].includes(p)),
    );
  });

  it('gives snmpd.conf disk paths the first indexes', () => {
    // Measured: "disk /sys/fs/cgroup" + "disk /nonexistent 10%" on the captured table.
    const filesystems = storageIndexes(parseMounts(readFixture('mtab')), {
      diskPaths: ['/sys/fs/cgroup', '/nonexistent'],
    });
    expect(listed(filesystems)).toEqual([
      ['/sys/fs/cgroup', 31],
      ['/dev/shm', 36],
      ['/', 38],
      ['/mnt/sandboxing/model_tools_env/v1/python', 39],
    ]);
  });

  it('keeps an unmounted path\'s index taken, as snmpd does', () => {
    // Measured: after removing /mnt/nfs and appending /mnt/new, snmpd showed /mnt/new one past the last index.
    const registry = new FsysIndexRegistry();
    const variety = parseMounts(readFixture('mtab-variety'));
    storageIndexes(variety, {}, registry);
    const changed = [...variety.filter((m) => m.mountPoint !== '/mnt/nfs'), ...parseMounts('/dev/vdz /mnt/new ext4 rw 0 0\n')];
    const after = storageIndexes(changed, {}, registry);
    expect(listed(after)).toEqual([
      ...LISTED_ON_VARIETY.filter(([p]) => p !== '/mnt/nfs'),
      ['/mnt/new', 60],
    ]);
    expect(after.find((f) => f.mountPoint === '/mnt/nfs')).toBeUndefined();
    // A fresh computation would have renumbered; the registry is what keeps snmpd's numbers.
    expect(listed(storageIndexes(changed)).slice(-1)).toEqual([['/mnt/new', 59]]);
  });

  it('keeps a path remote once it was seen as nfs (the flag is never cleared)', () => {
    const registry = new FsysIndexRegistry();
    const options = { skipNfsInHostResources: true };
    storageIndexes(parseMounts('s:/e /data nfs rw 0 0\n'), options, registry);
    expect(storageIndexes(parseMounts('/dev/vdb /data ext4 rw 0 0\n'), options, registry)).toEqual([
      { mountPoint: '/data', hrStorageIndex: 0 },
    ]);
  });
});

describe('filesystemFor', () => {
  const filesystems = storageIndexes(parseMounts(readFixture('mtab-variety')));

  it('picks the longest mount point that is a whole-component prefix', () => {
    expect(filesystemFor(filesystems, '/var/lib/libvirt/images/web01.qcow2')?.hrStorageIndex).toBe(59);
    expect(filesystemFor(filesystems, '/var/lib/libvirt/images')?.hrStorageIndex).toBe(59);
    expect(filesystemFor(filesystems, '/var/lib/libvirt/images-old/a.img')?.mountPoint).toBe('/');
    expect(filesystemFor(filesystems, '/srv/xfs/../btrfs/disk.raw')?.mountPoint).toBe('/srv/btrfs');
    expect(filesystemFor(filesystems, '/mnt/with space/disk.img')?.hrStorageIndex).toBe(44);
  });

  it('returns the unlisted mount (index 0) rather than an enclosing listed one', () => {
    expect(filesystemFor(filesystems, '/dev/sdb')).toEqual({ mountPoint: '/dev', hrStorageIndex: 0 });
  });

  it('has no answer for relative paths or an empty table', () => {
    expect(filesystemFor(filesystems, 'images/a.img')).toBeUndefined();
    expect(filesystemFor([], '/var/lib/a.img')).toBeUndefined();
  });

  it('resolves symlinks (resolveImagePaths) before the lookup', async () => {
    const images = path.join(scratch, 'images');
    const links = path.join(scratch, 'links');
    fs.mkdirSync(images);
    fs.mkdirSync(links);
    fs.writeFileSync(path.join(images, 'disk.img'), '');
    fs.symlinkSync(path.join(images, 'disk.img'), path.join(links, 'disk.img'));
    const table: HostFilesystem[] = [
      { mountPoint: '/', hrStorageIndex: 36 },
      { mountPoint: images, hrStorageIndex: 41 },
      { mountPoint: links, hrStorageIndex: 42 },
    ];
    const linked = path.join(links, 'disk.img');
    const missing = path.join(links, 'missing.img');
    const resolved = await resolveImagePaths([linked, missing, linked]);
    expect(resolved.size).toBe(2);
    expect(filesystemFor(table, resolved.get(linked)!)?.hrStorageIndex).toBe(41);
    expect(filesystemFor(table, resolved.get(missing)!)?.hrStorageIndex).toBe(42);
    // Unresolved, the configured path counts.
    expect(filesystemFor(table, linked)?.hrStorageIndex).toBe(42);
  });
});

describe('sysfs network interfaces', () => {
  it('parses ifindex files', () => {
    expect(parseIfIndex('4\n')).toBe(4);
    expect(parseIfIndex('0\n')).toBeNull();
    expect(parseIfIndex('x\n')).toBeNull();
  });

  it('reads the captured host', async () => {
    const root = path.join(scratch, 'sys-host');
    materializeSysfs('sys-net-host.json', root);
    const interfaces = await readInterfaces(hostPaths({ sysRoot: root }));
    expect([...interfaces].sort(([, a], [, b]) => a.ifIndex - b.ifIndex)).toEqual([
      iface('lo', 1), iface('ifb0', 2), iface('ifb1', 3), iface('eth0', 4),
    ]);
  });

  it('finds bridge masters and lower devices, not a bridge\'s own ports', async () => {
    const root = path.join(scratch, 'sys-hypervisor');
    materializeSysfs('sys-net-hypervisor.json', root);
    const interfaces = await readInterfaces(hostPaths({ sysRoot: root }));
    expect(new Map([...interfaces].sort(([, a], [, b]) => a.ifIndex - b.ifIndex))).toEqual(
      new Map([
        iface('lo', 1),
        iface('eth0', 2),
        iface('eth1', 3, 4), // bridge port → br0
        iface('br0', 4), // its lower_ links are its own ports
        iface('vnet0', 5, 4),
        iface('vnet1', 6, 4),
        iface('macvtap0', 7, 2), // lower_eth0
        iface('eth0.10', 8, 2),
        iface('bond0', 9, 12), // master br1 wins over its slaves
        iface('eth2', 10, 9),
        iface('eth3', 11, 9),
        iface('br1', 12),
        iface('br-empty', 13),
        iface('veth-a', 14), // lower_ghost names no interface
        iface('macvtap1', 15, 3), // over a NIC that is itself a bridge port
      ]),
    );
  });

  it('picks the smallest ifIndex when several lowers qualify', () => {
    const records: SysfsInterfaceRecord[] = [
      { name: 'a', ifIndex: 7, master: null, lowers: [] },
      { name: 'b', ifIndex: 3, master: null, lowers: [] },
      { name: 'team', ifIndex: 9, master: null, lowers: ['a', 'b'] },
    ];
    expect(resolveParents(records).get('team')?.parentIfIndex).toBe(3);
  });
});

describe('collectHost', () => {
  function fixtureRoot(): HostPaths {
    const sysRoot = path.join(scratch, `sys-collect-${Math.random().toString(36).slice(2)}`);
    materializeSysfs('sys-net-hypervisor.json', sysRoot);
    return { procRoot: fixture('proc'), sysRoot, mountsFile: fixture('mtab-variety') };
  }

  it('combines the collectors without logging when every file is there', async () => {
    const { lines, log } = recordingLog();
    const host = await collectHost(fixtureRoot(), log);
    expect(lines).toEqual([]);
    expect(host.uptimeSeconds).toBe(535.36);
    expect([...host.cpuDeviceIndex.values()]).toEqual([196608, 196609]);
    expect(host.interfaces.get('vnet0')).toEqual({ name: 'vnet0', ifIndex: 5, parentIfIndex: 4 });
    expect(listed(host.filesystems)).toEqual(LISTED_ON_VARIETY);
  });

  it('logs one line per missing file, naming it and what is lost, and returns the rest', async () => {
    const procRoot = path.join(scratch, 'proc-partial');
    fs.mkdirSync(procRoot);
    fs.copyFileSync(fixture('proc', 'cpuinfo'), path.join(procRoot, 'cpuinfo'));
    const paths: HostPaths = {
      procRoot,
      sysRoot: path.join(scratch, 'no-such-sys'),
      mountsFile: path.join(scratch, 'no-such-mtab'),
    };
    const { lines, log } = recordingLog();
    const host = await collectHost(paths, log);
    expect(lines.map((l) => l.message).sort()).toEqual([
      `cannot read ${path.join(procRoot, 'stat')}: ENOENT; vmCpuPhysIndex falls back to the CPUs in /proc/cpuinfo`,
      `cannot read ${path.join(procRoot, 'uptime')}: ENOENT; vmHvUpTime will be 0`,
      `cannot read ${path.join(scratch, 'no-such-mtab')}: ENOENT; vmStorageParent will be 0 for every disk`,
      `cannot read ${path.join(scratch, 'no-such-sys', 'class', 'net')}: ENOENT; vmNetworkIfIndex and vmNetworkParent will be 0`,
    ].sort());
    expect(lines.every((l) => l.level === 'warn')).toBe(true);
    expect(host).toEqual({
      uptimeSeconds: 0,
      cpuDeviceIndex: new Map([[0, 196608], [1, 196609]]),
      interfaces: new Map(),
      filesystems: [],
    });
  });

  it('names the errno of a file that exists but cannot be read', async () => {
    const { lines, log } = recordingLog();
    const paths = { ...fixtureRoot(), mountsFile: scratch }; // a directory: EISDIR
    await collectHost(paths, log);
    expect(lines).toEqual([
      { level: 'warn', message: `cannot read ${scratch}: EISDIR; vmStorageParent will be 0 for every disk` },
    ]);
  });

  it('reports a malformed /proc/uptime once', async () => {
    const procRoot = path.join(scratch, 'proc-bad-uptime');
    fs.mkdirSync(procRoot);
    fs.writeFileSync(path.join(procRoot, 'uptime'), 'garbage\n');
    fs.copyFileSync(fixture('proc', 'cpuinfo'), path.join(procRoot, 'cpuinfo'));
    fs.copyFileSync(fixture('proc', 'stat'), path.join(procRoot, 'stat'));
    const { lines, log } = recordingLog();
    const host = await collectHost({ ...fixtureRoot(), procRoot }, log);
    expect(host.uptimeSeconds).toBe(0);
    expect(lines).toHaveLength(1);
    expect(lines[0].message).toMatch(/^cannot read .*proc-bad-uptime\/uptime: .*; vmHvUpTime will be 0$/);
  });

  it('with a state, warns when a file breaks, stays quiet while it is broken, and says when it is back', async () => {
    const paths = fixtureRoot();
    const mountsFile = path.join(scratch, 'mtab-flaky');
    const flaky = { ...paths, mountsFile };
    const state = new HostCollectorState();
    const { lines, log } = recordingLog();

    await collectHost(flaky, log, state);
    await collectHost(flaky, log, state);
    expect(lines.filter((l) => l.level !== 'debug')).toEqual([
      { level: 'warn', message: `cannot read ${mountsFile}: ENOENT; vmStorageParent will be 0 for every disk` },
    ]);

    fs.copyFileSync(fixture('mtab-variety'), mountsFile);
    const host = await collectHost(flaky, log, state);
    expect(lines.filter((l) => l.level !== 'debug').slice(1)).toEqual([
      { level: 'info', message: `${mountsFile} is readable again` },
    ]);
    expect(listed(host.filesystems)).toEqual(LISTED_ON_VARIETY);
  });

  it('carries snmpd options and history in the state', async () => {
    const state = new HostCollectorState({ skipNfsInHostResources: true, diskPaths: ['/srv/xfs'] });
    const host = await collectHost(fixtureRoot(), () => undefined, state);
    expect(listed(host.filesystems).slice(0, 3)).toEqual([
      ['/srv/xfs', 31],
      ['/', 33],
      ['/srv/btrfs', 37],
    ]);
  });
});

describe('reportTo and readMounts', () => {
  it('reportTo logs every failure as a warning', async () => {
    const { lines, log } = recordingLog();
    const mounts = await readMounts(hostPaths({ mountsFile: path.join(scratch, 'absent') }), reportTo(log));
    expect(mounts).toEqual([]);
    expect(lines).toEqual([
      { level: 'warn', message: `cannot read ${path.join(scratch, 'absent')}: ENOENT; vmStorageParent will be 0 for every disk` },
    ]);
  });

  it('defaults to the mount table snmpd reads', () => {
    expect(hostPaths()).toEqual({ procRoot: '/proc', sysRoot: '/sys', mountsFile: '/etc/mtab' });
  });
});

describe('ImagePathResolver', () => {
  it('resolves each path once within its age limit, and again after it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-resolver-'));
    const real = path.join(dir, 'real.img');
    const link = path.join(dir, 'link.img');
    fs.writeFileSync(real, '');
    fs.symlinkSync(real, link);
    const resolver = new ImagePathResolver(1000);
    const first = await resolver.resolve([link], 0);
    expect(first.get(link)).toBe(real);
    // The link now points elsewhere; within the age limit the cached answer stands.
    fs.unlinkSync(link);
    fs.symlinkSync('/nonexistent/elsewhere.img', link);
    const second = await resolver.resolve([link, real], 500);
    expect(second.get(link)).toBe(real);
    // Nothing new: the same map again, no copy.
    expect(await resolver.resolve([real], 600)).toBe(second);
    const later = await resolver.resolve([link], 1500);
    expect(later.get(link)).toBe(link);
    // A map handed out (it went into a snapshot) never changes afterwards.
    expect([...first]).toEqual([[link, real]]);
    expect([...second]).toEqual([[link, real], [real, real]]);
    expect([...later]).toEqual([[link, link]]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
