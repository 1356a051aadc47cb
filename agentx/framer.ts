// Cuts a byte stream into whole AgentX PDUs (RFC 2741 §6.1: 20-byte header,
// then payload_length bytes). Stream sockets deliver PDUs split and merged at
// arbitrary points, so leftovers are kept (by offset) until the rest arrives.
import { AGENTX_VERSION, HEADER_LENGTH, PduFlag } from './pdu';

/** The stream cannot be AgentX v1 any more; the only safe reaction is to drop the connection. */
export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

export const DEFAULT_MAX_PAYLOAD_LENGTH = 1024 * 1024;
const MIN_BUFFER = 4096;
/** After a large PDU has gone through, an empty buffer above this size is given back. */
const KEEP_BUFFER = 64 * 1024;

export class PduFramer {
  private buf: Buffer = Buffer.alloc(0);
  /** Pending bytes are buf[start, end). */
  private start = 0;
  private end = 0;

  /** @param maxPayloadLength largest payload_length accepted before the payload arrives (default 1 MiB). */
  constructor(private readonly maxPayloadLength: number = DEFAULT_MAX_PAYLOAD_LENGTH) {}

  /** Bytes received but not yet part of a returned frame. */
  get pendingBytes(): number {
    return this.end - this.start;
  }

  /**
   * Appends `chunk` and returns every PDU it completes, each a Buffer of its
   * own (header + payload) that later pushes never overwrite.
   * Throws FramingError on a bad header; the framer is then unusable until reset().
   */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    if (this.start === this.end) {
      // Nothing pending: cut frames straight out of the chunk and keep only its tail.
      const used = this.extract(chunk, 0, chunk.length, frames);
      if (used < chunk.length) this.append(chunk, used);
      return frames;
    }
    this.append(chunk, 0);
    this.start = this.extract(this.buf, this.start, this.end, frames);
    if (this.start === this.end) {
      this.start = this.end = 0;
      if (this.buf.length > KEEP_BUFFER) this.buf = Buffer.alloc(0);
    }
    return frames;
  }

  /** Forgets pending bytes, e.g. after a reconnect. */
  reset(): void {
    this.buf = Buffer.alloc(0);
    this.start = this.end = 0;
  }

  /** Copies whole frames in src[from, to) into `frames`; returns where the first incomplete one starts. */
  private extract(src: Buffer, from: number, to: number, frames: Buffer[]): number {
    while (to - from >= HEADER_LENGTH) {
      const frameLength = HEADER_LENGTH + this.checkHeader(src, from);
      if (to - from < frameLength) break;
      const frame = Buffer.allocUnsafe(frameLength);
      src.copy(frame, 0, from, from + frameLength);
      frames.push(frame);
      from += frameLength;
    }
    return from;
  }

  /**
   * Validates a header as soon as its 20 bytes are in, before trusting payload_length
   * (read in the byte order that PDU's NETWORK_BYTE_ORDER flag announces, §6.1).
   */
  private checkHeader(src: Buffer, at: number): number {
    const version = src[at];
    if (version !== AGENTX_VERSION) {
      this.reset();
      throw new FramingError(`PDU header announces AgentX version ${version}, expected ${AGENTX_VERSION}: peer is not speaking AgentX v1`);
    }
    const payloadLength = src[at + 2] & PduFlag.NetworkByteOrder ? src.readUInt32BE(at + 16) : src.readUInt32LE(at + 16);
    if (payloadLength % 4 !== 0) {
      this.reset();
      throw new FramingError(`PDU type ${src[at + 1]}: payload_length ${payloadLength} is not a multiple of 4 (RFC 2741 §6.1)`);
    }
    if (payloadLength > this.maxPayloadLength) {
      this.reset();
      throw new FramingError(`PDU type ${src[at + 1]}: payload_length ${payloadLength} exceeds the limit of ${this.maxPayloadLength} bytes`);
    }
    return payloadLength;
  }

  /** Adds src[from..] to the pending bytes: compacts when that makes room, otherwise grows. */
  private append(src: Buffer, from: number): void {
    const incoming = src.length - from;
    if (this.buf.length - this.end < incoming) {
      const pending = this.end - this.start;
      if (pending + incoming <= this.buf.length) {
        this.buf.copy(this.buf, 0, this.start, this.end);
      } else {
        let size = Math.max(this.buf.length * 2, MIN_BUFFER);
        while (size < pending + incoming) size *= 2;
        const grown = Buffer.allocUnsafe(size);
        this.buf.copy(grown, 0, this.start, this.end);
        this.buf = grown;
      }
      this.start = 0;
      this.end = pending;
    }
    src.copy(this.buf, this.end, from);
    this.end += incoming;
  }
}
