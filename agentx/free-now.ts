// Giving an ArrayBuffer's memory back without waiting for a garbage collection.

import { types } from 'util';
import { MessageChannel, type MessagePort } from 'worker_threads';

/** A port closed at once: what is posted to it is dropped as soon as it is posted. */
let closedPort: MessagePort | null = null;

/**
 * Gives the memory of ArrayBuffers back at once. A buffer transferred in a
 * message is detached (its typed arrays read as empty) and its memory moves
 * into the message. Posted to a closed port, the message is serialized (the
 * HTML spec's postMessage transfers even then) and dropped, and the memory
 * with it, without waiting for a GC. (Node 20 has no
 * ArrayBuffer.prototype.transfer.) One closed port serves every call: a
 * channel per call costs an order of magnitude more than the post. Buffers
 * replaced once a refresh (a view's values) would otherwise stay resident
 * until the next major GC, which comes after the next refresh has started
 * allocating.
 */
export function freeNow(buffers: ArrayBufferLike[]): void {
  // util.types, not instanceof: a buffer made in another realm (a vm context) is still transferable.
  const transferable = buffers.filter((b): b is ArrayBuffer => types.isArrayBuffer(b) && b.byteLength > 0);
  if (transferable.length === 0) return;
  if (closedPort === null) {
    const { port1, port2 } = new MessageChannel();
    port1.close();
    port2.close();
    closedPort = port1;
  }
  closedPort.postMessage(null, transferable);
}
