// The lab's stream sender (run by mcast-lab.ts inside the sender's network
// namespace): a numbered UDP stream to one multicast group, like the paper's
// iperf streams. Each datagram is `size` bytes: the sequence number (uint64
// BE) in bytes 0-7, the send time (process.hrtime, ns, uint64 BE) in 8-15.
// Paced by the clock, not by the timer: every tick sends what is due since
// the start, so the rate holds on average even though Node's timers tick in
// milliseconds (at 1,725 packets/s a tick sends one or two). Stops after
// `durationMs` or on SIGTERM, then prints one JSON line: sent, achievedPps.
//
//   node mcast-lab-sender.js FAMILY GROUP PORT PPS DURATION_MS SIZE TTL IFACE_ADDRESS|IFACE_NAME
'use strict';
const dgram = require('dgram');

const [family, group, port, pps, durationMs, size, ttl, iface] = process.argv.slice(2);
const rate = Number(pps);
const socket = dgram.createSocket({ type: family === '6' ? 'udp6' : 'udp4' });
let sent = 0;
let t0 = 0n;
let timer;

function finish() {
  clearTimeout(timer);
  const elapsedS = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`${JSON.stringify({ sent, elapsedS, achievedPps: elapsedS > 0 ? sent / elapsedS : 0 })}\n`);
  socket.close(() => process.exit(0));
}

function tick() {
  const now = process.hrtime.bigint();
  const elapsedNs = now - t0;
  if (Number(durationMs) > 0 && elapsedNs >= BigInt(durationMs) * 1_000_000n) {
    finish();
    return;
  }
  const due = Math.floor((Number(elapsedNs) * rate) / 1e9) + 1;
  while (sent < due) {
    const datagram = Buffer.alloc(Number(size));
    datagram.writeBigUInt64BE(BigInt(sent), 0);
    datagram.writeBigUInt64BE(process.hrtime.bigint(), 8);
    socket.send(datagram, Number(port), group);
    sent++;
  }
  timer = setTimeout(tick, 1);
}

socket.bind(0, () => {
  socket.setMulticastTTL(Number(ttl));
  socket.setMulticastLoopback(false);
  socket.setMulticastInterface(family === '6' ? `::%${iface}` : iface);
  process.once('SIGTERM', finish);
  t0 = process.hrtime.bigint();
  process.stdout.write('sending\n');
  tick();
});
