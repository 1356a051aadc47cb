// Stream framing: however the bytes are cut into chunks, the same PDUs come out.
import { FramingError, PduFramer } from '../../agentx/framer';
import { PduBuilder, sampleFrames } from './pdu-builder';

const frames = [...sampleFrames('be'), ...sampleFrames('le')];
const stream = Buffer.concat(frames);
const hex = (list: Buffer[]): string[] => list.map((f) => f.toString('hex'));

/** Pushes `chunks` one after another and collects every frame returned. */
function frameAll(chunks: Buffer[], framer = new PduFramer()): Buffer[] {
  const out: Buffer[] = [];
  for (const chunk of chunks) out.push(...framer.push(chunk));
  return out;
}

test(`the sample holds ${frames.length} PDUs of all 18 types in both byte orders`, () => {
  expect(new Set(frames.map((f) => f[1]))).toEqual(new Set(Array.from({ length: 18 }, (_, i) => i + 1)));
  expect(new Set(frames.map((f) => f[2] & 0x10))).toEqual(new Set([0, 0x10]));
});

test('each PDU pushed whole comes out whole', () => {
  for (const frame of frames) expect(hex(frameAll([frame]))).toEqual([frame.toString('hex')]);
});

test('each PDU split into two chunks at every offset', () => {
  for (const frame of frames) {
    for (let cut = 0; cut <= frame.length; cut++) {
      const framer = new PduFramer();
      expect(framer.push(frame.subarray(0, cut))).toEqual(cut === frame.length ? [frame] : []);
      expect(hex(framer.push(frame.subarray(cut)))).toEqual(cut === frame.length ? [] : [frame.toString('hex')]);
      expect(framer.pendingBytes).toBe(0);
    }
  }
});

test('the whole stream one byte at a time', () => {
  const bytes = Array.from({ length: stream.length }, (_, i) => stream.subarray(i, i + 1));
  expect(hex(frameAll(bytes))).toEqual(hex(frames));
});

test('the whole stream in one chunk', () => {
  const framer = new PduFramer();
  expect(hex(framer.push(stream))).toEqual(hex(frames));
  expect(framer.pendingBytes).toBe(0);
});

test('every pair of consecutive PDUs split at every offset', () => {
  for (let i = 0; i + 1 < frames.length; i++) {
    const pair = Buffer.concat([frames[i], frames[i + 1]]);
    for (let cut = 0; cut <= pair.length; cut++) {
      expect(hex(frameAll([pair.subarray(0, cut), pair.subarray(cut)]))).toEqual(hex([frames[i], frames[i + 1]]));
    }
  }
});

test('the stream in random chunk sizes (seeded), through one framer', () => {
  let seed = 12345;
  const next = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let round = 0; round < 50; round++) {
    const chunks: Buffer[] = [];
    for (let at = 0; at < stream.length; ) {
      const size = 1 + (next() % 97);
      chunks.push(stream.subarray(at, at + size));
      at += size;
    }
    expect(hex(frameAll(chunks))).toEqual(hex(frames));
  }
});

test('returned frames stay valid after later pushes and are not views of the caller’s chunk', () => {
  const framer = new PduFramer();
  const chunk = Buffer.from(stream);
  const first = framer.push(chunk.subarray(0, 100));
  const snapshot = hex(first);
  chunk.fill(0x55, 0, 100);
  const rest = framer.push(Buffer.from(stream.subarray(100)));
  expect(hex(first)).toEqual(snapshot);
  expect(hex([...first, ...rest])).toEqual(hex(frames));
});

test('a PDU larger than the internal buffer is reassembled', () => {
  const big = new PduBuilder('be').addUInt8(0).addZeros(3).addOid([1], { prefix: 3 }).addOctets(Buffer.alloc(200_000, 0x61)).build({ type: 1 });
  const chunks: Buffer[] = [];
  for (let at = 0; at < big.length; at += 65536) chunks.push(big.subarray(at, at + 65536));
  const framer = new PduFramer();
  expect(frameAll([frames[0], ...chunks, frames[1]], framer).map((f) => f.length)).toEqual([frames[0].length, big.length, frames[1].length]);
  expect(framer.pendingBytes).toBe(0);
});

describe('bad headers', () => {
  const header = (opts: { version?: number; flags?: number; payloadLength: number }): Buffer => {
    const h = Buffer.alloc(20);
    h[0] = opts.version ?? 1;
    h[1] = 18;
    h[2] = opts.flags ?? 0x10;
    if (h[2] & 0x10) h.writeUInt32BE(opts.payloadLength, 16);
    else h.writeUInt32LE(opts.payloadLength, 16);
    return h;
  };

  test.each([
    ['version 2', header({ version: 2, payloadLength: 0 }), /version 2/],
    ['version 0', header({ version: 0, payloadLength: 0 }), /version 0/],
    ['payload_length not a multiple of 4', header({ payloadLength: 6 }), /payload_length 6 is not a multiple of 4/],
    ['payload_length above the default 1 MiB', header({ payloadLength: 1024 * 1024 + 4 }), /exceeds the limit of 1048576/],
    ['little-endian payload_length above the limit', header({ flags: 0, payloadLength: 0x01000000 }), /payload_length 16777216 exceeds/],
  ])('%s throws FramingError as soon as the header is in', (_name, bad, message) => {
    expect(() => new PduFramer().push(bad)).toThrow(FramingError);
    expect(() => new PduFramer().push(bad)).toThrow(message);
    // Arriving byte by byte, the error comes with the 20th byte, not later.
    const framer = new PduFramer();
    for (let i = 0; i < 19; i++) expect(framer.push(bad.subarray(i, i + 1))).toEqual([]);
    expect(() => framer.push(bad.subarray(19, 20))).toThrow(FramingError);
  });

  test('a bad header after good PDUs in the same chunk still throws', () => {
    expect(() => new PduFramer().push(Buffer.concat([frames[0], frames[1], header({ version: 3, payloadLength: 0 })]))).toThrow(FramingError);
  });

  test('the limit is a constructor option and is inclusive', () => {
    const small = new PduFramer(8);
    const ok = new PduBuilder('be').addZeros(8).build({ type: 2 });
    expect(small.push(ok)).toHaveLength(1);
    expect(() => small.push(new PduBuilder('be').addZeros(12).build({ type: 2 }))).toThrow(/exceeds the limit of 8/);
  });

  test('little-endian payload_length is read little-endian', () => {
    const le = sampleFrames('le').find((f) => f.readUInt32LE(16) > 0) as Buffer;
    expect(le.readUInt32BE(16)).toBeGreaterThan(1024 * 1024);
    expect(hex(new PduFramer().push(le))).toEqual([le.toString('hex')]);
  });

  test('an unknown PDU type is framed, not rejected (the session ignores it)', () => {
    const odd = new PduBuilder('be').addZeros(4).build({ type: 99 });
    expect(hex(new PduFramer().push(odd))).toEqual([odd.toString('hex')]);
  });

  test('reset() forgets a partial PDU', () => {
    const framer = new PduFramer();
    framer.push(frames[0].subarray(0, 25));
    expect(framer.pendingBytes).toBe(25);
    framer.reset();
    expect(framer.pendingBytes).toBe(0);
    expect(hex(framer.push(frames[1]))).toEqual([frames[1].toString('hex')]);
  });
});
