// Linkage to snmpd's own tables: the hrDeviceIndex snmpd gives each host CPU
// (vmCpuPhysIndex MUST equal it) and the hrStorageIndex it gives each
// filesystem (vmStorageParent). The collectors read the host's plain facts
// (CPU numbers, the mount table); this module numbers them as Net-SNMP 5.9.3
// does, remembering what snmpd remembers (NetSnmpLinkage). RFC 7666 §5 and
// the vmCpuPhysIndex DESCRIPTION: "the hrDeviceIndex used in
// hrProcessorTable"; vmStorageParent: "the hrStorageIndex of the parent ...
// in hrStorageTable", 0 when there is none.
//
// How Net-SNMP 5.9.3 numbers processors on Linux:
// - host/hr_proc.c Get_Next_HR_Proc() walks the hardware/cpu list, skipping the
//   "Overall CPU statistics" entry (idx -1), and returns
//   (HRDEV_PROC << HRDEV_TYPE_SHIFT) + cpu->idx = (3 << 16) + N = 196608 + N
//   (host_res.h: HRDEV_PROC 3, HRDEV_TYPE_SHIFT 16).
// - hardware/cpu/cpu_linux.c init_cpu_linux() creates entry N for every
//   "processor : N" line of /proc/cpuinfo at start-up; netsnmp_cpu_arch_load(),
//   run every 5 s by hardware/cpu/cpu.c, creates one for every "cpuN" line of
//   /proc/stat. Both files list online CPUs only, and hardware/cpu/cpu.c never
//   deletes an entry, so snmpd lists every CPU that was online at some point
//   since it started, with N the kernel's CPU number (gaps stay gaps).
// Measured against snmpd 5.9.3 with both files replaced (bind mounts in a
// private mount namespace): cpuinfo {0,2,3} + stat {0,2,3,7} gives
// 196608/196610/196611 at once and 196615 after the first 5-second sample.
//
// How Net-SNMP 5.9.3 numbers filesystems on Linux:
// - hardware/fsys/fsys_mntent.c netsnmp_fsys_arch_load() reads ETC_MNTTAB
//   (/etc/mtab in Debian's build) with getmntent() and calls
//   netsnmp_fsys_by_path(path, CREATE) for EVERY line, whatever its type.
// - hardware/fsys/hw_fsys.c _fsys_create_entry() gives a path it has not seen
//   before idx = ++_fsys_idx. Entries are never deleted, only marked inactive,
//   so an index stays taken by its path for snmpd's lifetime and a later mount
//   gets a new one. A path listed twice (over-mount) is one entry.
// - `disk PATH` lines in snmpd.conf (ucd-snmp/disk_hw.c) create entries while
//   the config is read, before the first mount-table load, so they take the
//   first indexes in config order.
// - An entry is shown (hrh_filesys.c Get_Next_HR_FileSys) when at least one of
//   its lines in the current table has a type _fsys_type() does not mark
//   _NETSNMP_FS_TYPE_SKIP_BIT; hrh_storage.c Get_Next_HR_Store() then hides it
//   when its last type is autofs, or when it is remote (nfs/cifs/smbfs/mvfs/
//   afs) and skipNFSInHostResources is set, and returns
//   hrStorageIndex = NETSNMP_MEM_TYPE_MAX (30) + idx.
// - storageUseNFS and realStorageUnits change hrStorageType and the sizes only;
//   ignoreDisk and includeAllDisks affect UCD-SNMP/hrDisk tables, not these
//   indexes; 5.9.3 has no ignoremount directive.
// Measured against snmpd 5.9.3 (private mount namespace, fixture bind-mounted
// over /proc/<pid>/mounts): see test/collectors/host-linkage.test.ts.
import * as path from 'node:path';
import type { HostInfo, MountEntry } from '../snapshot';

/** host_res.h: HRDEV_PROC = 3, HRDEV_TYPE_SHIFT = 16. */
export const HRDEV_PROC_BASE = 3 << 16;

export function hrProcessorIndex(cpu: number): number {
  return HRDEV_PROC_BASE + cpu;
}

/** CPU number → hrDeviceIndex, in ascending CPU order like hrProcessorTable. */
export function cpuDeviceIndexes(cpus: Iterable<number>): Map<number, number> {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  return new Map(sorted.map((cpu) => [cpu, hrProcessorIndex(cpu)]));
}

/** include/net-snmp/agent/hardware/memory.h: indexes 1..30 are memory rows. */
export const NETSNMP_MEM_TYPE_MAX = 30;

/**
 * A mount point and the hrStorageIndex snmpd gives it: 0 for mounts snmpd
 * does not list (proc, devtmpfs, ...), which are kept so that a path on them
 * does not fall through to "/".
 */
export interface HostFilesystem {
  mountPoint: string;
  hrStorageIndex: number;
}

/** How fsys_mntent.c _fsys_type() and _fsys_remote() treat a type. */
export type FsTypeClass = 'local' | 'remote' | 'autofs' | 'skipped';

// Types _fsys_type() maps to an hrFSTypes value (mnttypes.h names, Linux build).
const LOCAL_TYPES = new Set([
  'ffs', 'ufs', 'sysv', 'pc', 'msdos', 'hfs', 'mfs', 'ntfs', 'iso9660', 'cd9660', 'cdfs', 'hsfs', 'ncpfs',
  'ext2', 'ext3', 'ext4', 'ext2fs', 'ext3fs', 'ext4fs', 'fat32', 'vfat',
  // other_fs[]: "monitored but not covered by any hrFSTypes enumeration" → hrFSOther.
  'acfs', 'btrfs', 'cvfs', 'f2fs', 'fuse.glusterfs', 'gfs', 'gfs2', 'glusterfs', 'jfs', 'jffs2', 'lofs',
  'nsspool', 'nssvol', 'nvmfs', 'ocfs2', 'reiserfs', 'simfs', 'tmpfs', 'vxfs', 'xfs', 'zfs',
]);
// NETSNMP_FS_TYPE_NFS and _AFS, the two types _fsys_remote() flags.
const REMOTE_TYPES = new Set(['nfs', 'nfs3', 'nfs4', 'cifs', 'smbfs', 'mvfs', 'afs']);

export function classifyFsType(fsType: string): FsTypeClass {
  // An empty type is NETSNMP_FS_TYPE_UNKNOWN, which has no skip bit.
  if (fsType === '' || LOCAL_TYPES.has(fsType)) return 'local';
  if (REMOTE_TYPES.has(fsType)) return 'remote';
  if (fsType === 'autofs') return 'autofs';
  // proc, sysfs, devtmpfs, devpts, cgroup*, overlay, squashfs, fuse.*, nsfs, ...
  return 'skipped';
}

export interface StorageOptions {
  /** snmpd.conf skipNFSInHostResources. */
  skipNfsInHostResources?: boolean;
  /** Paths of snmpd.conf `disk` lines, in file order. */
  diskPaths?: readonly string[];
}

/**
 * snmpd's path → fsys idx table (hw_fsys.c), kept across refreshes so that a
 * path keeps its index after an unmount and new mounts get new ones, as in
 * snmpd. Its indexes match snmpd's when both started from the same mount table.
 */
export class FsysIndexRegistry {
  private readonly entries = new Map<string, { idx: number; remote: boolean }>();
  private lastIdx = 0;

  constructor(diskPaths: readonly string[] = []) {
    for (const diskPath of diskPaths) this.entry(diskPath);
  }

  /** The entry for a path, created with the next idx the first time. */
  entry(mountPoint: string): { idx: number; remote: boolean } {
    let entry = this.entries.get(mountPoint);
    if (!entry) {
      entry = { idx: ++this.lastIdx, remote: false };
      this.entries.set(mountPoint, entry);
    }
    return entry;
  }
}

/**
 * Every distinct mount point of the table, in snmpd's idx order, with the
 * hrStorageIndex snmpd shows for it — or 0 when hrStorageTable has no row for
 * it (proc, devtmpfs, overlay, ...), so a file on such a mount gets
 * vmStorageParent 0 rather than the index of an enclosing filesystem.
 */
export function storageIndexes(
  mounts: readonly MountEntry[],
  options: StorageOptions = {},
  registry: FsysIndexRegistry = new FsysIndexRegistry(options.diskPaths),
): HostFilesystem[] {
  const seen = new Map<string, { idx: number; remote: boolean; active: boolean; lastClass: FsTypeClass }>();
  for (const mount of mounts) {
    const entry = registry.entry(mount.mountPoint);
    const fsClass = classifyFsType(mount.fsType);
    // REMOTE is OR-ed into the entry's flags and never cleared (fsys_mntent.c).
    if (fsClass === 'remote') entry.remote = true;
    // ACTIVE is set by any line whose type lacks the skip bit; autofs has it
    // (measured: an autofs-only path is in neither hrFSTable nor hrStorageTable).
    const activeLine = fsClass === 'local' || fsClass === 'remote';
    seen.set(mount.mountPoint, {
      idx: entry.idx,
      remote: entry.remote,
      active: (seen.get(mount.mountPoint)?.active ?? false) || activeLine,
      lastClass: fsClass,
    });
  }
  return [...seen]
    .sort(([, a], [, b]) => a.idx - b.idx)
    .map(([mountPoint, e]) => {
      const hidden = !e.active || e.lastClass === 'autofs' || (e.remote && options.skipNfsInHostResources === true);
      return { mountPoint, hrStorageIndex: hidden ? 0 : NETSNMP_MEM_TYPE_MAX + e.idx };
    });
}

function isUnder(mountPoint: string, file: string): boolean {
  if (mountPoint === '/') return true;
  // No `mountPoint + '/'`: this runs for every mount point and every disk of every view.
  return file.startsWith(mountPoint) && (file.length === mountPoint.length || file.charCodeAt(mountPoint.length) === SLASH);
}
const SLASH = 0x2f;
/** What path.normalize would change: an empty, "." or ".." component, or a trailing slash. */
const NOT_NORMAL = /\/\/|\/\.\.?(?:\/|$)|.\/$/;

/**
 * The filesystem holding `file`: the longest mount point that is a whole-
 * component prefix of its real path (symlinks resolved when the file exists,
 * otherwise the path is only normalised). Relative paths have no answer.
 */
export function filesystemFor(filesystems: readonly HostFilesystem[], file: string): HostFilesystem | undefined {
  if (!path.isAbsolute(file)) return undefined;
  const resolved = NOT_NORMAL.test(file) ? path.normalize(file) : file;
  let best: HostFilesystem | undefined;
  for (const fs of filesystems) {
    if (isUnder(fs.mountPoint, resolved) && (!best || fs.mountPoint.length > best.mountPoint.length)) best = fs;
  }
  return best;
}

/** The numbering snmpd shows for the host as one snapshot saw it. */
export interface HostLinkage {
  /** host CPU number → hrDeviceIndex of the same CPU in snmpd's hrProcessorTable. */
  cpuDeviceIndex: ReadonlyMap<number, number>;
  filesystems: readonly HostFilesystem[];
}

/**
 * snmpd's memory of the host: it never forgets a CPU or a mount point once
 * seen, and a path keeps its fsys index for snmpd's lifetime, so neither do
 * we. One per agent, updated with every snapshot's host facts.
 */
export class NetSnmpLinkage {
  private readonly cpusSeen = new Set<number>();
  private readonly fsysIndexes: FsysIndexRegistry;

  constructor(private readonly storageOptions: StorageOptions = {}) {
    this.fsysIndexes = new FsysIndexRegistry(storageOptions.diskPaths);
  }

  update(host: HostInfo): HostLinkage {
    for (const cpu of host.cpus) this.cpusSeen.add(cpu);
    return {
      cpuDeviceIndex: cpuDeviceIndexes(this.cpusSeen),
      filesystems: storageIndexes(host.mounts, this.storageOptions, this.fsysIndexes),
    };
  }
}
