// The churn guest (test/fixtures/guest/churn.c): a 32-bit multiboot ELF that
// QEMU boots through the domain's <os><kernel>, for live-migration tests
// (migration-lab.ts). Built with gcc and ld into a cache directory under
// os.tmpdir() named after a hash of the sources and flags, so it is rebuilt
// only when they change; built in a private temp dir and renamed into place,
// so concurrent jest workers never see half a file. The directory is 0755 and
// the image 0644: the session daemons' users (nobody and the migration user)
// must be able to read it.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findTool } from './prereq';

/**
 * test/fixtures/guest of the source tree. Found from the package root, not
 * from __dirname alone: bench/ compiles this file into dist/test/harness,
 * where tsc copies no .c or .ld files.
 */
export const GUEST_SOURCE_DIR = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) return path.resolve(__dirname, '..', 'fixtures', 'guest');
    dir = up;
  }
  return path.join(dir, 'test', 'fixtures', 'guest');
})();
const SOURCES = ['churn.c', 'link.ld'] as const;
const IMAGE_NAME = 'churn.elf';

export const GUEST_CFLAGS: readonly string[] = [
  '-m32', '-ffreestanding', '-fno-pic', '-fno-stack-protector', '-fno-asynchronous-unwind-tables',
  '-O2', '-nostdlib', '-Wall', '-Wextra',
];
export const GUEST_LDFLAGS: readonly string[] = ['-m', 'elf_i386', '-n', '--build-id=none'];

const MULTIBOOT_MAGIC = 0x1badb002;

let missingMemo: string | null | undefined;

/**
 * Why the guest image cannot be built here, or null. The source includes no
 * headers and needs no libgcc, so Debian's plain gcc and binutils suffice on
 * amd64 (gcc -m32 -ffreestanding -nostdlib -c works without gcc-multilib; only
 * a hosted <stdint.h> would need libc6-dev-i386, and 64-bit division libgcc's
 * 32-bit __udivdi3 from lib32gcc-12-dev — both come with gcc-multilib).
 */
export function guestImageMissing(): string | null {
  if (missingMemo !== undefined) return missingMemo;
  missingMemo = probeToolchain();
  return missingMemo;
}

function probeToolchain(): string | null {
  if (findTool('gcc') === null) return 'no gcc (apt-get install gcc) to build the churn guest';
  if (findTool('ld') === null) return 'no ld (apt-get install binutils) to build the churn guest';
  const probe = spawnSync('gcc', [...GUEST_CFLAGS, '-x', 'c', '-c', '-o', '/dev/null', '-'], {
    input: 'unsigned int f(unsigned int x) { return x * 3u; }\n',
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) {
    const why = (probe.stderr || probe.error?.message || `exit ${probe.status}`).trim().split('\n')[0];
    return `gcc cannot compile 32-bit freestanding code (${why}) (apt-get install gcc-multilib)`;
  }
  const emulations = spawnSync('ld', ['-V'], { encoding: 'utf8', timeout: 30_000 });
  if (!/\belf_i386\b/.test(emulations.stdout ?? '')) {
    return 'ld has no elf_i386 emulation (apt-get install binutils, an x86 build) to link the churn guest';
  }
  return null;
}

/** sha256 over the sources and the flags: the cache key. */
export function guestSourceHash(): string {
  const hash = createHash('sha256');
  for (const name of SOURCES) {
    hash.update(name).update('\0').update(fs.readFileSync(path.join(GUEST_SOURCE_DIR, name))).update('\0');
  }
  hash.update(JSON.stringify([GUEST_CFLAGS, GUEST_LDFLAGS]));
  return hash.digest('hex');
}

let imageMemo: string | undefined;

/**
 * Absolute path of the built churn.elf (0644, in a 0755 directory), building
 * it on first use when the cache has no image for the current sources.
 */
export function churnGuestImage(): string {
  if (imageMemo !== undefined && fs.existsSync(imageMemo)) return imageMemo;
  const missing = guestImageMissing();
  if (missing) throw new Error(`cannot build the churn guest: ${missing}`);
  const cacheDir = path.join(os.tmpdir(), `vmm-agentx-guest-${guestSourceHash().slice(0, 20)}`);
  const cached = path.join(cacheDir, IMAGE_NAME);
  if (trustedCacheEntry(cacheDir, cached)) {
    imageMemo = cached;
    return cached;
  }
  const built = buildInto(fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-agentx-guest-build-')));
  try {
    fs.renameSync(path.dirname(built), cacheDir);
  } catch {
    // Another worker got there first (ENOTEMPTY/EEXIST), or a stranger's
    // entry sits there: use theirs only if it is ours to trust.
    if (trustedCacheEntry(cacheDir, cached)) {
      fs.rmSync(path.dirname(built), { recursive: true, force: true });
      imageMemo = cached;
      return cached;
    }
    imageMemo = built;
    return built;
  }
  imageMemo = cached;
  return cached;
}

/** Compiles and links into `dir`; returns the image path (dir 0755, image 0644). */
function buildInto(dir: string): string {
  const object = path.join(dir, 'churn.o');
  const image = path.join(dir, IMAGE_NAME);
  try {
    execFileSync('gcc', [...GUEST_CFLAGS, '-c', path.join(GUEST_SOURCE_DIR, 'churn.c'), '-o', object], { stdio: 'pipe', timeout: 60_000 });
    execFileSync('ld', [...GUEST_LDFLAGS, '-T', path.join(GUEST_SOURCE_DIR, 'link.ld'), '-o', image, object], { stdio: 'pipe', timeout: 60_000 });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new Error(`building the churn guest failed: ${stderr || (err as Error).message}`);
  }
  fs.rmSync(object);
  const problem = checkImage(image);
  if (problem) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`the churn guest built from ${GUEST_SOURCE_DIR} is unusable: ${problem}`);
  }
  fs.chmodSync(image, 0o644);
  fs.chmodSync(dir, 0o755);
  return image;
}

/**
 * A cache entry we may use: a real directory and file of ours, writable by
 * nobody else (os.tmpdir() is world-writable), holding a sane image.
 */
function trustedCacheEntry(dir: string, image: string): boolean {
  const uid = process.getuid?.();
  try {
    const d = fs.lstatSync(dir);
    const f = fs.lstatSync(image);
    if (!d.isDirectory() || !f.isFile()) return false;
    if (uid !== undefined && (d.uid !== uid || f.uid !== uid)) return false;
    if ((d.mode & 0o022) !== 0 || (f.mode & 0o022) !== 0) return false;
    return checkImage(image) === null;
  } catch {
    return false;
  }
}

/** Null when `image` is a 32-bit x86 ELF with a multiboot header in its first 8 KiB. */
export function checkImage(image: string): string | null {
  const head = Buffer.alloc(8192);
  const fd = fs.openSync(image, 'r');
  let n: number;
  try {
    n = fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (n < 52 || head.readUInt32BE(0) !== 0x7f454c46) return 'not an ELF file';
  if (head[4] !== 1) return 'not a 32-bit ELF (QEMU multiboot rejects ELF64)';
  if (head.readUInt16LE(18) !== 3) return 'not an i386 ELF';
  for (let off = 0; off + 12 <= n; off += 4) {
    if (head.readUInt32LE(off) !== MULTIBOOT_MAGIC) continue;
    const flags = head.readUInt32LE(off + 4);
    if (((head.readUInt32LE(off + 8) + MULTIBOOT_MAGIC + flags) >>> 0) === 0) return null;
  }
  return 'no multiboot header (magic 0x1BADB002 with a valid checksum) in the first 8 KiB';
}
