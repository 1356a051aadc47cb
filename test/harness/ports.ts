// Free loopback ports for test daemons. The kernel picks an unused port when a
// socket binds to port 0; we read it back and release the socket. Another
// process could grab the port in between; a per-process set at least keeps two
// daemons of one test file from being handed the same number.
import * as dgram from 'node:dgram';
import * as net from 'node:net';

const LOOPBACK = '127.0.0.1';
const handedOut = new Set<number>();

function udpPortOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', (err) => {
      socket.close();
      reject(err);
    });
    socket.bind(0, LOOPBACK, () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

function tcpPortOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('TCP listen on 127.0.0.1:0 returned no port'));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

async function unique(probe: () => Promise<number>): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await probe();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('could not find a loopback port not already handed out after 20 attempts');
}

/** A UDP port on 127.0.0.1 that was free a moment ago. */
export function freeUdpPort(): Promise<number> {
  return unique(udpPortOnce);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freeTcpPort(): Promise<number> {
  return unique(tcpPortOnce);
}

/** Resolves true when something accepts a TCP connection on 127.0.0.1:port. */
export function tcpPortAccepts(port: number, timeoutMs = 500): Promise<boolean> {
  return accepts({ host: LOOPBACK, port }, timeoutMs);
}

/** Resolves true when a unix stream socket at `path` accepts a connection. */
export function unixSocketAccepts(path: string, timeoutMs = 500): Promise<boolean> {
  return accepts({ path }, timeoutMs);
}

function accepts(target: net.NetConnectOpts, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
