// The values of a MibView, stored column-wise in typed arrays rather than as
// one Value object per instance: at 10,000 VMs a view holds ~600,000
// instances, and an object each (plus a Buffer per octet string) cost tens of
// megabytes of heap that every major GC had to trace.
import { freeNow } from './free-now';
import { ValueType } from './pdu';
import type { Oid, Value, VarBind } from './pdu';

/** Instance values that stay Value objects: ObjectIdentifier, Null, and anything a slot would not hold exactly. */
const BOXED = 0;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * The values of a view, one per instance, column-wise: `kinds[i]` is the
 * ValueType of instance i, and its 8-byte slot holds the value itself — a
 * number (Integer, Counter32, Gauge32, TimeTicks) as a float64, which every
 * JS number survives unchanged; a Counter64 as a uint64; octets (OctetString,
 * Opaque, IpAddress) as the offset and length of a copy in one shared byte
 * pool. A value that does not fit (a Counter64 outside 0..2^64-1, a
 * non-number where a number belongs) is kept boxed, exactly as given, so the
 * encoder still rejects it when it is requested, as it did before packing.
 * Values come back as new objects; octets as Buffers over the pool.
 */
export class PackedValues {
  count = 0;
  private kinds: Uint8Array;
  private numbers: Float64Array;
  private bigints: BigUint64Array;
  private words: Uint32Array;
  private bytes: Buffer;
  private byteCount = 0;
  /**
   * True while `bytes` is the byte pool of the values this set replaces
   * (poolBasis) and every octet string so far equalled its bytes there: the
   * names, UUIDs, paths and MACs of a view rarely change between refreshes,
   * so the pool is then shared rather than copied (1.8 MB at 10,000 VMs).
   */
  private poolShared: boolean;
  private readonly plannedBytes: number;
  private readonly boxed: Map<number, Value>;

  constructor(capacity = 256, byteCapacity = 4096, boxed = new Map<number, Value>(), poolBasis: Buffer | null = null) {
    this.kinds = new Uint8Array(capacity);
    // Three views of one buffer: an instance's 8-byte slot is read as whichever its kind needs.
    const slots = new ArrayBuffer(8 * capacity);
    this.numbers = new Float64Array(slots);
    this.bigints = new BigUint64Array(slots);
    this.words = new Uint32Array(slots);
    this.poolShared = poolBasis !== null && poolBasis.length > 0;
    this.plannedBytes = byteCapacity;
    this.bytes = this.poolShared ? (poolBasis as Buffer) : Buffer.alloc(byteCapacity);
    this.boxed = boxed;
  }

  /** The byte pool, for the next set's poolBasis. */
  get pool(): Buffer {
    return this.bytes;
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
   * Writes `value` into slot i (count <= i < capacity) without counting it:
   * MibTableBuilder places a table's cells where they will end up, and the
   * view builder counts them as it names them.
   */
  putAt(i: number, value: Value): void {
    switch (value.type) {
      case ValueType.Integer:
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        if (typeof value.value !== 'number') break;
        this.kinds[i] = value.type;
        this.numbers[i] = value.value;
        return;
      case ValueType.Counter64:
        if (typeof value.value !== 'bigint' || value.value < 0n || value.value > UINT64_MAX) break;
        this.kinds[i] = value.type;
        this.bigints[i] = value.value;
        return;
      case ValueType.OctetString:
      case ValueType.Opaque:
      case ValueType.IpAddress: {
        if (!Buffer.isBuffer(value.value)) break;
        const length = value.value.length;
        if (this.poolShared) {
          const at = this.byteCount;
          if (at + length <= this.bytes.length && value.value.compare(this.bytes, at, at + length) === 0) {
            this.kinds[i] = value.type;
            this.words[2 * i] = at;
            this.words[2 * i + 1] = length;
            this.byteCount = at + length;
            return;
          }
          this.ownPool();
        }
        if (this.byteCount + length > this.bytes.length) {
          let size = Math.max(2 * this.bytes.length, 4096);
          while (size < this.byteCount + length) size *= 2;
          this.resize(this.kinds.length, size);
        }
        value.value.copy(this.bytes, this.byteCount);
        this.kinds[i] = value.type;
        this.words[2 * i] = this.byteCount;
        this.words[2 * i + 1] = length;
        this.byteCount += length;
        return;
      }
      default:
        break;
    }
    this.kinds[i] = BOXED;
    this.boxed.set(i, value);
  }

  /** Moves slots from .. from+n-1 to to .. to+n-1 (the ranges may overlap); the source slots are left undefined. */
  moveSlots(from: number, to: number, n: number): void {
    if (from === to || n === 0) return;
    this.kinds.copyWithin(to, from, from + n);
    this.words.copyWithin(2 * to, 2 * from, 2 * (from + n));
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
        return { type: ValueType.Integer, value: this.numbers[i] };
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        return { type: kind, value: this.numbers[i] };
      case ValueType.Counter64:
        return { type: ValueType.Counter64, value: this.bigints[i] };
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
        return { oid, type: ValueType.Integer, value: this.numbers[i] };
      case ValueType.Counter32:
      case ValueType.Gauge32:
      case ValueType.TimeTicks:
        return { oid, type: kind, value: this.numbers[i] };
      case ValueType.Counter64:
        return { oid, type: ValueType.Counter64, value: this.bigints[i] };
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
    const out = new PackedValues(this.count, 0, this.boxed);
    out.count = this.count;
    out.byteCount = this.byteCount;
    out.kinds.set(this.kinds.subarray(0, this.count));
    out.words.set(this.words.subarray(0, 2 * this.count));
    out.bytes = keepPool ? this.bytes : Buffer.from(this.bytes.subarray(0, this.byteCount));
    return out;
  }

  /** Instance i of the result is instance order[i] of this one; the byte pool is shared. */
  permuted(order: Uint32Array): PackedValues {
    const boxed = new Map<number, Value>();
    const out = new PackedValues(this.count, 0, boxed);
    out.count = this.count;
    out.bytes = this.bytes;
    out.byteCount = this.byteCount;
    for (let i = 0; i < this.count; i++) {
      const from = order[i];
      out.kinds[i] = this.kinds[from];
      // Slots are copied as two uint32 words: bit-exact, and no BigInt per Counter64.
      out.words[2 * i] = this.words[2 * from];
      out.words[2 * i + 1] = this.words[2 * from + 1];
      if (this.kinds[from] === BOXED) boxed.set(i, this.boxedAt(from));
    }
    return out;
  }

  private octetsAt(i: number): Buffer {
    const at = this.words[2 * i];
    return this.bytes.subarray(at, at + this.words[2 * i + 1]);
  }

  private boxedAt(i: number): Value {
    const value = this.boxed.get(i);
    if (value === undefined) throw new Error(`MIB view: no value stored for instance #${i}`);
    return value;
  }

  /**
   * Frees the kinds and slots now, rather than at whatever later GC finds
   * them dead; this set must not be read again. The byte pool is left alone:
   * the set built next may share it.
   */
  release(): void {
    freeNow([this.kinds.buffer, this.words.buffer]);
    this.count = 0;
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
      const slots = new ArrayBuffer(8 * capacity);
      new Uint32Array(slots).set(this.words.subarray(0, 2 * keep));
      this.kinds = kinds;
      this.numbers = new Float64Array(slots);
      this.bigints = new BigUint64Array(slots);
      this.words = new Uint32Array(slots);
    }
    if (byteCapacity !== this.bytes.length) {
      const bytes = Buffer.alloc(byteCapacity);
      this.bytes.copy(bytes, 0, 0, this.byteCount);
      this.bytes = bytes;
      this.poolShared = false;
    }
  }
}
