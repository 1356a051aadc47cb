// Field names of typed parameters, decoded once per distinct name rather than
// once per occurrence. The same few dozen names (state.state, vcpu.0.time,
// block.0.rd.bytes, ...) come back for every domain in every refresh, and
// making a string of each was a third of the bulk stats decode.
//
// A name is found by a hash of its bytes and then compared byte for byte
// with the cached string, so a hash collision can never hand out the wrong
// name. Only ASCII names are cached (the comparison reads the string's char
// codes as bytes); any other name is decoded as UTF-8 each time it occurs.

import { TYPED_PARAM_FIELD_LENGTH } from './ffi';

interface Known<T> {
  readonly name: string;
  readonly value: T;
  /** The next name with the same hash. */
  readonly next: Known<T> | null;
}

/**
 * Field name bytes → `describe(name)`, for names met before. Holds at most
 * `limit` names; when full it starts over (values handed out stay valid).
 */
export class FieldNameTable<T> {
  private readonly known = new Map<number, Known<T>>();
  private size = 0;

  constructor(
    private readonly describe: (name: string) => T,
    private readonly limit = 4096,
  ) {}

  /**
   * The value for the NUL-terminated name at bytes[base] (at most
   * VIR_TYPED_PARAM_FIELD_LENGTH bytes, the terminator then missing).
   */
  lookup(bytes: Uint8Array, base: number): T {
    const limit = base + TYPED_PARAM_FIELD_LENGTH;
    // FNV-1a, and whether every byte is ASCII.
    let hash = 0x811c9dc5;
    let high = 0;
    let end = base;
    for (; end < limit; end++) {
      const b = bytes[end];
      if (b === 0) break;
      high |= b;
      hash = Math.imul(hash ^ b, 0x01000193);
    }
    const length = end - base;
    for (let k: Known<T> | null = this.known.get(hash) ?? null; k !== null; k = k.next) {
      if (sameBytes(k.name, bytes, base, length)) return k.value;
    }
    const name = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8', base, end);
    const value = this.describe(name);
    if (high < 0x80) {
      if (this.size >= this.limit) {
        this.known.clear();
        this.size = 0;
      }
      this.known.set(hash, { name, value, next: this.known.get(hash) ?? null });
      this.size++;
    }
    return value;
  }
}

/** Whether the ASCII string `name` is spelled by bytes[base .. base+length). */
function sameBytes(name: string, bytes: Uint8Array, base: number, length: number): boolean {
  if (name.length !== length) return false;
  for (let i = 0; i < length; i++) if (name.charCodeAt(i) !== bytes[base + i]) return false;
  return true;
}
