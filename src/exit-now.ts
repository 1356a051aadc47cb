// Ends the process without waiting for libuv's pool threads. process.exit()
// joins them (libuv's shutdown at exit), so a libvirt call that never returns
// — a libvirtd that stopped answering — would hold the process forever; the
// C library's _exit(2) ends it at once. Everything the agent must keep is on
// disk by then (the state file is fsynced) and stderr writes are synchronous.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';

type Exit = KoffiFunc<(status: number) => void>;

let libcExit: Exit | null | undefined;

/** Loaded at start, so that exiting needs no library load when it matters. */
export function prepareExitNow(): void {
  if (libcExit !== undefined) return;
  try {
    libcExit = koffi.load('libc.so.6').func('void _exit(int status)') as Exit;
  } catch {
    libcExit = null;
  }
}

export function exitNow(status: number): never {
  prepareExitNow();
  if (libcExit) libcExit(status);
  // No C library call available: SIGKILL is the other way past a stuck thread.
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
