// A scripted AgentX master on a unix socket, for session unit tests that need
// to misbehave in ways a real snmpd will not on demand (stay silent, send
// garbage, refuse registrations). Integration tests use the real snmpd.
import * as net from 'net';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodePdu, encodePdu } from '../../agentx/codec';
import { PduFramer } from '../../agentx/framer';
import { Pdu, PduType, ResponseError, ResponsePdu, VarBind } from '../../agentx/pdu';

export interface FakeMasterOptions {
  /** Answer Ping? (false: the session must notice and reconnect) */
  answerPing?: boolean;
  registerError?: ResponseError;
}

export class FakeMaster {
  readonly received: Pdu[] = [];
  readonly responses: ResponsePdu[] = [];
  private server: net.Server;
  private sockets = new Set<net.Socket>();
  private nextSession = 100;
  connections = 0;

  private constructor(readonly socketPath: string, readonly dir: string, private opts: FakeMasterOptions) {
    this.server = net.createServer((s) => this.accept(s));
  }

  static async start(opts: FakeMasterOptions = {}): Promise<FakeMaster> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-fake-master-'));
    const m = new FakeMaster(path.join(dir, 'master.sock'), dir, opts);
    await m.listen();
    return m;
  }

  get address(): string {
    return `unix:${this.socketPath}`;
  }

  listen(): Promise<void> {
    this.server = net.createServer((s) => this.accept(s));
    return new Promise((resolve) => this.server.listen(this.socketPath, resolve));
  }

  /** Closes the listener and every connection, like snmpd exiting. */
  async kill(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async stop(): Promise<void> {
    await this.kill();
    await fs.rm(this.dir, { recursive: true, force: true });
  }

  setOptions(opts: FakeMasterOptions): void {
    this.opts = opts;
  }

  /** Sends raw bytes to every connected subagent. */
  sendRaw(bytes: Buffer): void {
    for (const s of this.sockets) s.write(bytes);
  }

  /** Sends a request PDU and resolves with the subagent's Response. */
  request(pdu: Pdu): Promise<ResponsePdu> {
    const before = this.responses.length;
    for (const s of this.sockets) s.write(encodePdu(pdu));
    return this.waitFor(() => this.responses.length > before ? this.responses[before] : undefined);
  }

  async waitFor<T>(probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      if (Date.now() > until) throw new Error('FakeMaster.waitFor timed out');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  private accept(socket: net.Socket): void {
    this.connections++;
    this.sockets.add(socket);
    const framer = new PduFramer();
    let session = 0;
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      for (const frame of framer.push(chunk)) {
        const pdu = decodePdu(frame);
        if (pdu.type === PduType.Response) {
          this.responses.push(pdu);
          continue;
        }
        this.received.push(pdu);
        let error = ResponseError.NoError;
        if (pdu.type === PduType.Open) session = this.nextSession++;
        if (pdu.type === PduType.Ping && this.opts.answerPing === false) continue;
        if (pdu.type === PduType.Register && this.opts.registerError) error = this.opts.registerError;
        const varbinds: VarBind[] = [];
        socket.write(encodePdu({
          type: PduType.Response, flags: 0, sessionId: session, transactionId: pdu.transactionId,
          packetId: pdu.packetId, sysUpTime: 4242, error, index: 0, varbinds,
        }));
      }
    });
  }
}
