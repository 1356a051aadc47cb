// Waiting for something a daemon or the agent does in its own time.
import { sleep } from './process';

/**
 * Calls `probe` until `accept` holds for its value; resolves with the value
 * and how long it took, or rejects after `timeoutMs` naming what was awaited
 * and the last value seen.
 */
export async function pollUntil<T>(
  what: string,
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  timeoutMs: number,
  intervalMs = 25,
): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const value = await probe();
    if (accept(value)) return { value, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(value, bigintAsText)}`);
    await sleep(intervalMs);
  }
}

function bigintAsText(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
