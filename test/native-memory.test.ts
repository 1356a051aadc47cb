import { readFileSync } from 'fs';
import * as path from 'path';
import { runCommand } from './harness/process';
import koffi from 'koffi';
import { canReleaseNativeMemory, NativeMemoryTrims, releaseFreedNativeMemory } from '../src/native-memory';

/** Compiled by `npm test` before jest runs. */
const NATIVE_MEMORY_JS = path.join(__dirname, '../dist/src/native-memory.js');

/** Private dirty bytes of the process's [heap] mapping (glibc's main arena). */
function heapDirtyKiB(): number {
  const smaps = readFileSync('/proc/self/smaps', 'utf8');
  const at = smaps.indexOf('[heap]');
  if (at < 0) return 0;
  const m = /Private_Dirty:\s+(\d+) kB/.exec(smaps.slice(at));
  return m ? Number(m[1]) : 0;
}

describe('releaseFreedNativeMemory', () => {
  test('glibc (Debian) has malloc_trim', () => {
    expect(canReleaseNativeMemory()).toBe(true);
  });

  test('freed pages in the middle of the malloc heap go back to the kernel', async () => {
    // Interleave 2 kB blocks that are freed with a few that stay, so the free
    // memory is not at the top of the heap (where free() alone would return it).
    const libc = koffi.load('libc.so.6');
    const malloc = libc.func('void *malloc(size_t size)');
    const free = libc.func('void free(void *ptr)');
    const kept: unknown[] = [];
    const dropped: unknown[] = [];
    for (let i = 0; i < 20_000; i++) (i % 64 === 63 ? kept : dropped).push(malloc(2048));
    // Touch each block so its pages are resident.
    for (const p of dropped) new Uint8Array(koffi.view(p as bigint, 2048)).fill(1);
    for (const p of dropped) free(p);
    const before = heapDirtyKiB();
    await releaseFreedNativeMemory();
    const after = heapDirtyKiB();
    for (const p of kept) free(p);
    // ~38 MB were freed; most of it must have left.
    expect(before - after).toBeGreaterThan(20_000);
  });

  test('after tuning, a large block is mmapped even after a larger one was freed (no dynamic threshold)', async () => {
    // In a fresh process, whose malloc heap has no spare room at the top to
    // serve a large block from: there the threshold decides.
    const probe = (tune: boolean): string => `
      const koffi = require(${JSON.stringify(require.resolve('koffi'))});
      const libc = koffi.load('libc.so.6');
      const malloc = libc.func('void *malloc(size_t size)');
      const free = libc.func('void free(void *ptr)');
      const info = koffi.struct({ arena: 'size_t', ordblks: 'size_t', smblks: 'size_t', hblks: 'size_t', hblkhd: 'size_t',
        usmblks: 'size_t', fsmblks: 'size_t', uordblks: 'size_t', fordblks: 'size_t', keepcost: 'size_t' });
      const mallinfo2 = libc.func('mallinfo2', info, []);
      if (${tune}) require(${JSON.stringify(NATIVE_MEMORY_JS)}).tuneNativeMemory();
      free(malloc(8 * 1024 * 1024)); // untuned glibc raises its mmap threshold to 8 MB here
      const before = Number(mallinfo2().hblkhd);
      const block = malloc(2 * 1024 * 1024);
      console.log(Number(mallinfo2().hblkhd) - before);
      free(block);`;
    const mmappedGrowth = async (tune: boolean): Promise<number> => {
      const r = await runCommand(process.execPath, ['-e', probe(tune)], { env: process.env, timeoutMs: 20_000 });
      expect(r.stderr).toBe('');
      return Number(r.stdout.trim());
    };
    expect(await mmappedGrowth(false)).toBe(0);
    expect(await mmappedGrowth(true)).toBeGreaterThanOrEqual(2 * 1024 * 1024);
  });
});

describe('NativeMemoryTrims', () => {
  test('a large host trims after every refresh, a small one at most once a minute', () => {
    let now = 1_000_000;
    const trims = new NativeMemoryTrims(() => now);
    expect([trims.due(1000), trims.due(1000), trims.due(10_000)]).toEqual([true, true, true]);
    now += 1000;
    // 50 VMs: the first refresh trims, then none until a minute has passed.
    expect(trims.due(50)).toBe(false);
    now += 59_000;
    expect([trims.due(50), trims.due(50)]).toEqual([true, false]);
    now += 30_000;
    expect(trims.due(0)).toBe(false);
    now += 30_000;
    expect(trims.due(0)).toBe(true);
  });
});
