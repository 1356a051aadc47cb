// The control socket: `vmm-mcastd migrate|release|status` talk to the running
// daemon over a unix socket, one JSON request line, then JSON lines of
// progress and one final line. The kernel authenticates the peer: the socket
// is 0600 in its directory, and each connection's SO_PEERCRED uid must be
// root's or the daemon's own; anyone else is refused with one log line.
import koffi from 'koffi';
import type { KoffiFunc } from 'koffi';
import { promises as fs } from 'fs';
import * as net from 'net';
import * as path from 'path';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

export type ControlRequest =
  | { cmd: 'migrate'; vm: string; dest: string; prepareOnly: boolean }
  | { cmd: 'release'; vm: string; dest: string }
  | { cmd: 'status' };

/** A line the daemon writes back: progress, then one with `done`. */
export type ControlReply =
  | { progress: string }
  | { done: true; ok: true; result: unknown }
  | { done: true; ok: false; error: string };

export type ControlHandler = (request: ControlRequest, progress: (line: string) => void) => Promise<unknown>;

let getsockopt: KoffiFunc<(fd: number, level: number, name: number, value: Buffer, len: [number]) => number> | null = null;

/** The peer's uid, from SO_PEERCRED (struct ucred: pid, uid, gid), or null when it cannot be told. */
function peerUid(socket: net.Socket): number | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return null;
  getsockopt ??= koffi.load('libc.so.6').func('int getsockopt(int, int, int, _Out_ void *, _Inout_ uint32_t *)');
  const cred = Buffer.alloc(12);
  const len: [number] = [12];
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) !== 0) return null;
  return cred.readUInt32LE(4);
}

function parseRequest(line: string): ControlRequest {
  const d = JSON.parse(line) as Record<string, unknown>;
  const s = (k: string): string => {
    const v = d[k];
    if (typeof v !== 'string' || v === '') throw new Error(`"${k}" must be a non-empty string`);
    return v;
  };
  switch (d.cmd) {
    case 'migrate': return { cmd: 'migrate', vm: s('vm'), dest: s('dest'), prepareOnly: d.prepareOnly === true };
    case 'release': return { cmd: 'release', vm: s('vm'), dest: s('dest') };
    case 'status': return { cmd: 'status' };
    default: throw new Error(`unknown command ${JSON.stringify(d.cmd)}`);
  }
}

export class ControlServer {
  private server: net.Server | null = null;

  constructor(
    readonly socketPath: string,
    private readonly handler: ControlHandler,
    private readonly log: (level: 'warn' | 'error', message: string) => void,
  ) {}

  async start(): Promise<void> {
    await fs.mkdir(path.dirname(this.socketPath), { recursive: true, mode: 0o755 });
    // A socket file left by a daemon that died: nothing listens on it any more.
    if (await ControlClient.reachable(this.socketPath)) {
      throw new Error(`${this.socketPath}: another vmm-mcastd is running (stop it, or give this one its own control-socket)`);
    }
    await fs.rm(this.socketPath, { force: true });
    const server = net.createServer((c) => this.serve(c));
    this.server = server;
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.socketPath, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
  }

  private serve(c: net.Socket): void {
    const uid = peerUid(c);
    const own = process.getuid?.() ?? -1;
    if (uid === null || (uid !== 0 && uid !== own)) {
      this.log('warn', `control socket ${this.socketPath}: refused a connection from uid ${uid ?? 'unknown'} (only root and uid ${own} may control vmm-mcastd)`);
      c.destroy();
      return;
    }
    let buffered = '';
    let handled = false;
    const reply = (r: ControlReply): void => {
      if (!c.destroyed) c.write(`${JSON.stringify(r)}\n`);
    };
    c.setEncoding('utf8');
    c.on('error', () => undefined);
    c.on('data', (chunk: string) => {
      if (handled) return;
      buffered += chunk;
      if (buffered.length > 64 * 1024) {
        handled = true;
        c.destroy();
        return;
      }
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      handled = true;
      let request: ControlRequest;
      try {
        request = parseRequest(buffered.slice(0, nl));
      } catch (err) {
        reply({ done: true, ok: false, error: `bad request: ${(err as Error).message}` });
        c.end();
        return;
      }
      this.handler(request, (line) => reply({ progress: line }))
        .then((result) => reply({ done: true, ok: true, result }))
        .catch((err: Error) => reply({ done: true, ok: false, error: err.message }))
        .finally(() => c.end());
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fs.rm(this.socketPath, { force: true });
  }
}

export const ControlClient = {
  /** Sends one request; `onProgress` sees each progress line; resolves with the result or rejects with the error. */
  request(socketPath: string, request: ControlRequest, onProgress: (line: string) => void = () => undefined): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const c = net.createConnection(socketPath);
      let buffered = '';
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        fn();
      };
      c.setEncoding('utf8');
      c.on('connect', () => c.write(`${JSON.stringify(request)}\n`));
      c.on('error', (err) => finish(() => reject(new Error(`cannot reach vmm-mcastd at ${socketPath}: ${err.message} — is it running?`))));
      c.on('data', (chunk: string) => {
        buffered += chunk;
        let nl;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          const r = JSON.parse(line) as ControlReply;
          if ('progress' in r) onProgress(r.progress);
          else if (r.ok) finish(() => resolve(r.result));
          else finish(() => reject(new Error(r.error)));
        }
      });
      c.on('close', () => finish(() => reject(new Error(`vmm-mcastd closed the control connection without an answer (${socketPath})`))));
    });
  },

  reachable(socketPath: string): Promise<boolean> {
    return new Promise((resolve) => {
      const c = net.createConnection(socketPath);
      c.once('connect', () => { c.destroy(); resolve(true); });
      c.once('error', () => resolve(false));
    });
  },
};
