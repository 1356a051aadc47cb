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
/** What a shell shows for a writer killed by SIGPIPE (128 + 13). */
export const EXIT_READER_GONE = 141;

/**
 * From now on an error nothing caught is reported on one line and ends the
 * process at once with EX_SOFTWARE.
 */
export function exitOnUncaughtError(report: (message: string) => void): void {
  prepareExitNow();
  process.on('uncaughtException', (err: unknown) => {
    try {
      report(`uncaught error, exiting (a bug: please report it with this line): ${describeThrown(err)}`);
    } finally {
      exitNow(EX_SOFTWARE);
    }
  });
}

/**
 * What to do when the reader of stdout or stderr goes away (EPIPE): a
 * daemon carries on serving, unlogged; a one-shot command (--dump, --check)
 * ends as a pipeline's writer does when its reader is gone.
 */
export function whenOutputReaderGone(then: 'carry-on' | 'exit'): void {
  const readerGone = (err: NodeJS.ErrnoException): void => {
    if (err.code !== 'EPIPE') throw err;
    if (then === 'exit') exitNow(EXIT_READER_GONE);
  };
  process.stdout.on('error', readerGone);
  process.stderr.on('error', readerGone);
}

/** Anything thrown, as one line: a stack's lines joined, journald keeping a line per entry. */
function describeThrown(err: unknown): string {
  let text: string;
  try {
    text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
  } catch {
    text = 'a value that cannot be shown';
  }
  return text.split('\n').map((line) => line.trim()).filter((line) => line !== '').join(' | ');
}

export function exitNow(status: number): never {
  prepareExitNow();
  if (libcExit) libcExit(status);
  // No C library call available: SIGKILL is the other way past a stuck thread.
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
}
