// freeNow: the buffers are detached at once and their memory is given back
// without a garbage collection, on the first call and on later ones.
import { freeNow } from '../../agentx/free-now';

const MB = 1024 * 1024;

/** Memory held by ArrayBuffers now, in MB (what freeNow must lower). */
const arrayBufferMb = (): number => process.memoryUsage().arrayBuffers / MB;

function filled(mb: number): ArrayBuffer {
  const b = new ArrayBuffer(mb * MB);
  new Uint8Array(b).fill(7);
  return b;
}

describe('freeNow', () => {
  test('detaches the buffers and gives their memory back before the next turn of the event loop ends', async () => {
    for (let round = 0; round < 3; round++) {
      const a = filled(64);
      const b = filled(32);
      const view = new Int32Array(a);
      const before = arrayBufferMb();
      freeNow([a, b]);
      expect([a.byteLength, b.byteLength, view.length]).toEqual([0, 0, 0]);
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(arrayBufferMb()).toBeLessThan(before - 90);
    }
  });

  test('leaves empty buffers and shared memory alone', () => {
    const empty = new ArrayBuffer(0);
    const shared = new SharedArrayBuffer(16);
    expect(() => freeNow([empty, shared])).not.toThrow();
    expect(shared.byteLength).toBe(16);
  });
});
