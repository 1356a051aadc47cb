// Ends the process without waiting for libuv's pool threads. process.exit()
// joins them (libuv's shutdown at exit), so a libvirt call that never returns
// — a libvirtd that stopped answering — would hold the process forever; the
// C library's _exit(2) ends it at once. Everything the agent must keep is on
// disk by then (the state file is fsynced) and stderr writes are synchronous.
//
// Node's own exit on an uncaught error joins them too, and there it would
// wait forever: libvirt's event loop runs on a pool thread and, each time a
// callback fires, waits for the main thread to run it. The process would
// then neither serve nor end, so systemd would never restart it.
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

/** sysexits.h: an internal software error. */
export const EX_SOFTWARE = 70;

/**
 * From now on an error nothing caught is reported and ends the process at
 * once with EX_SOFTWARE. A log reader that went away (EPIPE on stdout or
 * stderr) is not such an error: the agent goes on serving, unlogged.
 */
export function exitOnUncaughtError(report: (message: string) => void): void {
  prepareExitNow();
  const brokenPipe = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE') throw err;
  };
  process.stdout.on('error', brokenPipe);
  process.stderr.on('error', brokenPipe);
  process.on('uncaughtException', (err: Error) => {
    try {
      report(`uncaught error, exiting (a bug: please report it with this line): ${err.stack ?? String(err)}`);
    } finally {
      exitNow(EX_SOFTWARE);
    }
  });
}

export function exitNow(status: number): never {
  prepareExitNow();
  if (libcExit) libcExit(status);
  // No C library call available: SIGKILL is the other way past a stuck thread.
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
