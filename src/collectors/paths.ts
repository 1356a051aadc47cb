// What every host collector is given: where the kernel's files are and how to
// report one it cannot read. Roots are configurable (node_exporter's
// --path.procfs / --path.sysfs) so tests point them at fixtures and no
// collector hard-codes /proc or /sys.
import { closeSync, openSync, promises as fs, readSync } from 'node:fs';
import * as path from 'node:path';

export interface HostPaths {
  /** Mount point of procfs, normally /proc. */
  procRoot: string;
  /** Mount point of sysfs, normally /sys. */
  sysRoot: string;
  /**
   * The mount table snmpd reads. Debian's Net-SNMP 5.9.3 is built with
   * --with-mnttab=/etc/mtab (see `strings libnetsnmpmibs.so.40`), and
   * hardware/fsys/fsys_mntent.c opens ETC_MNTTAB directly, so hrStorageIndex
   * follows the line order of /etc/mtab. On current systems /etc/mtab is a
   * symlink to /proc/self/mounts or /proc/mounts, i.e. the same lines.
   */
  mountsFile: string;
}

export const DEFAULT_HOST_PATHS: Readonly<HostPaths> = Object.freeze({
  procRoot: '/proc',
  sysRoot: '/sys',
  mountsFile: '/etc/mtab',
});

export function hostPaths(overrides: Partial<HostPaths> = {}): HostPaths {
  return { ...DEFAULT_HOST_PATHS, ...overrides };
}

export function procFile(paths: HostPaths, ...segments: string[]): string {
  return path.join(paths.procRoot, ...segments);
}

export function sysFile(paths: HostPaths, ...segments: string[]): string {
  return path.join(paths.sysRoot, ...segments);
}

export type CollectorLogLevel = 'debug' | 'info' | 'warn' | 'error';
/** Same shape as the AgentX library's log function, so the application passes one logger to both. */
export type CollectorLog = (level: CollectorLogLevel, message: string) => void;

/**
 * Called when a source cannot be read: `file` is the path, `reason` the errno
 * code (or message), `lost` says in MIB terms what is missing as a result.
 * host.ts turns it into one log line per file and outage.
 */
export type ReportUnreadable = (file: string, reason: string, lost: string) => void;

/** For callers that want failures in their own log without de-duplication. */
export function reportTo(log: CollectorLog): ReportUnreadable {
  return (file, reason, lost) => log('warn', `cannot read ${file}: ${reason}; ${lost}`);
}

export const ignoreUnreadable: ReportUnreadable = () => undefined;

export function errorReason(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === 'string') return code;
    const message = (err as Error).message;
    if (typeof message === 'string') return message;
  }
  return String(err);
}

/** The file's text, or undefined after reporting why it could not be read. */
export async function readTextFile(file: string, lost: string, report: ReportUnreadable): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    report(file, errorReason(err), lost);
    return undefined;
  }
}

/** Where kernel files are read into; it grows to the largest one read and is kept for the next read. */
let kernelFileBuffer = Buffer.allocUnsafe(64 * 1024);

/**
 * The text of a procfs or sysfs file, read on the calling thread; throws
 * the system error. The kernel makes these files from memory as they are
 * read, so the read takes microseconds, where fs.promises.readFile makes
 * four round trips through the libuv pool (open, fstat, read, close). The
 * file is opened for each read: a /proc file gives fresh contents only from
 * a read at its start, and a fixture root may have its files replaced.
 * Only for /proc and /sys: a file on a real filesystem can block the main
 * thread for as long as the disk or the server takes.
 */
export function readKernelFile(file: string): string {
  const fd = openSync(file, 'r');
  try {
    let length = 0;
    for (;;) {
      if (length === kernelFileBuffer.length) {
        const larger = Buffer.allocUnsafe(length * 2);
        kernelFileBuffer.copy(larger, 0, 0, length);
        kernelFileBuffer = larger;
      }
      const n = readSync(fd, kernelFileBuffer, length, kernelFileBuffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return kernelFileBuffer.toString('utf8', 0, length);
  } finally {
    closeSync(fd);
  }
}

/** readKernelFile's text, or undefined after reporting why the file could not be read. */
export function readKernelTextFile(file: string, lost: string, report: ReportUnreadable): string | undefined {
  try {
    return readKernelFile(file);
  } catch (err) {
    report(file, errorReason(err), lost);
    return undefined;
  }
}
