// The mount table and the hrStorageIndex snmpd gives each filesystem, for
// vmStorageParent (RFC 7666: "the hrStorageIndex of the parent ... in
// hrStorageTable", 0 when there is none).
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
import { realpath } from 'node:fs/promises';
import * as path from 'node:path';
import type { HostFilesystem } from '../snapshot';
import type { Collector } from './collector';
import { forEachLimited } from './limited';
import { HostPaths, ReportUnreadable, ignoreUnreadable, readTextFile } from './paths';

/** include/net-snmp/agent/hardware/memory.h: indexes 1..30 are memory rows. */
export const NETSNMP_MEM_TYPE_MAX = 30;

export interface MountEntry {
  device: string;
  mountPoint: string;
  fsType: string;
  options: string;
}

// glibc decode_name(): the only escapes getmntent() undoes.
/** realpath calls in flight at once: the libuv pool runs 4 at a time anyway. */
const REALPATH_CONCURRENCY = 8;

const MNTENT_ESCAPES: Record<string, string> = { '\\040': ' ', '\\011': '\t', '\\012': '\n', '\\134': '\\', '\\\\': '\\' };

function decodeMntentField(field: string): string {
  return field.replace(/\\040|\\011|\\012|\\134|\\\\/g, (escape) => MNTENT_ESCAPES[escape]);
}

/**
 * getmntent() semantics: blank and '#' lines skipped, fields split on runs of
 * blanks/tabs, a missing field is "" (so "none /x  rw 0 0" has type "rw").
 */
export function parseMounts(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/[ \t]+$/, '').replace(/^[ \t]+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const [device = '', mountPoint = '', fsType = '', options = ''] = line.split(/[ \t]+/).map(decodeMntentField);
    entries.push({ device, mountPoint, fsType, options });
  }
  return entries;
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
  return file === mountPoint || file.startsWith(mountPoint + '/');
}

/**
 * The filesystem holding `file`: the longest mount point that is a whole-
 * component prefix of its real path (symlinks resolved when the file exists,
 * otherwise the path is only normalised). Relative paths have no answer.
 */
export function filesystemFor(filesystems: readonly HostFilesystem[], file: string): HostFilesystem | undefined {
  if (!path.isAbsolute(file)) return undefined;
  const resolved = path.normalize(file);
  let best: HostFilesystem | undefined;
  for (const fs of filesystems) {
    if (isUnder(fs.mountPoint, resolved) && (!best || fs.mountPoint.length > best.mountPoint.length)) best = fs;
  }
  return best;
}

/**
 * Resolves symlinks in image paths (off the main thread, on the libuv pool),
 * so that filesystemFor sees where an image really lives. A path that does
 * not exist (yet) or cannot be reached maps to itself.
 */
export async function resolveImagePaths(files: Iterable<string>): Promise<Map<string, string>> {
  const unique = [...new Set(files)].filter((f) => path.isAbsolute(f));
  const resolved = new Map<string, string>();
  await forEachLimited(unique, REALPATH_CONCURRENCY, async (f) => {
    const real = await realpath(f).catch(() => path.normalize(f));
    // The same string when nothing changed (the usual case): a cache of
    // 20,000 paths then holds each once, not twice.
    resolved.set(f, real === f ? f : real);
  });
  return resolved;
}

/**
 * resolveImagePaths with memory: a path resolved in the last `maxAgeMs` is
 * not resolved again. Image paths rarely change, and at 10,000 VMs resolving
 * every one on every refresh costs more than the rest of the host collection.
 */
export class ImagePathResolver implements Collector<readonly string[], ReadonlyMap<string, string>> {
  readonly name = 'image-paths';
  private cache = new Map<string, string>();
  private cachedAt = 0;

  constructor(private readonly maxAgeMs = 60_000) {}

  collect(files: readonly string[]): Promise<ReadonlyMap<string, string>> {
    return this.resolve(files);
  }

  /**
   * Image path → resolved path, for every absolute path in `files`. What
   * comes back is the cache itself, never changed afterwards: new paths go
   * into a copy that replaces it. In the steady state nothing is new and no
   * map is built (a copy per refresh was a 20,000-entry Map at 10,000 VMs).
   * It may also hold paths of VMs gone since, until the age limit starts a
   * new map.
   */
  async resolve(files: Iterable<string>, now = Date.now()): Promise<ReadonlyMap<string, string>> {
    if (now - this.cachedAt > this.maxAgeMs) {
      this.cache = new Map();
      this.cachedAt = now;
    }
    const missing: string[] = [];
    for (const f of files) if (!this.cache.has(f)) missing.push(f);
    if (missing.length === 0) return this.cache;
    const resolved = await resolveImagePaths(missing);
    const next = new Map(this.cache);
    for (const [f, r] of resolved) next.set(f, r);
    this.cache = next;
    return next;
  }
}

/** The mount table, or [] after reporting that it could not be read. */
export async function readMounts(paths: HostPaths, report: ReportUnreadable = ignoreUnreadable): Promise<MountEntry[]> {
  const text = await readTextFile(paths.mountsFile, 'vmStorageParent will be 0 for every disk', report);
  return text === undefined ? [] : parseMounts(text);
}
