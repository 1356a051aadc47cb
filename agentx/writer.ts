// Growable AgentX PDU encoder (RFC 2741 §5, §6.1). One writer is reused for
// every PDU: `begin` reserves the 20-byte header, `finish` back-fills
// payload_length and hands out a right-sized copy, so a PDU that fails half-way
// leaves nothing behind for the next one.
import { AGENTX_VERSION, HEADER_LENGTH, type Oid, type SearchRange, type VarBind, ValueType } from './pdu';

/** A PDU value that cannot be put on the wire (out-of-range number, wrong length, bad type). */
export class PduEncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PduEncodeError';
  }
}

/** §5.1: at most 128 sub-identifiers are encoded (after prefix compression). */
const MAX_SUBIDS = 128;
const UINT64_MAX = (1n << 64n) - 1n;

/** `what` and `part` are joined only when failing: the happy path builds no strings. */
function joinName(what: string, part: string | undefined): string {
  return part === undefined ? what : `${what} ${part}`;
}

function checkUint(value: number, max: number, what: string, part: string | undefined): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new PduEncodeError(`${joinName(what, part)} must be an integer 0..${max}, got ${String(value)}`);
  }
}

export class PduWriter {
  private buf: Buffer;
  private pos = 0;
  private bigEndian = true;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(Math.max(initialSize, HEADER_LENGTH));
  }

  /** Starts a PDU; `flags` must already carry NETWORK_BYTE_ORDER exactly when `bigEndian` is true (§6.1). */
  begin(type: number, flags: number, sessionId: number, transactionId: number, packetId: number, bigEndian: boolean): void {
    this.pos = 0;
    this.bigEndian = bigEndian;
    this.uint8(AGENTX_VERSION, 'h.version');
    this.uint8(type, 'h.type');
    this.uint8(flags, 'h.flags');
    this.uint8(0, 'reserved');
    this.uint32(sessionId, 'h.sessionID');
    this.uint32(transactionId, 'h.transactionID');
    this.uint32(packetId, 'h.packetID');
    this.uint32(0, 'h.payload_length');
  }

  /** Back-fills payload_length and returns the PDU as a Buffer of its own. */
  finish(): Buffer {
    const payloadLength = this.pos - HEADER_LENGTH;
    if (this.bigEndian) this.buf.writeUInt32BE(payloadLength, 16);
    else this.buf.writeUInt32LE(payloadLength, 16);
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  zeros(n: number): void {
    this.ensure(n);
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  uint8(value: number, what: string, part?: string): void {
    checkUint(value, 0xff, what, part);
    this.ensure(1);
    this.buf[this.pos++] = value;
  }

  uint16(value: number, what: string, part?: string): void {
    checkUint(value, 0xffff, what, part);
    this.ensure(2);
    if (this.bigEndian) this.buf.writeUInt16BE(value, this.pos);
    else this.buf.writeUInt16LE(value, this.pos);
    this.pos += 2;
  }

  uint32(value: number, what: string, part?: string): void {
    checkUint(value, 0xffffffff, what, part);
    this.ensure(4);
    if (this.bigEndian) this.buf.writeUInt32BE(value, this.pos);
    else this.buf.writeUInt32LE(value, this.pos);
    this.pos += 4;
  }

  int32(value: number, what: string, part?: string): void {
    if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff) {
      throw new PduEncodeError(`${joinName(what, part)} must be a signed 32-bit integer, got ${String(value)}`);
    }
    this.uint32(value >>> 0, what, part);
  }

  uint64(value: bigint, what: string, part?: string): void {
    if (typeof value !== 'bigint' || value < 0n || value > UINT64_MAX) {
      throw new PduEncodeError(`${joinName(what, part)} must be a bigint 0..2^64-1, got ${String(value)}`);
    }
    this.ensure(8);
    if (this.bigEndian) this.buf.writeBigUInt64BE(value, this.pos);
    else this.buf.writeBigUInt64LE(value, this.pos);
    this.pos += 8;
  }

  /**
   * §5.1 Object Identifier. 1.3.6.1.X.… with 0 < X < 256 is sent as prefix X plus
   * the rest, as Net-SNMP does; anything else goes out in full with prefix 0.
   */
  oid(oid: Oid, what: string, part?: string, include = false): void {
    if (!Array.isArray(oid)) throw new PduEncodeError(`${joinName(what, part)} must be an array of sub-identifiers`);
    const compress =
      oid.length > 4 && oid[0] === 1 && oid[1] === 3 && oid[2] === 6 && oid[3] === 1 && oid[4] > 0 && oid[4] < 256;
    const first = compress ? 5 : 0;
    const nSubid = oid.length - first;
    if (nSubid > MAX_SUBIDS) {
      throw new PduEncodeError(`${joinName(what, part)} has ${oid.length} sub-identifiers; at most ${MAX_SUBIDS} fit after the prefix`);
    }
    this.ensure(4 + 4 * nSubid);
    const b = this.buf;
    b[this.pos] = nSubid;
    b[this.pos + 1] = compress ? oid[4] : 0;
    b[this.pos + 2] = include ? 1 : 0;
    b[this.pos + 3] = 0;
    this.pos += 4;
    for (let i = first; i < oid.length; i++) {
      const subid = oid[i];
      if (!Number.isInteger(subid) || subid < 0 || subid > 0xffffffff) {
        throw new PduEncodeError(`${joinName(what, part)} sub-identifier #${i + 1} must be an integer 0..4294967295, got ${String(subid)}`);
      }
      if (this.bigEndian) b.writeUInt32BE(subid, this.pos);
      else b.writeUInt32LE(subid, this.pos);
      this.pos += 4;
    }
  }

  /** §5.3 Octet String: byte length, bytes, zero padding to a multiple of 4. */
  octets(data: Buffer, what: string, part?: string): void {
    if (!Buffer.isBuffer(data)) {
      throw new PduEncodeError(`${joinName(what, part)} must be a Buffer (encode text with Buffer.from(text, 'utf8'))`);
    }
    const padded = data.length + ((4 - (data.length % 4)) % 4);
    this.uint32(data.length, what, part);
    this.ensure(padded);
    data.copy(this.buf, this.pos);
    this.buf.fill(0, this.pos + data.length, this.pos + padded);
    this.pos += padded;
  }

  searchRange(range: SearchRange, what: string): void {
    this.oid(range.start, what, 'start', range.include);
    this.oid(range.end, what, 'end');
  }

  /** §5.4 VarBind. */
  varbind(vb: VarBind, what: string): void {
    this.uint16(vb.type, what, 'type');
    this.zeros(2);
    this.oid(vb.oid, what, 'name');
    switch (vb.type) {
      case ValueType.Integer:
        this.int32(vb.value, what, 'Integer value');
        return;
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        this.uint32(vb.value, what, 'value');
        return;
      case ValueType.Counter64:
        this.uint64(vb.value, what, 'Counter64 value');
        return;
      case ValueType.OctetString:
      case ValueType.Opaque:
        this.octets(vb.value, what, 'value');
        return;
      case ValueType.IpAddress:
        if (!Buffer.isBuffer(vb.value) || vb.value.length !== 4) {
          throw new PduEncodeError(`${what} IpAddress value must be a 4-byte Buffer`);
        }
        this.octets(vb.value, what, 'IpAddress value');
        return;
      case ValueType.ObjectIdentifier:
        this.oid(vb.value, what, 'OID value');
        return;
      case ValueType.Null:
      case ValueType.NoSuchObject:
      case ValueType.NoSuchInstance:
      case ValueType.EndOfMibView:
        return;
      default:
        throw new PduEncodeError(`${what} has unknown value type ${String((vb as { type: unknown }).type)}`);
    }
  }
}
