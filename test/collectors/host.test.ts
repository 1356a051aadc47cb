// Host collectors on fixtures: parsers on real captures and hand-made
// variants, readers on fixture roots, and collectHost's handling of missing
// and unreadable files. How snmpd numbers these facts is test/model/linkage.test.ts.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HostCollectorState, collectHost } from '../../src/collectors/host';
import { ImagePathResolver, MountTableReader, parseMounts, readMounts } from '../../src/collectors/mounts';
import { CollectorLogLevel, HostPaths, hostPaths, readKernelFile, readKernelTextFile, reportTo } from '../../src/collectors/paths';
import { parseCpuinfoProcessors, parseStatCpus, parseUptime, readProcfs } from '../../src/collectors/procfs';
import { SysfsInterfaceRecord, parseIfIndex, readInterfaces, resolveParents } from '../../src/collectors/sysfs-net';
import type { HostInterface } from '../../src/snapshot';
import { recordingLog as harnessRecordingLog } from '../harness/log';

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

/** The collectors' log, kept as { level, message } entries. */
function recordingLog(): { lines: { level: CollectorLogLevel; message: string }[]; log: (level: CollectorLogLevel, message: string) => void } {
  const { entries, log } = harnessRecordingLog<CollectorLogLevel>();
  return { lines: entries, log };
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
});

describe('readKernelFile', () => {
  it('gives a /proc file fresh contents on every read', async () => {
    const first = readKernelFile('/proc/uptime');
    await new Promise((resolve) => setTimeout(resolve, 30));
    const second = readKernelFile('/proc/uptime');
    expect(parseUptime(second)).toBeGreaterThan(parseUptime(first) ?? Infinity);
  });

  it('reads a replaced file anew', () => {
    const file = path.join(scratch, 'replaced');
    fs.writeFileSync(file, 'one\n');
    expect(readKernelFile(file)).toBe('one\n');
    fs.writeFileSync(`${file}.new`, 'two\n');
    fs.renameSync(`${file}.new`, file);
    expect(readKernelFile(file)).toBe('two\n');
  });

  it('reads a file larger than its buffer whole, and a small one after it', () => {
    const file = path.join(scratch, 'large');
    const text = 'cpu0 1 2 3 4 5 6 7 8 9\n'.repeat(20_000);
    fs.writeFileSync(file, text);
    expect(readKernelFile(file)).toBe(text);
    expect(readKernelFile(fixture('proc', 'uptime'))).toBe(readFixture('proc', 'uptime'));
  });

  it('reports a file it cannot read by name and errno', () => {
    const { lines, log } = recordingLog();
    const missing = path.join(scratch, 'no-such-file');
    expect(readKernelTextFile(missing, 'nothing lost', reportTo(log))).toBeUndefined();
    expect(readKernelTextFile(scratch, 'nothing lost', reportTo(log))).toBeUndefined();
    expect(lines).toEqual([
      { level: 'warn', message: `cannot read ${missing}: ENOENT; nothing lost` },
      { level: 'warn', message: `cannot read ${scratch}: EISDIR; nothing lost` },
    ]);
  });
});

describe('readProcfs', () => {
  it('reads the captured /proc', () => {
    const info = readProcfs(hostPaths({ procRoot: fixture('proc') }));
    expect(info).toEqual({ uptimeSeconds: 535.36, cpus: [0, 1] });
  });

  it('leaves an offline CPU out and keeps the others at their kernel numbers', () => {
    const info = readProcfs(hostPaths({ procRoot: fixture('proc-cpu1-offline') }));
    expect(info.cpus).toEqual([0, 2, 3]);
  });

  it('takes CPUs from /proc/stat too (snmpd adds them on its next 5-second sample)', () => {
    const root = path.join(scratch, 'proc-stat-only');
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'uptime'), '10.00 20.00\n');
    fs.writeFileSync(path.join(root, 'cpuinfo'), 'processor\t: 0\n\nprocessor\t: 1\n');
    fs.writeFileSync(path.join(root, 'stat'), 'cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu7 1 2 3 4\nintr 5\n');
    const info = readProcfs(hostPaths({ procRoot: root }));
    expect(info.cpus).toEqual([0, 1, 7]);
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
    expect(host.cpus).toEqual([0, 1]);
    expect(host.interfaces.get('vnet0')).toEqual({ name: 'vnet0', ifIndex: 5, parentIfIndex: 4 });
    expect(host.mounts).toEqual(parseMounts(readFixture('mtab-variety')));
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
    expect(host).toEqual({ uptimeSeconds: 0, cpus: [0, 1], interfaces: new Map(), mounts: [] });
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
    expect(host.mounts).toEqual(parseMounts(readFixture('mtab-variety')));
  });
});

describe('MountTableReader', () => {
  it('reads a mount table on procfs as the kernel has it now', async () => {
    const reader = new MountTableReader();
    const paths = hostPaths({ mountsFile: '/proc/self/mounts' });
    expect(await reader.read(paths)).toEqual(parseMounts(fs.readFileSync('/proc/self/mounts', 'utf8')));
    expect(await reader.read(paths)).toEqual(parseMounts(fs.readFileSync('/proc/self/mounts', 'utf8')));
  });

  it('reads the file it is given when given another', async () => {
    const reader = new MountTableReader();
    const other = path.join(scratch, 'mtab-other');
    fs.writeFileSync(other, '/dev/vdc /data ext4 rw 0 0\n');
    expect(await reader.read(hostPaths({ mountsFile: '/proc/self/mounts' }))).toEqual(parseMounts(fs.readFileSync('/proc/self/mounts', 'utf8')));
    expect(await reader.read(hostPaths({ mountsFile: other }))).toEqual([{ device: '/dev/vdc', mountPoint: '/data', fsType: 'ext4', options: 'rw' }]);
  });

  it('reads a mount table on a real filesystem anew each time (the same text: the same entries), and reports it missing', async () => {
    const reader = new MountTableReader();
    const mountsFile = path.join(scratch, 'mtab-changing');
    const paths = hostPaths({ mountsFile });
    const { lines, log } = recordingLog();
    expect(await reader.read(paths, reportTo(log))).toEqual([]);
    expect(lines).toEqual([{ level: 'warn', message: `cannot read ${mountsFile}: ENOENT; vmStorageParent will be 0 for every disk` }]);
    fs.writeFileSync(mountsFile, '/dev/vda / ext4 rw 0 0\n');
    const first = await reader.read(paths);
    expect(first).toEqual([{ device: '/dev/vda', mountPoint: '/', fsType: 'ext4', options: 'rw' }]);
    expect(await reader.read(paths)).toBe(first);
    fs.writeFileSync(mountsFile, '/dev/vdb /srv xfs ro 0 0\n');
    expect(await reader.read(paths)).toEqual([{ device: '/dev/vdb', mountPoint: '/srv', fsType: 'xfs', options: 'ro' }]);
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
