import { readFileSync } from 'fs';
import koffi from 'koffi';
import { canReleaseNativeMemory, releaseFreedNativeMemory } from '../src/native-memory';

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
});
