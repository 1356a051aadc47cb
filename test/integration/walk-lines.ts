// Net-SNMP `snmpwalk -On` / `--dump` output as data: one line per instance,
// octet strings as bytes however the tool chose to print them, and VM-MIB's
// tables addressed by column and index.

export const VM_MIB = '1.3.6.1.2.1.236';
export const VM_ENTRY = `${VM_MIB}.1.4.1`;
export const CPU_ENTRY = `${VM_MIB}.1.5.1`;
export const AFFINITY_ENTRY = `${VM_MIB}.1.6.1`;
export const STORAGE_ENTRY = `${VM_MIB}.1.7.1`;
export const NETWORK_ENTRY = `${VM_MIB}.1.8.1`;

/**
 * Joins snmpwalk's wrapped Hex-STRING lines and spells every octet string as
 * hex, so that our STRING: "größe" and Net-SNMP's Hex-STRING of the same
 * bytes compare equal.
 */
export function canonical(text: string): string[] {
  const lines: string[] = [];
  for (const line of text.trim().split('\n')) {
    if (line.startsWith('.') || lines.length === 0) lines.push(line);
    else lines[lines.length - 1] += ` ${line}`;
  }
  return lines.map((l) => {
    const [oid, rhs] = [l.slice(0, l.indexOf(' = ')), l.slice(l.indexOf(' = ') + 3)];
    let bytes: Buffer | null = null;
    if (rhs.startsWith('STRING: ')) {
      const body = rhs.slice(8);
      bytes = Buffer.from(body.startsWith('"') ? JSON.parse(body) as string : body, 'utf8');
    } else if (rhs.startsWith('Hex-STRING: ')) {
      bytes = Buffer.from(rhs.slice(12).replace(/\s+/g, ''), 'hex');
    } else if (rhs === '""') {
      bytes = Buffer.alloc(0);
    }
    return bytes ? `${oid} = OCTETS: ${bytes.toString('hex')}` : `${oid} = ${rhs.trim()}`;
  });
}

export interface WalkValue {
  /** "OCTETS" for every octet string, else Net-SNMP's type word: INTEGER, Counter64, Timeticks, OID, … */
  type: string;
  /** The value as printed (for OCTETS: hex). */
  text: string;
}

/** Numeric OID (no leading dot) → value. */
export type Walk = Map<string, WalkValue>;

export function parseWalk(text: string): Walk {
  const walk: Walk = new Map();
  for (const line of canonical(text)) {
    const at = line.indexOf(' = ');
    const oid = line.slice(0, at).replace(/^\./, '');
    const rhs = line.slice(at + 3);
    const colon = rhs.indexOf(': ');
    if (colon < 0) throw new Error(`unparsable walk line: ${line}`);
    if (walk.has(oid)) throw new Error(`the walk returned ${oid} twice`);
    walk.set(oid, { type: rhs.slice(0, colon), text: rhs.slice(colon + 2) });
  }
  return walk;
}

function expectType(v: WalkValue, types: readonly string[], what: string): void {
  if (!types.includes(v.type)) throw new Error(`${what}: expected ${types.join('/')}, got ${v.type}: ${v.text}`);
}

export function asInteger(v: WalkValue, what = 'value'): number {
  expectType(v, ['INTEGER'], what);
  return Number(v.text);
}

export function asCounter64(v: WalkValue, what = 'value'): bigint {
  expectType(v, ['Counter64'], what);
  return BigInt(v.text);
}

/** "Timeticks: (214319) 0:35:43.19" → 214319. */
export function asTimeTicks(v: WalkValue, what = 'value'): number {
  expectType(v, ['Timeticks'], what);
  const m = /^\((\d+)\)/.exec(v.text);
  if (!m) throw new Error(`${what}: bad Timeticks ${v.text}`);
  return Number(m[1]);
}

export function asBytes(v: WalkValue, what = 'value'): Buffer {
  expectType(v, ['OCTETS'], what);
  return Buffer.from(v.text, 'hex');
}

export function asUtf8(v: WalkValue, what = 'value'): string {
  return asBytes(v, what).toString('utf8');
}

/**
 * The instances of one column: index suffix ("3" or "3.1.196608") → value.
 * `column` is the column's OID without the leading dot.
 */
export function columnOf(walk: Walk, column: string): Map<string, WalkValue> {
  const prefix = `${column}.`;
  const out = new Map<string, WalkValue>();
  for (const [oid, v] of walk) if (oid.startsWith(prefix)) out.set(oid.slice(prefix.length), v);
  return out;
}

/** A scalar's value (`oid` without ".0"); throws when the walk lacks it. */
export function scalarOf(walk: Walk, oid: string): WalkValue {
  const v = walk.get(`${oid}.0`);
  if (v === undefined) throw new Error(`the walk has no ${oid}.0`);
  return v;
}

/** Every row index of a table: the union of its columns' index suffixes. */
export function rowIndexes(walk: Walk, entry: string, columns: readonly number[]): Set<string> {
  const rows = new Set<string>();
  for (const c of columns) for (const index of columnOf(walk, `${entry}.${c}`).keys()) rows.add(index);
  return rows;
}

/** One cell; throws with the instance OID when it is absent. */
export function cell(walk: Walk, entry: string, column: number, index: string): WalkValue {
  const v = walk.get(`${entry}.${column}.${index}`);
  if (v === undefined) throw new Error(`the walk has no ${entry}.${column}.${index}`);
  return v;
}

/** PhysAddress → "52:54:00:a1:30:09". */
export function asMac(v: WalkValue, what = 'value'): string {
  return [...asBytes(v, what)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** vmUUID (as "xxxxxxxx-xxxx-…", lower case) → vmIndex, from a walk of VM-MIB. */
export function indexByUuid(walk: Walk): Map<string, string> {
  const out = new Map<string, string>();
  for (const [index, v] of columnOf(walk, `${VM_ENTRY}.3`)) {
    const hex = asBytes(v, `vmUUID.${index}`).toString('hex');
    out.set(`${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`, index);
  }
  return out;
}
