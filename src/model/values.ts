// Constructors for the SNMP values of the model. Small integers are shared
// objects: a view of 10,000 VMs holds hundreds of thousands of enum and
// index-like values, and sharing them keeps the view's memory flat.
import { Oid, Value, ValueType } from '../../agentx';

const INT_CACHE_MIN = -1;
const INT_CACHE_MAX = 1024;
const intCache: Value[] = [];
for (let n = INT_CACHE_MIN; n <= INT_CACHE_MAX; n++) intCache.push({ type: ValueType.Integer, value: n });

const INT32_MAX = 2147483647;

export function integer(n: number): Value {
  if (!Number.isInteger(n) || n < -2147483648 || n > INT32_MAX) throw new RangeError(`Integer32 out of range: ${n}`);
  return n >= INT_CACHE_MIN && n <= INT_CACHE_MAX ? intCache[n - INT_CACHE_MIN] : { type: ValueType.Integer, value: n };
}

export function counter64(n: bigint): Value {
  // Counter64 wraps at 2^64 (RFC 2578 §7.1.10); libvirt counters never get there, but a bad value must not break encoding.
  return { type: ValueType.Counter64, value: BigInt.asUintN(64, n < 0n ? 0n : n) };
}

/** Gauge32 and Unsigned32 (the same encoding): clamped to 0..2^32-1, never wrapped. */
export function gauge32(n: number): Value {
  const v = Number.isFinite(n) ? Math.min(Math.max(Math.floor(n), 0), 0xffffffff) : 0;
  return v === 0 ? GAUGE_ZERO : { type: ValueType.Gauge32, value: v };
}
const GAUGE_ZERO: Value = { type: ValueType.Gauge32, value: 0 };

/** CounterBasedGauge64 (HCNUM-TC): a Counter64 that stays at 2^64-1 rather than wrap. */
export function gauge64(n: bigint): Value {
  const max = (1n << 64n) - 1n;
  return { type: ValueType.Counter64, value: n < 0n ? 0n : n > max ? max : n };
}

export function timeTicks(centiseconds: number): Value {
  return { type: ValueType.TimeTicks, value: Math.max(0, Math.floor(centiseconds)) % 0x100000000 };
}

export function objectId(oid: Oid): Value {
  return { type: ValueType.ObjectIdentifier, value: oid };
}

export function octets(bytes: Buffer): Value {
  return { type: ValueType.OctetString, value: bytes };
}

/**
 * SnmpAdminString (SIZE (0..255)): UTF-8 bytes, cut to at most `max` octets
 * without splitting a multi-byte character.
 */
export function adminString(text: string, max = 255): Value {
  return octets(utf8Truncate(text, max));
}

export function utf8Truncate(text: string, max: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** "52:54:00:aa:bb:cc" → 6 bytes (PhysAddress); null for anything that is not a MAC. */
export function macBytes(mac: string | null): Buffer | null {
  if (!mac) return null;
  // Six groups of one or two hex digits, separated by ':' or '-'. Parsed by
  // hand: a view has one per NIC, rebuilt every refresh.
  const out = Buffer.allocUnsafe(6);
  let at = 0;
  for (let group = 0; group < 6; group++) {
    if (group > 0) {
      const sep = mac.charCodeAt(at++);
      if (sep !== 0x3a && sep !== 0x2d) return null;
    }
    const high = hexDigit(mac.charCodeAt(at++));
    if (high < 0) return null;
    const low = hexDigit(mac.charCodeAt(at));
    if (low >= 0) at++;
    out[group] = low >= 0 ? high * 16 + low : high;
  }
  return at === mac.length ? out : null;
}

/** Canonical UUID text → 16 bytes (UUIDorZero); zero-length when it does not parse. */
export function uuidBytes(uuid: string): Buffer {
  // 32 hex digits, dashes anywhere between them (as the regex-free form of /^[0-9a-f-]+$/ with 32 digits).
  const out = Buffer.allocUnsafe(16);
  let digits = 0;
  for (let i = 0; i < uuid.length; i++) {
    const c = uuid.charCodeAt(i);
    if (c === 0x2d) continue;
    const d = hexDigit(c);
    if (d < 0 || digits === 32) return Buffer.alloc(0);
    if (digits % 2 === 0) out[digits >>> 1] = d << 4;
    else out[digits >>> 1] |= d;
    digits++;
  }
  return digits === 32 ? out : Buffer.alloc(0);
}

/** The value of a hex digit's character code, or -1. */
function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/**
 * Picks a unit (a power of 1024 times `base`) so that every value fits an
 * Integer32, and returns the scaled values (rounded up, so a non-empty disk
 * never shows as 0). null stays null.
 */
export function scaleToInteger32(values: readonly (bigint | null)[], base: bigint): { unit: number; scaled: (number | null)[] } {
  let unit = base;
  let largest = 0n;
  for (const v of values) if (v !== null && v > largest) largest = v;
  while ((largest + unit - 1n) / unit > BigInt(INT32_MAX) && unit <= BigInt(INT32_MAX) / 1024n) unit *= 1024n;
  const scaled = values.map((v) => (v === null ? null : Number(minBig((v + unit - 1n) / unit, BigInt(INT32_MAX)))));
  return { unit: Number(unit), scaled };
}

function minBig(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}
