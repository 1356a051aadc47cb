// Every UDP datagram sent to a managed multicast group on one interface,
// whatever its destination port, seen from a packet socket (AF_PACKET,
// SOCK_DGRAM: the kernel hands over the IP packet without its link header).
// A socket bound to the group's port would only see that port, and the ports
// of a VM's streams are not known in advance.
//
// Node has no packet sockets, so this goes through koffi and libc the way
// src/collectors/netlink.ts does: poll() waits on a libuv pool thread with a
// short timeout (close() takes effect within it), and the main thread drains
// the socket with non-blocking recvfrom calls, many per wakeup. recvfrom's
// sockaddr_ll says whether a packet was one this host sent (PACKET_OUTGOING),
// which is how our own re-sent copies are told from the network's.
//
// A classic BPF filter on the socket keeps everything but IPv4 UDP to
// 224.0.0.0/4 and IPv6 to ff00::/8 in the kernel: the interface may be the
// bridge a live migration's gigabytes cross, and none of that should wake us.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';
import * as net from 'node:net';
import type { CollectorLog } from '../collectors/paths';
import { whileReadable } from '../collectors/readable-fd';

const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const ETH_P_ALL = 0x0003;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_ATTACH_FILTER = 26;
const SO_RCVBUFFORCE = 33;
const SOL_PACKET = 263;
const PACKET_STATISTICS = 6;
const PACKET_OUTGOING = 4;
const MSG_DONTWAIT = 0x40;
const EINTR = 4;
const EAGAIN = 11;
const EPERM = 1;
const EACCES = 13;
const IPPROTO_UDP = 17;
const SOCKADDR_LL_SIZE = 20;
/** The largest IP packet plus room: a datagram is never cut short. */
const RECEIVE_BUFFER_SIZE = 65536 + 256;

interface Libc {
  socket: KoffiFunc<(domain: number, type: number, protocol: number) => number>;
  bind: KoffiFunc<(fd: number, addr: Buffer, len: number) => number>;
  recvfrom: KoffiFunc<(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: Buffer) => number>;
  setsockopt: KoffiFunc<(fd: number, level: number, name: number, value: Buffer, len: number) => number>;
  getsockopt: KoffiFunc<(fd: number, level: number, name: number, value: Buffer, len: Buffer) => number>;
  close: KoffiFunc<(fd: number) => number>;
  ifNameToIndex: KoffiFunc<(name: string) => number>;
}

let libc: Libc | null = null;

function api(): Libc {
  if (libc !== null) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    recvfrom: lib.func('intptr_t recvfrom(int, void *, size_t, int, void *, void *)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    getsockopt: lib.func('int getsockopt(int, int, int, void *, void *)'),
    close: lib.func('int close(int)'),
    ifNameToIndex: lib.func('unsigned int if_nametoindex(const char *)'),
  };
  return libc;
}

export class CaptureError extends Error {
  constructor(readonly operation: string, readonly errno: number, message?: string) {
    super(message ?? `${operation} failed: errno ${errno}`);
  }
}

/** The ifindex of `name` in this network namespace; throws when there is no such interface. */
export function interfaceIndex(name: string): number {
  const index = api().ifNameToIndex(name);
  if (index === 0) throw new CaptureError(`if_nametoindex(${name})`, koffi.errno(), `no interface ${name}`);
  return index;
}

// ---- addresses -------------------------------------------------------------

/** The 16 bytes of an IPv6 address in text form (no zone), or null. */
function ipv6Bytes(text: string): Buffer | null {
  if (net.isIPv6(text) === false) return null;
  const bytes = Buffer.alloc(16);
  let head = text;
  let tail = '';
  const gap = text.indexOf('::');
  if (gap >= 0) {
    head = text.slice(0, gap);
    tail = text.slice(gap + 2);
  }
  const words = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a, b, c, d] = piece.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const h = words(head);
  const t = words(tail);
  const all = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  all.forEach((w, i) => bytes.writeUInt16BE(w, i * 2));
  return bytes;
}

/** RFC 5952 text of the IPv6 address at `offset` in `buf`: lower case, the longest run of zero words as "::". */
export function formatIpv6(buf: Buffer, offset = 0): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(offset + i * 2));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]): string => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}

function formatIpv4(buf: Buffer, offset: number): string {
  return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
}

/**
 * The canonical text of a multicast group (IPv4 dotted quad, IPv6 in RFC
 * 5952 form); throws when `group` is not an IPv4 or IPv6 multicast address.
 */
export function canonicalGroup(group: string): string {
  if (net.isIPv4(group)) {
    const bytes = group.split('.').map(Number);
    if (bytes[0] < 224 || bytes[0] > 239) throw new Error(`${group} is not a multicast address`);
    return bytes.join('.');
  }
  const v6 = ipv6Bytes(group);
  if (v6 === null || v6[0] !== 0xff) throw new Error(`${group} is not a multicast address`);
  return formatIpv6(v6);
}

/** How the capture looks a group up: the IPv4 address as a number, the IPv6 one as hex. */
function groupKey(canonical: string): number | string {
  if (net.isIPv4(canonical)) return canonical.split('.').reduce((n, b) => n * 256 + Number(b), 0);
  return (ipv6Bytes(canonical) as Buffer).toString('hex');
}

// ---- parsing ---------------------------------------------------------------

/** Where the parts of a UDP datagram lie in a captured IP packet. */
export interface UdpInPacket {
  family: 4 | 6;
  sourceOffset: number;
  destinationOffset: number;
  sourcePort: number;
  port: number;
  payloadOffset: number;
  payloadLength: number;
  /** IPv4 TTL or IPv6 hop limit as received. */
  hopLimit: number;
  /** The first fragment of a fragmented datagram: the payload is only its first part. */
  fragment: boolean;
}

const IPV6_HOP_BY_HOP = 0;
const IPV6_ROUTING = 43;
const IPV6_FRAGMENT = 44;
const IPV6_DESTINATION_OPTIONS = 60;
/** More extension headers than this before UDP: not a packet worth reading. */
const MAX_EXTENSION_HEADERS = 8;

/**
 * The UDP datagram in the IP packet `packet[0, length)`, or null when it is
 * not one (another protocol, a non-first fragment) or is malformed. Never
 * throws; reads nothing outside the bounds the headers were checked against.
 */
export function parseUdp(packet: Buffer, length: number): UdpInPacket | null {
  if (length < 1 || length > packet.length) return null;
  const version = packet[0] >> 4;
  if (version === 4) return parseUdp4(packet, length);
  if (version === 6) return parseUdp6(packet, length);
  return null;
}

function parseUdp4(p: Buffer, length: number): UdpInPacket | null {
  if (length < 20) return null;
  const headerLength = (p[0] & 0x0f) * 4;
  // The frame may carry link padding after the packet: its own length bounds it.
  const total = p.readUInt16BE(2);
  if (headerLength < 20 || total < headerLength + 8 || total > length) return null;
  if (p[9] !== IPPROTO_UDP) return null;
  const flagsAndOffset = p.readUInt16BE(6);
  if ((flagsAndOffset & 0x1fff) !== 0) return null;
  const fragment = (flagsAndOffset & 0x2000) !== 0;
  return udpAt(p, headerLength, total, 4, 12, 16, p[8], fragment);
}

function parseUdp6(p: Buffer, length: number): UdpInPacket | null {
  if (length < 40) return null;
  const payloadLength = p.readUInt16BE(4);
  // 0 is a jumbogram (hop-by-hop option), which no multicast stream is.
  if (payloadLength === 0 || 40 + payloadLength > length) return null;
  const end = 40 + payloadLength;
  let next = p[6];
  let offset = 40;
  let fragment = false;
  for (let seen = 0; next !== IPPROTO_UDP; seen++) {
    if (seen >= MAX_EXTENSION_HEADERS || offset + 8 > end) return null;
    if (next === IPV6_HOP_BY_HOP || next === IPV6_ROUTING || next === IPV6_DESTINATION_OPTIONS) {
      const size = (p[offset + 1] + 1) * 8;
      next = p[offset];
      offset += size;
    } else if (next === IPV6_FRAGMENT) {
      if ((p.readUInt16BE(offset + 2) & 0xfff8) !== 0) return null;
      fragment = true;
      next = p[offset];
      offset += 8;
    } else {
      return null;
    }
  }
  if (offset + 8 > end) return null;
  return udpAt(p, offset, end, 6, 8, 24, p[7], fragment);
}

function udpAt(
  p: Buffer, offset: number, end: number, family: 4 | 6,
  sourceOffset: number, destinationOffset: number, hopLimit: number, fragment: boolean,
): UdpInPacket | null {
  if (offset + 8 > end) return null;
  const udpLength = p.readUInt16BE(offset + 4);
  let payloadLength: number;
  if (fragment) {
    payloadLength = end - offset - 8;
  } else {
    if (udpLength < 8 || offset + udpLength > end) return null;
    payloadLength = udpLength - 8;
  }
  return {
    family,
    sourceOffset,
    destinationOffset,
    sourcePort: p.readUInt16BE(offset),
    port: p.readUInt16BE(offset + 2),
    payloadOffset: offset + 8,
    payloadLength,
    hopLimit,
    fragment,
  };
}

// ---- the socket ------------------------------------------------------------

/** One captured datagram to a managed group. */
export interface CapturedDatagram {
  /** The group, in canonicalGroup() form. */
  group: string;
  source: string;
  sourcePort: number;
  /** Destination port. */
  port: number;
  /** A copy: the consumer may keep it. */
  payload: Buffer;
  /** Sent by this host (on this interface), not received. */
  outgoing: boolean;
  /** process.hrtime.bigint() when it was read. */
  at: bigint;
  /** IPv4 TTL or IPv6 hop limit as captured. */
  hopLimit: number;
  /** True for the first fragment of a fragmented datagram (payload incomplete); later fragments are not reported. */
  fragment: boolean;
}

export interface CaptureStats {
  /** Datagrams handed to the callback. */
  delivered: number;
  /** Packets read that were malformed or not UDP (skipped). */
  skipped: number;
  /** Packets the kernel dropped because the socket's buffer was full (PACKET_STATISTICS, summed). */
  kernelDrops: number;
}

export interface MulticastCaptureOptions {
  log: CollectorLog;
  /** The socket's receive buffer; default 4 MiB (a burst of ~1,000 full-size packets). */
  receiveBufferBytes?: number;
  /** How long one poll() waits, so how soon close() takes effect; default 100 ms. */
  pollMs?: number;
  /**
   * After a wakeup that found packets, how long to let more queue before the
   * next poll(); default 5 ms. Each wakeup costs far more than each packet
   * (a pool thread hands over to the main thread), so a stream of 1,725
   * packets/s read a few at a time costs a fraction of one read per packet,
   * for at most this much delay.
   */
  coalesceMs?: number;
  /** Called once if the socket fails for good (the capture then stops). */
  onFailure?: (err: Error) => void;
}

/** Most packets read in one go before other events get a turn. */
const BATCH = 512;
/** How often the kernel's drop counter is read. */
const DROP_CHECK_NS = 1_000_000_000n;

function bpfFilter(): Buffer {
  // [code, jt, jf, k]; offsets are from the IP header (SOCK_DGRAM).
  const program: Array<[number, number, number, number]> = [
    [0x28, 0, 0, 0xfffff000], // ldh skb->protocol
    [0x15, 0, 5, ETH_P_IP], // IPv4? else to 7
    [0x30, 0, 0, 9], // ldb protocol
    [0x15, 0, 7, IPPROTO_UDP], // UDP? else drop
    [0x30, 0, 0, 16], // ldb first byte of destination
    [0x54, 0, 0, 0xf0],
    [0x15, 3, 4, 0xe0], // 224.0.0.0/4: accept, else drop
    [0x15, 0, 3, ETH_P_IPV6], // IPv6? else drop
    [0x30, 0, 0, 24], // ldb first byte of destination
    [0x15, 0, 1, 0xff], // ff00::/8: accept, else drop
    [0x06, 0, 0, 0x40000], // accept (whole packet)
    [0x06, 0, 0, 0], // drop
  ];
  const code = Buffer.alloc(program.length * 8);
  program.forEach(([c, jt, jf, k], i) => {
    code.writeUInt16LE(c, i * 8);
    code[i * 8 + 2] = jt;
    code[i * 8 + 3] = jf;
    code.writeUInt32LE(k >>> 0, i * 8 + 4);
  });
  return code;
}

/**
 * A packet socket on one interface that reports every UDP datagram to a
 * group in its set (add/remove) to `onDatagram`, on the main thread.
 * Needs CAP_NET_RAW.
 */
export class MulticastCapture {
  readonly ifindex: number;
  private readonly fd: number;
  private readonly pollMs: number;
  private readonly coalesceMs: number;
  private readonly log: CollectorLog;
  private readonly onFailure: (err: Error) => void;
  private readonly v4 = new Map<number, string>();
  private readonly v6 = new Map<string, string>();
  private readonly packet = Buffer.alloc(RECEIVE_BUFFER_SIZE);
  private readonly from = Buffer.alloc(SOCKADDR_LL_SIZE);
  private readonly fromLength = Buffer.alloc(4);
  private readonly statsBuf = Buffer.alloc(8);
  private readonly statsLength = Buffer.alloc(4);
  private readonly counters: CaptureStats = { delivered: 0, skipped: 0, kernelDrops: 0 };
  private lastDropCheck = 0n;
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(
    readonly iface: string,
    private readonly onDatagram: (datagram: CapturedDatagram) => void,
    options: MulticastCaptureOptions,
  ) {
    this.log = options.log;
    this.pollMs = options.pollMs ?? 100;
    this.coalesceMs = options.coalesceMs ?? 5;
    this.onFailure = options.onFailure ?? ((err) => this.log('error', `capture on ${iface} stopped: ${err.message}`));
    this.ifindex = interfaceIndex(iface);
    this.fd = openPacketSocket(this.ifindex, iface, options.receiveBufferBytes ?? 4 << 20, this.log);
    this.loop = this.run();
  }

  /** Starts reporting datagrams to `group`; returns its canonical form. */
  add(group: string): string {
    const canonical = canonicalGroup(group);
    const key = groupKey(canonical);
    if (typeof key === 'number') this.v4.set(key, canonical);
    else this.v6.set(key, canonical);
    return canonical;
  }

  remove(group: string): void {
    const key = groupKey(canonicalGroup(group));
    if (typeof key === 'number') this.v4.delete(key);
    else this.v6.delete(key);
  }

  has(group: string): boolean {
    const key = groupKey(canonicalGroup(group));
    return typeof key === 'number' ? this.v4.has(key) : this.v6.has(key);
  }

  get groups(): string[] {
    return [...this.v4.values(), ...this.v6.values()];
  }

  /** Counters since the capture opened (the kernel's drop count as of the last check, at most a second old). */
  stats(): CaptureStats {
    if (!this.closed) this.checkDrops();
    return { ...this.counters };
  }

  private async run(): Promise<void> {
    try {
      await this.watch();
    } catch (err) {
      this.onFailure(err instanceof Error ? err : new Error(String(err)));
    } finally {
      // Closed only here, once no poll() uses the descriptor any more.
      api().close(this.fd);
    }
  }

  private async watch(): Promise<void> {
    await whileReadable(this.fd, this.pollMs, () => this.closed, async () => {
      if (this.drain() > 0 && this.coalesceMs > 0) {
        await new Promise((resolve) => setTimeout(resolve, this.coalesceMs));
      }
    }, () => new CaptureError(`poll on the packet socket of ${this.iface}`, 0));
  }

  /** Reads up to BATCH packets without waiting (what is left wakes the next poll() at once); returns how many. */
  private drain(): number {
    const c = api();
    let read = 0;
    for (; read < BATCH && !this.closed; read++) {
      this.fromLength.writeUInt32LE(SOCKADDR_LL_SIZE, 0);
      const n = c.recvfrom(this.fd, this.packet, this.packet.length, MSG_DONTWAIT, this.from, this.fromLength);
      if (n < 0) {
        const errno = koffi.errno();
        if (errno === EINTR) {
          read--;
          continue;
        }
        if (errno !== EAGAIN) this.log('warn', `recvfrom on the packet socket of ${this.iface}: errno ${errno}`);
        break;
      }
      this.handle(n, this.from[10] === PACKET_OUTGOING);
    }
    const now = process.hrtime.bigint();
    if (now - this.lastDropCheck >= DROP_CHECK_NS) {
      this.lastDropCheck = now;
      this.checkDrops();
    }
    return read;
  }

  private handle(length: number, outgoing: boolean): void {
    const p = this.packet;
    const udp = parseUdp(p, length);
    if (udp === null) {
      this.counters.skipped++;
      return;
    }
    const d = udp.destinationOffset;
    const group = udp.family === 4 ? this.v4.get(p.readUInt32BE(d)) : this.v6.get(p.toString('hex', d, d + 16));
    if (group === undefined) return;
    const datagram: CapturedDatagram = {
      group,
      source: udp.family === 4 ? formatIpv4(p, udp.sourceOffset) : formatIpv6(p, udp.sourceOffset),
      sourcePort: udp.sourcePort,
      port: udp.port,
      payload: Buffer.from(p.subarray(udp.payloadOffset, udp.payloadOffset + udp.payloadLength)),
      outgoing,
      at: process.hrtime.bigint(),
      hopLimit: udp.hopLimit,
      fragment: udp.fragment,
    };
    this.counters.delivered++;
    try {
      this.onDatagram(datagram);
    } catch (err) {
      this.log('error', `capture on ${this.iface}: the datagram handler threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Reads (and so resets) the kernel's counters; a drop means the buffer was too small or we too slow. */
  private checkDrops(): void {
    this.statsLength.writeUInt32LE(8, 0);
    if (api().getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, this.statsBuf, this.statsLength) < 0) return;
    const drops = this.statsBuf.readUInt32LE(4);
    if (drops > 0) {
      this.counters.kernelDrops += drops;
      this.log('warn', `capture on ${this.iface}: the kernel dropped ${drops} packets (receive buffer full)`);
    }
  }

  /** Stops capturing; resolves once the socket is closed (within pollMs). */
  close(): Promise<void> {
    this.closed = true;
    return this.loop;
  }
}

function openPacketSocket(ifindex: number, iface: string, receiveBufferBytes: number, log: CollectorLog): number {
  const c = api();
  // Protocol 0: no packets at all until bind() names the interface, so none from elsewhere are queued.
  const fd = c.socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const errno = koffi.errno();
    if (errno === EPERM || errno === EACCES) {
      throw new CaptureError('socket(AF_PACKET)', errno,
        `cannot open a packet socket to capture multicast on ${iface}: needs CAP_NET_RAW (run as root or grant the capability)`);
    }
    throw new CaptureError('socket(AF_PACKET)', errno);
  }
  try {
    const filter = bpfFilter();
    const program = Buffer.alloc(16);
    program.writeUInt16LE(filter.length / 8, 0);
    program.writeBigUInt64LE(koffi.address(filter), 8);
    if (c.setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, program, program.length) < 0) {
      throw new CaptureError('setsockopt(SO_ATTACH_FILTER)', koffi.errno());
    }
    const size = Buffer.alloc(4);
    size.writeInt32LE(receiveBufferBytes, 0);
    // FORCE goes past net.core.rmem_max (needs CAP_NET_ADMIN); else the kernel caps SO_RCVBUF there.
    if (c.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4) < 0 && c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4) < 0) {
      log('warn', `capture on ${iface}: cannot set the receive buffer to ${receiveBufferBytes} bytes: errno ${koffi.errno()}`);
    }
    const address = Buffer.alloc(SOCKADDR_LL_SIZE);
    address.writeUInt16LE(AF_PACKET, 0);
    address.writeUInt16BE(ETH_P_ALL, 2);
    address.writeInt32LE(ifindex, 4);
    if (c.bind(fd, address, address.length) < 0) throw new CaptureError(`bind(AF_PACKET, ${iface})`, koffi.errno());
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}
