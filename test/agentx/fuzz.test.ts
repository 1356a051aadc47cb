// Malformed input: the decoder may only ever throw PduDecodeError and the
// framer only FramingError, whatever the bytes. Seeded, so failures replay.
import { decodePdu, encodePdu, PduDecodeError } from '../../agentx/codec';
import { FramingError, PduFramer } from '../../agentx/framer';
import { sampleFrames } from './pdu-builder';
import { mulberry32 } from '../harness/mulberry32';

const MUTATIONS = 20_000;
const RANDOM_STRINGS = 5_000;
const RANDOM_PAYLOADS = 5_000;
const STREAMS = 2_000;

// Frames from snmpd 5.9.3 (see codec.test.ts) next to the hand-built samples.
const captures = [
  '0112100000000005000000000000000100000030000000690000000000040000050400000000000100001f8800000003000000020000000a000000076361707475726500',
  '0106100000000005000000010000000200000010010300000000270f0103000000002710',
  '0105100000000005000000030000000400000014030300000000270f000000020000000000000000',
  '010810000000000500000005000000060000001800020000030300000000270f000000030000000000000007',
].map((h) => Buffer.from(h, 'hex'));
const corpus = [...sampleFrames('be'), ...sampleFrames('le'), ...captures];

const counts = { truncated: 0, resized: 0, mutated: 0, random: 0, randomPayload: 0, streams: 0, accepted: 0, rejected: 0 };

/** Uniform in [0, 1), seeded: good enough to spread mutations, the same on every run. */
function prng(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/**
 * Decodes `frame`. A PduDecodeError is a pass; any other exception fails the
 * test with the input in hex. A PDU that is accepted must survive a re-encode.
 */
function decodeOrReject(frame: Buffer): 'accepted' | 'rejected' {
  let pdu;
  try {
    pdu = decodePdu(frame);
  } catch (e) {
    if (e instanceof PduDecodeError) {
      counts.rejected++;
      return 'rejected';
    }
    throw new Error(`decodePdu threw ${(e as Error).name} (${(e as Error).message}) for ${frame.toString('hex')}`);
  }
  counts.accepted++;
  const again = encodePdu(pdu, { networkByteOrder: (pdu.flags & 0x10) !== 0 });
  expect(decodePdu(again)).toEqual(pdu);
  return 'accepted';
}

/** Rewrites payload_length to the real size, in the frame's own byte order, so mutations reach the payload parser. */
function fixLength(frame: Buffer): void {
  if (frame.length < 20) return;
  if (frame[2] & 0x10) frame.writeUInt32BE(frame.length - 20, 16);
  else frame.writeUInt32LE(frame.length - 20, 16);
}

const INTERESTING_BYTES = [0, 1, 2, 3, 4, 5, 0x7f, 0x80, 0x81, 0x82, 0xfe, 0xff];
const INTERESTING_WORDS = [0, 1, 3, 4, 5, 128, 129, 0x7fffffff, 0x80000000, 0xfffffffc, 0xffffffff];

function mutate(input: Buffer, rand: () => number): Buffer {
  let buf = Buffer.from(input);
  const pick = (n: number): number => Math.floor(rand() * n);
  const ops = 1 + pick(4);
  for (let i = 0; i < ops; i++) {
    const at = buf.length === 0 ? 0 : pick(buf.length);
    switch (pick(8)) {
      case 0:
        if (buf.length) buf[at] = pick(256);
        break;
      case 1:
        if (buf.length) buf[at] ^= 1 << pick(8);
        break;
      case 2:
        if (buf.length) buf[at] = INTERESTING_BYTES[pick(INTERESTING_BYTES.length)];
        break;
      case 3: {
        const word = at & ~3;
        if (word + 4 <= buf.length) buf.writeUInt32BE(INTERESTING_WORDS[pick(INTERESTING_WORDS.length)], word);
        break;
      }
      case 4: {
        const extra = Buffer.from(Array.from({ length: 1 + pick(8) }, () => pick(256)));
        buf = Buffer.concat([buf.subarray(0, at), extra, buf.subarray(at)]);
        break;
      }
      case 5:
        buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1 + pick(8))]);
        break;
      case 6:
        buf = buf.subarray(0, at);
        break;
      default:
        buf = Buffer.concat([buf, Buffer.from(Array.from({ length: 4 * (1 + pick(4)) }, () => pick(256)))]);
    }
  }
  if (rand() < 0.7) fixLength(buf);
  return buf;
}

afterAll(() => {
  const total = counts.truncated + counts.resized + counts.mutated + counts.random + counts.randomPayload + counts.streams;
  console.log(
    `AgentX fuzz: ${total} cases — ${counts.truncated} truncations, ${counts.resized} resized payloads, ${counts.mutated} mutations, ` +
      `${counts.random} random strings, ${counts.randomPayload} random payloads, ${counts.streams} framed streams; ` +
      `decodePdu accepted ${counts.accepted}, rejected ${counts.rejected} with PduDecodeError, nothing else thrown`,
  );
});

test(`the corpus (${corpus.length} frames) decodes cleanly`, () => {
  for (const frame of corpus) expect(decodeOrReject(frame)).toBe('accepted');
});

test('every truncation of every corpus frame is rejected with PduDecodeError', () => {
  for (const frame of corpus) {
    for (let len = 0; len < frame.length; len++) {
      counts.truncated++;
      expect(decodeOrReject(frame.subarray(0, len))).toBe('rejected');
    }
  }
});

test('every payload cut short with a matching payload_length decodes or is rejected', () => {
  for (const frame of corpus) {
    for (let len = 20; len < frame.length; len++) {
      counts.resized++;
      const cut = Buffer.from(frame.subarray(0, len));
      fixLength(cut);
      decodeOrReject(cut);
    }
  }
});

test(`${MUTATIONS} seeded random mutations: only PduDecodeError`, () => {
  const rand = prng(0xa6e47);
  for (let i = 0; i < MUTATIONS; i++) {
    counts.mutated++;
    decodeOrReject(mutate(corpus[Math.floor(rand() * corpus.length)], rand));
  }
});

test(`${RANDOM_STRINGS} random byte strings: only PduDecodeError`, () => {
  const rand = prng(2741);
  for (let i = 0; i < RANDOM_STRINGS; i++) {
    counts.random++;
    const buf = Buffer.from(Array.from({ length: Math.floor(rand() * 129) }, () => Math.floor(rand() * 256)));
    decodeOrReject(buf);
  }
});

test(`${RANDOM_PAYLOADS} valid headers over random payloads: only PduDecodeError`, () => {
  const rand = prng(7666);
  for (let i = 0; i < RANDOM_PAYLOADS; i++) {
    counts.randomPayload++;
    const payload = Array.from({ length: 4 * Math.floor(rand() * 24) }, () => {
      // Mostly small bytes, so lengths and n_subid fields are often plausible.
      const r = rand();
      return r < 0.6 ? Math.floor(rand() * 8) : Math.floor(rand() * 256);
    });
    const frame = Buffer.from([1, 1 + Math.floor(rand() * 18), Math.floor(rand() * 256) & 0x1f, 0, ...new Array<number>(16).fill(0), ...payload]);
    fixLength(frame);
    decodeOrReject(frame);
  }
});

test(`${STREAMS} mutated streams in random chunks: framer throws only FramingError, frames hold one PDU each`, () => {
  const rand = prng(1998);
  let framed = 0;
  for (let i = 0; i < STREAMS; i++) {
    counts.streams++;
    const parts = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => corpus[Math.floor(rand() * corpus.length)]);
    let stream: Buffer = Buffer.concat(parts);
    if (rand() < 0.8) stream = mutate(stream, rand);
    const framer = new PduFramer(4096);
    try {
      for (let at = 0; at < stream.length; ) {
        const size = 1 + Math.floor(rand() * 64);
        for (const frame of framer.push(stream.subarray(at, at + size))) {
          framed++;
          const declared = frame[2] & 0x10 ? frame.readUInt32BE(16) : frame.readUInt32LE(16);
          expect(frame.length).toBe(20 + declared);
          decodeOrReject(frame);
        }
        at += size;
      }
    } catch (e) {
      if (!(e instanceof FramingError)) {
        throw new Error(`framer threw ${(e as Error).name} (${(e as Error).message}) for ${stream.toString('hex')}`);
      }
    }
  }
  expect(framed).toBeGreaterThan(STREAMS);
});
