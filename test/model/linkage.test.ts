// snmpd's numbering of host facts (model/linkage.ts) on fixtures: the
// hrStorageIndex values for the mount tables were measured on snmpd 5.9.3
// (test/collectors/host-linkage.test.ts re-checks them against a live one).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseMounts, resolveImagePaths } from '../../src/collectors/mounts';
import {
  classifyFsType, cpuDeviceIndexes, filesystemFor, FsysIndexRegistry, HostFilesystem, hrProcessorIndex, NetSnmpLinkage,
  storageIndexes,
} from '../../src/model/linkage';
import type { HostInfo } from '../../src/snapshot';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'host');
const readFixture = (...parts: string[]): string => fs.readFileSync(path.join(FIXTURES, ...parts), 'utf8');

let scratch: string;
beforeAll(() => {
  scratch = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-linkage-test-')));
});
afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

describe('hrDeviceIndex of host CPUs', () => {
  it('numbers CPU N as (HRDEV_PROC << 16) + N, sorted', () => {
    expect(hrProcessorIndex(0)).toBe(196608);
    expect([...cpuDeviceIndexes([3, 0, 2, 0])]).toEqual([
      [0, 196608],
      [2, 196610],
      [3, 196611],
    ]);
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

const listed = (filesystems: readonly HostFilesystem[]): Array<[string, number]> =>
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

const host = (cpus: number[], mountTable: string): HostInfo =>
  ({ uptimeSeconds: 1, cpus, interfaces: new Map(), mounts: parseMounts(mountTable) });

describe('NetSnmpLinkage', () => {
  it('keeps a CPU that went offline, as snmpd never drops one', () => {
    const linkage = new NetSnmpLinkage();
    linkage.update(host([0, 2, 3], ''));
    expect([...linkage.update(host([0, 1], '')).cpuDeviceIndex.keys()]).toEqual([0, 1, 2, 3]);
  });

  it('keeps a mount point\'s index across snapshots and applies snmpd.conf options', () => {
    const linkage = new NetSnmpLinkage({ skipNfsInHostResources: true, diskPaths: ['/srv/xfs'] });
    const variety = readFixture('mtab-variety');
    expect(listed(linkage.update(host([0], variety)).filesystems).slice(0, 3)).toEqual([
      ['/srv/xfs', 31],
      ['/', 33],
      ['/srv/btrfs', 37],
    ]);
    const after = linkage.update(host([0], variety.split('\n').filter((l) => !l.includes(' / ')).join('\n') + '\n/dev/vdz /mnt/new ext4 rw 0 0\n'));
    expect(listed(after.filesystems).slice(0, 2)).toEqual([['/srv/xfs', 31], ['/srv/btrfs', 37]]);
    // One past the last index ever given: unmounted, / still holds its 33.
    expect(listed(after.filesystems).at(-1)).toEqual(['/mnt/new', 60]);
  });
});
