// Runs async work over many items a few at a time. Starting all of them at
// once (Promise.all over 20,000 realpath calls, or 10,000 domains) queues
// every request at the same moment: tens of megabytes of pending requests
// and results, for no gain, since the libuv pool runs only a few at a time.

/** Calls fn for every item, at most `limit` at a time, in order of start. */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, position: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const position = next++;
      await fn(items[position], position);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, lane));
}
