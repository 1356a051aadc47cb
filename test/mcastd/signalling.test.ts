import * as dgram from 'node:dgram';
import * as os from 'node:os';
import { MessageKey } from '../../src/mcastd/auth';
import { RemoteError, RequestTimeoutError, SignallingEndpoint, type SignallingOptions } from '../../src/mcastd/signalling';
import { MessageType, decodeMessage, encodeMessage, senderIdFor, type Message, type RelayRequest } from '../../src/mcastd/wire';
import { pollUntil } from '../harness/poll';

const key = new MessageKey(Buffer.alloc(32, 3));
const otherKey = new MessageKey(Buffer.alloc(32, 4));
const VM = { uuid: '6a1f0c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b', name: 'web1' };
const RELAY_REQUEST: RelayRequest = { group: '239.1.2.3', subscriber: { address: '192.0.2.7', port: 4790 }, ttlSeconds: 60 };

interface LogLine {
  level: string;
  message: string;
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

async function endpoint(name: string, extra: Partial<SignallingOptions> = {}): Promise<{ ep: SignallingEndpoint; lines: LogLine[] }> {
  const lines: LogLine[] = [];
  const ep = await SignallingEndpoint.open({
    key,
    senderId: senderIdFor(name),
    port: 0,
    bindAddress6: '::1',
    bindAddress4: '127.0.0.1',
    log: (level, message) => lines.push({ level, message }),
    ...extra,
  });
  cleanup.push(() => ep.close());
  return { ep, lines };
}

/** A plain UDP socket standing in for an attacker, a captured-traffic replayer or a hand-written peer. */
async function rawSocket(type: 'udp4' | 'udp6' = 'udp4'): Promise<{ socket: dgram.Socket; received: Buffer[]; port: number; send: (d: Buffer, port: number) => Promise<void> }> {
  const socket = dgram.createSocket(type);
  const received: Buffer[] = [];
  socket.on('message', (datagram) => received.push(datagram));
  const address = type === 'udp4' ? '127.0.0.1' : '::1';
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  cleanup.push(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  const send = (datagram: Buffer, port: number): Promise<void> =>
    new Promise((resolve, reject) => socket.send(datagram, port, address, (err) => (err ? reject(err) : resolve())));
  return { socket, received, port: socket.address().port, send };
}

function captured(type: MessageType, body: Message['body'], overrides: Partial<Message> = {}): Buffer {
  return encodeMessage({ type, senderId: senderIdFor('host-a'), bootId: 77n, sequence: 1, timestamp: Date.now(), body, ...overrides } as Message, key);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const warnings = (lines: LogLine[]): string[] => lines.filter((l) => l.level === 'warn' || l.level === 'error').map((l) => l.message);

describe('request and reply', () => {
  it.each([
    ['IPv4', '127.0.0.1'],
    ['IPv6', '::1'],
  ])('over %s loopback, both families on one port', async (_family, address) => {
    const { ep: server } = await endpoint('server');
    const { ep: client } = await endpoint('client');
    const seen: string[] = [];
    server.onRequest(MessageType.RELAY_REQUEST, (body, from) => {
      seen.push(`${body.group} from ${from.address} ${from.senderId}`);
      return { group: body.group, accepted: true, ttlSeconds: 30 };
    });
    const reply = await client.request({ address, port: server.port }, MessageType.RELAY_REQUEST, RELAY_REQUEST);
    expect(reply.body).toEqual({ group: '239.1.2.3', accepted: true, ttlSeconds: 30 });
    expect(reply.from).toMatchObject({ address, port: server.port, senderId: senderIdFor('server').toString('hex') });
    expect(seen).toEqual([`239.1.2.3 from ${address} ${senderIdFor('client').toString('hex')}`]);
    expect(client.counters()).toMatchObject({ sent: 1, received: 1, retransmitted: 0 });
    expect(server.counters()).toMatchObject({ sent: 1, received: 1 });
  });

  it('turns a failing handler, a missing handler and an invalid reply into RemoteError', async () => {
    const { ep: server, lines } = await endpoint('server');
    const { ep: client } = await endpoint('client');
    const peer = { address: '127.0.0.1', port: server.port };
    server.onRequest(MessageType.START_MIGRATION, () => {
      throw new Error('no such VM');
    });
    server.onRequest(MessageType.RELAY_REQUEST, () => ({ group: 'not a group', accepted: true }));
    await expect(client.request(peer, MessageType.START_MIGRATION, { migrationId: 'm', vm: VM })).rejects.toThrow(RemoteError);
    await expect(client.request(peer, MessageType.START_MIGRATION, { migrationId: 'm', vm: VM })).rejects.toThrow(/answered: no such VM/);
    await expect(client.request(peer, MessageType.RELEASE, { migrationId: 'm', vm: VM, reason: 'aborted' })).rejects.toThrow(/RELEASE is not served by this agent/);
    await expect(client.request(peer, MessageType.RELAY_REQUEST, RELAY_REQUEST)).rejects.toThrow(/internal error answering RELAY_REQUEST/);
    expect(lines.some((l) => l.level === 'error' && /invalid RELAY_RESPONSE/.test(l.message))).toBe(true);
  });

  it('passes RELAY_DATA to its handler without a reply', async () => {
    const { ep: relay } = await endpoint('relay');
    const { ep: subscriber } = await endpoint('subscriber');
    const got: string[] = [];
    subscriber.onDatagram(MessageType.RELAY_DATA, (body) => got.push(`${body.group} ${body.port} ${body.payload.toString()}`));
    for (let i = 0; i < 3; i++) relay.sendDatagram({ address: '::1', port: subscriber.port }, MessageType.RELAY_DATA, { group: 'ff3e::1', port: 5001, payload: Buffer.from(`p${i}`) });
    await pollUntil('three datagrams', () => got.length, (n) => n === 3, 2000);
    expect(got).toEqual(['ff3e::1 5001 p0', 'ff3e::1 5001 p1', 'ff3e::1 5001 p2']);
    expect(relay.counters().received).toBe(0);
  });

  it('retransmits the same datagram with backoff and takes the reply to it', async () => {
    const { ep: client } = await endpoint('client');
    const peer = await rawSocket();
    // The peer ignores the first copy and answers the second, as if the first had been lost.
    peer.socket.on('message', (datagram, rinfo) => {
      if (peer.received.length !== 2) return;
      const request = decodeMessage(datagram);
      const reply = encodeMessage(
        {
          type: MessageType.ACK,
          senderId: senderIdFor('peer'),
          bootId: 1n,
          sequence: 1,
          timestamp: Date.now(),
          replyTo: { bootId: request.bootId, sequence: request.sequence },
          body: {},
        },
        key,
      );
      peer.socket.send(reply, rinfo.port, rinfo.address);
    });
    const t0 = Date.now();
    const reply = await client.request({ address: '127.0.0.1', port: peer.port }, MessageType.RELAY_STOP, { group: '239.1.2.3', subscriber: { address: '192.0.2.7', port: 1 } }, { timeoutMs: 50 });
    expect(reply.body).toEqual({});
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    expect(peer.received).toHaveLength(2);
    expect(peer.received[1]).toEqual(peer.received[0]);
    expect(client.counters()).toMatchObject({ sent: 2, retransmitted: 1, received: 1 });
  });

  it('rejects after the last retransmission, naming the message and the peer', async () => {
    const { ep: client } = await endpoint('client');
    const sink = await rawSocket();
    const t0 = Date.now();
    const attempt = client.request({ address: '127.0.0.1', port: sink.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' }, { timeoutMs: 25, retries: 2 });
    await expect(attempt).rejects.toThrow(RequestTimeoutError);
    await expect(attempt).rejects.toThrow(`no answer to AGENT_SEARCH (sequence 1) to 127.0.0.1:${sink.port} after 3 sends over 175 ms`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(170);
    expect(sink.received).toHaveLength(3);
    expect(client.counters()).toMatchObject({ sent: 3, retransmitted: 2, timedOut: 1 });
  });

  it('refuses a schedule whose last retransmission would be stale, and a link-local peer without scope', async () => {
    const { ep: client } = await endpoint('client');
    await expect(client.request({ address: '::1', port: 1 }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' }, { timeoutMs: 1000, retries: 5 })).rejects.toThrow(RangeError);
    await expect(client.request({ address: 'fe80::1', port: 1 }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' })).rejects.toThrow(/link-local: name the interface/);
  });

  it('ignores a reply from another address or port than the request went to', async () => {
    const { ep: client, lines } = await endpoint('client');
    const peer = await rawSocket();
    const impostor = await rawSocket();
    let sequence = 0;
    peer.socket.on('message', (datagram, rinfo) => {
      const request = decodeMessage(datagram);
      const reply = encodeMessage(
        { type: MessageType.ACK, senderId: senderIdFor('peer'), bootId: 1n, sequence: ++sequence, timestamp: Date.now(), replyTo: { bootId: request.bootId, sequence: request.sequence }, body: {} },
        key,
      );
      impostor.socket.send(reply, rinfo.port, rinfo.address);
    });
    await expect(client.request({ address: '127.0.0.1', port: peer.port }, MessageType.RELAY_STOP, { group: '239.1.2.3', subscriber: { address: '192.0.2.7', port: 1 } }, { timeoutMs: 30, retries: 1 })).rejects.toThrow(RequestTimeoutError);
    expect(client.counters().refused['unexpected-responder']).toBe(2);
    expect(warnings(lines)).toEqual([expect.stringMatching(/dropped ACK from .*: the request went to 127.0.0.1:\d+/)]);
  });

  it('rejects pending requests on close', async () => {
    const { ep: client } = await endpoint('client');
    const sink = await rawSocket();
    const attempt = client.request({ address: '127.0.0.1', port: sink.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' });
    await client.close();
    await expect(attempt).rejects.toThrow(/closed/);
  });
});

describe('retransmitted requests', () => {
  it('are answered from the kept reply; the handler runs once', async () => {
    const { ep: server, lines } = await endpoint('server');
    let calls = 0;
    server.onRequest(MessageType.RELAY_REQUEST, async (body) => {
      calls++;
      await sleep(100);
      return { group: body.group, accepted: true, ttlSeconds: calls };
    });
    const client = await rawSocket();
    const request = captured(MessageType.RELAY_REQUEST, RELAY_REQUEST);
    await client.send(request, server.port);
    await sleep(20);
    await client.send(request, server.port); // arrives while the handler runs: answered once it finishes
    await pollUntil('the first reply', () => client.received.length, (n) => n === 1, 2000);
    await client.send(request, server.port); // arrives after: answered from the kept reply
    await pollUntil('the second reply', () => client.received.length, (n) => n === 2, 2000);
    await sleep(50);
    expect(calls).toBe(1);
    expect(client.received).toHaveLength(2);
    const [first, second] = client.received.map(decodeMessage);
    for (const reply of [first, second]) {
      expect(reply).toMatchObject({ type: MessageType.RELAY_RESPONSE, replyTo: { bootId: 77n, sequence: 1 }, body: { group: '239.1.2.3', accepted: true, ttlSeconds: 1 } });
    }
    expect(second.sequence).toBeGreaterThan(first.sequence);
    expect(server.counters()).toMatchObject({ received: 1, answeredFromCache: 1 });
    expect(warnings(lines)).toEqual([]);
  });

  it('end to end: request() against a slow handler gets one answer and the handler runs once', async () => {
    const { ep: server } = await endpoint('server');
    const { ep: client } = await endpoint('client');
    let calls = 0;
    server.onRequest(MessageType.AGENT_REQUEST, async (body) => {
      calls++;
      await sleep(120);
      return { migrationId: body.migrationId, groups: [{ address: '239.1.2.3', via: 'direct' }] };
    });
    const agentRequest = { migrationId: 'm-7', vm: VM, nics: [{ mac: '52:54:00:12:34:56', bridge: 'br0', groups: [{ address: '239.1.2.3', family: 4 as const }] }] };
    const reply = await client.request({ address: '::1', port: server.port }, MessageType.AGENT_REQUEST, agentRequest, { timeoutMs: 20, retries: 4 });
    expect(reply.body).toEqual({ migrationId: 'm-7', groups: [{ address: '239.1.2.3', via: 'direct' }] });
    expect(calls).toBe(1);
    expect(client.counters().retransmitted).toBeGreaterThanOrEqual(2);
  });
});

describe('refused messages', () => {
  it('a message tagged with another key (spoofed): handler never runs, sender times out', async () => {
    const { ep: server, lines } = await endpoint('server');
    const { ep: mallory } = await endpoint('mallory', { key: otherKey });
    let calls = 0;
    server.onRequest(MessageType.AGENT_REQUEST, () => {
      calls++;
      return { migrationId: 'm', groups: [] };
    });
    const attempt = mallory.request({ address: '127.0.0.1', port: server.port }, MessageType.AGENT_REQUEST, { migrationId: 'm', vm: VM, nics: [] }, { timeoutMs: 20, retries: 1 });
    await expect(attempt).rejects.toThrow(RequestTimeoutError);
    expect(calls).toBe(0);
    expect(server.counters().refused['bad-tag']).toBe(2);
    expect(server.counters().received).toBe(0);
    expect(warnings(lines)).toEqual([expect.stringMatching(/^signalling: dropped AGENT_REQUEST from 127\.0\.0\.1:\d+: bad tag$/)]);
  });

  it('a captured request replayed from another source', async () => {
    const { ep: server, lines } = await endpoint('server');
    let calls = 0;
    server.onRequest(MessageType.RELAY_REQUEST, (body) => {
      calls++;
      return { group: body.group, accepted: true };
    });
    const victim = await rawSocket();
    const attacker = await rawSocket();
    const request = captured(MessageType.RELAY_REQUEST, RELAY_REQUEST);
    await victim.send(request, server.port);
    await pollUntil('the reply', () => victim.received.length, (n) => n === 1, 2000);
    await attacker.send(request, server.port);
    await pollUntil('the refusal', () => server.counters().refused.replay, (n) => n === 1, 2000);
    await sleep(30);
    expect(calls).toBe(1);
    expect(attacker.received).toHaveLength(0);
    expect(warnings(lines)).toEqual([expect.stringMatching(/dropped RELAY_REQUEST: replayed sequence 1 from .* \(from another source than the original\)/)]);
  });

  it('a captured request replayed after its kept reply is gone (the replay window backs the cache)', async () => {
    const { ep: server } = await endpoint('server', { replyCacheLimit: 1 });
    let calls = 0;
    server.onRequest(MessageType.RELAY_REQUEST, (body) => {
      calls++;
      return { group: body.group, accepted: true };
    });
    const client = await rawSocket();
    const first = captured(MessageType.RELAY_REQUEST, RELAY_REQUEST, { sequence: 1 });
    await client.send(first, server.port);
    await client.send(captured(MessageType.RELAY_REQUEST, RELAY_REQUEST, { sequence: 2 }), server.port);
    await pollUntil('two replies', () => client.received.length, (n) => n === 2, 2000);
    await client.send(first, server.port);
    await pollUntil('the refusal', () => server.counters().refused.replay, (n) => n === 1, 2000);
    expect(calls).toBe(2);
  });

  it('a captured RELAY_DATA datagram replayed', async () => {
    const { ep: subscriber, lines } = await endpoint('subscriber');
    let delivered = 0;
    subscriber.onDatagram(MessageType.RELAY_DATA, () => delivered++);
    const relay = await rawSocket();
    const datagram = captured(MessageType.RELAY_DATA, { group: '239.1.2.3', port: 5001, payload: Buffer.alloc(1450, 1) });
    await relay.send(datagram, subscriber.port);
    await relay.send(datagram, subscriber.port);
    await pollUntil('the refusal', () => subscriber.counters().refused.replay, (n) => n === 1, 2000);
    expect(delivered).toBe(1);
    expect(warnings(lines)).toEqual([expect.stringMatching(/replayed sequence 1 from [0-9a-f]{12} at 127\.0\.0\.1:\d+$/)]);
  });

  it.each([
    [-60_000, 'stale timestamp (skew -60.0 s)'],
    [40_000, 'stale timestamp (skew +40.0 s)'],
  ])('a message %d ms off our clock', async (offset, text) => {
    const { ep: server, lines } = await endpoint('server');
    let calls = 0;
    server.onRequest(MessageType.RELAY_REQUEST, (body) => {
      calls++;
      return { group: body.group, accepted: true };
    });
    server.onDatagram(MessageType.RELAY_DATA, () => calls++);
    const sender = await rawSocket();
    const now = Date.now();
    await sender.send(captured(MessageType.RELAY_REQUEST, RELAY_REQUEST, { timestamp: now + offset }), server.port);
    await sender.send(captured(MessageType.RELAY_DATA, { group: '239.1.2.3', port: 1, payload: Buffer.alloc(1) }, { sequence: 2, timestamp: now + offset }), server.port);
    await pollUntil('two refusals', () => server.counters().refused.stale, (n) => n === 2, 2000);
    expect(calls).toBe(0);
    expect(sender.received).toHaveLength(0);
    expect(warnings(lines)[0]).toContain(text);
  });

  it('a flood of bad datagrams costs a bounded number of log lines', async () => {
    let now = 1_700_000_000_000;
    const { ep: server, lines } = await endpoint('server', { clock: () => now, logIntervalMs: 60_000 });
    const flooder = await rawSocket();
    const garbage = Buffer.from('not a vmm-mcastd message');
    const forged = encodeMessage({ type: MessageType.AGENT_SEARCH, senderId: senderIdFor('x'), bootId: 1n, sequence: 1, timestamp: now, body: { mac: '52:54:00:12:34:56' } }, otherKey);
    // In batches, so the socket's receive buffer does not overflow and every datagram is counted.
    for (let batch = 1; batch <= 10; batch++) {
      for (let i = 0; i < 50; i++) {
        await flooder.send(garbage, server.port);
        await flooder.send(forged, server.port);
      }
      await pollUntil(`${batch * 100} refusals`, () => server.counters().refused, (r) => r.malformed + r['bad-tag'] === batch * 100, 5000, 5);
    }
    expect(server.counters().refused).toMatchObject({ malformed: 500, 'bad-tag': 500 });
    expect(warnings(lines)).toHaveLength(2);
    now += 60_000;
    await flooder.send(garbage, server.port);
    await pollUntil('the next line', () => warnings(lines).length, (n) => n === 3, 2000);
    expect(warnings(lines)[2]).toMatch(/truncated: 24 bytes.*\(and 499 more like it in the last 60 s\)$/);
  });
});

// Link-local and multicast need an interface other than lo (lo does not do multicast).
const linkLocal = Object.entries(os.networkInterfaces())
  .flatMap(([name, addresses]) => (addresses ?? []).map((a) => ({ name, ...a })))
  .find((a) => a.family === 'IPv6' && a.address.startsWith('fe80:') && a.name !== 'lo');
const withLinkLocal = linkLocal ? describe : describe.skip;

withLinkLocal('on a link (needs an interface with an IPv6 link-local address)', () => {
  const iface = linkLocal?.name ?? '';
  const scoped = `${linkLocal?.address ?? ''}%${iface}`;
  const onLink = { bindAddress6: '::', bindAddress4: null };

  it('reaches a link-local peer by address and scope', async () => {
    const { ep: server } = await endpoint('server', onLink);
    const { ep: client } = await endpoint('client', onLink);
    server.onRequest(MessageType.START_MIGRATION, () => ({}));
    const reply = await client.request({ address: scoped, port: server.port }, MessageType.START_MIGRATION, { migrationId: 'm', vm: VM });
    expect(reply.from.address).toBe(scoped);
  });

  it('finds an agent with AGENT_SEARCH to all nodes and to a joined group; only the host of the VM answers', async () => {
    const { ep: server } = await endpoint('server', onLink);
    const { ep: client, lines } = await endpoint('client', onLink);
    server.onRequest(MessageType.AGENT_SEARCH, (body) => (body.mac === '52:54:00:12:34:56' ? { agent: 'server', mac: body.mac, vm: VM } : undefined));
    const allNodes = await client.request({ address: `ff02::1%${iface}`, port: server.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' });
    expect(allNodes.body).toEqual({ agent: 'server', mac: '52:54:00:12:34:56', vm: VM });
    expect(allNodes.from.address).toMatch(/^fe80:.*%/);
    server.joinSearchGroup('ff02::4d43', iface);
    const joined = await client.request({ address: `ff02::4d43%${iface}`, port: server.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' });
    expect(joined.from.senderId).toBe(senderIdFor('server').toString('hex'));
    await expect(client.request({ address: `ff02::1%${iface}`, port: server.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:00:00:99' }, { timeoutMs: 20, retries: 1 })).rejects.toThrow(RequestTimeoutError);
    expect(warnings(lines)).toEqual([]);
  });

  it('ignores its own search coming back through multicast loopback', async () => {
    const { ep: agent, lines } = await endpoint('agent', onLink);
    let calls = 0;
    agent.onRequest(MessageType.AGENT_SEARCH, (body) => {
      calls++;
      return { agent: 'agent', mac: body.mac };
    });
    const search = agent.request({ address: `ff02::1%${iface}`, port: agent.port }, MessageType.AGENT_SEARCH, { mac: '52:54:00:12:34:56' }, { timeoutMs: 20, retries: 1 });
    await expect(search).rejects.toThrow(RequestTimeoutError);
    expect(calls).toBe(0);
    expect(agent.counters()).toMatchObject({ received: 0, refused: expect.objectContaining({ replay: 0, 'no-handler': 0 }) });
    expect(warnings(lines)).toEqual([]);
  });
});
