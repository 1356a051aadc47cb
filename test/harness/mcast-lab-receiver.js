// The lab's VM application (run by mcast-lab.ts inside the VM's network
// namespace): joins one group on one interface and records every datagram
// that arrives on PORT as 16 bytes in OUT_FILE: its sequence number (bytes
// 0-7 of the datagram) and the arrival time (process.hrtime, ns: the
// monotonic clock every process on the machine shares, so the lab can set
// arrivals against its own switchover times). Written in batches every 100 ms
// and at SIGTERM. Prints "ready" once joined.
//
//   node mcast-lab-receiver.js FAMILY GROUP PORT IFACE_ADDRESS|IFACE_NAME OUT_FILE
'use strict';
const dgram = require('dgram');
const fs = require('fs');

const [family, group, port, iface, outFile] = process.argv.slice(2);
const out = fs.openSync(outFile, 'w');
const RECORD = 16;
let batch = Buffer.alloc(RECORD * 4096);
let used = 0;

function flush() {
  if (used > 0) fs.writeSync(out, batch, 0, used);
  used = 0;
}

const socket = dgram.createSocket({ type: family === '6' ? 'udp6' : 'udp4', reuseAddr: true, recvBufferSize: 8 * 1024 * 1024 });
socket.on('message', (msg) => {
  if (msg.length < 8) return;
  if (used + RECORD > batch.length) {
    flush();
    if (batch.length < RECORD * 65536) batch = Buffer.alloc(batch.length * 2);
  }
  msg.copy(batch, used, 0, 8);
  batch.writeBigUInt64BE(process.hrtime.bigint(), used + 8);
  used += RECORD;
});
socket.bind(Number(port), family === '6' ? '::' : '0.0.0.0', () => {
  socket.addMembership(group, family === '6' ? `::%${iface}` : iface);
  setInterval(flush, 100);
  process.stdout.write('ready\n');
});
process.once('SIGTERM', () => {
  flush();
  fs.closeSync(out);
  process.exit(0);
});
