// The instance OIDs of a MibView: sorted, front-coded, in one byte array.
//
// Neighbouring instances of a MIB view share almost all of their name
// (1.3.6.1.2.1.236.1.3.1.5.41 follows 1.3.6.1.2.1.236.1.3.1.5.40), so each
// OID is stored as the number of leading sub-identifiers it shares with the
// one before it, followed by the rest as LEB128 varints. Every BLOCK-th OID
// is stored whole (shares 0), so a lookup binary-searches those block heads
// and then decodes at most one block. A typical instance OID then takes a
// few bytes instead of 4 a sub-id (docs/memory.md, "Instance OIDs").
//
// Entry layout: shared (uint8), suffix length (uint8), suffix sub-ids as
// varints. OIDs have at most 128 sub-ids (RFC 2741 §5.1), so both fit a byte.
import type { Oid } from './pdu';

/** OIDs per block: a lookup decodes at most this many entries after its binary search. */
export const OID_BLOCK = 16;
const MAX_OID_LENGTH = 128;
/** The most one entry can take: 2 header bytes and at most 5 per sub-id. */
const MAX_ENTRY_BYTES = 2 + 5 * MAX_OID_LENGTH;

export class PackedOids {
  /** Use PackedOidsWriter. `blockStarts[b]` is the byte offset of entry b * OID_BLOCK. */
  constructor(
    /** @internal read by PackedOidsWriter only */
    readonly bytes: Uint8Array,
    /** @internal read by PackedOidsWriter only */
    readonly blockStarts: Uint32Array,
    readonly count: number,
  ) {}

  get byteLength(): number {
    return this.bytes.length;
  }

  /** A cursor over these OIDs; cursors are cheap, and each holds one decoded OID. */
  cursor(): OidCursor {
    return new OidCursor(this.bytes, this.blockStarts, this.count);
  }
}

/**
 * A position in a PackedOids: `index` and the OID there (`current`, valid
 * for 0 <= index < count). Moving forward decodes one entry; seeking
 * binary-searches the block heads and decodes within one block.
 */
export class OidCursor {
  index = 0;
  /** Sub-ids of the OID at `index`, in current[0 .. length - 1]. */
  readonly current = new Uint32Array(MAX_OID_LENGTH);
  length = 0;
  /** Byte offset of the entry after `index`. */
  private next = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly blockStarts: Uint32Array,
    private readonly count: number,
  ) {
    this.moveToBlock(0);
  }

  /** The OID at the cursor as a new array. */
  oid(): number[] {
    const out = new Array<number>(this.length);
    for (let k = 0; k < this.length; k++) out[k] = this.current[k];
    return out;
  }

  /** compareOids(OID at the cursor, oid). */
  compare(oid: Oid): number {
    const { current, length } = this;
    const n = length < oid.length ? length : oid.length;
    for (let k = 0; k < n; k++) {
      const d = current[k] - oid[k];
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return length === oid.length ? 0 : length < oid.length ? -1 : 1;
  }

  /** Moves to instance `index` (to count when there is none). */
  moveTo(index: number): void {
    this.moveToBlock(Math.floor(index / OID_BLOCK));
    while (this.index < index && this.index < this.count) this.advance();
  }

  /** Moves to index + 1 (to count when there is none). */
  advance(): void {
    this.index++;
    if (this.index < this.count) this.decodeEntry();
  }

  /** Moves to the first OID >= oid (to count when there is none); returns the index. */
  seek(oid: Oid): number {
    // A walk asks for what follows the answer it just got: at or just after the cursor.
    if (this.index < this.count) {
      const order = this.compare(oid);
      if (order === 0) return this.index;
      if (order < 0) {
        this.advance();
        if (this.index >= this.count || this.compare(oid) >= 0) return this.index;
      }
    }
    // The first block whose head is >= oid; the answer is in the block before it, or is that head.
    let lo = 0;
    let hi = this.blockStarts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.compareHead(mid, oid) < 0) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) {
      this.moveToBlock(0);
      return this.index;
    }
    this.moveToBlock(lo - 1);
    const end = Math.min(lo * OID_BLOCK, this.count);
    while (this.index < end && this.compare(oid) < 0) this.advance();
    return this.index;
  }

  private moveToBlock(block: number): void {
    this.index = block * OID_BLOCK;
    if (this.index >= this.count) {
      this.index = this.count;
      this.length = 0;
      return;
    }
    this.next = this.blockStarts[block];
    this.decodeEntry();
  }

  /** Decodes the entry at `next` on top of `current`. */
  private decodeEntry(): void {
    const bytes = this.bytes;
    let p = this.next;
    let k = bytes[p];
    const end = k + bytes[p + 1];
    p += 2;
    for (; k < end; k++) {
      this.current[k] = readVarint(bytes, p);
      p = varintEnd;
    }
    this.length = end;
    this.next = p;
  }

  /** compareOids(head OID of `block`, oid), decoding as it compares. */
  private compareHead(block: number, oid: Oid): number {
    const bytes = this.bytes;
    let p = this.blockStarts[block];
    const length = bytes[p + 1];
    p += 2;
    const n = length < oid.length ? length : oid.length;
    for (let k = 0; k < n; k++) {
      const value = readVarint(bytes, p);
      p = varintEnd;
      if (value !== oid[k]) return value < oid[k] ? -1 : 1;
    }
    return length === oid.length ? 0 : length < oid.length ? -1 : 1;
  }
}

/** Where the varint last read by readVarint() ended: a second result without an object per call. */
let varintEnd = 0;

/** The LEB128 varint at bytes[at] (7 bits a byte, low first, high bit = more follow); sets varintEnd. */
function readVarint(bytes: Uint8Array, at: number): number {
  let value = 0;
  let scale = 1;
  let b: number;
  do {
    b = bytes[at++];
    value += (b & 0x7f) * scale;
    scale *= 128;
  } while (b & 0x80);
  varintEnd = at;
  return value;
}

/**
 * Appends OIDs in strictly ascending order (the caller checks the order with
 * compareToLast()).
 *
 * Given the set it replaces (`basis`, e.g. the previous view's OIDs), the
 * writer first only compares: while every OID pushed encodes to the bytes
 * the basis has at the same place, nothing is written, and finish() returns
 * the basis itself if the sets end up equal. A view is rebuilt every few
 * seconds, usually with the same instances (same VMs, same devices), so its
 * OIDs are then neither written nor held twice. At the first difference the
 * equal prefix is copied and writing goes on.
 */
export class PackedOidsWriter {
  count = 0;
  private bytes: Uint8Array;
  private used = 0;
  private blockStarts: Uint32Array;
  private readonly previous = new Uint32Array(MAX_OID_LENGTH);
  private previousLength = 0;
  /** The set being matched; null once the OIDs differ from it (or with none). */
  private basis: PackedOids | null;
  /** One entry's encoding, while matching. */
  private readonly scratch: Uint8Array;
  /** Sizes to allocate when the writer starts writing. */
  private readonly planned: { bytes: number; blocks: number };

  /**
   * `byteCapacity`: the expected total size (e.g. the previous view's), so
   * that building allocates once. `basis`: the set this one likely repeats.
   */
  constructor(byteCapacity = 4096, expectedCount = 0, basis: PackedOids | null = null) {
    this.basis = basis !== null && basis.count > 0 ? basis : null;
    this.scratch = new Uint8Array(this.basis !== null ? MAX_ENTRY_BYTES : 0);
    // Room for one more entry of the longest kind: push() reserves that much
    // before it knows how much the entry takes, so an exact capacity would
    // double the buffer (and finish() copy it back) at the very last OID.
    const capacity = Math.max(byteCapacity, 64) + MAX_ENTRY_BYTES;
    const blocks = Math.max(Math.ceil(expectedCount / OID_BLOCK), 16);
    // While matching, the basis's arrays stand in; own ones come at the first difference.
    this.bytes = this.basis !== null ? new Uint8Array(0) : new Uint8Array(capacity);
    this.blockStarts = this.basis !== null ? new Uint32Array(0) : new Uint32Array(blocks);
    this.planned = { bytes: capacity, blocks };
  }

  /** Where the OIDs pushed so far end in the packed bytes. */
  get byteOffset(): number {
    return this.used;
  }

  /**
   * Whether the OIDs pushed so far are exactly the basis's first `count`,
   * ending at byte `byteOffset` of it: then repeatBasis() may add the ones
   * that follow there without encoding them.
   */
  repeatsBasisUpTo(count: number, byteOffset: number): boolean {
    return this.basis !== null && this.count === count && this.used === byteOffset;
  }

  /**
   * Adds the basis's next `n` OIDs, which end at byte `endByte` of it (the
   * caller knows they are the ones it would push: see MibTableBuilder).
   */
  repeatBasis(n: number, endByte: number): void {
    const basis = this.basis;
    if (basis === null || this.count + n > basis.count) throw new Error('PackedOidsWriter: repeatBasis() past the basis');
    if (n === 0) return;
    this.count += n;
    this.used = endByte;
    const c = basis.cursor();
    c.moveTo(this.count - 1);
    for (let k = 0; k < c.length; k++) this.previous[k] = c.current[k];
    this.previousLength = c.length;
  }

  /** compareOids(last OID pushed, oid); -1 when none was pushed yet. */
  compareToLast(oid: Oid): number {
    if (this.count === 0) return -1;
    const { previous, previousLength: length } = this;
    const n = length < oid.length ? length : oid.length;
    for (let k = 0; k < n; k++) {
      const d = previous[k] - oid[k];
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return length === oid.length ? 0 : length < oid.length ? -1 : 1;
  }

  push(oid: Oid): void {
    if (this.basis !== null && this.matches(oid)) return;
    let shared = 0;
    if (this.count % OID_BLOCK === 0) {
      const block = this.count / OID_BLOCK;
      if (block === this.blockStarts.length) {
        const bigger = new Uint32Array(2 * block);
        bigger.set(this.blockStarts);
        this.blockStarts = bigger;
      }
      this.blockStarts[block] = this.used;
    } else {
      const n = this.previousLength < oid.length ? this.previousLength : oid.length;
      while (shared < n && this.previous[shared] === oid[shared]) shared++;
    }
    this.reserve(2 + 5 * (oid.length - shared));
    this.used += encodeEntry(this.bytes, this.used, oid, shared);
    for (let k = shared; k < oid.length; k++) this.previous[k] = oid[k];
    this.previousLength = oid.length;
    this.count++;
  }

  /** The OIDs so far, sized to fit (the basis itself when they are the same); the writer starts empty again. */
  finish(): PackedOids {
    if (this.basis !== null && this.count === this.basis.count) {
      const same = this.basis;
      this.restart();
      return same;
    }
    if (this.basis !== null) this.diverge();
    const blocks = Math.ceil(this.count / OID_BLOCK);
    // A little spare (as left by a right expected size) is kept rather than copied away.
    const spare = this.bytes.length - this.used;
    const bytes = spare <= MAX_ENTRY_BYTES + this.used / 64 ? this.bytes.subarray(0, this.used) : this.bytes.slice(0, this.used);
    const starts = this.blockStarts.length === blocks ? this.blockStarts : this.blockStarts.slice(0, blocks);
    const out = new PackedOids(bytes, starts, this.count);
    this.restart();
    return out;
  }

  private restart(): void {
    this.basis = null;
    this.bytes = new Uint8Array(64);
    this.blockStarts = new Uint32Array(16);
    this.used = 0;
    this.count = 0;
    this.previousLength = 0;
  }

  /** While matching: true (and the OID counted) when `oid` encodes to the basis's next entry; else stops matching. */
  private matches(oid: Oid): boolean {
    const basis = this.basis as PackedOids;
    if (this.count < basis.count) {
      let shared = 0;
      if (this.count % OID_BLOCK !== 0) {
        const n = this.previousLength < oid.length ? this.previousLength : oid.length;
        while (shared < n && this.previous[shared] === oid[shared]) shared++;
      }
      const length = encodeEntry(this.scratch, 0, oid, shared);
      const at = this.used;
      const bytes = basis.bytes;
      let same = at + length <= bytes.length;
      for (let k = 0; same && k < length; k++) same = bytes[at + k] === this.scratch[k];
      if (same) {
        this.used = at + length;
        for (let k = shared; k < oid.length; k++) this.previous[k] = oid[k];
        this.previousLength = oid.length;
        this.count++;
        return true;
      }
    }
    this.diverge();
    return false;
  }

  /** Stops matching: the equal prefix of the basis becomes this writer's own. */
  private diverge(): void {
    const basis = this.basis as PackedOids;
    this.basis = null;
    this.bytes = new Uint8Array(Math.max(this.planned.bytes, this.used + MAX_ENTRY_BYTES));
    this.bytes.set(basis.bytes.subarray(0, this.used));
    const blocks = Math.ceil(this.count / OID_BLOCK);
    this.blockStarts = new Uint32Array(Math.max(this.planned.blocks, blocks + 1));
    this.blockStarts.set(basis.blockStarts.subarray(0, blocks));
  }

  private reserve(extra: number): void {
    if (this.used + extra <= this.bytes.length) return;
    let capacity = 2 * this.bytes.length;
    while (capacity < this.used + extra) capacity *= 2;
    const bigger = new Uint8Array(capacity);
    bigger.set(this.bytes.subarray(0, this.used));
    this.bytes = bigger;
  }
}

/** Writes the entry of `oid` after `shared` sub-ids in common with the one before, at bytes[at]; returns its length. */
function encodeEntry(bytes: Uint8Array, at: number, oid: Oid, shared: number): number {
  let p = at;
  bytes[p++] = shared;
  bytes[p++] = oid.length - shared;
  for (let k = shared; k < oid.length; k++) {
    let value = oid[k];
    while (value >= 0x80) {
      bytes[p++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    bytes[p++] = value;
  }
  return p - at;
}
