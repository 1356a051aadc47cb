// The processes the mcastd capture tests run inside network namespaces
// (`ip netns exec NS node mcast-child.js COMMAND ...`): each prints JSON
// lines on stdout ({"event":"ready"} once listening, then its results) and
// exits by itself. It uses the compiled modules in dist/ (npm run build).
'use strict';
const dgram = require('node:dgram');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..');
const mcastd = (name) => require(path.join(root, 'dist', 'src', 'mcastd', name));
const log = (level, message) => emit({ event: 'log', level, message });

function emit(record) {
  process.stdout.write(`${JSON.stringify(record, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

/** Payload of packet `seq`: the number, then bytes that depend on it, so a mixed-up payload shows. */
function payloadOf(seq, size) {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(seq, 0);
  for (let i = 4; i < size; i++) b[i] = (seq * 7 + i) & 0xff;
  return b;
}

function payloadIsIntact(b) {
  if (b.length < 4) return false;
  const seq = b.readUInt32BE(0);
  for (let i = 4; i < b.length; i++) if (b[i] !== ((seq * 7 + i) & 0xff)) return false;
  return true;
}

/** Tallies one stream per group by sequence number. */
function tally() {
  const groups = new Map();
  return {
    add(d) {
      let g = groups.get(d.group);
      if (!g) groups.set(d.group, (g = { seqs: new Set(), count: 0, bad: 0, ports: new Set(), sources: new Set(), hopLimits: new Set(), outgoing: 0, sizes: new Set(), texts: new Set() }));
      g.count++;
      if (d.outgoing) g.outgoing++;
      if (!payloadIsIntact(d.payload)) g.bad++;
      else g.seqs.add(d.payload.readUInt32BE(0));
      g.ports.add(d.port);
      g.sources.add(d.source);
      g.hopLimits.add(d.hopLimit);
      g.sizes.add(d.payload.length);
      if (d.payload.length <= 16) g.texts.add(d.payload.toString('latin1'));
    },
    total() {
      let n = 0;
      for (const g of groups.values()) n += g.count;
      return n;
    },
    summary() {
      return Object.fromEntries([...groups].map(([group, g]) => [group, {
        count: g.count, unique: g.seqs.size, bad: g.bad, outgoing: g.outgoing,
        ports: [...g.ports], sources: [...g.sources], hopLimits: [...g.hopLimits], sizes: [...g.sizes], texts: [...g.texts],
      }]));
    },
  };
}

/** Resolves after `idleMs` without a call to poke(), or at `deadlineMs`. */
function quietPeriod(idleMs, deadlineMs) {
  let last = Date.now();
  const start = Date.now();
  return {
    poke: () => { last = Date.now(); },
    done: new Promise((resolve) => {
      const t = setInterval(() => {
        const now = Date.now();
        if (now - last >= idleMs || now - start >= deadlineMs) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    }),
  };
}

const commands = {
  /** capture IFACE EXPECTED GROUP... : captures until EXPECTED datagrams came (or 1.5 s of quiet), then a summary. */
  async capture(iface, expected, ...groups) {
    const t = tally();
    const quiet = quietPeriod(1500, 60_000);
    let cpuStart = null;
    let cpuEnd = null;
    let firstAt = 0n;
    let lastAt = 0n;
    const capture = new (mcastd('capture.js').MulticastCapture)(iface, (d) => {
      if (cpuStart === null) {
        cpuStart = process.cpuUsage();
        firstAt = d.at;
      }
      lastAt = d.at;
      t.add(d);
      quiet.poke();
      if (t.total() >= Number(expected)) cpuEnd = process.cpuUsage(cpuStart);
    }, { log });
    for (const g of groups) capture.add(g);
    emit({ event: 'ready' });
    await quiet.done;
    if (cpuEnd === null && cpuStart !== null) cpuEnd = process.cpuUsage(cpuStart);
    const stats = capture.stats();
    await capture.close();
    emit({
      event: 'summary', groups: t.summary(), stats, spanMs: Number(lastAt - firstAt) / 1e6,
      cpuMicros: cpuEnd === null ? 0 : cpuEnd.user + cpuEnd.system,
    });
  },

  /**
   * relay IFACE EXPECTED GROUP... : a GroupReceiver joined to the groups; reports
   * the kernel's membership after the joins and after the leaves, and what it handed on.
   */
  async relay(iface, expected, ...groups) {
    const { GroupReceiver } = mcastd('relay.js');
    const t = tally();
    const quiet = quietPeriod(1500, 30_000);
    const receiver = new GroupReceiver(iface, (group, port, payload) => {
      t.add({ group, port, payload, source: '', hopLimit: 0, outgoing: false });
      quiet.poke();
    }, { log });
    for (const g of groups) await receiver.join(g);
    const memberships = () => ({ igmp: fs.readFileSync('/proc/net/igmp', 'utf8'), igmp6: fs.readFileSync('/proc/net/igmp6', 'utf8') });
    emit({ event: 'ready', joined: receiver.groups, ...memberships() });
    await quiet.done;
    await receiver.close();
    emit({ event: 'summary', groups: t.summary(), left: memberships(), expected: Number(expected) });
  },

  /** send IFACE GROUP PORT COUNT RATE SIZE TTL : a numbered stream at RATE packets/s. */
  async send(iface, group, port, count, rate, size, ttl) {
    const v6 = group.includes(':');
    const socket = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    await new Promise((resolve) => socket.bind(0, resolve));
    const { multicastInterfaceFor } = mcastd('membership.js');
    socket.setMulticastInterface(multicastInterfaceFor(group, iface));
    socket.setMulticastTTL(Number(ttl));
    socket.setMulticastLoopback(false);
    const n = Number(count);
    const payloads = Array.from({ length: n }, (_, seq) => payloadOf(seq, Number(size)));
    let sent = 0;
    let errors = 0;
    const start = process.hrtime.bigint();
    await new Promise((resolve) => {
      const tick = () => {
        const due = Math.min(n, Math.floor((Number(process.hrtime.bigint() - start) / 1e9) * Number(rate)) + 1);
        while (sent < due) socket.send(payloads[sent++], Number(port), group, (err) => { if (err) errors++; });
        if (sent >= n) resolve();
        else setTimeout(tick, 1);
      };
      tick();
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.close();
    emit({ event: 'sent', sent, errors, ms: Number(process.hrtime.bigint() - start) / 1e6 });
  },

  /** resend IFACE GROUP PORT COUNT RATE SIZE : the stream through a Resender. */
  async resend(iface, group, port, count, rate, size) {
    const resender = await mcastd('relay.js').Resender.open(iface, log);
    const n = Number(count);
    for (let seq = 0; seq < n; seq++) {
      resender.send(group, Number(port), payloadOf(seq, Number(size)));
      await new Promise((resolve) => setTimeout(resolve, 1000 / Number(rate)));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stats = resender.stats();
    await resender.close();
    emit({ event: 'resent', ...stats });
  },

  /** receive IFACE GROUP PORT EXPECTED : an application socket joined to GROUP, beside a capture for the hop limit. */
  async receive(iface, group, port, expected) {
    const v6 = group.includes(':');
    const t = tally();
    const app = tally();
    const quiet = quietPeriod(1500, 30_000);
    const capture = new (mcastd('capture.js').MulticastCapture)(iface, (d) => { t.add(d); quiet.poke(); }, { log });
    capture.add(group);
    const socket = dgram.createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true });
    socket.on('message', (msg, rinfo) => {
      app.add({ group, payload: msg, port: Number(port), source: rinfo.address, hopLimit: 0, outgoing: false });
      quiet.poke();
    });
    await new Promise((resolve) => socket.bind(Number(port), resolve));
    socket.addMembership(group, mcastd('membership.js').multicastInterfaceFor(group, iface));
    emit({ event: 'ready' });
    await quiet.done;
    socket.close();
    await capture.close();
    emit({ event: 'summary', captured: t.summary(), application: app.summary(), expected: Number(expected) });
  },

  /**
   * watch IFACE GROUP PORT SILENCE_MS : a StreamWatch on GROUP while this host
   * re-sends to it itself; reports arrival and silence events until told to stop (SIGTERM).
   */
  async watch(iface, group, port, silenceMs) {
    const { StreamWatch } = mcastd('stream-watch.js');
    const watch = new StreamWatch(iface, {
      log,
      silenceMs: Number(silenceMs),
      onArrival: (a) => emit({ event: 'arrival', ...a }),
      onSilence: (s) => emit({ event: 'silence', ...s }),
    });
    let outgoingSeen = 0;
    const plain = new (mcastd('capture.js').MulticastCapture)(iface, (d) => { if (d.outgoing) outgoingSeen++; }, { log });
    plain.add(group);
    const resender = await mcastd('relay.js').Resender.open(iface, log);
    const waited = watch.waitForArrival(group, 30_000);
    emit({ event: 'ready' });
    // Our own copies, while nothing else arrives: these must not count.
    for (let seq = 0; seq < 50; seq++) {
      resender.send(group, Number(port), payloadOf(seq, 200));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    emit({ event: 'resent', ...resender.stats(), outgoingSeen, arrivedMeanwhile: watch.arrival(group) !== null });
    await plain.close();
    const arrival = await waited;
    emit({ event: 'waited', arrival, sinceStartMs: arrival === null ? null : Number(arrival.at - START) / 1e6 });
    await new Promise((resolve) => process.once('SIGTERM', resolve));
    await resender.close();
    await watch.close();
    emit({ event: 'closed' });
  },

  /**
   * junk IFACE GROUP : raw IP packets to GROUP that are cut short or lie
   * about their lengths, sent with a packet socket (no link header: the
   * kernel adds it for SOCK_DGRAM).
   */
  async junk(iface, group) {
    const koffi = require(path.join(root, 'node_modules', 'koffi'));
    const lib = koffi.load('libc.so.6');
    const socket = lib.func('int socket(int, int, int)');
    const sendto = lib.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)');
    const close = lib.func('int close(int)');
    const ifindex = mcastd('capture.js').interfaceIndex(iface);
    const v6 = group.includes(':');
    const fd = socket(17, 2, 0);
    if (fd < 0) throw new Error(`socket: errno ${koffi.errno()}`);
    const to = Buffer.alloc(20);
    to.writeUInt16LE(17, 0);
    to.writeUInt16BE(v6 ? 0x86dd : 0x0800, 2);
    to.writeInt32LE(ifindex, 4);
    to[11] = 6;
    // The group's multicast MAC (RFC 1112 / RFC 2464).
    if (v6) {
      Buffer.from([0x33, 0x33, ...expand6(group).slice(12)]).copy(to, 12);
    } else {
      const b = group.split('.').map(Number);
      Buffer.from([0x01, 0x00, 0x5e, b[1] & 0x7f, b[2], b[3]]).copy(to, 12);
    }
    let sent = 0;
    for (const packet of junkPackets(group, v6)) {
      if (sendto(fd, packet, packet.length, 0, to, to.length) >= 0) sent++;
    }
    close(fd);
    emit({ event: 'junk', sent });
  },
};

const START = process.hrtime.bigint();

function expand6(text) {
  const [head, tail = ''] = text.split('::');
  const words = (s) => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  return all.flatMap((w) => [w >> 8, w & 0xff]);
}

/** Malformed and truncated IPv4 or IPv6 UDP packets to `group`, then one good one (port 9, payload "ok"). */
function junkPackets(group, v6) {
  const out = [];
  const payload = Buffer.from('ok');
  const good = v6 ? ipv6Udp(group, payload) : ipv4Udp(group, payload);
  out.push(good.subarray(0, 1));
  out.push(good.subarray(0, v6 ? 39 : 19));
  out.push(good.subarray(0, v6 ? 45 : 25));
  const lies = Buffer.from(good);
  if (v6) lies.writeUInt16BE(5000, 4);
  else lies.writeUInt16BE(5000, 2);
  out.push(lies);
  const udpLies = Buffer.from(good);
  udpLies.writeUInt16BE(4000, (v6 ? 40 : 20) + 4);
  out.push(udpLies);
  if (v6) {
    // An extension header chain running past the end.
    const chain = Buffer.from(good);
    chain[6] = 0;
    chain[40] = 60;
    chain[41] = 200;
    out.push(chain);
  } else {
    const ihl = Buffer.from(good);
    ihl[0] = 0x4f;
    out.push(ihl);
  }
  out.push(good);
  return out;
}

function ipv4Udp(group, payload) {
  const p = Buffer.alloc(28 + payload.length);
  p[0] = 0x45;
  p.writeUInt16BE(p.length, 2);
  p[8] = 1;
  p[9] = 17;
  Buffer.from([192, 0, 2, 99]).copy(p, 12);
  Buffer.from(group.split('.').map(Number)).copy(p, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  p.writeUInt16BE(4444, 20);
  p.writeUInt16BE(9, 22);
  p.writeUInt16BE(8 + payload.length, 24);
  payload.copy(p, 28);
  return p;
}

function ipv6Udp(group, payload) {
  const p = Buffer.alloc(48 + payload.length);
  p[0] = 0x60;
  p.writeUInt16BE(8 + payload.length, 4);
  p[6] = 17;
  p[7] = 1;
  Buffer.from(expand6('2001:db8::99')).copy(p, 8);
  Buffer.from(expand6(group)).copy(p, 24);
  p.writeUInt16BE(4444, 40);
  p.writeUInt16BE(9, 42);
  p.writeUInt16BE(8 + payload.length, 44);
  payload.copy(p, 48);
  return p;
}

const [command, ...args] = process.argv.slice(2);
commands[command](...args).then(() => process.exit(0), (err) => {
  emit({ event: 'error', message: err && err.stack ? err.stack : String(err) });
  process.exit(1);
});
