// Bounds-checked cursor over one AgentX PDU (RFC 2741 §5, §6.1).
// Every read first checks the bytes that remain, so a short or lying PDU
// becomes a PduDecodeError naming the field, never a RangeError from Buffer.
import { type SearchRange, type VarBind, ValueType } from './pdu';

/** The 20-byte header of §6.1, as it was on the wire. */
export interface RawHeader {
  version: number;
  type: number;
  flags: number;
  sessionId: number;
  transactionId: number;
  packetId: number;
  payloadLength: number;
}

/** Any malformed input to the decoder. The session drops the connection on it (§7.2.2 parseError). */
export class PduDecodeError extends Error {
  /** The header, when at least the 20 header bytes could be read. */
  readonly header?: RawHeader;
  /** True when h.type is not a PDU type of RFC 2741 (1..18): the session ignores those PDUs. */
  readonly unknownType: boolean;

  constructor(message: string, header?: RawHeader, unknownType = false) {
    super(message);
    this.name = 'PduDecodeError';
    this.header = header;
    this.unknownType = unknownType;
  }
}

/** §5.1: an OID has at most 128 sub-identifiers on the wire. */
export const MAX_SUBIDS = 128;

/** Sub-ids 1.3.6.1 that a non-zero §5.1 prefix stands for. */
const INTERNET = [1, 3, 6, 1] as const;

export class PduReader {
  private buf: Buffer;
  private pos: number;
  private end: number;
  private bigEndian: boolean;
  private header: RawHeader | undefined;
  /** o.include of the OID read last; only search-range starts use it (§5.2). */
  private lastInclude = false;

  constructor(buf: Buffer, start = 0, end = buf.length, bigEndian = true, header?: RawHeader) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.bigEndian = bigEndian;
    this.header = header;
  }

  /** Re-aims the cursor at another PDU; lets the codec keep one reader instead of one per call. */
  reset(buf: Buffer, start: number, end: number, bigEndian: boolean, header?: RawHeader): void {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    this.bigEndian = bigEndian;
    this.header = header;
  }

  /** Drops the reference to the last PDU so the reader does not keep its buffer alive. */
  release(): void {
    this.buf = EMPTY;
    this.pos = 0;
    this.end = 0;
    this.header = undefined;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  fail(message: string): never {
    throw new PduDecodeError(message, this.header);
  }

  /** Fixed-layout PDUs must end exactly where their last field ends. */
  expectEnd(what: string): void {
    if (this.pos !== this.end) {
      this.fail(`${what}: ${this.end - this.pos} unexpected trailing byte(s) at offset ${this.pos}`);
    }
  }

  /** `what` and `part` are joined only when failing: the happy path builds no strings. */
  private need(n: number, what: string, part?: string): void {
    if (this.end - this.pos < n) {
      const name = joinName(what, part);
      this.fail(`${name} truncated: needs ${n} byte(s) at offset ${this.pos}, ${this.end - this.pos} remain`);
    }
  }

  skip(n: number, what: string, part?: string): void {
    this.need(n, what, part);
    this.pos += n;
  }

  uint8(what: string, part?: string): number {
    this.need(1, what, part);
    return this.buf[this.pos++];
  }

  uint16(what: string, part?: string): number {
    this.need(2, what, part);
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 2;
    return this.bigEndian ? (b[p] << 8) | b[p + 1] : b[p] | (b[p + 1] << 8);
  }

  uint32(what: string, part?: string): number {
    this.need(4, what, part);
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 4;
    return this.bigEndian
      ? b[p] * 0x1000000 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3])
      : b[p + 3] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 1] << 8) | b[p]);
  }

  int32(what: string, part?: string): number {
    return this.uint32(what, part) | 0;
  }

  uint64(what: string, part?: string): bigint {
    this.need(8, what, part);
    const p = this.pos;
    this.pos = p + 8;
    return this.bigEndian ? this.buf.readBigUInt64BE(p) : this.buf.readBigUInt64LE(p);
  }

  /** §5.1 Object Identifier; a non-zero prefix X expands to 1.3.6.1.X. */
  oid(what: string, part?: string): number[] {
    this.need(4, what, part);
    const b = this.buf;
    const nSubid = b[this.pos];
    const prefix = b[this.pos + 1];
    this.lastInclude = b[this.pos + 2] !== 0;
    this.pos += 4;
    if (nSubid > MAX_SUBIDS) this.fail(`${joinName(what, part)}: n_subid ${nSubid} exceeds ${MAX_SUBIDS}`);
    if (this.end - this.pos < nSubid * 4) {
      this.fail(
        `${joinName(what, part)} truncated: ${nSubid} sub-identifier(s) need ${nSubid * 4} byte(s) at offset ${this.pos}, ` +
          `${this.end - this.pos} remain`,
      );
    }
    const head = prefix === 0 ? 0 : 5;
    const oid: number[] = new Array<number>(head + nSubid);
    if (head !== 0) {
      oid[0] = INTERNET[0];
      oid[1] = INTERNET[1];
      oid[2] = INTERNET[2];
      oid[3] = INTERNET[3];
      oid[4] = prefix;
    }
    let p = this.pos;
    if (this.bigEndian) {
      for (let i = head; i < oid.length; i++, p += 4) {
        oid[i] = b[p] * 0x1000000 + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
      }
    } else {
      for (let i = head; i < oid.length; i++, p += 4) {
        oid[i] = b[p + 3] * 0x1000000 + ((b[p + 2] << 16) | (b[p + 1] << 8) | b[p]);
      }
    }
    this.pos = p;
    return oid;
  }

  /** §5.3 Octet String: 4-byte length, data, padding to a multiple of 4. Returns a copy. */
  octets(what: string, part?: string): Buffer {
    if (this.end - this.pos < 4) {
      this.fail(`${joinName(what, part)} length truncated: needs 4 byte(s) at offset ${this.pos}, ${this.end - this.pos} remain`);
    }
    const length = this.uint32(what);
    if (length > this.end - this.pos) {
      this.fail(`${joinName(what, part)} truncated: length ${length} at offset ${this.pos - 4}, ${this.end - this.pos} byte(s) remain`);
    }
    // Arithmetic, not `& ~3`: a hostile length near 2^32 must not wrap to a negative int32.
    // The padding's content is not checked: §5.3 only fixes its length.
    const padded = length + ((4 - (length % 4)) % 4);
    if (padded > this.end - this.pos) {
      this.fail(`${joinName(what, part)} padding truncated: ${padded - length} padding byte(s) missing at offset ${this.pos + length}`);
    }
    const data = Buffer.allocUnsafe(length);
    this.buf.copy(data, 0, this.pos, this.pos + length);
    this.pos += padded;
    return data;
  }

  /** §5.2 SearchRange: start (its include field is the only one that counts) and end. */
  searchRange(what: string): SearchRange {
    const start = this.oid(what, 'start');
    const include = this.lastInclude;
    const end = this.oid(what, 'end');
    return { start, include, end };
  }

  /** §5.4 VarBind: type, reserved, name, then data shaped by the type. */
  varbind(what: string): VarBind {
    const at = this.pos;
    const type = this.uint16(what, 'type');
    this.skip(2, what, 'reserved');
    const oid = this.oid(what, 'name');
    switch (type) {
      case ValueType.Integer:
        return { oid, type, value: this.int32(what, 'Integer value') };
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        return { oid, type, value: this.uint32(what, 'value') };
      case ValueType.Counter64:
        return { oid, type, value: this.uint64(what, 'Counter64 value') };
      case ValueType.OctetString:
      case ValueType.Opaque:
        return { oid, type, value: this.octets(what, 'value') };
      case ValueType.IpAddress: {
        const value = this.octets(what, 'IpAddress value');
        if (value.length !== 4) this.fail(`${what}: IpAddress has ${value.length} bytes, expected 4 (§5.4)`);
        return { oid, type, value };
      }
      case ValueType.ObjectIdentifier:
        return { oid, type, value: this.oid(what, 'OID value') };
      case ValueType.Null:
      case ValueType.NoSuchObject:
      case ValueType.NoSuchInstance:
      case ValueType.EndOfMibView:
        return { oid, type };
      default:
        return this.fail(`${what}: unknown value type ${type} at offset ${at}`);
    }
  }
}

const EMPTY = Buffer.alloc(0);

function joinName(what: string, part: string | undefined): string {
  return part === undefined ? what : `${what} ${part}`;
}
