// The values of a MibView, stored column-wise in typed arrays rather than as
// one Value object per instance: a large view holds hundreds of thousands of
// instances, and an object each is heap that every major GC has to trace
// (docs/memory.md, "View values").
import { freeNow } from './free-now';
import { ValueType } from './pdu';
import type { Oid, Value, VarBind } from './pdu';

/** Instance values that stay Value objects: ObjectIdentifier, Null, and anything a slot would not hold exactly. */
const BOXED = 0;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * The values of a view, one per instance, column-wise: `kinds[i]` is the
 * ValueType of instance i, and its 4-byte word holds the value itself for
 * Integer (int32) and Counter32, Gauge32, TimeTicks (uint32); for a Counter64,
 * the position of its uint64 in `wide`; for octets (OctetString, Opaque,
 * IpAddress), the offset of a copy in one shared byte pool, where a LEB128
 * length precedes the bytes. Four bytes rather than eight a slot: few values
 * need 64 bits, and the slots of two views (the one served and the one being
 * built) are the refresh's memory peak. A value that does not fit (a number
 * outside its type's range or not an integer, a Counter64 outside
 * 0..2^64-1, a non-number where a number belongs) is kept boxed, exactly as
 * given, so the encoder still rejects it when it is requested, as it did
 * before packing. Values come back as new objects; octets as Buffers over
 * the pool.
 */
export class PackedValues {
  /** Values counted; slots beyond it may hold values placed ahead (putAt). */
  private count = 0;
  /** Set by release(): the arrays are gone, and reading throws rather than answering empty. */
  private freed = false;
  private kinds: Uint8Array;
  private words: Uint32Array;
  /** The same memory as `words`, for Integer. */
  private ints: Int32Array;
  private wide: BigUint64Array;
  private wideCount = 0;
  private bytes: Buffer;
  private byteCount = 0;
  /**
   * True while `bytes` is the byte pool of the values this set replaces
   * (poolBasis) and every octet string so far equalled its bytes there: the
   * names, UUIDs, paths and MACs of a view rarely change between refreshes,
   * so the pool is then shared rather than copied.
   */
  private poolShared: boolean;
  private readonly plannedBytes: number;
  private readonly boxed: Map<number, Value>;

  constructor(
    capacity = 256,
    byteCapacity = 4096,
    boxed = new Map<number, Value>(),
    poolBasis: Buffer | null = null,
    wideCapacity = Math.ceil(capacity / 4),
  ) {
    this.kinds = new Uint8Array(capacity);
    const words = new ArrayBuffer(4 * capacity);
    this.words = new Uint32Array(words);
    this.ints = new Int32Array(words);
    this.wide = new BigUint64Array(Math.max(wideCapacity, 16));
    this.poolShared = poolBasis !== null && poolBasis.length > 0;
    this.plannedBytes = byteCapacity;
    this.bytes = this.poolShared ? (poolBasis as Buffer) : Buffer.alloc(byteCapacity);
    this.boxed = boxed;
  }

  /** Number of values counted (pushed, or placed and counted). Throws once released. */
  get size(): number {
    if (this.freed) throw releasedError();
    return this.count;
  }

  /** True once release() has run. */
  get released(): boolean {
    return this.freed;
  }

  /** The byte pool, for the next set's poolBasis. */
  get pool(): Buffer {
    return this.bytes;
  }

  /** How many Counter64 values are held: sizes the next set's `wide`. */
  get wideValues(): number {
    return this.wideCount;
  }

  push(value: Value): void {
    const i = this.count;
    if (i === this.kinds.length) this.resize(Math.max(2 * i, 256), this.bytes.length);
    this.putAt(i, value);
    this.count = i + 1;
  }

  /** Slots allocated: count plus room for values placed ahead (putAt). */
  get capacity(): number {
    return this.kinds.length;
  }

  /** Grows the slots to at least `capacity`, keeping every slot's contents. */
  ensureCapacity(capacity: number): void {
    if (capacity > this.kinds.length) this.resize(Math.max(capacity, 2 * this.kinds.length), this.bytes.length);
  }

  /**
   * Writes `value` into slot i (size <= i < capacity) without counting it:
   * MibTableBuilder places a table's cells where they will end up, and the
   * view builder counts them (countPlaced) as it names them.
   */
  putAt(i: number, value: Value): void {
    switch (value.type) {
      case ValueType.Integer:
        if (!isInt32(value.value)) break;
        this.kinds[i] = value.type;
        this.ints[i] = value.value;
        return;
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        if (!isUint32(value.value)) break;
        this.kinds[i] = value.type;
        this.words[i] = value.value;
        return;
      case ValueType.Counter64:
        if (typeof value.value !== 'bigint' || value.value < 0n || value.value > UINT64_MAX) break;
        if (this.wideCount === this.wide.length) {
          // 1.5x, not 2x: sized from the view before, this grows only by the Counter64s of new VMs.
          const wide = new BigUint64Array(Math.ceil(1.5 * this.wide.length));
          wide.set(this.wide);
          this.wide = wide;
        }
        this.kinds[i] = value.type;
        this.words[i] = this.wideCount;
        this.wide[this.wideCount++] = value.value;
        return;
      case ValueType.OctetString:
      case ValueType.Opaque:
      case ValueType.IpAddress: {
        if (!Buffer.isBuffer(value.value)) break;
        const length = value.value.length;
        const size = lengthPrefixSize(length) + length;
        if (this.poolShared) {
          const at = this.byteCount;
          if (at + size <= this.bytes.length && prefixedEquals(this.bytes, at, value.value)) {
            this.kinds[i] = value.type;
            this.words[i] = at;
            this.byteCount = at + size;
            return;
          }
          this.ownPool();
        }
        if (this.byteCount + size > this.bytes.length) {
          let capacity = Math.max(2 * this.bytes.length, 4096);
          while (capacity < this.byteCount + size) capacity *= 2;
          this.resize(this.kinds.length, capacity);
        }
        this.kinds[i] = value.type;
        this.words[i] = this.byteCount;
        const start = writeLengthPrefix(this.bytes, this.byteCount, length);
        value.value.copy(this.bytes, start);
        this.byteCount = start + length;
        return;
      }
      default:
        break;
    }
    this.kinds[i] = BOXED;
    this.boxed.set(i, value);
  }

  /** Counts the `n` values placed (putAt) in the next slots, from slot `size` on. */
  countPlaced(n = 1): void {
    if (this.count + n > this.kinds.length) {
      throw new Error(`MIB view: no value placed in slot ${this.kinds.length}; the slots end there`);
    }
    this.count += n;
  }

  /** Moves slots from .. from+n-1 to to .. to+n-1 (the ranges may overlap); the source slots are left undefined. */
  moveSlots(from: number, to: number, n: number): void {
    if (from === to || n === 0) return;
    this.kinds.copyWithin(to, from, from + n);
    this.words.copyWithin(to, from, from + n);
    if (this.boxed.size === 0) return;
    const moved: [number, Value][] = [];
    for (const [i, value] of this.boxed) if (i >= from && i < from + n) moved.push([i, value]);
    for (const [i] of moved) this.boxed.delete(i);
    for (const [i, value] of moved) this.boxed.set(i - from + to, value);
  }

  valueAt(i: number): Value {
    const kind = this.kinds[i];
    switch (kind) {
      case ValueType.Integer:
        return { type: ValueType.Integer, value: this.ints[i] };
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        return { type: kind, value: this.words[i] };
      case ValueType.Counter64:
        return { type: ValueType.Counter64, value: this.wide[this.words[i]] };
      case ValueType.OctetString:
      case ValueType.Opaque:
      case ValueType.IpAddress:
        return { type: kind, value: this.octetsAt(i) };
      default:
        return this.boxedAt(i);
    }
  }

  /** valueAt(i) with its name, built as one object (no copy of a Value per request). */
  varBindAt(i: number, oid: Oid): VarBind {
    const kind = this.kinds[i];
    switch (kind) {
      case ValueType.Integer:
        return { oid, type: ValueType.Integer, value: this.ints[i] };
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        return { oid, type: kind, value: this.words[i] };
      case ValueType.Counter64:
        return { oid, type: ValueType.Counter64, value: this.wide[this.words[i]] };
      case ValueType.OctetString:
      case ValueType.Opaque:
      case ValueType.IpAddress:
        return { oid, type: kind, value: this.octetsAt(i) };
      default:
        return Object.assign({ oid }, this.boxedAt(i));
    }
  }

  get octets(): number {
    return this.byteCount;
  }

  /** Sized to the contents (a copy unless it already is): the builder's spare capacity is not kept for the view's lifetime. */
  trimmed(): PackedValues {
    // A pool with little spare (or the shared one of the set before) is kept as it is.
    const keepPool = this.poolShared || this.bytes.length - this.byteCount <= this.byteCount / 8;
    if (this.kinds.length === this.count && keepPool) return this;
    const out = new PackedValues(this.count, 0, this.boxed, null, 0);
    out.count = this.count;
    out.byteCount = this.byteCount;
    out.kinds.set(this.kinds.subarray(0, this.count));
    out.words.set(this.words.subarray(0, this.count));
    out.wide = this.wide;
    out.wideCount = this.wideCount;
    out.bytes = keepPool ? this.bytes : Buffer.from(this.bytes.subarray(0, this.byteCount));
    return out;
  }

  /** Instance i of the result is instance order[i] of this one; the byte pool is shared. */
  permuted(order: Uint32Array): PackedValues {
    const boxed = new Map<number, Value>();
    const out = new PackedValues(this.count, 0, boxed, null, 0);
    out.count = this.count;
    out.bytes = this.bytes;
    out.byteCount = this.byteCount;
    // Counter64 and octet words are positions in `wide` and the pool, which are shared.
    out.wide = this.wide;
    out.wideCount = this.wideCount;
    for (let i = 0; i < this.count; i++) {
      const from = order[i];
      out.kinds[i] = this.kinds[from];
      out.words[i] = this.words[from];
      if (this.kinds[from] === BOXED) boxed.set(i, this.boxedAt(from));
    }
    return out;
  }

  private octetsAt(i: number): Buffer {
    const b = this.bytes;
    let at = this.words[i];
    // The LEB128 length (writeLengthPrefix); one byte below 128.
    let length = b[at++];
    if (length >= 0x80) {
      length &= 0x7f;
      for (let shift = 7; ; shift += 7) {
        const byte = b[at++];
        length += (byte & 0x7f) * 2 ** shift;
        if (byte < 0x80) break;
      }
    }
    return b.subarray(at, at + length);
  }

  private boxedAt(i: number): Value {
    const value = this.boxed.get(i);
    if (value === undefined) throw this.freed ? releasedError() : new Error(`MIB view: no value stored for instance #${i}`);
    return value;
  }

  /**
   * Frees the kinds and slots now, rather than at whatever later GC finds
   * them dead; reading this set afterwards throws. The byte pool is left
   * alone: the set built next may share it.
   */
  release(): void {
    freeNow([this.kinds.buffer, this.words.buffer, this.wide.buffer]);
    this.freed = true;
  }

  /** Stops sharing the basis pool: its bytes so far are copied into a pool of this set's own. */
  private ownPool(): void {
    const own = Buffer.alloc(Math.max(this.plannedBytes, this.byteCount + 4096));
    this.bytes.copy(own, 0, 0, this.byteCount);
    this.bytes = own;
    this.poolShared = false;
  }

  private resize(capacity: number, byteCapacity: number): void {
    if (capacity !== this.kinds.length) {
      // Every slot is kept, not only the counted ones: values placed ahead live beyond count.
      const keep = Math.min(capacity, this.kinds.length);
      const kinds = new Uint8Array(capacity);
      kinds.set(this.kinds.subarray(0, keep));
      const words = new ArrayBuffer(4 * capacity);
      new Uint32Array(words).set(this.words.subarray(0, keep));
      this.kinds = kinds;
      this.words = new Uint32Array(words);
      this.ints = new Int32Array(words);
    }
    if (byteCapacity !== this.bytes.length) {
      const bytes = Buffer.alloc(byteCapacity);
      this.bytes.copy(bytes, 0, 0, this.byteCount);
      this.bytes = bytes;
      this.poolShared = false;
    }
  }
}

function releasedError(): Error {
  return new Error('MIB view: read after release(); a released view holds no values (only the responder that replaced it may release it)');
}

const isInt32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= -0x80000000 && n <= 0x7fffffff;
const isUint32 = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

function lengthPrefixSize(length: number): number {
  let size = 1;
  while (length >= 0x80) {
    length = Math.floor(length / 0x80);
    size++;
  }
  return size;
}

/** Writes `length` as LEB128 at `at`; returns where the bytes go. */
function writeLengthPrefix(b: Buffer, at: number, length: number): number {
  while (length >= 0x80) {
    b[at++] = (length & 0x7f) | 0x80;
    length = Math.floor(length / 0x80);
  }
  b[at++] = length;
  return at;
}

/** Whether the pool holds, at `at`, the length prefix and bytes of `value`. */
function prefixedEquals(pool: Buffer, at: number, value: Buffer): boolean {
  let length = value.length;
  while (length >= 0x80) {
    if (pool[at++] !== ((length & 0x7f) | 0x80)) return false;
    length = Math.floor(length / 0x80);
  }
  if (pool[at++] !== length) return false;
  // Names, UUIDs and MACs are short: comparing them here costs less than the call into Buffer.compare.
  if (value.length > 64) return value.compare(pool, at, at + value.length) === 0;
  for (let k = 0; k < value.length; k++) if (pool[at + k] !== value[k]) return false;
  return true;
}
