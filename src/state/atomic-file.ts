// State files are replaced atomically: write a temp file beside the target,
// fsync it, rename over the target, fsync the directory. A crash at any point
// leaves either the old file or the new one, never a torn mix; a failure at
// any point leaves no temp file behind.
import { promises as fs } from 'fs';
import * as path from 'path';

export interface AtomicWriteOptions {
  mode?: number;
  /**
   * Keep the version being replaced under this name (a hard link, itself
   * swapped in atomically), so that one good copy survives whatever later
   * happens to the file.
   */
  keepPreviousAs?: string;
}

let sequence = 0;

/** `.NAME.<pid>.<n>.tmp` beside `file`: the pid tells a crashed writer's leftovers from a live one's. */
function tempName(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${++sequence}.tmp`);
}

export async function writeFileAtomic(file: string, data: string | Buffer, options: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = tempName(file);
  try {
    const handle = await fs.open(tmp, 'wx', options.mode ?? 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.keepPreviousAs !== undefined) await linkPrevious(file, options.keepPreviousAs);
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  const dirHandle = await fs.open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}

async function linkPrevious(file: string, previous: string): Promise<void> {
  const tmp = tempName(previous);
  try {
    await fs.link(file, tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    await fs.rename(tmp, previous);
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/**
 * Removes temp files of `file` (and of `alsoFor`) left by writers that died
 * before renaming them; those of a live process are left alone. Returns the
 * names removed.
 */
export async function removeStaleTempFiles(file: string, alsoFor: readonly string[] = []): Promise<string[]> {
  const dir = path.dirname(file);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const target of [file, ...alsoFor]) {
    const prefix = `.${path.basename(target)}.`;
    for (const name of names) {
      if (!name.startsWith(prefix)) continue;
      const m = /^(\d+)\.\d+\.tmp$/.exec(name.slice(prefix.length));
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid !== process.pid && processExists(pid)) continue;
      try {
        await fs.rm(path.join(dir, name), { force: true });
        removed.push(name);
      } catch {
        // Reported by the write that follows, which needs the same directory.
      }
    }
  }
  return removed;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
