// Object identifier helpers shared by the codec, the view and the session.
import type { Oid } from './pdu';

/** Lexicographic order of RFC 2578 §7.8: sub-id by sub-id, a prefix sorts first. */
export function compareOids(a: Oid, b: Oid): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

export function oidEquals(a: Oid, b: Oid): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** True when `prefix` is `oid` itself or one of its ancestors. */
export function isPrefixOf(prefix: Oid, oid: Oid): boolean {
  if (prefix.length > oid.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== oid[i]) return false;
  return true;
}

const MAX_SUBID = 0xffffffff;

/** Parses "1.3.6.1" or ".1.3.6.1"; throws on anything else. */
export function parseOid(text: string): number[] {
  const body = text.startsWith('.') ? text.slice(1) : text;
  if (body === '') return [];
  return body.split('.').map((part) => {
    if (!/^[0-9]+$/.test(part)) throw new Error(`invalid OID "${text}": sub-identifier "${part}" is not a number`);
    const n = Number(part);
    if (n > MAX_SUBID) throw new Error(`invalid OID "${text}": sub-identifier ${part} exceeds 2^32-1`);
    return n;
  });
}

export function formatOid(oid: Oid): string {
  return oid.join('.');
}
