// The mount table, as snmpd reads it (for vmStorageParent; the numbering is
// model/linkage.ts), and image paths with symlinks resolved.
import { realpath, statfs } from 'node:fs/promises';
import * as path from 'node:path';
import type { MountEntry } from '../snapshot';
import type { Collector } from './collector';
import { forEachLimited } from './limited';
import { HostPaths, ReportUnreadable, ignoreUnreadable, readKernelFile, readTextFile } from './paths';

/** What an unreadable mount table costs, in MIB terms. */
const MOUNTS_LOST = 'vmStorageParent will be 0 for every disk';

/** statfs(2) f_type of procfs (linux/magic.h). */
const PROC_SUPER_MAGIC = 0x9fa0;

/** realpath calls in flight at once: the libuv pool runs 4 at a time anyway. */
const REALPATH_CONCURRENCY = 8;

// glibc decode_name(): the only escapes getmntent() undoes.
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
   * map is built (a copy per refresh would hold every image path again).
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
  const text = await readTextFile(paths.mountsFile, MOUNTS_LOST, report);
  return text === undefined ? [] : parseMounts(text);
}

/**
 * The mount table, read as readMounts does, but on the calling thread where
 * the file is a procfs one: on current systems /etc/mtab is a symlink to
 * /proc/self/mounts, which the kernel makes from memory (see
 * readKernelFile). Where the file lies is found out once, off the main
 * thread, and again after a read fails; a mount table on a real filesystem
 * is always read on the libuv pool. The same text gives the same entries
 * (the same array): the table rarely changes, and parsing it costs more
 * than reading it.
 */
export class MountTableReader {
  /** The file's real path when it is on procfs, null when it is not; undefined: not found out yet. */
  private kernelFile: string | null | undefined = undefined;
  /** The configured name kernelFile was found for. */
  private kernelFileOf = '';
  private lastText: string | null = null;
  private lastEntries: MountEntry[] = [];

  async read(paths: HostPaths, report: ReportUnreadable = ignoreUnreadable): Promise<MountEntry[]> {
    const text = await this.readText(paths, report);
    if (text === undefined) return [];
    if (text !== this.lastText) {
      this.lastEntries = parseMounts(text);
      this.lastText = text;
    }
    return this.lastEntries;
  }

  private async readText(paths: HostPaths, report: ReportUnreadable): Promise<string | undefined> {
    if (this.kernelFile === undefined || this.kernelFileOf !== paths.mountsFile) {
      this.kernelFileOf = paths.mountsFile;
      this.kernelFile = await procfsPathOf(paths.mountsFile);
    }
    if (this.kernelFile !== null && this.kernelFile !== undefined) {
      try {
        return readKernelFile(this.kernelFile);
      } catch {
        // Read it the ordinary way, which reports the failure under the configured name; look again next time.
        this.kernelFile = undefined;
      }
    }
    return readTextFile(paths.mountsFile, MOUNTS_LOST, report);
  }
}

/** The real path of `file` when it is on procfs, null when it is not, undefined when that cannot be told now. */
async function procfsPathOf(file: string): Promise<string | null | undefined> {
  try {
    const real = await realpath(file);
    return (await statfs(real)).type === PROC_SUPER_MAGIC ? real : null;
  } catch {
    return undefined;
  }
}
