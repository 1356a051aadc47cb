// rtnetlink from Node through koffi and libc: Node has no netlink sockets.
// Two uses: a dump (request, then read the answer until NLMSG_DONE), made
// synchronously — the kernel has the whole answer ready when the request
// returns, so the reads never wait — and a subscription to a multicast
// group, whose socket is watched with poll() on a libuv pool thread (the way
// libvirt's event loop is driven, src/libvirt/event-loop.ts), so that a change
// reaches the agent at once and the main thread never blocks.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';
import { whileReadable } from './readable-fd';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_RCVBUF = 8;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const MSG_DONTWAIT = 0x40;
const EINTR = 4;
const EAGAIN = 11;

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
const NLM_F_REQUEST = 0x1;
const NLM_F_DUMP = 0x300;
const NLM_F_ACK = 0x4;
const NLMSG_HDRLEN = 16;

interface Libc {
  socket: KoffiFunc<(domain: number, type: number, protocol: number) => number>;
  bind: KoffiFunc<(fd: number, addr: Buffer, len: number) => number>;
  sendto: KoffiFunc<(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number) => number>;
  recv: KoffiFunc<(fd: number, buf: Buffer, len: number, flags: number) => number>;
  setsockopt: KoffiFunc<(fd: number, level: number, name: number, value: Buffer, len: number) => number>;
  close: KoffiFunc<(fd: number) => number>;
}

let libc: Libc | null = null;

function api(): Libc {
  if (libc !== null) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    sendto: lib.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)'),
    recv: lib.func('intptr_t recv(int, void *, size_t, int)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    close: lib.func('int close(int)'),
  };
  return libc;
}

export class NetlinkError extends Error {
  constructor(readonly operation: string, readonly errno: number) {
    super(`${operation} failed: errno ${errno}`);
  }
}

/** sockaddr_nl: family, pad, pid (0: the kernel picks), groups. */
function sockaddr(): Buffer {
  const a = Buffer.alloc(12);
  a.writeUInt16LE(AF_NETLINK, 0);
  return a;
}

function openSocket(): number {
  const c = api();
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) throw new NetlinkError('socket(AF_NETLINK)', koffi.errno());
  const addr = sockaddr();
  if (c.bind(fd, addr, addr.length) < 0) {
    const errno = koffi.errno();
    c.close(fd);
    throw new NetlinkError('bind(AF_NETLINK)', errno);
  }
  return fd;
}

function setIntOption(fd: number, level: number, name: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value, 0);
  if (api().setsockopt(fd, level, name, v, 4) < 0) throw new NetlinkError(what, koffi.errno());
}

/** One netlink message of a dump answer: its type and its payload (after the 16-byte header). */
export interface NetlinkMessage {
  type: number;
  payload: Buffer;
}

/**
 * A socket for dumps and requests, opened on first use and kept: opening,
 * binding and setting up a socket, and a 64 KiB receive buffer, for every
 * dump cost more than the dump of an empty table. Exchanges are synchronous,
 * so one never overlaps another; an answer is told from leftovers of an
 * earlier one by its sequence number. After a failure of the socket itself
 * it is closed, and the next exchange opens a new one.
 */
export class NetlinkRequestSocket {
  private fd: number | null = null;
  private sequence = 0;
  private readonly receiveBuffer = Buffer.alloc(64 * 1024);
  private readonly kernel = sockaddr();

  /** The descriptor of the socket open now, or null (for tests). */
  get descriptor(): number | null {
    return this.fd;
  }

  /**
   * Sends a request (`type`, `flags` beside NLM_F_REQUEST, `body` after the
   * header) and returns the answer's messages, up to NLMSG_DONE or the
   * kernel's acknowledgement; throws a NetlinkError with the kernel's errno
   * when it refuses. A kept socket that cannot send (broken since its last
   * use) is replaced and the request sent once more on a new one: nothing
   * reached the kernel.
   */
  exchange(type: number, flags: number, body: Buffer): NetlinkMessage[] {
    const reused = this.fd !== null;
    const fd = this.open();
    const seq = ++this.sequence;
    const request = Buffer.alloc(NLMSG_HDRLEN + body.length);
    request.writeUInt32LE(request.length, 0);
    request.writeUInt16LE(type, 4);
    request.writeUInt16LE(NLM_F_REQUEST | flags, 6);
    request.writeUInt32LE(seq, 8);
    body.copy(request, NLMSG_HDRLEN);
    if (api().sendto(fd, request, request.length, 0, this.kernel, this.kernel.length) < 0) {
      const errno = koffi.errno();
      this.close();
      if (reused) return this.exchange(type, flags, body);
      throw new NetlinkError('sendto', errno);
    }
    try {
      return this.receive(fd, type, seq);
    } catch (err) {
      // The kernel's refusal leaves the socket as good as before; anything else may not.
      if (!(err instanceof NetlinkError && err.operation === `netlink request ${type}`)) this.close();
      throw err;
    }
  }

  /** Closes the socket; the next exchange opens another. */
  close(): void {
    if (this.fd === null) return;
    api().close(this.fd);
    this.fd = null;
  }

  private open(): number {
    if (this.fd !== null) return this.fd;
    const fd = openSocket();
    // A safety net: the answer is there at once, so a read never waits this long.
    const timeout = Buffer.alloc(16);
    timeout.writeBigInt64LE(1n, 0);
    if (api().setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, timeout, 16) < 0) {
      const errno = koffi.errno();
      api().close(fd);
      throw new NetlinkError('setsockopt(SO_RCVTIMEO)', errno);
    }
    this.fd = fd;
    return fd;
  }

  private receive(fd: number, type: number, seq: number): NetlinkMessage[] {
    const c = api();
    const buf = this.receiveBuffer;
    const messages: NetlinkMessage[] = [];
    for (;;) {
      const n = c.recv(fd, buf, buf.length, 0);
      if (n < 0) {
        const errno = koffi.errno();
        if (errno === EINTR) continue;
        throw new NetlinkError('recv', errno);
      }
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = buf.readUInt32LE(off);
        const msgType = buf.readUInt16LE(off + 4);
        if (len < NLMSG_HDRLEN || off + len > n) throw new NetlinkError('netlink message framing', 0);
        if (buf.readUInt32LE(off + 8) === seq) {
          if (msgType === NLMSG_DONE) return messages;
          if (msgType === NLMSG_ERROR) {
            const error = -buf.readInt32LE(off + NLMSG_HDRLEN);
            if (error !== 0) throw new NetlinkError(`netlink request ${type}`, error);
            return messages;
          }
          messages.push({ type: msgType, payload: Buffer.from(buf.subarray(off + NLMSG_HDRLEN, off + len)) });
        }
        off += (len + 3) & ~3;
      }
    }
  }
}

/** The process's socket for netlinkDump and netlinkRequest. */
const requests = new NetlinkRequestSocket();

/**
 * Sends a dump request (`type`, with `body` after the header) and returns the
 * answer's messages. Synchronous: see the top of the file.
 */
export function netlinkDump(type: number, body: Buffer): NetlinkMessage[] {
  return requests.exchange(type, NLM_F_DUMP, body);
}

/**
 * Sends a request that changes something (`type`, `flags` beside
 * NLM_F_REQUEST|NLM_F_ACK, `body` after the header) and returns once the
 * kernel acknowledged it; throws a NetlinkError with the kernel's errno.
 */
export function netlinkRequest(type: number, flags: number, body: Buffer): void {
  requests.exchange(type, NLM_F_ACK | flags, body);
}

/** Iterates the attributes (struct rtattr / nlattr) in `buf` from `offset`: type without the nested flag, and the value. */
export function* attributes(buf: Buffer, offset = 0, end = buf.length): Generator<[number, Buffer]> {
  let off = offset;
  while (off + 4 <= end) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > end) return;
    yield [buf.readUInt16LE(off + 2) & 0x3fff, buf.subarray(off + 4, off + len)];
    off += (len + 3) & ~3;
  }
}

/**
 * A subscription to an rtnetlink multicast group: `onMessage` runs (on the
 * main thread) whenever the kernel sent something to it, or dropped
 * messages because the agent read too slowly — either way, "something
 * changed". close() ends it within POLL_MS.
 */
export class NetlinkSubscription {
  private static readonly POLL_MS = 500;
  private readonly fd: number;
  private closed = false;
  private readonly drainBuf = Buffer.alloc(16 * 1024);
  private readonly loop: Promise<void>;

  constructor(group: number, private readonly onMessage: () => void, private readonly onFailure: (err: Error) => void) {
    this.fd = openSocket();
    try {
      setIntOption(this.fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group, `join rtnetlink group ${group}`);
      // Room for a burst of changes; a drop is only a missed "changed".
      setIntOption(this.fd, SOL_SOCKET, SO_RCVBUF, 1 << 20, 'setsockopt(SO_RCVBUF)');
    } catch (err) {
      api().close(this.fd);
      throw err;
    }
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    try {
      await this.watch();
    } finally {
      // Closed only here, once no poll() uses the descriptor any more.
      api().close(this.fd);
    }
  }

  private async watch(): Promise<void> {
    try {
      await whileReadable(this.fd, NetlinkSubscription.POLL_MS, () => this.closed, () => {
        if (this.drain()) this.onMessage();
      }, () => new NetlinkError('poll on the rtnetlink subscription', 0));
    } catch (err) {
      this.onFailure(err as Error);
    }
  }

  /** Reads whatever is queued; true when anything came (or was dropped for want of room). */
  private drain(): boolean {
    let any = false;
    for (;;) {
      const n = api().recv(this.fd, this.drainBuf, this.drainBuf.length, MSG_DONTWAIT);
      if (n > 0) {
        any = true;
        continue;
      }
      if (n === 0) return any;
      const errno = koffi.errno();
      if (errno === EINTR) continue;
      // ENOBUFS: the kernel dropped messages; what they said is in the next dump.
      return any || errno !== EAGAIN;
    }
  }

  /** Ends the subscription; resolves once its socket is closed (within POLL_MS). */
  close(): Promise<void> {
    this.closed = true;
    return this.loop;
  }
}
