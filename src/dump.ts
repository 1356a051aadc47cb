// "OID = TYPE: value" lines in the spelling of Net-SNMP's snmpwalk -On, so a
// --dump can be diffed against a walk through snmpd.
import { formatOid, MibView, Value, ValueType, VarBind } from '../agentx';

export function formatValue(v: Value): string {
  switch (v.type) {
    case ValueType.Integer:
      return `INTEGER: ${v.value}`;
    case ValueType.OctetString:
      return octetString(v.value);
    case ValueType.Opaque:
      return `OPAQUE: ${hex(v.value)}`;
    case ValueType.IpAddress:
      return `IpAddress: ${[...v.value].join('.')}`;
    case ValueType.ObjectIdentifier:
      return `OID: .${formatOid(v.value)}`;
    case ValueType.Counter32:
      return `Counter32: ${v.value}`;
    case ValueType.Gauge32:
      return `Gauge32: ${v.value}`;
    case ValueType.TimeTicks:
      return `Timeticks: (${v.value}) ${ticksText(v.value)}`;
    case ValueType.Counter64:
      return `Counter64: ${v.value}`;
    case ValueType.Null:
      return 'NULL';
    case ValueType.NoSuchObject:
      return 'No Such Object available on this agent at this OID';
    case ValueType.NoSuchInstance:
      return 'No Such Instance currently exists at this OID';
    case ValueType.EndOfMibView:
      return 'No more variables left in this MIB View';
  }
}

/** Printable UTF-8 as STRING: "...", anything else as Hex-STRING, like snmpwalk. */
function octetString(bytes: Buffer): string {
  if (bytes.length === 0) return 'STRING: ';
  const text = bytes.toString('utf8');
  const printable = Buffer.from(text, 'utf8').equals(bytes) && !/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text);
  return printable ? `STRING: ${JSON.stringify(text)}` : `Hex-STRING: ${hex(bytes)}`;
}

function hex(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(' ');
}

export function formatVarBind(vb: VarBind): string {
  return `.${formatOid(vb.oid)} = ${formatValue(vb)}`;
}

export function dumpView(view: MibView): string[] {
  const lines: string[] = [];
  for (const vb of view) lines.push(formatVarBind(vb));
  return lines;
}

/** TimeTicks as snmpwalk prints them: "0:01:02.03", "1 day, 0:00:00.00", "3 days, …". */
function ticksText(ticks: number): string {
  const cs = ticks % 100;
  const totalSeconds = Math.floor(ticks / 100);
  const days = Math.floor(totalSeconds / 86400);
  const h = Math.floor((totalSeconds % 86400) / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const sec = totalSeconds % 60;
  const two = (n: number): string => String(n).padStart(2, '0');
  const clock = `${h}:${two(m)}:${two(sec)}.${two(cs)}`;
  return days === 0 ? clock : `${days} day${days === 1 ? '' : 's'}, ${clock}`;
}
