import { createHash, createHmac } from 'node:crypto';
import { MessageKey } from '../../src/mcastd/auth';
import {
  HEADER_LENGTH,
  MAX_JSON_BODY,
  MessageType,
  TAG_LENGTH,
  WireError,
  canonicalAddress,
  decodeMessage,
  encodeMessage,
  isMulticastAddress,
  readFrame,
  senderIdFor,
  type BodyByType,
  type Message,
} from '../../src/mcastd/wire';

const SECRET = Buffer.alloc(32, 7);
const key = new MessageKey(SECRET);
const SENDER = senderIdFor('host-a');
const VM = { uuid: '6a1f0c1e-2b3d-4e5f-8a9b-0c1d2e3f4a5b', name: 'web1' };

// Written out field by field, independently of encodeMessage: the oracle for what the bytes must be.
function rawFrame(parts: {
  magic?: string;
  version?: number;
  type: number;
  flags?: number;
  reserved?: number;
  sequence?: number;
  timestamp?: bigint;
  replyBoot?: bigint;
  replySequence?: number;
  body: Buffer | string;
  bodyLength?: number;
  tagSecret?: Buffer;
}): Buffer {
  const body = typeof parts.body === 'string' ? Buffer.from(parts.body, 'utf8') : parts.body;
  const header = Buffer.alloc(58);
  header.write(parts.magic ?? 'VMMC', 0, 'ascii');
  header[4] = parts.version ?? 1;
  header[5] = parts.type;
  header[6] = parts.flags ?? 0;
  header[7] = parts.reserved ?? 0;
  SENDER.copy(header, 8);
  header.writeBigUInt64BE(0x0123456789abcdefn, 24);
  header.writeUInt32BE(parts.sequence ?? 1, 32);
  header.writeBigUInt64BE(parts.timestamp ?? 1_700_000_000_000n, 36);
  header.writeBigUInt64BE(parts.replyBoot ?? 0n, 44);
  header.writeUInt32BE(parts.replySequence ?? 0, 52);
  header.writeUInt16BE(parts.bodyLength ?? body.length, 56);
  const signed = Buffer.concat([header, body]);
  return Buffer.concat([signed, createHmac('sha256', parts.tagSecret ?? SECRET).update(signed).digest()]);
}

function envelope(sequence = 1): Pick<Message, 'senderId' | 'bootId' | 'sequence' | 'timestamp'> {
  return { senderId: SENDER, bootId: 0x0123456789abcdefn, sequence, timestamp: 1_700_000_000_000 };
}
const replyTo = { bootId: 42n, sequence: 9 };

const samples: { [T in MessageType]: BodyByType[T] } = {
  [MessageType.AGENT_SEARCH]: { mac: '52:54:00:12:34:56' },
  [MessageType.AGENT_SEARCH_REPLY]: { agent: 'host-a', mac: '52:54:00:12:34:56', vm: VM },
  [MessageType.MIGRATION_REQUEST]: {
    migrationId: 'm-1',
    vm: VM,
    destination: { address: 'fe80::1%eth0', port: 4790 },
    destinationUri: 'qemu+ssh://host-b/system',
  },
  [MessageType.MIGRATION_RESPONSE]: {
    migrationId: 'm-1',
    accepted: true,
    groups: [{ address: 'ff3e::8000:1', via: 'relay', relay: { address: '2001:db8::10', port: 4790 } }],
  },
  [MessageType.AGENT_REQUEST]: {
    migrationId: 'm-1',
    vm: VM,
    nics: [
      {
        mac: '52:54:00:12:34:56',
        bridge: 'br0',
        groups: [
          { address: 'ff3e::8000:1', family: 6 },
          { address: '239.1.2.3', family: 4 },
        ],
      },
    ],
  },
  [MessageType.AGENT_RESPONSE]: {
    migrationId: 'm-1',
    groups: [
      { address: 'ff3e::8000:1', via: 'direct' },
      { address: '239.1.2.3', via: 'none', reason: 'relay refused' },
    ],
  },
  [MessageType.START_MIGRATION]: { migrationId: 'm-1', vm: VM },
  [MessageType.RELAY_REQUEST]: { group: '239.1.2.3', subscriber: { address: '192.0.2.7', port: 4790 }, ttlSeconds: 60 },
  [MessageType.RELAY_RESPONSE]: { group: '239.1.2.3', accepted: true, ttlSeconds: 60 },
  [MessageType.RELEASE]: { migrationId: 'm-1', vm: VM, reason: 'migration aborted' },
  [MessageType.RELAY_STOP]: { group: 'ff3e::8000:1', subscriber: { address: '2001:db8::7', port: 4790 } },
  [MessageType.ACK]: {},
  [MessageType.ERROR]: { error: 'no such VM' },
  [MessageType.RELAY_DATA]: { group: 'ff3e::8000:1', port: 5001, payload: Buffer.from([0, 1, 2, 253, 254, 255]) },
};
const REPLIES = new Set<number>([
  MessageType.AGENT_SEARCH_REPLY,
  MessageType.MIGRATION_RESPONSE,
  MessageType.AGENT_RESPONSE,
  MessageType.RELAY_RESPONSE,
  MessageType.ACK,
  MessageType.ERROR,
]);

describe('round trip', () => {
  it.each(Object.entries(MessageType))('%s', (_name, type) => {
    const message = { ...envelope(), type, body: samples[type], ...(REPLIES.has(type) ? { replyTo } : {}) } as Message;
    const datagram = encodeMessage(message, key);
    expect(decodeMessage(datagram)).toEqual(message);
    expect(datagram[6]).toBe(REPLIES.has(type) ? 1 : 0);
  });

  it('lays the header out as documented and tags everything before the tag', () => {
    const body = samples[MessageType.AGENT_SEARCH];
    const datagram = encodeMessage({ ...envelope(77), type: MessageType.AGENT_SEARCH, body }, key);
    expect(datagram).toEqual(rawFrame({ type: 1, sequence: 77, body: JSON.stringify(body) }));
    expect(HEADER_LENGTH + TAG_LENGTH).toBe(90);
  });

  it('RELAY_DATA carries family, port, group bytes and the payload as is', () => {
    const body = { group: '239.1.2.3', port: 5001, payload: Buffer.from('stream') };
    const datagram = encodeMessage({ ...envelope(), type: MessageType.RELAY_DATA, body }, key);
    const bodyBytes = datagram.subarray(HEADER_LENGTH, datagram.length - TAG_LENGTH);
    expect([...bodyBytes.subarray(0, 8)]).toEqual([4, 0, 0x13, 0x89, 239, 1, 2, 3]);
    expect(bodyBytes.subarray(8).toString()).toBe('stream');
    const v6 = encodeMessage({ ...envelope(), type: MessageType.RELAY_DATA, body: { group: 'ff02::1:3', port: 1, payload: Buffer.alloc(0) } }, key);
    expect(v6.subarray(HEADER_LENGTH + 4, HEADER_LENGTH + 20).toString('hex')).toBe('ff020000000000000000000000010003');
    expect(decodeMessage(v6).body).toEqual({ group: 'ff02::1:3', port: 1, payload: Buffer.alloc(0) });
  });

  it('normalises addresses, MACs and UUIDs and ignores fields it does not know', () => {
    const body = {
      group: 'FF3E:0:0::8000:1',
      subscriber: { address: 'FE80::0:1%eth0', port: 1 },
      later: 'a field from a newer minor revision',
    };
    const decoded = decodeMessage(rawFrame({ type: MessageType.RELAY_REQUEST, body: JSON.stringify(body) }));
    expect(decoded.body).toEqual({ group: 'ff3e::8000:1', subscriber: { address: 'fe80::1%eth0', port: 1 } });
    const search = decodeMessage(rawFrame({ type: MessageType.AGENT_SEARCH, body: '{"mac":"52:54:00:AB:CD:EF"}' }));
    expect(search.body).toEqual({ mac: '52:54:00:ab:cd:ef' });
  });
});

describe('decode refuses', () => {
  const okBody = JSON.stringify(samples[MessageType.AGENT_SEARCH]);
  const ok = rawFrame({ type: MessageType.AGENT_SEARCH, body: okBody });

  it('accepts the unmodified frame (so the cases below fail for their own reason)', () => {
    expect(decodeMessage(ok).body).toEqual(samples[MessageType.AGENT_SEARCH]);
  });

  it.each<[string, Buffer, RegExp]>([
    ['an empty datagram', Buffer.alloc(0), /truncated: 0 bytes/],
    ['a datagram shorter than header and tag', ok.subarray(0, 89), /truncated: 89 bytes/],
    ['a body cut short', ok.subarray(0, ok.length - 1), /truncated: header announces/],
    ['bytes after the tag', Buffer.concat([ok, Buffer.from([0])]), /1 bytes after the tag/],
    ['another magic', rawFrame({ magic: 'VMMX', type: 1, body: okBody }), /bad magic/],
    ['version 2', rawFrame({ version: 2, type: 1, body: okBody }), /unsupported version 2/],
    ['version 0', rawFrame({ version: 0, type: 1, body: okBody }), /unsupported version 0/],
    ['an unknown type', rawFrame({ type: 99, body: okBody }), /unknown message type 99/],
    ['type 0', rawFrame({ type: 0, body: okBody }), /unknown message type 0/],
    ['an unknown flag', rawFrame({ type: 1, flags: 0x80, body: okBody }), /unknown flags 0x80/],
    ['a request with the response flag', rawFrame({ type: 1, flags: 1, replySequence: 3, body: okBody }), /AGENT_SEARCH with the response flag set/],
    ['a reply without the response flag', rawFrame({ type: MessageType.ACK, body: '{}' }), /ACK with the response flag clear/],
    ['a reply that answers nothing', rawFrame({ type: MessageType.ACK, flags: 1, body: '{}' }), /ACK without the sequence number it answers/],
    ['a request with a reply-to field', rawFrame({ type: 1, replySequence: 5, body: okBody }), /carries a reply-to field/],
    ['a non-zero reserved byte', rawFrame({ type: 1, reserved: 1, body: okBody }), /reserved header byte/],
    ['sequence number 0', rawFrame({ type: 1, sequence: 0, body: okBody }), /sequence number 0/],
    ['a timestamp beyond 2^53', rawFrame({ type: 1, timestamp: 1n << 60n, body: okBody }), /timestamp .* out of range/],
    ['a body length over 8 KiB', rawFrame({ type: 1, body: okBody, bodyLength: MAX_JSON_BODY + 1 }), /body of 8193 bytes exceeds 8192/],
    ['a body that is not JSON', rawFrame({ type: 1, body: '{"mac":' }), /AGENT_SEARCH body: not UTF-8 JSON/],
    ['a body that is not UTF-8', rawFrame({ type: 1, body: Buffer.from([0x7b, 0xff, 0x7d]) }), /not UTF-8 JSON/],
    ['a JSON array', rawFrame({ type: 1, body: '[1]' }), /body must be a JSON object/],
    ['a JSON string', rawFrame({ type: 1, body: '"x"' }), /body must be a JSON object/],
    ['JSON null', rawFrame({ type: 1, body: 'null' }), /body must be a JSON object/],
    ['a missing field', rawFrame({ type: 1, body: '{}' }), /AGENT_SEARCH body: mac must be a string/],
    ['a number for a string', rawFrame({ type: 1, body: '{"mac":5}' }), /mac must be a string/],
    ['a malformed MAC', rawFrame({ type: 1, body: '{"mac":"52:54:00"}' }), /mac must be a MAC address/],
  ])('%s', (_what, datagram, message) => {
    expect(() => decodeMessage(datagram)).toThrow(WireError);
    expect(() => decodeMessage(datagram)).toThrow(message);
  });

  const agentRequest = (patch: (body: Record<string, unknown>) => void): Buffer => {
    const body = JSON.parse(JSON.stringify(samples[MessageType.AGENT_REQUEST])) as Record<string, unknown>;
    patch(body);
    return rawFrame({ type: MessageType.AGENT_REQUEST, body: JSON.stringify(body) });
  };
  type Nic = { groups: Array<Record<string, unknown>> } & Record<string, unknown>;
  const nic0 = (body: Record<string, unknown>): Nic => (body.nics as Nic[])[0];

  it.each<[string, Buffer, RegExp]>([
    ['a bad UUID', agentRequest((b) => ((b.vm as Record<string, unknown>).uuid = 'not-a-uuid')), /AGENT_REQUEST body: vm.uuid must be a UUID/],
    ['nics not an array', agentRequest((b) => (b.nics = {})), /nics must be an array/],
    ['a group family of 5', agentRequest((b) => (nic0(b).groups[0].family = 5)), /nics\[0\].groups\[0\].family must be 4 or 6/],
    ['a family that disagrees with the address', agentRequest((b) => (nic0(b).groups[1].family = 6)), /groups\[1\].family is 6 but the address is IPv4/],
    ['a unicast group', agentRequest((b) => (nic0(b).groups[1].address = '192.0.2.1')), /groups\[1\].address must be a multicast group address/],
    ['a scoped group', agentRequest((b) => (nic0(b).groups[0].address = 'ff02::1%eth0')), /must be a multicast group address/],
    ['a bridge name too long for Linux', agentRequest((b) => (nic0(b).bridge = 'a-very-long-bridge-name')), /bridge must be at most 15 characters/],
    ['an empty migration id', agentRequest((b) => (b.migrationId = '')), /migrationId must not be empty/],
  ])('AGENT_REQUEST with %s', (_what, datagram, message) => {
    expect(() => decodeMessage(datagram)).toThrow(message);
  });

  it.each<[string, number, unknown, RegExp]>([
    ['a port out of range', MessageType.RELAY_REQUEST, { group: '239.1.1.1', subscriber: { address: '192.0.2.1', port: 70000 } }, /subscriber.port must be between 1 and 65535/],
    ['a fractional port', MessageType.RELAY_REQUEST, { group: '239.1.1.1', subscriber: { address: '192.0.2.1', port: 1.5 } }, /subscriber.port must be an integer/],
    ['a host name as subscriber', MessageType.RELAY_REQUEST, { group: '239.1.1.1', subscriber: { address: 'relay.example', port: 1 } }, /subscriber.address must be an IP address/],
    ['a zero lease', MessageType.RELAY_REQUEST, { group: '239.1.1.1', subscriber: { address: '192.0.2.1', port: 1 }, ttlSeconds: 0 }, /ttlSeconds must be between/],
    ['accepted as a string', MessageType.RELAY_RESPONSE, { group: '239.1.1.1', accepted: 'yes' }, /accepted must be true or false/],
    ['an unknown delivery', MessageType.AGENT_RESPONSE, { migrationId: 'm', groups: [{ address: '239.1.1.1', via: 'carrier pigeon' }] }, /groups\[0\].via must be/],
    ['a relay delivery without the relay', MessageType.AGENT_RESPONSE, { migrationId: 'm', groups: [{ address: '239.1.1.1', via: 'relay' }] }, /groups\[0\].relay must be given/],
    ['a release without a reason', MessageType.RELEASE, { migrationId: 'm', vm: VM }, /RELEASE body: reason must be a string/],
  ])('%s', (_what, type, body, message) => {
    const flags = REPLIES.has(type) ? 1 : 0;
    expect(() => decodeMessage(rawFrame({ type, flags, replySequence: flags, body: JSON.stringify(body) }))).toThrow(message);
  });

  const relayData = (bytes: number[]): Buffer => rawFrame({ type: MessageType.RELAY_DATA, body: Buffer.from(bytes) });
  it.each<[string, Buffer, RegExp]>([
    ['a body shorter than its fixed part', relayData([4, 0, 1]), /RELAY_DATA body: truncated: 3 bytes/],
    ['family 5', relayData([5, 0, 0, 1, 239, 1, 1, 1]), /family 5 is neither 4 nor 6/],
    ['port 0', relayData([4, 0, 0, 0, 239, 1, 1, 1]), /port is 0/],
    ['an IPv6 group cut short', relayData([6, 0, 0, 1, 0xff, 2]), /the group address needs 20/],
    ['a unicast group', relayData([4, 0, 0, 1, 10, 0, 0, 1]), /group 10.0.0.1 is not a multicast address/],
    ['a non-zero reserved byte', relayData([4, 1, 0, 1, 239, 1, 1, 1]), /reserved byte/],
  ])('RELAY_DATA with %s', (_what, datagram, message) => {
    expect(() => decodeMessage(datagram)).toThrow(message);
  });

  it('a RELAY_DATA payload over the limit', () => {
    expect(() => decodeMessage(relayData([4, 0, 0, 1, 239, 1, 1, 1, ...Buffer.alloc(9001)]))).toThrow(/exceeds/);
  });
});

describe('encode refuses', () => {
  it('a body its receiver would refuse', () => {
    const body = { mac: 'nope' };
    expect(() => encodeMessage({ ...envelope(), type: MessageType.AGENT_SEARCH, body }, key)).toThrow(/AGENT_SEARCH body: mac must be a MAC address/);
  });

  it('a JSON body over 8 KiB', () => {
    const groups = Array.from({ length: 250 }, (_, i) => ({ address: `ff3e::8000:${i.toString(16)}`, family: 6 as const }));
    const body = { migrationId: 'm', vm: VM, nics: [{ mac: '52:54:00:00:00:01', bridge: 'br0', groups }] };
    expect(() => encodeMessage({ ...envelope(), type: MessageType.AGENT_REQUEST, body }, key)).toThrow(/exceeds 8192/);
  });

  it('a reply without reply-to and a request with one', () => {
    expect(() => encodeMessage({ ...envelope(), type: MessageType.ACK, body: {} }, key)).toThrow(/ACK needs a reply-to field/);
    expect(() => encodeMessage({ ...envelope(), type: MessageType.AGENT_SEARCH, body: samples[1], replyTo }, key)).toThrow(/must not have a reply-to/);
  });

  it('sequence 0 and an out-of-range boot id', () => {
    expect(() => encodeMessage({ ...envelope(0), type: MessageType.AGENT_SEARCH, body: samples[1] }, key)).toThrow(/sequence 0 out of range/);
    expect(() => encodeMessage({ ...envelope(), bootId: 1n << 64n, type: MessageType.AGENT_SEARCH, body: samples[1] }, key)).toThrow(/boot id/);
  });

  it('an oversized or unicast RELAY_DATA', () => {
    const big = { group: '239.1.1.1', port: 1, payload: Buffer.alloc(9001) };
    expect(() => encodeMessage({ ...envelope(), type: MessageType.RELAY_DATA, body: big }, key)).toThrow(/9001 bytes exceeds 9000/);
    const unicast = { group: '10.1.1.1', port: 1, payload: Buffer.alloc(1) };
    expect(() => encodeMessage({ ...envelope(), type: MessageType.RELAY_DATA, body: unicast }, key)).toThrow(/not a multicast group/);
  });
});

describe('readFrame', () => {
  it('hands the signed part and the tag to the caller without checking the tag', () => {
    const datagram = rawFrame({ type: 1, body: '{"mac":"52:54:00:12:34:56"}', tagSecret: Buffer.alloc(32, 9) });
    const frame = readFrame(datagram);
    expect(frame.signed).toEqual(datagram.subarray(0, datagram.length - 32));
    expect(key.verify(frame.signed, frame.tag)).toBe(false);
    expect(new MessageKey(Buffer.alloc(32, 9)).verify(frame.signed, frame.tag)).toBe(true);
  });
});

describe('addresses and ids', () => {
  it.each<[string, string | undefined]>([
    ['FF02:0:0::1', 'ff02::1'],
    ['fe80::0001%eth0', 'fe80::1%eth0'],
    ['192.0.2.1', '192.0.2.1'],
    ['192.0.2.1%eth0', undefined],
    ['fe80::1%bad scope', undefined],
    ['host.example', undefined],
  ])('canonicalAddress(%j) = %j', (text, canonical) => {
    expect(canonicalAddress(text)).toBe(canonical);
  });

  it.each<[string, boolean]>([
    ['239.255.0.1', true],
    ['224.0.0.1', true],
    ['240.0.0.1', false],
    ['ff02::1%eth0', true],
    ['fe80::1', false],
  ])('isMulticastAddress(%j) = %j', (address, multicast) => {
    expect(isMulticastAddress(address)).toBe(multicast);
  });

  it('the sender id is the first 16 bytes of SHA-256 of the agent name', () => {
    expect(senderIdFor('host-a')).toEqual(createHash('sha256').update('host-a').digest().subarray(0, 16));
    expect(senderIdFor('host-a')).not.toEqual(senderIdFor('host-b'));
  });
});
