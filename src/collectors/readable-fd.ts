// Waiting for a socket the agent opened through koffi (netlink, packet
// capture) to become readable: poll(2) on koffi's pool thread, never on the
// main thread, with a timeout so that a close is noticed within it; whatever
// is readable is then read on the main thread.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';

const POLLIN = 0x1;
/** poll() fails only on a signal or a broken descriptor: this many in a row is the latter. */
const FAILURES_IN_A_ROW = 5;

let poll: KoffiFunc<(fds: Buffer, nfds: number, timeoutMs: number) => number> | null = null;

/**
 * Runs `onReadable` each time `fd` has something to read, until `closed()`
 * says stop (noticed within `timeoutMs`). Rejects with `failure()` when
 * poll() keeps failing.
 */
export async function whileReadable(
  fd: number,
  timeoutMs: number,
  closed: () => boolean,
  onReadable: () => void | Promise<void>,
  failure: () => Error,
): Promise<void> {
  poll ??= koffi.load('libc.so.6').func('int poll(void *, uint64_t, int)');
  const call = poll;
  // struct pollfd: fd, events, revents (cleared before each call).
  const pollFd = Buffer.alloc(8);
  pollFd.writeInt32LE(fd, 0);
  pollFd.writeInt16LE(POLLIN, 4);
  let failures = 0;
  while (!closed()) {
    const ready = await new Promise<number>((resolve) => {
      pollFd.writeInt16LE(0, 6);
      call.async(pollFd, 1, timeoutMs, (err: unknown, n: number) => resolve(err ? -1 : n));
    });
    if (closed()) return;
    if (ready < 0) {
      if (++failures >= FAILURES_IN_A_ROW) throw failure();
      continue;
    }
    failures = 0;
    if (ready > 0) await onReadable();
  }
}
