// Giving an ArrayBuffer's memory back without waiting for a garbage collection.

import { types } from 'util';
import { MessageChannel } from 'worker_threads';

/**
 * Gives the memory of ArrayBuffers back at once. A buffer transferred in a
 * message is detached (its typed arrays read as empty) and its memory moves
 * into the message; closing both ports drops the undelivered message, and
 * the memory with it, without waiting for a GC. (Node 20 has no
 * ArrayBuffer.prototype.transfer.) Buffers replaced once a refresh (a view's
 * values) would otherwise stay resident until the next major GC, which comes
 * after the next refresh has started allocating.
 */
export function freeNow(buffers: ArrayBufferLike[]): void {
  // util.types, not instanceof: a buffer made in another realm (a vm context) is still transferable.
  const transferable = buffers.filter((b): b is ArrayBuffer => types.isArrayBuffer(b) && b.byteLength > 0);
  if (transferable.length === 0) return;
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(null, transferable);
  port1.close();
  port2.close();
}
