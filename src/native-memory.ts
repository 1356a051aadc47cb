// Hands native memory that was freed during a refresh back to the kernel.
//
// libvirt's RPC replies for every domain (XML, stats) are malloc'd and freed
// on the libuv pool threads. glibc keeps freed pages in its arenas, resident,
// unless they happen to lie at the top of the heap: RSS holding nothing
// (docs/memory.md, "glibc"). malloc_trim(0) returns every whole free page of
// every arena (glibc 2.8 and later). It runs on the pool so the main thread
// never waits for it; C libraries without it (musl) get no trim.
// tuneNativeMemory() sets the allocator up for this pattern at start.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';

type MallocTrim = KoffiFunc<(pad: number) => number>;
type Mallopt = KoffiFunc<(param: number, value: number) => number>;

/** mallopt parameters (glibc malloc.h). */
const M_MMAP_THRESHOLD = -3;
const M_ARENA_MAX = -8;

interface Glibc {
  mallocTrim: MallocTrim;
  mallopt: Mallopt;
}

let glibc: Glibc | null | undefined;

function loadGlibc(): Glibc | null {
  if (glibc === undefined) {
    try {
      const libc = koffi.load('libc.so.6');
      glibc = {
        mallocTrim: libc.func('int malloc_trim(size_t pad)') as MallocTrim,
        mallopt: libc.func('int mallopt(int param, int value)') as Mallopt,
      };
    } catch {
      glibc = null;
    }
  }
  return glibc;
}

/** True when the C library has malloc_trim (glibc). */
export function canReleaseNativeMemory(): boolean {
  return loadGlibc() !== null;
}

/**
 * Sets glibc's allocator up for a process whose large buffers come and go
 * with every refresh; call it before the first libvirt call.
 *
 * - The mmap threshold is fixed at 128 kB. glibc otherwise raises it each
 *   time a large mmapped block is freed, after which the view's multi-MB
 *   arrays are carved from the heap and their pages stay resident once
 *   freed.
 * - Two malloc arenas unless MALLOC_ARENA_MAX says otherwise: glibc gives
 *   each pool thread an arena of its own, and each keeps what libvirt freed.
 */
export function tuneNativeMemory(): void {
  const c = loadGlibc();
  if (c === null) return;
  c.mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  if (process.env.MALLOC_ARENA_MAX === undefined) c.mallopt(M_ARENA_MAX, 2);
}

/** Starts a malloc_trim(0) on the thread pool; resolves when it is done (never rejects). */
export function releaseFreedNativeMemory(): Promise<void> {
  const c = loadGlibc();
  if (c === null) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      c.mallocTrim.async(0, () => resolve());
    } catch {
      // koffi's async queue is full: skip this trim, the next refresh tries again.
      resolve();
    }
  });
}

/** From this many domains on, every refresh ends with a trim: it freed megabytes. */
const TRIM_EVERY_REFRESH_FROM = 1000;
/** Below that, at most one trim in this many ms. */
const SMALL_HOST_TRIM_MS = 60_000;

/**
 * When a refresh is followed by a trim. A large host's refresh frees
 * megabytes, which would otherwise stay resident. A small host's frees
 * little, and trimming it every refresh handed back the pages the next
 * refresh took again: with 50 VMs each trim cost 0.3-0.9 ms and the page
 * faults after it ~350 a second, together ~15% of a refresh's CPU.
 */
export class NativeMemoryTrims {
  private lastAt = -Infinity;

  constructor(private readonly clock: () => number = Date.now) {}

  /** Whether a refresh of `domains` domains, which just ended, should be followed by a trim; if so it counts as made. */
  due(domains: number): boolean {
    const now = this.clock();
    if (domains < TRIM_EVERY_REFRESH_FROM && now - this.lastAt < SMALL_HOST_TRIM_MS) return false;
    this.lastAt = now;
    return true;
  }
}
