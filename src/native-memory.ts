// Hands native memory that was freed during a refresh back to the kernel.
//
// libvirt's RPC replies for every domain (XML, stats) are malloc'd and freed
// on the libuv pool threads. glibc keeps freed pages in its arenas, resident,
// unless they happen to lie at the top of the heap: at 10,000 VMs that was
// ~25 MB of RSS holding nothing (npm run bench, 207 MB without, 184 MB with
// a trim after each refresh). malloc_trim(0) returns every whole free page
// of every arena (glibc 2.8 and later). It runs on the pool so the main
// thread never waits for it; C libraries without it (musl) get no trim.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';

type MallocTrim = KoffiFunc<(pad: number) => number>;

let mallocTrim: MallocTrim | null | undefined;

function loadMallocTrim(): MallocTrim | null {
  try {
    return koffi.load('libc.so.6').func('int malloc_trim(size_t pad)') as MallocTrim;
  } catch {
    return null;
  }
}

/** True when the C library has malloc_trim (glibc). */
export function canReleaseNativeMemory(): boolean {
  if (mallocTrim === undefined) mallocTrim = loadMallocTrim();
  return mallocTrim !== null;
}

/** Starts a malloc_trim(0) on the thread pool; resolves when it is done (never rejects). */
export function releaseFreedNativeMemory(): Promise<void> {
  if (!canReleaseNativeMemory()) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      mallocTrim!.async(0, () => resolve());
    } catch {
      // koffi's async queue is full: skip this trim, the next refresh tries again.
      resolve();
    }
  });
}
