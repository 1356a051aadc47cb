#!/usr/bin/env node
// Net-SNMP 5.9 renders a DISPLAY-HINT's "1x" octets without zero padding, so
// UUID-TC-MIB's "4x-2x-2x-2x-6x" prints the UUID bc0f... as "bcf..." (one of
// the demo's nine). The demo therefore reads vmUUID as raw octets (no MIB
// loaded: a Hex-STRING walk) and puts the right 8-4-4-4-12 form back into
// what snmpwalk and snmptable print.
//
//   uuid-column.js HEX_WALK_FILE < snmpwalk output             (walk lines)
//   uuid-column.js HEX_WALK_FILE --table < snmptable -Ci -Cf '|' output
'use strict';
const fs = require('fs');

const [hexWalkFile, mode] = process.argv.slice(2);
const uuids = new Map();
for (const line of fs.readFileSync(hexWalkFile, 'utf8').split('\n')) {
  const m = /\.(\d+) = Hex-STRING: ((?:[0-9A-F]{2} ?){16})\s*$/i.exec(line);
  if (!m) continue;
  const hex = m[2].replace(/ /g, '').toLowerCase();
  uuids.set(m[1], `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`);
}

const lines = fs.readFileSync(0, 'utf8').replace(/\n$/, '').split('\n');
if (mode !== '--table') {
  for (const line of lines) {
    const m = /^(VM-MIB::vmUUID\.(\d+) = STRING: ).*$/.exec(line);
    console.log(m && uuids.has(m[2]) ? m[1] + uuids.get(m[2]) : line);
  }
} else {
  // "SNMP table: …", a blank line, then "|"-separated header and rows (first column: the index).
  const start = lines.findIndex((l) => l.startsWith('index|'));
  if (start < 0) {
    console.log(lines.join('\n'));
    process.exit(0);
  }
  const rows = lines.slice(start).filter((l) => l !== '').map((l) => l.split('|'));
  const column = rows[0].indexOf('vmUUID');
  for (const row of rows.slice(1)) if (column > 0 && uuids.has(row[0])) row[column] = uuids.get(row[0]);
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => [...(r[c] ?? '')].length)));
  for (const l of lines.slice(0, start)) console.log(l);
  for (const row of rows) console.log(row.map((cell, c) => (cell ?? '').padStart(widths[c])).join(' '));
}
