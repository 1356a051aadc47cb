import { AgentxSession } from '../../agentx/session';
import type { RequestHandler } from '../../agentx/handler';
import { CloseReason, Pdu, PduType, ResponseError, ValueType, VarBind } from '../../agentx/pdu';
import { encodePdu } from '../../agentx/codec';
import { FakeMaster } from './fake-master';
import { Responder } from '../../agentx/responder';
import { PassThrough } from 'stream';

const SUBTREE = [1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 7];

/** Answers Get with the requested OID and Integer 7; enough to see the session route requests. */
const handler: RequestHandler = {
  get: (ranges) => ranges.map((r) => ({ oid: r.start, type: ValueType.Integer, value: 7 })),
  getNext: (ranges) => ranges.map((r) => ({ oid: [...r.start, 1], type: ValueType.Integer, value: 8 })),
  getBulk: () => [],
  testSet: () => ({ error: ResponseError.NotWritable, index: 1 }),
  commitSet: () => ({ error: ResponseError.NoError, index: 0 }),
  undoSet: () => ({ error: ResponseError.NoError, index: 0 }),
  cleanupSet: () => undefined,
};

function getPdu(sessionId: number, packetId: number): Pdu {
  return {
    type: PduType.Get, flags: 0, sessionId, transactionId: 1, packetId,
    ranges: [{ start: [...SUBTREE, 0], include: false, end: [] }],
  };
}

function opened(session: AgentxSession): Promise<number> {
  return new Promise((resolve) => session.once('open', resolve));
}

describe('AgentxSession against a scripted master', () => {
  let master: FakeMaster;
  let session: AgentxSession | null = null;
  const lines: string[] = [];

  beforeEach(async () => {
    master = await FakeMaster.start();
    lines.length = 0;
  });
  afterEach(async () => {
    await session?.close();
    session = null;
    await master.stop();
  });

  function newSession(extra: Partial<ConstructorParameters<typeof AgentxSession>[0]> = {}): AgentxSession {
    session = new AgentxSession({
      address: master.address,
      description: 'test agent ✓',
      reconnectInitialMs: 50,
      reconnectMaxMs: 200,
      log: (level, msg) => lines.push(`${level}: ${msg}`),
      ...extra,
    }, handler);
    return session;
  }

  test('opens, registers and adds agent capabilities, in that order, and answers requests', async () => {
    const s = newSession();
    await s.register({ subtree: SUBTREE, priority: 100 });
    await s.addAgentCaps({ id: SUBTREE, description: 'caps' });
    const open = opened(s);
    s.start();
    const sessionId = await open;
    expect(sessionId).toBe(100);
    expect(master.received.map((p) => p.type)).toEqual([PduType.Open, PduType.Register, PduType.AddAgentCaps]);
    const o = master.received[0];
    expect(o.type === PduType.Open && o.description.toString('utf8')).toBe('test agent ✓');
    const r = master.received[1];
    expect(r.type === PduType.Register && [r.subtree, r.priority, r.sessionId]).toEqual([SUBTREE, 100, 100]);
    const res = await master.request(getPdu(100, 77));
    expect(res.packetId).toBe(77);
    expect(res.error).toBe(ResponseError.NoError);
    expect(res.varbinds).toEqual([{ oid: [...SUBTREE, 0], type: ValueType.Integer, value: 7 }]);
  });

  test('reconnects and registers again after the master goes away and comes back', async () => {
    const s = newSession();
    await s.register({ subtree: SUBTREE });
    const first = opened(s);
    s.start();
    await first;
    const closed = new Promise((r) => s.once('close', r));
    await master.kill();
    await closed;
    expect(s.isOpen).toBe(false);
    await new Promise((r) => setTimeout(r, 300)); // a few refused attempts
    const again = opened(s);
    const restartedAt = Date.now();
    await master.listen();
    await again;
    expect(Date.now() - restartedAt).toBeLessThan(1000);
    expect(master.connections).toBe(2);
    expect(master.received.filter((p) => p.type === PduType.Register)).toHaveLength(2);
    expect(lines.filter((l) => l.includes('unreachable'))).toHaveLength(1);
  });

  test('an unanswered Ping drops the connection and opens a new session', async () => {
    const s = newSession({ pingIntervalMs: 100, requestTimeoutMs: 150 });
    const first = opened(s);
    s.start();
    await first;
    master.setOptions({ answerPing: false });
    const closed = new Promise((r) => s.once('close', r));
    await closed;
    master.setOptions({ answerPing: true });
    await opened(s);
    expect(lines.some((l) => l.includes('did not answer Ping'))).toBe(true);
    expect(master.connections).toBe(2);
  });

  test('a malformed request is answered with parseError and the session stays open', async () => {
    const s = newSession();
    const first = opened(s);
    s.start();
    await first;
    // A Get whose search range is cut short: header intact, payload truncated.
    const good = encodePdu(getPdu(100, 5));
    const bad = Buffer.from(good.subarray(0, 28));
    bad.writeUInt32BE(8, 16);
    const before = master.responses.length;
    master.sendRaw(bad);
    const res = await master.waitFor(() => master.responses[before]);
    expect(res.error).toBe(ResponseError.ParseError);
    expect(res.packetId).toBe(5);
    const ok = await master.request(getPdu(100, 6));
    expect(ok.error).toBe(ResponseError.NoError);
    expect(lines.some((l) => l.includes('malformed PDU') && l.includes('packet=5'))).toBe(true);
    expect(master.connections).toBe(1);
  });

  test('an unknown PDU type is ignored, with one log line however often it comes', async () => {
    const s = newSession();
    const first = opened(s);
    s.start();
    await first;
    const unknown = Buffer.from(encodePdu({ type: PduType.Ping, flags: 0, sessionId: 100, transactionId: 0, packetId: 9 }));
    unknown[1] = 99;
    master.sendRaw(unknown);
    master.sendRaw(unknown);
    const ok = await master.request(getPdu(100, 10));
    expect(ok.packetId).toBe(10);
    expect(lines.filter((l) => l.includes('unknown type 99'))).toHaveLength(1);
  });

  test('an unusable byte stream drops the connection and reconnects', async () => {
    const s = newSession();
    const first = opened(s);
    s.start();
    await first;
    const again = new Promise((r) => s.once('close', r)).then(() => opened(s));
    const header = Buffer.alloc(20);
    header[0] = 1; header[1] = PduType.Get; header[2] = 0x10;
    header.writeUInt32BE(6, 16); // not a multiple of 4
    master.sendRaw(header);
    await again;
    expect(master.connections).toBe(2);
  });

  test('a request for another session id is answered notOpen', async () => {
    const s = newSession();
    const first = opened(s);
    s.start();
    await first;
    const res = await master.request(getPdu(12345, 3));
    expect(res.error).toBe(ResponseError.NotOpen);
  });

  test('notifications wait while the master is away and carry sysUpTime.0 and snmpTrapOID.0 first', async () => {
    const s = newSession();
    const sent = s.notify([1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 0, 1], [
      { oid: [...SUBTREE, 1], type: ValueType.OctetString, value: Buffer.from('grüße', 'utf8') },
    ]);
    const first = opened(s);
    s.start();
    await first;
    await sent;
    const notify = master.received.find((p) => p.type === PduType.Notify);
    expect(notify).toBeDefined();
    const vbs = (notify as { varbinds: VarBind[] }).varbinds;
    expect(vbs[0].oid).toEqual([1, 3, 6, 1, 2, 1, 1, 3, 0]);
    expect(vbs[0].type).toBe(ValueType.TimeTicks);
    expect(vbs[1]).toEqual({ oid: [1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0], type: ValueType.ObjectIdentifier, value: [1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 0, 1] });
    expect(vbs[2].type === ValueType.OctetString && vbs[2].value.length).toBe(7);
    // sysUpTime.0 follows the master's clock (4242 in every Response of the fake).
    const later = s.notify([1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 0, 2], []);
    await later;
    const second = master.received.filter((p) => p.type === PduType.Notify)[1] as { varbinds: VarBind[] };
    const ticks = second.varbinds[0].type === ValueType.TimeTicks ? second.varbinds[0].value : -1;
    expect(ticks).toBeGreaterThanOrEqual(4242);
    expect(ticks).toBeLessThan(4242 + 500);
  });

  test('a refused registration is logged and the session stays open', async () => {
    master.setOptions({ registerError: ResponseError.DuplicateRegistration });
    const s = newSession();
    await s.register({ subtree: SUBTREE });
    const first = opened(s);
    s.start();
    await first;
    expect(s.isOpen).toBe(true);
    expect(lines.some((l) => l.startsWith('error') && l.includes('DuplicateRegistration'))).toBe(true);
  });

  test('close() sends Close with reason shutdown and stops reconnecting', async () => {
    const s = newSession();
    const first = opened(s);
    s.start();
    await first;
    await s.close();
    session = null;
    const close = master.received.find((p) => p.type === PduType.Close);
    expect(close && close.type === PduType.Close && close.reason).toBe(CloseReason.Shutdown);
    await new Promise((r) => setTimeout(r, 300));
    expect(master.connections).toBe(1);
    expect(s.state).toBe('closed');
  });

  test('keeps retrying while no master listens, without a log line per attempt', async () => {
    await master.kill();
    const s = newSession();
    s.start();
    await new Promise((r) => setTimeout(r, 700));
    expect(s.isOpen).toBe(false);
    expect(lines.filter((l) => l.includes('unreachable'))).toHaveLength(1);
    const open = opened(s);
    await master.listen();
    await open;
  });

  test('a Set ends with CleanupSet reaching the responder: no transaction stays behind, nothing is answered to it', async () => {
    const responder = new Responder();
    const cleaned: string[] = [];
    responder.addWritable([...SUBTREE, 1], {
      test: () => ResponseError.NoError,
      commit: () => ResponseError.NoError,
      undo: () => ResponseError.NoError,
      cleanup: (oid) => { cleaned.push(oid.join('.')); },
    });
    session = new AgentxSession({
      address: master.address, description: 'set test', log: (level, msg) => lines.push(`${level}: ${msg}`),
    }, responder);
    const open = opened(session);
    session.start();
    const sessionId = await open;
    for (let t = 1; t <= 50; t++) {
      const ids = { flags: 0, sessionId, transactionId: t };
      const test = await master.request({
        type: PduType.TestSet, ...ids, packetId: 3 * t,
        varbinds: [{ oid: [...SUBTREE, 1, 0], type: ValueType.Integer, value: 1 }],
      });
      expect(test.error).toBe(ResponseError.NoError);
      const commit = await master.request({ type: PduType.CommitSet, ...ids, packetId: 3 * t + 1 });
      expect(commit.error).toBe(ResponseError.NoError);
      master.sendRaw(encodePdu({ type: PduType.CleanupSet, ...ids, packetId: 3 * t + 2 }));
    }
    await master.waitFor(() => (cleaned.length === 50 ? true : undefined));
    expect(responder.openTransactions).toBe(0);
    // Two Responses a transaction (TestSet, CommitSet), none to CleanupSet.
    await new Promise((r) => setTimeout(r, 100));
    expect(master.responses).toHaveLength(100);
    expect(lines.filter((l) => l.includes('not expected'))).toEqual([]);
  });

  test('a socket it may not open points at agentXPerms, a missing master at "master agentx"', async () => {
    for (const [code, hint] of [['EACCES', /agentXPerms sets its mode, owner and group/], ['ENOENT', /is snmpd running with "master agentx"\?/]] as const) {
      lines.length = 0;
      const s = newSession({
        connect: (address) => {
          // What net.connect() does for a unix socket it cannot open: 'error', then 'close'.
          const socket = new PassThrough() as PassThrough & { connecting: boolean };
          socket.connecting = true;
          setImmediate(() => {
            const err = Object.assign(new Error(`connect ${code} ${address.kind === 'unix' ? address.path : ''}`), { code });
            socket.emit('error', err);
            socket.destroy();
          });
          return socket;
        },
      });
      s.start();
      await master.waitFor(() => (lines.length > 0 ? true : undefined));
      await s.close();
      expect(lines[0]).toMatch(new RegExp(`unreachable \\(connect ${code} `));
      expect(lines[0]).toMatch(hint);
    }
    session = null;
  });
});
