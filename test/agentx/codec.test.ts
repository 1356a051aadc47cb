// Byte-level tests of the AgentX codec against the independent PduBuilder and
// against bytes captured from Net-SNMP 5.9.3 snmpd (Debian 12).
import {
  decodeHeader,
  decodePdu,
  describePdu,
  encodePdu,
  PduDecodeError,
  PduEncodeError,
  pduTypeName,
} from '../../agentx/codec';
import { CloseReason, PduType, ResponseError, ValueType, type Pdu, type RemoveAgentCapsPdu, type VarBind } from '../../agentx/pdu';
import { PduBuilder, type ByteOrder } from './pdu-builder';

const IDS = { sessionId: 0x01020304, transactionId: 0x0a0b0c0d, packetId: 0x11223344 };
const NBO = 0x10;

interface Case {
  name: string;
  bytes: Buffer;
  pdu: Pdu;
}

/** Header fields as the decoder reports them: flags include the byte-order bit. */
function hdr(order: ByteOrder, flags = 0): { flags: number; sessionId: number; transactionId: number; packetId: number } {
  return { flags: flags | (order === 'be' ? NBO : 0), ...IDS };
}

function pduCases(order: ByteOrder): Case[] {
  const b = (): PduBuilder => new PduBuilder(order);
  const h = (flags = 0): ReturnType<typeof hdr> => hdr(order, flags);
  return [
    {
      name: 'Open',
      bytes: b().addUInt8(5).addZeros(3).addOid([1, 8072, 3, 2, 10], { prefix: 4 }).addOctets('vmm-agentx').build({ type: 1, ...IDS }),
      pdu: { type: PduType.Open, ...h(), timeout: 5, id: [1, 3, 6, 1, 4, 1, 8072, 3, 2, 10], description: Buffer.from('vmm-agentx') },
    },
    {
      name: 'Close',
      bytes: b().addUInt8(5).addZeros(3).build({ type: 2, ...IDS }),
      pdu: { type: PduType.Close, ...h(), reason: CloseReason.Shutdown },
    },
    {
      name: 'Register',
      bytes: b().addUInt8(0).addUInt8(127).addUInt8(0).addZeros(1).addOid([1, 236], { prefix: 2 }).build({ type: 3, ...IDS }),
      pdu: { type: PduType.Register, ...h(), timeout: 0, priority: 127, rangeSubid: 0, subtree: [1, 3, 6, 1, 2, 1, 236] },
    },
    {
      // RFC 2741 §6.2.3 example: 1.3.6.1.2.1.2.2.1.[1-22].7, range at sub-id 10.
      name: 'Register with context, INSTANCE_REGISTRATION, range_subid and upper_bound',
      bytes: b().addOctets('ctx').addUInt8(30).addUInt8(200).addUInt8(10).addZeros(1)
        .addOid([1, 2, 2, 1, 1, 7], { prefix: 2 }).addUInt32(22).build({ type: 3, flags: 0x09, ...IDS }),
      pdu: {
        type: PduType.Register, ...h(0x09), context: Buffer.from('ctx'), timeout: 30, priority: 200,
        rangeSubid: 10, subtree: [1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 7], upperBound: 22,
      },
    },
    {
      name: 'Unregister',
      bytes: b().addZeros(1).addUInt8(127).addUInt8(0).addZeros(1).addOid([1, 236], { prefix: 2 }).build({ type: 4, ...IDS }),
      pdu: { type: PduType.Unregister, ...h(), priority: 127, rangeSubid: 0, subtree: [1, 3, 6, 1, 2, 1, 236] },
    },
    {
      name: 'Unregister with range',
      bytes: b().addZeros(1).addUInt8(1).addUInt8(10).addZeros(1).addOid([1, 2, 2, 1, 1, 7], { prefix: 2 }).addUInt32(22)
        .build({ type: 4, ...IDS }),
      pdu: { type: PduType.Unregister, ...h(), priority: 1, rangeSubid: 10, subtree: [1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 7], upperBound: 22 },
    },
    {
      name: 'Get with two ranges',
      bytes: b().addOid([1, 1, 1, 0], { prefix: 2 }).addOid([]).addOid([1, 1, 5, 0], { prefix: 2 }).addOid([]).build({ type: 5, ...IDS }),
      pdu: {
        type: PduType.Get, ...h(),
        ranges: [
          { start: [1, 3, 6, 1, 2, 1, 1, 1, 0], include: false, end: [] },
          { start: [1, 3, 6, 1, 2, 1, 1, 5, 0], include: false, end: [] },
        ],
      },
    },
    {
      name: 'Get with no ranges',
      bytes: b().build({ type: 5, ...IDS }),
      pdu: { type: PduType.Get, ...h(), ranges: [] },
    },
    {
      name: 'GetNext with include',
      bytes: b().addOid([1, 236, 1], { prefix: 2, include: true }).addOid([1, 237], { prefix: 2 }).build({ type: 6, ...IDS }),
      pdu: { type: PduType.GetNext, ...h(), ranges: [{ start: [1, 3, 6, 1, 2, 1, 236, 1], include: true, end: [1, 3, 6, 1, 2, 1, 237] }] },
    },
    {
      name: 'GetBulk',
      bytes: b().addUInt16(1).addUInt16(10).addOid([1, 1, 3], { prefix: 2 }).addOid([]).addOid([1, 2, 2, 1, 2], { prefix: 2 })
        .addOid([1, 2, 2, 1, 3], { prefix: 2 }).build({ type: 7, ...IDS }),
      pdu: {
        type: PduType.GetBulk, ...h(), nonRepeaters: 1, maxRepetitions: 10,
        ranges: [
          { start: [1, 3, 6, 1, 2, 1, 1, 3], include: false, end: [] },
          { start: [1, 3, 6, 1, 2, 1, 2, 2, 1, 2], include: false, end: [1, 3, 6, 1, 2, 1, 2, 2, 1, 3] },
        ],
      },
    },
    {
      name: 'TestSet',
      bytes: b().addVarBindHead(2).addOid([9999, 3, 0], { prefix: 3 }).addInt32(7).build({ type: 8, ...IDS }),
      pdu: { type: PduType.TestSet, ...h(), varbinds: [{ oid: [1, 3, 6, 1, 3, 9999, 3, 0], type: ValueType.Integer, value: 7 }] },
    },
    { name: 'CommitSet', bytes: b().build({ type: 9, ...IDS }), pdu: { type: PduType.CommitSet, ...h() } },
    { name: 'UndoSet', bytes: b().build({ type: 10, ...IDS }), pdu: { type: PduType.UndoSet, ...h() } },
    { name: 'CleanupSet', bytes: b().build({ type: 11, ...IDS }), pdu: { type: PduType.CleanupSet, ...h() } },
    {
      name: 'Notify',
      bytes: b().addVarBindHead(67).addOid([1, 1, 3, 0], { prefix: 2 }).addUInt32(4711)
        .addVarBindHead(6).addOid([1, 1, 4, 1, 0], { prefix: 6 }).addOid([1, 236, 0, 1], { prefix: 2 })
        .build({ type: 12, ...IDS }),
      pdu: {
        type: PduType.Notify, ...h(),
        varbinds: [
          { oid: [1, 3, 6, 1, 2, 1, 1, 3, 0], type: ValueType.TimeTicks, value: 4711 },
          { oid: [1, 3, 6, 1, 6, 1, 1, 4, 1, 0], type: ValueType.ObjectIdentifier, value: [1, 3, 6, 1, 2, 1, 236, 0, 1] },
        ],
      },
    },
    { name: 'Ping', bytes: b().build({ type: 13, ...IDS }), pdu: { type: PduType.Ping, ...h() } },
    {
      name: 'Ping with context',
      bytes: b().addOctets('vrf-blue').build({ type: 13, flags: 0x08, ...IDS }),
      pdu: { type: PduType.Ping, ...h(0x08), context: Buffer.from('vrf-blue') },
    },
    {
      name: 'IndexAllocate with NEW_INDEX',
      bytes: b().addVarBindHead(2).addOid([1, 236, 9, 1], { prefix: 2 }).addInt32(0).build({ type: 14, flags: 0x02, ...IDS }),
      pdu: { type: PduType.IndexAllocate, ...h(0x02), varbinds: [{ oid: [1, 3, 6, 1, 2, 1, 236, 9, 1], type: ValueType.Integer, value: 0 }] },
    },
    {
      name: 'IndexDeallocate',
      bytes: b().addVarBindHead(2).addOid([1, 236, 9, 1], { prefix: 2 }).addInt32(3).build({ type: 15, ...IDS }),
      pdu: { type: PduType.IndexDeallocate, ...h(), varbinds: [{ oid: [1, 3, 6, 1, 2, 1, 236, 9, 1], type: ValueType.Integer, value: 3 }] },
    },
    {
      name: 'AddAgentCaps',
      bytes: b().addOid([1, 236, 2, 1], { prefix: 2 }).addOctets('VM-MIB compliance').build({ type: 16, ...IDS }),
      pdu: { type: PduType.AddAgentCaps, ...h(), id: [1, 3, 6, 1, 2, 1, 236, 2, 1], description: Buffer.from('VM-MIB compliance') },
    },
    {
      name: 'RemoveAgentCaps',
      bytes: b().addOid([1, 236, 2, 1], { prefix: 2 }).build({ type: 17, ...IDS }),
      pdu: { type: PduType.RemoveAgentCaps, ...h(), id: [1, 3, 6, 1, 2, 1, 236, 2, 1] },
    },
    {
      name: 'Response with error and no varbinds',
      bytes: b().addUInt32(1).addUInt16(263).addUInt16(1).build({ type: 18, ...IDS }),
      pdu: { type: PduType.Response, ...h(), sysUpTime: 1, error: ResponseError.DuplicateRegistration, index: 1, varbinds: [] },
    },
  ];
}

/** One Response varbind per value type: name 1.3.6.1.3.1.N, then the value layout of §5.4. */
interface ValueCase {
  name: string;
  add: (b: PduBuilder) => void;
  varbind: VarBind;
}

function valueCases(order: ByteOrder): ValueCase[] {
  const oid = [1, 3, 6, 1, 3, 1, 7];
  const cases: ValueCase[] = [
    { name: 'Integer 42', add: (b) => b.addInt32(42), varbind: { oid, type: ValueType.Integer, value: 42 } },
    { name: 'Integer -1', add: (b) => b.addHex('ffffffff'), varbind: { oid, type: ValueType.Integer, value: -1 } },
    { name: 'Integer min', add: (b) => b.addInt32(-2147483648), varbind: { oid, type: ValueType.Integer, value: -2147483648 } },
    { name: 'Integer max', add: (b) => b.addInt32(2147483647), varbind: { oid, type: ValueType.Integer, value: 2147483647 } },
    { name: 'OctetString empty', add: (b) => b.addHex('00000000'), varbind: { oid, type: ValueType.OctetString, value: Buffer.alloc(0) } },
    { name: 'OctetString 1 byte', add: (b) => b.addUInt32(1).addHex('41000000'), varbind: { oid, type: ValueType.OctetString, value: Buffer.from('A') } },
    { name: 'OctetString 4 bytes', add: (b) => b.addUInt32(4).addHex('41424344'), varbind: { oid, type: ValueType.OctetString, value: Buffer.from('ABCD') } },
    { name: 'OctetString 5 bytes', add: (b) => b.addUInt32(5).addHex('4142434445000000'), varbind: { oid, type: ValueType.OctetString, value: Buffer.from('ABCDE') } },
    {
      name: 'OctetString UTF-8 "grüße ✓" (11 bytes)',
      add: (b) => b.addUInt32(11).addHex('6772c3bcc39f6520e29c9300'),
      varbind: { oid, type: ValueType.OctetString, value: Buffer.from('grüße ✓', 'utf8') },
    },
    { name: 'Null', add: () => undefined, varbind: { oid, type: ValueType.Null } },
    {
      name: 'ObjectIdentifier compressed',
      add: (b) => b.addOid([1, 8072, 3, 2, 10], { prefix: 4 }),
      varbind: { oid, type: ValueType.ObjectIdentifier, value: [1, 3, 6, 1, 4, 1, 8072, 3, 2, 10] },
    },
    { name: 'ObjectIdentifier 0.0', add: (b) => b.addOid([0, 0]), varbind: { oid, type: ValueType.ObjectIdentifier, value: [0, 0] } },
    { name: 'ObjectIdentifier null', add: (b) => b.addOid([]), varbind: { oid, type: ValueType.ObjectIdentifier, value: [] } },
    {
      name: 'IpAddress 192.0.2.1 as a 4-byte octet string',
      add: (b) => b.addUInt32(4).addHex('c0000201'),
      varbind: { oid, type: ValueType.IpAddress, value: Buffer.from([192, 0, 2, 1]) },
    },
    { name: 'Counter32 max', add: (b) => b.addUInt32(0xffffffff), varbind: { oid, type: ValueType.Counter32, value: 4294967295 } },
    { name: 'Gauge32', add: (b) => b.addUInt32(0x80000000), varbind: { oid, type: ValueType.Gauge32, value: 2147483648 } },
    { name: 'TimeTicks', add: (b) => b.addUInt32(8640000), varbind: { oid, type: ValueType.TimeTicks, value: 8640000 } },
    {
      name: 'Opaque',
      add: (b) => b.addUInt32(7).addHex('9f78043f80000000'),
      varbind: { oid, type: ValueType.Opaque, value: Buffer.from('9f78043f800000', 'hex') },
    },
    { name: 'Counter64 small', add: (b) => b.addUInt64(1n), varbind: { oid, type: ValueType.Counter64, value: 1n } },
    {
      name: 'Counter64 above 2^53',
      add: (b) => b.addUInt64(0x0123456789abcdefn),
      varbind: { oid, type: ValueType.Counter64, value: 0x0123456789abcdefn },
    },
    {
      name: 'Counter64 max',
      add: (b) => b.addUInt64(0xffffffffffffffffn),
      varbind: { oid, type: ValueType.Counter64, value: 0xffffffffffffffffn },
    },
    { name: 'noSuchObject', add: () => undefined, varbind: { oid, type: ValueType.NoSuchObject } },
    { name: 'noSuchInstance', add: () => undefined, varbind: { oid, type: ValueType.NoSuchInstance } },
    { name: 'endOfMibView', add: () => undefined, varbind: { oid, type: ValueType.EndOfMibView } },
  ];
  return cases.map((c) => ({ ...c, name: `${c.name} (${order})` }));
}

function responseWith(order: ByteOrder, c: ValueCase): Case {
  const b = new PduBuilder(order).addUInt32(0).addUInt16(0).addUInt16(0).addVarBindHead(c.varbind.type).addOid([1, 7], { prefix: 3 });
  c.add(b);
  return {
    name: c.name,
    bytes: b.build({ type: 18, ...IDS }),
    pdu: { type: PduType.Response, ...hdr(order), sysUpTime: 0, error: ResponseError.NoError, index: 0, varbinds: [c.varbind] },
  };
}

describe.each(['be', 'le'] as const)('every PDU type, %s byte order', (order) => {
  test.each(pduCases(order).map((c) => [c.name, c] as const))('%s: bytes decode to the object and encode back', (_name, c) => {
    expect(decodePdu(c.bytes)).toEqual(c.pdu);
    expect(encodePdu(c.pdu, { networkByteOrder: order === 'be' }).toString('hex')).toBe(c.bytes.toString('hex'));
  });
});

describe.each(['be', 'le'] as const)('every value type, %s byte order', (order) => {
  test.each(valueCases(order).map((c) => [c.name, responseWith(order, c)] as const))('%s', (_name, c) => {
    expect(decodePdu(c.bytes)).toEqual(c.pdu);
    expect(encodePdu(c.pdu, { networkByteOrder: order === 'be' }).toString('hex')).toBe(c.bytes.toString('hex'));
  });
});

test('both byte orders decode to the same PDU apart from the byte-order flag', () => {
  const be = pduCases('be');
  const le = pduCases('le');
  for (let i = 0; i < be.length; i++) {
    expect(be[i].bytes.equals(le[i].bytes)).toBe(false);
    const fromLe = decodePdu(le[i].bytes);
    expect({ ...fromLe, flags: fromLe.flags | NBO }).toEqual(decodePdu(be[i].bytes));
  }
});

test('UTF-8 text goes out as its bytes: "grüße ✓" has length 11 and one padding byte', () => {
  const text = Buffer.from('grüße ✓', 'utf8');
  expect(text.length).toBe(11);
  const pdu: Pdu = { type: PduType.AddAgentCaps, flags: 0, ...IDS, id: [1, 3, 6, 1, 3, 1], description: text };
  const bytes = encodePdu(pdu);
  const expected = new PduBuilder('be').addOid([1], { prefix: 3 }).addOctets('grüße ✓').build({ type: 16, ...IDS });
  expect(bytes.toString('hex')).toBe(expected.toString('hex'));
  expect(bytes.readUInt32BE(28)).toBe(11);
  const back = decodePdu(bytes) as typeof pdu;
  expect(back.description.toString('utf8')).toBe('grüße ✓');
});

// Captured from Net-SNMP 5.9.3 snmpd (Debian 12) over a unix socket, with a
// subagent registered at 1.3.6.1.3.9999 and snmpgetnext / snmpget / snmpset run against it.
describe('snmpd 5.9.3 captures', () => {
  const sid = { flags: NBO, sessionId: 5 };
  const captures: Array<[string, string, Pdu]> = [
    [
      // snmpd echoes the Open id and description as a varbind.
      'Response to Open',
      '0112100000000005000000000000000100000030000000690000000000040000050400000000000100001f8800000003000000020000000a000000076361707475726500',
      {
        type: PduType.Response, ...sid, transactionId: 0, packetId: 1, sysUpTime: 105, error: ResponseError.NoError, index: 0,
        varbinds: [{ oid: [1, 3, 6, 1, 4, 1, 8072, 3, 2, 10], type: ValueType.OctetString, value: Buffer.from('capture') }],
      },
    ],
    [
      'Response to Register',
      '0112100000000005000000000000000200000014000000690000000000050000010300000000270f',
      {
        type: PduType.Response, ...sid, transactionId: 0, packetId: 2, sysUpTime: 105, error: ResponseError.NoError, index: 0,
        varbinds: [{ oid: [1, 3, 6, 1, 3, 9999], type: ValueType.Null }],
      },
    ],
    [
      'Response to Ping',
      '01121000000000050000000000000003000000080000006900000000',
      { type: PduType.Response, ...sid, transactionId: 0, packetId: 3, sysUpTime: 105, error: ResponseError.NoError, index: 0, varbinds: [] },
    ],
    [
      'GetNext with one range (snmpgetnext 1.3.6.1.3.9999)',
      '0106100000000005000000010000000200000010010300000000270f0103000000002710',
      { type: PduType.GetNext, ...sid, transactionId: 1, packetId: 2, ranges: [{ start: [1, 3, 6, 1, 3, 9999], include: false, end: [1, 3, 6, 1, 3, 10000] }] },
    ],
    [
      'Get (snmpget 1.3.6.1.3.9999.2.0)',
      '0105100000000005000000030000000400000014030300000000270f000000020000000000000000',
      { type: PduType.Get, ...sid, transactionId: 3, packetId: 4, ranges: [{ start: [1, 3, 6, 1, 3, 9999, 2, 0], include: false, end: [] }] },
    ],
    [
      'TestSet (snmpset … i 7)',
      '010810000000000500000005000000060000001800020000030300000000270f000000030000000000000007',
      { type: PduType.TestSet, ...sid, transactionId: 5, packetId: 6, varbinds: [{ oid: [1, 3, 6, 1, 3, 9999, 3, 0], type: ValueType.Integer, value: 7 }] },
    ],
    ['CommitSet', '0109100000000005000000050000000700000000', { type: PduType.CommitSet, ...sid, transactionId: 5, packetId: 7 }],
    ['CleanupSet', '010b100000000005000000050000000800000000', { type: PduType.CleanupSet, ...sid, transactionId: 5, packetId: 8 }],
  ];
  test.each(captures)('%s', (_name, hex, pdu) => {
    const bytes = Buffer.from(hex, 'hex');
    expect(decodePdu(bytes)).toEqual(pdu);
    expect(encodePdu(pdu).toString('hex')).toBe(hex);
  });
});

describe('OID prefix compression (§5.1)', () => {
  // Encoded inside a RemoveAgentCaps-PDU, whose payload is just the OID.
  const wire = (subids: number[], prefix = 0): string =>
    new PduBuilder('be').addOid(subids, { prefix }).build({ type: 17, ...IDS }).toString('hex');
  const encodeId = (id: number[]): string => encodePdu({ type: PduType.RemoveAgentCaps, flags: 0, ...IDS, id }).toString('hex');

  test.each([
    ['null OID', [], [], 0],
    ['1.3.6.1 itself (4 sub-ids) stays in full', [1, 3, 6, 1], [1, 3, 6, 1], 0],
    ['1.3.6.1.5 becomes prefix 5 and no sub-ids', [1, 3, 6, 1, 5], [], 5],
    ['1.3.6.1.2.1.1.1.0 becomes prefix 2 + 1.1.1.0', [1, 3, 6, 1, 2, 1, 1, 1, 0], [1, 1, 1, 0], 2],
    ['1.3.6.1.255.7 uses the largest prefix', [1, 3, 6, 1, 255, 7], [7], 255],
    ['1.3.6.1.256.7 does not fit a prefix', [1, 3, 6, 1, 256, 7], [1, 3, 6, 1, 256, 7], 0],
    ['1.3.6.1.0.7 has no prefix 0', [1, 3, 6, 1, 0, 7], [1, 3, 6, 1, 0, 7], 0],
    ['1.3.6.2.1 is not under internet', [1, 3, 6, 2, 1], [1, 3, 6, 2, 1], 0],
  ] as Array<[string, number[], number[], number]>)('%s', (_name, oid, subids, prefix) => {
    expect(encodeId(oid)).toBe(wire(subids, prefix));
    expect((decodePdu(Buffer.from(wire(subids, prefix), 'hex')) as RemoveAgentCapsPdu).id).toEqual(oid);
  });

  test('an uncompressed internet OID decodes like the compressed one and re-encodes compressed', () => {
    const full = decodePdu(Buffer.from(wire([1, 3, 6, 1, 2, 1, 236, 1], 0), 'hex'));
    const short = decodePdu(Buffer.from(wire([1, 236, 1], 2), 'hex'));
    expect(full).toEqual(short);
    expect(encodePdu(full).toString('hex')).toBe(wire([1, 236, 1], 2));
  });

  test('128 sub-ids on the wire is the limit, counted after the prefix', () => {
    const long = [1, 3, 6, 1, 4, ...Array.from({ length: 128 }, (_, i) => i)];
    expect(encodeId(long)).toBe(wire(long.slice(5), 4));
    expect((decodePdu(Buffer.from(encodeId(long), 'hex')) as RemoveAgentCapsPdu).id).toEqual(long);
    const tooLong = Array.from({ length: 129 }, (_, i) => i + 2);
    expect(() => encodeId(tooLong)).toThrow(PduEncodeError);
    expect(() => decodePdu(Buffer.from(wire(tooLong), 'hex'))).toThrow(/n_subid 129 exceeds 128/);
  });

  test('the include byte of an OID that is not a range start is ignored', () => {
    const bytes = new PduBuilder('be').addOid([1, 236], { prefix: 2, include: true }).build({ type: 17, ...IDS });
    expect(decodePdu(bytes)).toEqual({ type: PduType.RemoveAgentCaps, flags: NBO, ...IDS, id: [1, 3, 6, 1, 2, 1, 236] });
  });
});

describe('flags', () => {
  const ping = (extra: Partial<Pdu> = {}): Pdu => ({ type: PduType.Ping, flags: 0, ...IDS, ...extra }) as Pdu;

  test('NON_DEFAULT_CONTEXT is set iff a context is given, and the context precedes the payload', () => {
    const get: Pdu = { type: PduType.Get, flags: 0, ...IDS, context: Buffer.from('c1'), ranges: [{ start: [1, 3, 6, 1, 3, 1], include: false, end: [] }] };
    const bytes = encodePdu(get);
    expect(bytes[2]).toBe(0x18);
    const expected = new PduBuilder('be').addOctets('c1').addOid([1], { prefix: 3 }).addOid([]).build({ type: 5, flags: 0x08, ...IDS });
    expect(bytes.toString('hex')).toBe(expected.toString('hex'));
    expect(encodePdu(ping({ flags: 0x08 }))[2]).toBe(0x10);
    expect(encodePdu(ping({ context: Buffer.alloc(0) })).toString('hex')).toBe(
      new PduBuilder('be').addOctets('').build({ type: 13, flags: 0x08, ...IDS }).toString('hex'),
    );
  });

  test('NETWORK_BYTE_ORDER follows the option, not pdu.flags', () => {
    expect(encodePdu(ping({ flags: 0x10 }), { networkByteOrder: false })[2]).toBe(0x00);
    expect(encodePdu(ping({ flags: 0 }))[2]).toBe(0x10);
    expect(encodePdu(ping({ flags: 0x07 }), { networkByteOrder: false })[2]).toBe(0x07);
  });

  test('a context on a PDU type that cannot carry one is refused both ways', () => {
    const response: Pdu = { type: PduType.Response, flags: 0, ...IDS, context: Buffer.from('x'), sysUpTime: 0, error: 0, index: 0, varbinds: [] };
    expect(() => encodePdu(response)).toThrow(PduEncodeError);
    for (const type of [1, 2, 9, 10, 11, 18]) {
      const bytes = new PduBuilder('be').addOctets('x').build({ type, flags: 0x08, ...IDS });
      expect(() => decodePdu(bytes)).toThrow(/NON_DEFAULT_CONTEXT/);
    }
  });
});

describe('decode errors', () => {
  const b = (): PduBuilder => new PduBuilder('be');
  const bad: Array<[string, Buffer, RegExp]> = [
    ['header shorter than 20 bytes', Buffer.from('0106100000000005', 'hex'), /header truncated: 8 of 20/],
    ['version 2', (() => { const x = b().build({ type: 13 }); x[0] = 2; return x; })(), /version 2/],
    ['payload_length larger than the frame', b().addZeros(4).build({ type: 2 }).subarray(0, 22), /payload_length 4 does not match the 2/],
    ['trailing garbage in a Close', b().addUInt8(1).addZeros(3).addHex('deadbeef').build({ type: 2 }), /Close: 4 unexpected trailing/],
    ['CommitSet with a payload', b().addZeros(4).build({ type: 9 }), /CommitSet: 4 unexpected trailing/],
    ['n_subid above 128', b().addHex('81000000').addZeros(4 * 129).build({ type: 17 }), /n_subid 129 exceeds 128/],
    ['OID sub-ids cut short', b().addHex('03020000').addUInt32(1).build({ type: 17 }), /RemoveAgentCaps id truncated: 3 sub-identifier/],
    ['unknown value type 3', b().addUInt32(0).addUInt32(0).addVarBindHead(3).addOid([1], { prefix: 3 }).build({ type: 18 }), /unknown value type 3/],
    ['octet string longer than the payload', b().addOid([1], { prefix: 3 }).addUInt32(100).addZeros(4).build({ type: 16 }), /description truncated: length 100/],
    ['octet string padding missing', b().addOid([1], { prefix: 3 }).addUInt32(5).addHex('4142434445').build({ type: 16 }), /padding truncated/],
    ['IpAddress of 3 bytes', b().addUInt32(0).addUInt32(0).addVarBindHead(64).addOid([1], { prefix: 3 }).addUInt32(3).addHex('0a000001').build({ type: 18 }), /IpAddress has 3 bytes/],
    ['Counter64 cut short', b().addUInt32(0).addUInt32(0).addVarBindHead(70).addOid([1], { prefix: 3 }).addUInt32(1).build({ type: 18 }), /Counter64 value truncated/],
    ['Register range without upper_bound', b().addHex('00010a00').addOid([1, 2, 2, 1, 1, 7], { prefix: 2 }).build({ type: 3 }), /upper_bound truncated/],
    ['Register range_subid beyond the subtree', b().addHex('00010800').addOid([1, 236], { prefix: 2 }).addUInt32(9).build({ type: 3 }), /range_subid 8 is beyond the 7 sub-ids/],
    ['search range without end', b().addOid([1], { prefix: 3 }).build({ type: 6 }), /search range end truncated/],
    ['Response header cut short', b().addUInt32(0).build({ type: 18 }), /Response error truncated/],
  ];
  test.each(bad)('%s', (_name, bytes, message) => {
    let error: unknown;
    try {
      decodePdu(bytes);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PduDecodeError);
    expect((error as Error).message).toMatch(message);
    expect((error as PduDecodeError).unknownType).toBe(false);
  });

  test('the error carries the header once 20 bytes were read', () => {
    const bytes = b().addUInt8(1).addZeros(3).addHex('deadbeef').build({ type: 2, sessionId: 9, packetId: 77 });
    expect(() => decodePdu(bytes)).toThrow(PduDecodeError);
    try {
      decodePdu(bytes);
    } catch (e) {
      expect((e as PduDecodeError).header).toEqual({ version: 1, type: 2, flags: NBO, sessionId: 9, transactionId: 0, packetId: 77, payloadLength: 8 });
    }
  });

  test.each([0, 19, 255])('type %i is reported as unknownType with its header', (type) => {
    const bytes = b().addZeros(8).build({ type, packetId: 3 });
    try {
      decodePdu(bytes);
      throw new Error('decodePdu accepted an unknown type');
    } catch (e) {
      expect(e).toBeInstanceOf(PduDecodeError);
      expect((e as PduDecodeError).unknownType).toBe(true);
      expect((e as PduDecodeError).header?.packetId).toBe(3);
      expect((e as PduDecodeError).header?.payloadLength).toBe(8);
    }
  });
});

describe('encode errors', () => {
  const resp = (vb: unknown): Pdu => ({ type: PduType.Response, flags: 0, ...IDS, sysUpTime: 0, error: 0, index: 0, varbinds: [vb as VarBind] });
  const oid = [1, 3, 6, 1, 3, 1];
  test.each([
    ['Integer above 2^31-1', resp({ oid, type: ValueType.Integer, value: 2 ** 31 }), /signed 32-bit/],
    ['Integer not an integer', resp({ oid, type: ValueType.Integer, value: 1.5 }), /signed 32-bit/],
    ['Counter32 negative', resp({ oid, type: ValueType.Counter32, value: -1 }), /0\.\.4294967295/],
    ['Gauge32 above 2^32-1', resp({ oid, type: ValueType.Gauge32, value: 2 ** 32 }), /0\.\.4294967295/],
    ['Counter64 as a number', resp({ oid, type: ValueType.Counter64, value: 5 }), /bigint/],
    ['Counter64 at 2^64', resp({ oid, type: ValueType.Counter64, value: 2n ** 64n }), /bigint/],
    ['OctetString as a string', resp({ oid, type: ValueType.OctetString, value: 'grüße' }), /must be a Buffer/],
    ['IpAddress of 3 bytes', resp({ oid, type: ValueType.IpAddress, value: Buffer.from([10, 0, 0]) }), /4-byte Buffer/],
    ['sub-id above 2^32-1', resp({ oid: [1, 3, 2 ** 32], type: ValueType.Null }), /sub-identifier #3/],
    ['negative sub-id', resp({ oid: [1, -3], type: ValueType.Null }), /sub-identifier #2/],
    ['unknown value type', resp({ oid, type: 3 }), /unknown value type 3/],
    ['Register range without upperBound', { type: PduType.Register, flags: 0, ...IDS, timeout: 0, priority: 1, rangeSubid: 10, subtree: [1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 7] } as Pdu, /needs an upperBound/],
    ['Register range_subid beyond the subtree', { type: PduType.Register, flags: 0, ...IDS, timeout: 0, priority: 1, rangeSubid: 4, subtree: [1, 3, 6], upperBound: 9 } as Pdu, /beyond the 3 sub-ids/],
    ['Open timeout above 255', { type: PduType.Open, flags: 0, ...IDS, timeout: 256, id: [], description: Buffer.alloc(0) } as Pdu, /Open timeout/],
    ['flags above 255', { type: PduType.Ping, flags: 256, ...IDS } as Pdu, /flags/],
    ['packetId above 2^32-1', { type: PduType.Ping, flags: 0, ...IDS, packetId: 2 ** 32 } as Pdu, /h\.packetID/],
    ['unknown PDU type', { type: 42, flags: 0, ...IDS } as unknown as Pdu, /PDU type 42/],
  ] as Array<[string, Pdu, RegExp]>)('%s', (_name, pdu, message) => {
    expect(() => encodePdu(pdu)).toThrow(PduEncodeError);
    expect(() => encodePdu(pdu)).toThrow(message);
  });

  test('a failed encode leaves nothing behind for the next PDU', () => {
    const good = pduCases('be').find((c) => c.name === 'Notify') as Case;
    expect(() => encodePdu(resp({ oid, type: ValueType.Integer, value: 2 ** 40 }))).toThrow(PduEncodeError);
    expect(encodePdu(good.pdu).toString('hex')).toBe(good.bytes.toString('hex'));
  });
});

describe('buffers', () => {
  test('an encoded PDU is not overwritten by the next encode', () => {
    const [a, b] = pduCases('be').filter((c) => c.name === 'Open' || c.name === 'GetBulk');
    const first = encodePdu(a.pdu);
    encodePdu(b.pdu);
    expect(first.toString('hex')).toBe(a.bytes.toString('hex'));
  });

  test('decoded octet strings do not alias the frame', () => {
    const frame = Buffer.from(pduCases('be')[0].bytes);
    const pdu = decodePdu(frame) as { description: Buffer };
    frame.fill(0xee);
    expect(pdu.description.toString()).toBe('vmm-agentx');
  });

  test('an encoder buffer grows for large PDUs', () => {
    const description = Buffer.alloc(100_000, 0x61);
    const pdu: Pdu = { type: PduType.Open, flags: 0, ...IDS, timeout: 0, id: [1, 3, 6, 1, 3, 1], description };
    const bytes = encodePdu(pdu);
    // header, timeout + reserved, OID (prefix 3 + one sub-id), octet-string length, data
    expect(bytes.length).toBe(20 + 4 + 8 + 4 + 100_000);
    expect(decodePdu(bytes)).toEqual({ ...pdu, flags: NBO });
  });
});

describe('decodeHeader', () => {
  test('reads both byte orders', () => {
    const be = new PduBuilder('be').addZeros(4).build({ type: 2, sessionId: 0x01020304, transactionId: 5, packetId: 6 });
    const le = new PduBuilder('le').addZeros(4).build({ type: 2, sessionId: 0x01020304, transactionId: 5, packetId: 6 });
    const fields = { version: 1, type: 2, sessionId: 0x01020304, transactionId: 5, packetId: 6, payloadLength: 4 };
    expect(decodeHeader(be)).toEqual({ ...fields, flags: NBO });
    expect(decodeHeader(le)).toEqual({ ...fields, flags: 0 });
  });

  test('throws PduDecodeError on fewer than 20 bytes', () => {
    expect(() => decodeHeader(Buffer.alloc(19))).toThrow(PduDecodeError);
  });
});

describe('log helpers', () => {
  test('pduTypeName', () => {
    expect(pduTypeName(6)).toBe('GetNext');
    expect(pduTypeName(18)).toBe('Response');
    expect(pduTypeName(99)).toBe('unknown PDU type 99');
  });

  test('describePdu names the PDU, its ids and its main fields', () => {
    const getNext = decodePdu(Buffer.from('0106100000000005000000010000000200000010010300000000270f0103000000002710', 'hex'));
    expect(describePdu(getNext)).toBe('GetNext session=5 transaction=1 packet=2 ranges=[(1.3.6.1.3.9999..1.3.6.1.3.10000)]');
    const register = pduCases('be').find((c) => c.name.startsWith('Register with context')) as Case;
    expect(describePdu(register.pdu)).toBe(
      'Register session=16909060 transaction=168496141 packet=287454020 context="ctx" subtree=1.3.6.1.2.1.2.2.1.1.7 range_subid=10 upper_bound=22 priority=200 timeout=30',
    );
    const oid = [1, 3, 6, 1, 3, 1];
    const response: Pdu = {
      type: PduType.Response, flags: 0, ...IDS, sysUpTime: 7, error: ResponseError.NotWritable, index: 2,
      varbinds: [
        { oid, type: ValueType.OctetString, value: Buffer.from([0, 1]) },
        { oid, type: ValueType.IpAddress, value: Buffer.from([192, 0, 2, 1]) },
        { oid, type: ValueType.Counter64, value: 5n },
        { oid, type: ValueType.EndOfMibView },
      ],
    };
    expect(describePdu(response)).toBe(
      'Response session=16909060 transaction=168496141 packet=287454020 sysUpTime=7 error=NotWritable index=2 ' +
        'varbinds=[1.3.6.1.3.1=OctetString:0x0001, 1.3.6.1.3.1=IpAddress:192.0.2.1, 1.3.6.1.3.1=Counter64:5, +1 more]',
    );
  });
});
