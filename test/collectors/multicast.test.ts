// Multicast collection ("Multicast state per VM"): the /proc/net/igmp and
// igmp6 parsers, the RTM_GETMDB parser on bytes captured from a real kernel,
// the mobility agent's state file (its validation, and the watched file on a
// temp dir), and the facts → VMM-AGENTX-MIB rows of src/model/vmm-mcast.ts.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { endianness, tmpdir } from 'node:os';
import * as path from 'node:path';
import { compareOids, formatOid, MibViewBuilder, parseOid, ValueType } from '../../agentx';
import type { MibView, Oid, Value } from '../../agentx';
import { parseMdbMessages } from '../../src/collectors/bridge-mdb';
import { parseIgmp, parseIgmp6 } from '../../src/collectors/host-mcast';
import { McastAgentStateFile, parseMcastAgentState } from '../../src/collectors/mcast-agent-state';
import type { CollectorLogLevel } from '../../src/collectors/paths';
import { addMulticastObjects } from '../../src/model/vmm-mcast';
import type { VmRow } from '../../src/model/vm-mib';
import type { HostInfo, HostInterface, MdbEntry, MulticastFacts } from '../../src/snapshot';
import { DeviceIndexes } from '../../src/state/index-store';
import { recordingLog } from '../harness/log';
import { pollUntil } from '../harness/poll';
import { domainRecord } from '../harness/records';

// ---------------------------------------------------------------------------
// /proc/net/igmp and /proc/net/igmp6

/**
 * /proc/net/igmp as a little-endian kernel prints it (net/ipv4/igmp.c:
 * "%d\t%-10s: %5d %7s\n" per device, "\t\t\t\t%08X %5d %d:%08lX\t\t%d\n" per
 * group, the group being the network-order u32 printed as a number).
 */
const IGMP_LE = [
  'Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter',
  '1\tlo        :     1      V3',
  '\t\t\t\t010000E0     1 0:00000000\t\t0',
  '2\tbr0       :     3      V3',
  '\t\t\t\t050505EF     1 0:00000000\t\t0',
  '\t\t\t\t6A0000E0     2 1:0000012C\t\t1',
  '\t\t\t\t010000E0     1 0:00000000\t\t0',
  '4\tvnet0     :     0      V3',
  '7\tvnet-long-name: 1      V2',
  '\t\t\t\tFE0A0AEF     1 0:00000000\t\t0',
  '',
].join('\n');

/** What a kernel of this host's byte order prints for IGMP_LE's groups (the same text on little-endian). */
function igmpOnThisHost(text: string): string {
  if (endianness() === 'LE') return text;
  return text.replace(/^(\t+)([0-9A-F]{8})/gm, (_m, tabs: string, hex: string) => tabs + hex.match(/../g)!.reverse().join(''));
}

const littleEndianHost = endianness() === 'LE';

describe('/proc/net/igmp', () => {
  test('groups per device, each address in dotted quad whatever the byte order; all-hosts (every interface) dropped', () => {
    expect(parseIgmp(igmpOnThisHost(IGMP_LE))).toEqual([
      { device: 'br0', group: '239.5.5.5' },
      { device: 'br0', group: '224.0.0.106' },
      { device: 'vnet-long-name', group: '239.10.10.254' },
    ]);
  });

  test('the header, blank lines, a device without groups and lines that are no group are no groups', () => {
    expect(parseIgmp('')).toEqual([]);
    expect(parseIgmp(IGMP_LE.split('\n')[0])).toEqual([]);
    const text = [
      IGMP_LE.split('\n')[0],
      '4\tvnet0     :     0      V3',
      '\t\t\t\tnot-hex!     1 0:00000000\t\t0',
      '\t\t\t\t0101     1 0:00000000\t\t0',
      '',
    ].join('\n');
    expect(parseIgmp(text)).toEqual([]);
  });

  test('this host\'s own /proc/net/igmp: every group is an IPv4 multicast address (the byte order is right)', () => {
    let text: string;
    try {
      text = fs.readFileSync('/proc/net/igmp', 'utf8');
    } catch {
      return; // no IPv4 here: nothing to check
    }
    const groups = parseIgmp(text);
    const allHosts = littleEndianHost ? /^\t+010000E0 /i : /^\t+E0000001 /i;
    expect(groups.length).toBe(text.split('\n').filter((l) => /^\t/.test(l) && !allHosts.test(l)).length);
    for (const g of groups) {
      const first = Number(g.group.split('.')[0]);
      expect(first >= 224 && first <= 239 ? g.group : `not multicast: ${g.group}`).toBe(g.group);
    }
  });
});

describe('/proc/net/igmp6', () => {
  // net/ipv6/mcast.c: "%-4d %-15s %pi6 %5d %08X %ld\n"
  const IGMP6 = [
    '1    lo              ff020000000000000000000000000001     1 0000000C 0',
    '1    lo              ff010000000000000000000000000001     1 00000008 0',
    '3    br0             ff0200000000000000000001ff000001     1 00000004 0',
    '3    br0             ff0e0000000000000000000000001234     2 00000004 0',
    '3    br0             FF05000000000000000000000001ABCD     1 00000004 1520',
    '12   vnet-long-name1 ff02000000000000000000000000006a     1 00000004 0',
    '',
  ].join('\n');

  test('groups per device, in the uncompressed text the model reads; those every interface joins dropped', () => {
    expect(parseIgmp6(IGMP6)).toEqual([
      { device: 'br0', group: 'ff0e:0:0:0:0:0:0:1234' },
      { device: 'br0', group: 'ff05:0:0:0:0:0:1:abcd' },
      { device: 'vnet-long-name1', group: 'ff02:0:0:0:0:0:0:6a' },
    ]);
  });

  test('lines that are no group are skipped', () => {
    expect(parseIgmp6('')).toEqual([]);
    expect(parseIgmp6('3    br0             ff02000000000000000000000001     1 00000004 0\ngarbage\n')).toEqual([]);
  });

  test('this host\'s own /proc/net/igmp6: every group starts with ff', () => {
    let text: string;
    try {
      text = fs.readFileSync('/proc/net/igmp6', 'utf8');
    } catch {
      return; // no IPv6 here
    }
    const groups = parseIgmp6(text);
    const everyInterface = /\s(ff020000000000000000000000000001|ff010000000000000000000000000001|ff0200000000000000000001ff\w{6})\s/i;
    expect(groups.length).toBe(text.split('\n').filter((l) => l.trim() !== '' && !everyInterface.test(l)).length);
    for (const g of groups) expect(g.group).toMatch(/^ff[0-9a-f]{2}(:[0-9a-f]{1,4}){7}$/);
  });
});

// ---------------------------------------------------------------------------
// RTM_GETMDB

/**
 * One RTM_GETMDB dump message, captured on Linux 6.18 (netlinkDump(86,
 * {AF_BRIDGE, ifindex 0}) from dist/src/collectors/netlink.js, run with
 * `ip netns exec` in a throwaway namespace made thus:
 *   ip link add br0 type bridge mcast_snooping 1 mcast_igmp_version 3 mcast_mld_version 2   # ifindex 2
 *   ip link add vnet0 type veth peer name peer0   # peer0 3, vnet0 4
 *   ip link add vnet1 type veth peer name peer1   # peer1 5, vnet1 6
 *   (vnet0 and vnet1 are br0's ports; all up; peer0 has 10.0.0.2/24)
 *   bridge mdb add dev br0 port vnet0 grp 239.1.1.1 permanent
 *   bridge mdb add dev br0 port vnet1 grp ff0e::1234 permanent
 *   bridge mdb add dev br0 port vnet0 grp 239.2.2.2 temp
 *   bridge mdb add dev br0 port br0 grp 239.3.3.3                 # the host's own
 *   bridge mdb add dev br0 port vnet1 grp 01:00:5e:01:02:03 permanent   # layer 2
 *   bridge mdb add dev br0 port vnet1 grp 239.4.4.4 permanent
 *   bridge mdb add dev br0 port vnet1 grp 239.4.4.4 src 10.0.0.1 permanent   # (S,G)
 * and a socket on peer0 joined 239.7.7.7 (snooped through vnet0). The
 * solicited-node entries (ff02::1:ff..) and the bridge's own ff02::6a came
 * from the interfaces' MLD reports. `bridge -d mdb show` said:
 *   port vnet0 grp 239.7.7.7 temp proto kernel; port vnet1 grp 239.4.4.4 src 10.0.0.1 permanent proto static;
 *   port vnet1 grp 239.4.4.4 permanent proto static; port vnet1 grp 01:00:5e:01:02:03 permanent proto static;
 *   port br0 grp 239.3.3.3 temp; port vnet0 grp 239.2.2.2 temp proto static 258.18;
 *   port vnet1 grp ff0e::1234 permanent proto static; port vnet1 grp ff02::1:ff7b:5686 temp proto kernel;
 *   port vnet0 grp 239.1.1.1 permanent proto static; port vnet0 grp ff02::1:ff69:4ce4 temp proto kernel;
 *   port br0 grp ff02::6a temp; port br0 grp ff02::1:ffb0:2f27 temp
 */
const CAPTURED_DUMP_HEX = [
  '0000000002000000a40201003c000100380001000400000000000000ef07070700000000000000000000000008000000',
  '08000100046500000500050002000000050003000000000044000100400001000600000001000000ef04040400000000',
  '0000000000000000080000000800010000000000080004000a000001050005000400000005000300010000003c000100',
  '380001000600000001000000ef0404040000000000000000000000000800000008000100000000000500050004000000',
  '05000300000000003400010030000100060000000100000001005e010203000000000000000000000000000008000100',
  '0000000005000500040000002c000100280001000200000000000000ef03030300000000000000000000000008000000',
  '08000100dd6400003c000100380001000400000000000000ef0202020000000000000000000000000800000008000100',
  'dc640000050005000400000005000300000000003c000100380001000600000001000000ff0e00000000000000000000',
  '0000123486dd00000800010000000000050005000400000005000300000000003c000100380001000600000000000000',
  'ff0200000000000000000001ff7b568686dd00000800010062650000050005000200000005000300000000003c000100',
  '380001000400000001000000ef0101010000000000000000000000000800000008000100000000000500050004000000',
  '05000300000000003c000100380001000400000000000000ff0200000000000000000001ff694ce486dd000008000100',
  '8c650000050005000200000005000300000000002c000100280001000200000000000000ff0200000000000000000000',
  '0000006a86dd000008000100626500002c000100280001000200000000000000ff0200000000000000000001ffb02f27',
  '86dd00000800010062650000',
].join('');

const RTM_NEWMDB = 84;
const RTM_GETMDB = 86;
const captured = (): { type: number; payload: Buffer }[] => [{ type: RTM_GETMDB, payload: Buffer.from(CAPTURED_DUMP_HEX, 'hex') }];

const BR0 = 2;
const VNET0 = 4;
const VNET1 = 6;

describe('RTM_GETMDB messages', () => {
  test('a captured dump: every IP entry, in the kernel\'s order, with port, group, state, who added it and its timer', () => {
    const e = (portIfIndex: number, group: string, permanent: boolean, configured: boolean, timerCs: number): MdbEntry =>
      ({ bridgeIfIndex: BR0, portIfIndex, group, permanent, configured, timerCs });
    expect(parseMdbMessages(captured())).toEqual([
      e(VNET0, '239.7.7.7', false, false, 25860), // snooped: rtprot kernel
      e(VNET1, '239.4.4.4', true, true, 0), // the (S,G) entry: its source is not kept
      e(VNET1, '239.4.4.4', true, true, 0), // the (*,G) entry
      // (the layer-2 entry 01:00:5e:01:02:03 is skipped)
      e(BR0, '239.3.3.3', false, false, 25821), // the host's own: port is the bridge; no rtprot attribute
      e(VNET0, '239.2.2.2', false, true, 25820), // `bridge mdb add … temp`: configured, yet it expires
      e(VNET1, 'ff0e:0:0:0:0:0:0:1234', true, true, 0),
      e(VNET1, 'ff02:0:0:0:0:1:ff7b:5686', false, false, 25954),
      e(VNET0, '239.1.1.1', true, true, 0),
      e(VNET0, 'ff02:0:0:0:0:1:ff69:4ce4', false, false, 25996),
      e(BR0, 'ff02:0:0:0:0:0:0:6a', false, false, 25954),
      e(BR0, 'ff02:0:0:0:0:1:ffb0:2f27', false, false, 25954),
    ]);
  });

  test('the same bytes as a notification (RTM_NEWMDB) parse alike; other message types and short payloads are skipped', () => {
    const payload = Buffer.from(CAPTURED_DUMP_HEX, 'hex');
    expect(parseMdbMessages([{ type: RTM_NEWMDB, payload }])).toEqual(parseMdbMessages(captured()));
    expect(parseMdbMessages([{ type: 16 /* RTM_NEWLINK */, payload }])).toEqual([]);
    expect(parseMdbMessages([{ type: 85 /* RTM_DELMDB */, payload }])).toEqual([]);
    expect(parseMdbMessages([{ type: RTM_GETMDB, payload: payload.subarray(0, 7) }])).toEqual([]);
    expect(parseMdbMessages([])).toEqual([]);
  });

  // Hand-made messages in the kernel's layout (br_mdb.c), for what the capture lacks.
  const ETH_P_IP = 0x0800;
  const ETH_P_IPV6 = 0x86dd;
  const attr = (type: number, value: Buffer): Buffer => {
    const out = Buffer.alloc((4 + value.length + 3) & ~3);
    out.writeUInt16LE(4 + value.length, 0);
    out.writeUInt16LE(type, 2);
    value.copy(out, 4);
    return out;
  };
  const u32 = (n: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n, 0);
    return b;
  };
  /** MDBA_MDB_ENTRY_INFO: struct br_mdb_entry (28 bytes), then MDBA_MDB_EATTR_* attributes. */
  const info = (port: number, proto: number, addr: number[], state: number, eattrs: Buffer[] = []): Buffer => {
    const e = Buffer.alloc(28);
    e.writeUInt32LE(port, 0);
    e.writeUInt8(state, 4);
    Buffer.from(addr).copy(e, 8);
    e.writeUInt16BE(proto, 24);
    return attr(1, Buffer.concat([e, ...eattrs]));
  };
  /** struct br_port_msg, then MDBA_MDB { MDBA_MDB_ENTRY { infos } } and any other top-level attributes. */
  const message = (bridge: number, infos: Buffer[], more: Buffer[] = [], mdbType = 1): { type: number; payload: Buffer } => {
    const head = Buffer.alloc(8);
    head.writeUInt8(7, 0);
    head.writeUInt32LE(bridge, 4);
    return { type: RTM_GETMDB, payload: Buffer.concat([head, attr(mdbType, attr(1, Buffer.concat(infos))), ...more]) };
  };
  const timer = (cs: number): Buffer => attr(1, u32(cs));
  const rtprot = (p: number): Buffer => attr(5, Buffer.from([p]));

  test('a kernel before 5.11 (no rtprot): permanent means configured, temporary means snooped', () => {
    const m = message(9, [
      info(10, ETH_P_IP, [239, 0, 0, 9], 1),
      info(11, ETH_P_IPV6, [0xff, 0x05, ...new Array<number>(12).fill(0), 0x12, 0x34], 0, [timer(4321)]),
    ]);
    expect(parseMdbMessages([m])).toEqual([
      { bridgeIfIndex: 9, portIfIndex: 10, group: '239.0.0.9', permanent: true, configured: true, timerCs: 0 },
      { bridgeIfIndex: 9, portIfIndex: 11, group: 'ff05:0:0:0:0:0:0:1234', permanent: false, configured: false, timerCs: 4321 },
    ]);
  });

  test('rtprot decides "configured": static is, kernel and others (a routing daemon) are not', () => {
    const m = message(9, [
      info(10, ETH_P_IP, [239, 0, 0, 1], 1, [rtprot(2)]), // permanent yet not static
      info(10, ETH_P_IP, [239, 0, 0, 2], 0, [timer(5), rtprot(4)]),
      info(10, ETH_P_IP, [239, 0, 0, 3], 0, [rtprot(186)]),
    ]);
    expect(parseMdbMessages([m]).map((e) => [e.group, e.permanent, e.configured, e.timerCs])).toEqual([
      ['239.0.0.1', true, false, 0],
      ['239.0.0.2', false, true, 5],
      ['239.0.0.3', false, false, 0],
    ]);
  });

  test('entries of another protocol, short entry structs, router attributes and a truncated tail are skipped', () => {
    const m = message(9, [
      info(10, 0x88f7, [1, 2, 3, 4], 1), // neither IPv4 nor IPv6
      info(10, 0, [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03], 1), // layer 2 (MAC)
      attr(1, Buffer.alloc(20)), // shorter than struct br_mdb_entry
      info(10, ETH_P_IP, [239, 1, 1, 1], 1, [rtprot(4)]),
    ], [attr(2 /* MDBA_ROUTER */, attr(1, u32(10)))]);
    // An attribute claiming more bytes than there are ends the walk, without throwing.
    const truncated = Buffer.concat([m.payload, Buffer.from([0xff, 0x00, 0x01, 0x00, 0, 0, 0, 0])]);
    for (const payload of [m.payload, truncated]) {
      expect(parseMdbMessages([{ type: RTM_GETMDB, payload }])).toEqual([
        { bridgeIfIndex: 9, portIfIndex: 10, group: '239.1.1.1', permanent: true, configured: true, timerCs: 0 },
      ]);
    }
  });

  test('the nested flag (NLA_F_NESTED) on MDBA_MDB does not hide it', () => {
    const m = message(9, [info(10, ETH_P_IP, [239, 1, 1, 1], 1)], [], 1 | 0x8000);
    expect(parseMdbMessages([m]).map((e) => e.group)).toEqual(['239.1.1.1']);
  });
});

// ---------------------------------------------------------------------------
// The mobility agent's state file: validation

const VM_A = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const VM_B = '11111111-2222-4333-8444-555555555555';

const validState = (): Record<string, unknown> => ({
  version: 1,
  pid: 4242,
  proxyJoins: [
    { group: '239.5.5.5', bridge: 'br0', vm: VM_A.toUpperCase(), since: '2024-01-15T10:20:30.450Z', reason: 'incoming-migration' },
    { group: 'ff0e::1234', bridge: 'br1', vm: VM_B, since: '2024-02-29T23:59:59+01:00', reason: 'awaiting-report' },
  ],
  relays: [
    { group: '239.5.5.5', server: '192.0.2.10', port: 5000, state: 'active' },
    { group: 'ff0e::1234', server: '2001:db8::1', port: 0, state: 'requested' },
    { group: '232.1.1.1', server: '198.51.100.7', port: 65535, state: 'failed' },
  ],
});

describe('parseMcastAgentState', () => {
  test('a valid file: joins (UUID in lowercase, since in ms) and relays, and the pid', () => {
    expect(parseMcastAgentState(JSON.stringify(validState()))).toEqual({
      pid: 4242,
      proxyJoins: [
        { group: '239.5.5.5', bridge: 'br0', vm: VM_A, since: Date.UTC(2024, 0, 15, 10, 20, 30, 450), reason: 'incoming-migration' },
        { group: 'ff0e::1234', bridge: 'br1', vm: VM_B, since: Date.UTC(2024, 1, 29, 22, 59, 59), reason: 'awaiting-report' },
      ],
      relays: [
        { group: '239.5.5.5', server: '192.0.2.10', port: 5000, state: 'active' },
        { group: 'ff0e::1234', server: '2001:db8::1', port: 0, state: 'requested' },
        { group: '232.1.1.1', server: '198.51.100.7', port: 65535, state: 'failed' },
      ],
    });
  });

  test('no pid and no lists: nothing held, pid null', () => {
    expect(parseMcastAgentState('{"version":1}')).toEqual({ pid: null, proxyJoins: [], relays: [] });
  });

  /** validState() with one change made by `edit`. */
  const variant = (edit: (s: Record<string, unknown> & { proxyJoins: Record<string, unknown>[]; relays: Record<string, unknown>[] }) => void): string => {
    const s = validState() as Record<string, unknown> & { proxyJoins: Record<string, unknown>[]; relays: Record<string, unknown>[] };
    edit(s);
    return JSON.stringify(s);
  };

  test.each<[string, string, RegExp]>([
    ['not JSON', '{"version": 1,', /not JSON/],
    ['half a file', JSON.stringify(validState()).slice(0, 40), /not JSON/],
    ['not an object', '[1]', /"version"/],
    ['null', 'null', /not a JSON object/],
    ['wrong version', variant((s) => { s.version = 2; }), /"version" is 2, not 1/],
    ['version as text', variant((s) => { s.version = '1'; }), /"version"/],
    ['bad pid', variant((s) => { s.pid = -3; }), /"pid"/],
    ['proxyJoins not a list', variant((s) => { s.proxyJoins = {} as never; }), /"proxyJoins" is not a list/],
    ['a join not an object', variant((s) => { s.proxyJoins[1] = 'x' as never; }), /proxyJoins\[1\] is not an object/],
    ['unicast group', variant((s) => { s.proxyJoins[0].group = '10.0.0.1'; }), /proxyJoins\[0\]\.group/],
    ['group not an address', variant((s) => { s.proxyJoins[1].group = 'ff0e::zz'; }), /proxyJoins\[1\]\.group/],
    ['no bridge', variant((s) => { s.proxyJoins[0].bridge = ''; }), /proxyJoins\[0\]\.bridge/],
    ['bad UUID', variant((s) => { s.proxyJoins[1].vm = '11111111-2222-4333-8444-55555555555'; }), /proxyJoins\[1\]\.vm is not a UUID/],
    ['bad since', variant((s) => { s.proxyJoins[0].since = 'yesterday'; }), /proxyJoins\[0\]\.since/],
    ['since as a number', variant((s) => { s.proxyJoins[0].since = 1700000000000; }), /proxyJoins\[0\]\.since/],
    ['bad reason', variant((s) => { s.proxyJoins[0].reason = 'boredom'; }), /proxyJoins\[0\]\.reason/],
    ['relays not a list', variant((s) => { s.relays = 'none' as never; }), /"relays" is not a list/],
    ['relay group not multicast', variant((s) => { s.relays[2].group = '240.0.0.1'; }), /relays\[2\]\.group/],
    ['bad relay server', variant((s) => { s.relays[0].server = 'relay.example'; }), /relays\[0\]\.server/],
    ['port too big', variant((s) => { s.relays[0].port = 65536; }), /relays\[0\]\.port/],
    ['port not whole', variant((s) => { s.relays[1].port = 1.5; }), /relays\[1\]\.port/],
    ['port as text', variant((s) => { s.relays[0].port = '5000'; }), /relays\[0\]\.port/],
    ['negative port', variant((s) => { s.relays[0].port = -1; }), /relays\[0\]\.port/],
    ['bad relay state', variant((s) => { s.relays[1].state = 'up'; }), /relays\[1\]\.state/],
  ])('%s: an Error naming what is wrong', (_name, text, message) => {
    expect(() => parseMcastAgentState(text)).toThrow(message);
    // And nothing else: an Error, not some TypeError from reading a field of undefined.
    try {
      parseMcastAgentState(text);
    } catch (err) {
      expect((err as Error).constructor).toBe(Error);
    }
  });
});

// ---------------------------------------------------------------------------
// The mobility agent's state file: watched

describe('McastAgentStateFile on a temp dir', () => {
  let dir: string;
  let file: string;
  let watched: McastAgentStateFile | null = null;
  let tmpCount = 0;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(tmpdir(), 'vmm-mcastd-'));
    file = path.join(dir, 'state.json');
  });

  afterEach(() => {
    watched?.close();
    watched = null;
    jest.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** As vmm-mcastd writes it: a temp file in the same directory, renamed over the state file. */
  const writeAtomically = (text: string): void => {
    const tmp = path.join(dir, `.state.json.${++tmpCount}.tmp`);
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file);
  };

  function open(): { state: McastAgentStateFile; changes: () => number; log: ReturnType<typeof recordingLog<CollectorLogLevel>> } {
    const log = recordingLog<CollectorLogLevel>();
    let changes = 0;
    watched = new McastAgentStateFile(file, log.log, () => { changes++; });
    return { state: watched, changes: () => changes, log };
  }

  const linesAt = (log: ReturnType<typeof recordingLog<CollectorLogLevel>>, level: CollectorLogLevel): string[] =>
    log.entries.filter((e) => e.level === level).map((e) => e.message);

  const stateText = (pid: number | null, group = '239.5.5.5'): string =>
    JSON.stringify({ ...validState(), pid: pid ?? undefined, proxyJoins: [{ ...(validState().proxyJoins as object[])[0], group }] });

  test('no file: no agent, nothing logged, no change', async () => {
    const { state, changes, log } = open();
    await state.start();
    expect(state.current()).toBeNull();
    await state.check();
    expect(state.current()).toBeNull();
    expect(changes()).toBe(0);
    expect(log.lines).toEqual([]);
  });

  test('an atomic write is seen through the watch within a second, without a check()', async () => {
    const { state, changes, log } = open();
    await state.start();
    writeAtomically(stateText(process.pid));
    const { ms } = await pollUntil('onChange after the write', () => changes(), (n) => n >= 1, 1000, 5);
    expect(ms).toBeLessThanOrEqual(1000);
    expect(state.current()).toEqual({
      proxyJoins: [{ group: '239.5.5.5', bridge: 'br0', vm: VM_A, since: Date.UTC(2024, 0, 15, 10, 20, 30, 450), reason: 'incoming-migration' }],
      relays: (parseMcastAgentState(JSON.stringify(validState()))).relays,
    });
    expect(changes()).toBe(1);
    expect(log.lines).toEqual([]);
    // Rewriting the same state is no change.
    writeAtomically(stateText(process.pid));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await state.check();
    expect(changes()).toBe(1);
  });

  test('a malformed write: one error line, the last good state kept; a good one again: an info line', async () => {
    const { state, changes, log } = open();
    writeAtomically(stateText(process.pid));
    await state.start();
    const good = state.current();
    expect(good?.proxyJoins).toHaveLength(1);
    const before = changes();

    writeAtomically(JSON.stringify({ ...validState(), version: 7 }));
    await pollUntil('an error line', () => linesAt(log, 'error').length, (n) => n >= 1, 1000, 5);
    expect(linesAt(log, 'error')).toHaveLength(1);
    expect(linesAt(log, 'error')[0]).toContain(file);
    expect(linesAt(log, 'error')[0]).toContain('"version" is 7');
    expect(state.current()).toEqual(good);
    // The same fault again (a new file, the same content), and more checks: still one line.
    writeAtomically(JSON.stringify({ ...validState(), version: 7 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await state.check();
    await state.check();
    expect(linesAt(log, 'error')).toHaveLength(1);
    expect(state.current()).toEqual(good);
    expect(changes()).toBe(before);

    writeAtomically(stateText(process.pid, '239.6.6.6'));
    await pollUntil('the new state', () => state.current()?.proxyJoins[0]?.group, (g) => g === '239.6.6.6', 1000, 5);
    expect(linesAt(log, 'info')).toEqual([`${file} reads well again`]);
    expect(linesAt(log, 'error')).toHaveLength(1);
  });

  test('the file removed: no agent, an info line, a change', async () => {
    const { state, changes, log } = open();
    writeAtomically(stateText(process.pid));
    await state.start();
    expect(state.current()).not.toBeNull();
    const before = changes();
    fs.unlinkSync(file);
    await pollUntil('no agent', () => state.current(), (s) => s === null, 1000, 5);
    expect(changes()).toBe(before + 1);
    expect(linesAt(log, 'info')).toHaveLength(1);
    expect(linesAt(log, 'info')[0]).toContain(`${file} is gone`);
    expect(log.entries.filter((e) => e.level !== 'info')).toEqual([]);
  });

  test('the pid of a process that has exited: no agent, one warn line however often asked', async () => {
    const child = spawn('true', [], { stdio: 'ignore' });
    const pid = child.pid;
    await new Promise<void>((resolve, reject) => {
      child.once('exit', () => resolve());
      child.once('error', reject);
    });
    expect(pid).toBeDefined();
    const { state, log } = open();
    writeAtomically(stateText(pid!));
    await state.start();
    expect(state.current()).toBeNull();
    expect(state.current()).toBeNull();
    await state.check();
    expect(state.current()).toBeNull();
    expect(log.entries).toEqual([{ level: 'warn', message: expect.stringContaining(`pid ${pid!}`) as string }]);
  });

  test('the pid of a live process: the agent is there', async () => {
    const { state, log } = open();
    writeAtomically(stateText(process.pid));
    await state.start();
    expect(state.current()).not.toBeNull();
    expect(log.lines).toEqual([]);
  });

  test('a directory that appears later is watched, a check() meanwhile or not', async () => {
    const later = path.join(dir, 'run', 'vmm-mcastd');
    const log = recordingLog<CollectorLogLevel>();
    let changes = 0;
    watched = new McastAgentStateFile(path.join(later, 'state.json'), log.log, () => { changes++; });
    await watched.start();
    expect(watched.current()).toBeNull();
    fs.mkdirSync(later, { recursive: true });
    await watched.check(); // what a refresh meanwhile does
    fs.writeFileSync(path.join(later, '.tmp'), stateText(process.pid));
    fs.renameSync(path.join(later, '.tmp'), path.join(later, 'state.json'));
    await pollUntil('onChange', () => changes, (n) => n >= 1, 1000, 5);
    expect(watched.current()?.proxyJoins).toHaveLength(1);
  });

  test('no file: a check() touches no file while a watch waits for it', async () => {
    const { state, changes } = open();
    await state.start();
    const stat = jest.spyOn(fs.promises, 'stat');
    const openFile = jest.spyOn(fs.promises, 'open');
    for (let i = 0; i < 10; i++) await state.check();
    expect([stat.mock.calls.length, openFile.mock.calls.length]).toEqual([0, 0]);
    writeAtomically(stateText(process.pid));
    await pollUntil('onChange after the write', () => changes(), (n) => n >= 1, 1000, 5);
    expect(state.current()?.proxyJoins).toHaveLength(1);
  });

  test('no file: a check() a minute after it was found missing looks again', async () => {
    const { state } = open();
    await state.start();
    const stat = jest.spyOn(fs.promises, 'stat');
    await state.check();
    expect(stat).not.toHaveBeenCalled();
    const now = performance.now();
    jest.spyOn(performance, 'now').mockReturnValue(now + 61_000);
    await state.check();
    expect(stat).toHaveBeenCalledTimes(1);
  });

  test('a file present is checked by one stat per check(), and read only when it changed', async () => {
    const { state, changes } = open();
    writeAtomically(stateText(process.pid));
    await state.start();
    const stat = jest.spyOn(fs.promises, 'stat');
    const openFile = jest.spyOn(fs.promises, 'open');
    await state.check();
    await state.check();
    expect([stat.mock.calls.length, openFile.mock.calls.length]).toEqual([2, 0]);
    expect(changes()).toBe(1);
  });

  test('directories that appear later, and the file in them, are seen through watches alone', async () => {
    const later = path.join(dir, 'run', 'vmm-mcastd');
    const log = recordingLog<CollectorLogLevel>();
    let changes = 0;
    watched = new McastAgentStateFile(path.join(later, 'state.json'), log.log, () => { changes++; });
    await watched.start();
    fs.mkdirSync(path.join(dir, 'run'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    fs.mkdirSync(later);
    await new Promise((resolve) => setTimeout(resolve, 100));
    fs.writeFileSync(path.join(later, '.tmp'), stateText(process.pid));
    fs.renameSync(path.join(later, '.tmp'), path.join(later, 'state.json'));
    await pollUntil('onChange', () => changes, (n) => n >= 1, 1000, 5);
    expect(watched.current()?.proxyJoins).toHaveLength(1);
    expect(log.lines).toEqual([]);
  });

  test('its directory removed and made again: the file written then is seen through the watch alone', async () => {
    const sub = path.join(dir, 'vmm-mcastd');
    fs.mkdirSync(sub);
    const log = recordingLog<CollectorLogLevel>();
    let changes = 0;
    watched = new McastAgentStateFile(path.join(sub, 'state.json'), log.log, () => { changes++; });
    await watched.start();
    fs.rmdirSync(sub);
    await new Promise((resolve) => setTimeout(resolve, 100));
    fs.mkdirSync(sub);
    await new Promise((resolve) => setTimeout(resolve, 100));
    fs.writeFileSync(path.join(sub, '.tmp'), stateText(process.pid));
    fs.renameSync(path.join(sub, '.tmp'), path.join(sub, 'state.json'));
    await pollUntil('onChange', () => changes, (n) => n >= 1, 1000, 5);
    expect(watched.current()?.proxyJoins).toHaveLength(1);
  });

  // BUG (src/collectors/mcast-agent-state.ts, check()): a watch event that
  // arrives while a read is under way joins that read instead of causing
  // another, so a write landing after the read opened the file is not seen
  // until the next refresh's check(). Made deterministic here by holding the
  // read's close() until the second write's event has come.
  test('a write during a read is read too, without waiting for the next check()', async () => {
    const fsp = fs.promises;
    const realOpen = fsp.open.bind(fsp);
    let hold: Promise<void> | null = null;
    let release: () => void = () => undefined;
    let held = false;
    jest.spyOn(fsp, 'open').mockImplementation(async (...args: Parameters<typeof fsp.open>): Promise<FileHandle> => {
      const handle = await realOpen(...args);
      if (hold !== null) {
        const gate = hold;
        hold = null;
        const close = handle.close.bind(handle);
        handle.close = async (): Promise<void> => {
          held = true;
          await gate;
          return close();
        };
      }
      return handle;
    });
    const { state } = open();
    await state.start();
    hold = new Promise((resolve) => { release = resolve; });
    writeAtomically(stateText(process.pid, '239.6.6.1'));
    await pollUntil('the first read to have read the file', () => held, (h) => h, 1000, 5);
    writeAtomically(stateText(process.pid, '239.6.6.2'));
    await new Promise((resolve) => setTimeout(resolve, 200)); // its watch event arrives meanwhile
    release();
    await pollUntil('the second write', () => state.current()?.proxyJoins[0]?.group, (g) => g === '239.6.6.2', 1000, 5);
  });
});

// ---------------------------------------------------------------------------
// Facts → VMM-AGENTX-MIB multicast objects

/** vmmMulticast: { vmmObjects 2 }, vmmObjects being { 1.3.6.1.4.1.8072.9999.9999.7666 1 }. */
const MCAST = '1.3.6.1.4.1.8072.9999.9999.7666.1.2';

const iface = (name: string, ifIndex: number, parentIfIndex = 0): [string, HostInterface] => [name, { name, ifIndex, parentIfIndex }];

const HOST: HostInfo = {
  uptimeSeconds: 100,
  cpus: [0],
  mounts: [],
  interfaces: new Map([
    iface('lo', 1), iface('br0', 2), iface('vnet0', 4, 2), iface('vnet1', 6, 2), iface('eth9', 9), iface('vnet7', 17, 9),
  ]),
};

/** A VM with one NIC: `hostDevice` on br0, numbered vmIndex / nicIndex by the index store. */
function vm(uuid: string, vmIndex: number, nicIndex: number, hostDevice: string, source = 'br0'): VmRow {
  const mac = `52:54:00:00:00:${nicIndex.toString(16).padStart(2, '0')}`;
  return {
    domain: domainRecord({ uuid, nics: [{ kind: 'bridge', mac, model: 'virtio', hostDevice, source }] }),
    indexes: { vmIndex, runningSince: null, disks: DeviceIndexes.EMPTY, nics: DeviceIndexes.fromRecord({ [mac]: nicIndex }) },
  };
}

const mdb = (portIfIndex: number, group: string, permanent: boolean, configured: boolean, timerCs: number, bridgeIfIndex = 2): MdbEntry =>
  ({ bridgeIfIndex, portIfIndex, group, permanent, configured, timerCs });

/** VM_A (vmIndex 7, NIC 3 on vnet0) and VM_B (vmIndex 5, NIC 1 on vnet1), both on br0. */
const ROWS: VmRow[] = [vm(VM_A, 7, 3, 'vnet0'), vm(VM_B, 5, 1, 'vnet1')];

const FACTS: MulticastFacts = {
  mdb: [
    mdb(VNET0, '239.1.2.3', false, false, 12345), // snooped, expiring
    mdb(VNET0, 'ff0e:0:0:0:0:0:0:1234', true, true, 0), // static, permanent
    mdb(VNET0, 'ff02:0:0:0:0:1:ff12:3456', false, false, 26000), // solicited-node: left out
    mdb(VNET0, '224.0.0.1', false, false, 26000), // all-hosts: left out
    mdb(VNET0, 'ff02:0:0:0:0:0:0:1', false, false, 26000), // all-nodes: left out
    mdb(VNET0, 'ff01:0:0:0:0:0:0:1', false, false, 26000), // interface-local all-nodes (never on a wire): left out
    mdb(BR0, '239.9.9.9', false, false, 25000), // the host's own on br0: not a VM's
    mdb(VNET1, '239.1.2.3', false, true, 100), // VM_B: configured with `temp`
    mdb(99, '239.7.7.7', true, true, 0), // a port no VM NIC is
  ],
  hostGroups: [
    { device: 'br0', group: '239.9.9.9' },
    { device: 'br0', group: '239.5.5.5' }, // the proxy join below
    { device: 'br0', group: '224.0.0.1' },
    { device: 'br0', group: 'ff02:0:0:0:0:0:0:1' },
    { device: 'br0', group: 'ff02:0:0:0:0:1:ff00:1' },
    { device: 'br0', group: 'ff01:0:0:0:0:0:0:1' }, // interface-local all-nodes: left out
    { device: 'br0', group: 'ff05:0:0:0:0:0:1:3' },
    { device: 'eth9', group: '239.8.8.8' }, // no VM uses eth9
    { device: 'lo', group: '239.4.4.4' },
  ],
  agent: {
    proxyJoins: [
      // Not reported by VM_A: a proxy row. Reported already (239.1.2.3 is in the mdb): stays snooped.
      { group: '239.5.5.5', bridge: 'br0', vm: VM_A, since: Date.UTC(2024, 0, 15, 10, 20, 30, 450), reason: 'incoming-migration' },
      { group: '239.1.2.3', bridge: 'br0', vm: VM_A, since: Date.UTC(2024, 1, 29, 23, 59, 59, 999), reason: 'awaiting-report' },
    ],
    relays: [
      { group: 'ff0e::1234', server: '2001:db8::1', port: 0, state: 'requested' },
      { group: '239.5.5.5', server: '192.0.2.10', port: 5000, state: 'active' },
    ],
  },
};

function build(rows: readonly VmRow[], facts: MulticastFacts, host: HostInfo = HOST): MibView {
  const b = new MibViewBuilder();
  addMulticastObjects(b, rows, facts, host);
  return b.build();
}

/** "suffix under vmmMulticast = value", in the view's order. */
function lines(view: MibView): string[] {
  const prefix = parseOid(MCAST);
  const out: string[] = [];
  for (const vb of view) {
    expect(vb.oid.slice(0, prefix.length)).toEqual(prefix);
    out.push(`${formatOid(vb.oid.slice(prefix.length))} = ${show(vb)}`);
  }
  return out;
}

function show(v: Value): string {
  switch (v.type) {
    case ValueType.Integer: return `INTEGER ${v.value}`;
    case ValueType.Gauge32: return `Gauge32 ${v.value}`;
    case ValueType.TimeTicks: return `TimeTicks ${v.value}`;
    case ValueType.OctetString: return `OCTETS ${v.value.toString('hex')}`;
    default: return `${ValueType[v.type]} ${'value' in v ? String(v.value) : ''}`;
  }
}

const UUID_A = '170.170.170.170.187.187.76.204.141.221.238.238.238.238.238.238';
const FF0E_1234 = '2.16.255.14.0.0.0.0.0.0.0.0.0.0.0.0.18.52';

describe('facts → VMM-AGENTX-MIB multicast objects', () => {
  test('every instance, its OID and value', () => {
    expect(lines(build(ROWS, FACTS))).toEqual([
      // vmmMcastGroupTable: vmIndex, vmNetworkIndex, InetAddressType, length, address
      '1.1.3.5.1.1.4.239.1.2.3 = INTEGER 2', // VM_B: static
      '1.1.3.7.3.1.4.239.1.2.3 = INTEGER 1', // snooped (the proxy join of it does not replace it)
      '1.1.3.7.3.1.4.239.5.5.5 = INTEGER 3', // proxy
      `1.1.3.7.3.${FF0E_1234} = INTEGER 2`, // static
      '1.1.4.5.1.1.4.239.1.2.3 = INTEGER 1', // temporary
      '1.1.4.7.3.1.4.239.1.2.3 = INTEGER 1',
      '1.1.4.7.3.1.4.239.5.5.5 = INTEGER 1',
      `1.1.4.7.3.${FF0E_1234} = INTEGER 2`, // permanent
      '1.1.5.5.1.1.4.239.1.2.3 = TimeTicks 100',
      '1.1.5.7.3.1.4.239.1.2.3 = TimeTicks 12345',
      '1.1.5.7.3.1.4.239.5.5.5 = TimeTicks 0',
      `1.1.5.7.3.${FF0E_1234} = TimeTicks 0`,
      // vmmMcastHostGroupTable: ifIndex, InetAddressType, length, address — br0's only
      '2.1.4.2.1.4.239.5.5.5 = INTEGER 2', // proxy
      '2.1.4.2.1.4.239.9.9.9 = INTEGER 1', // host
      '2.1.4.2.2.16.255.5.0.0.0.0.0.0.0.0.0.0.0.1.0.3 = INTEGER 1',
      // vmmMcastAgentPresent
      '3.1.0 = INTEGER 1',
      // vmmMcastProxyJoinTable: InetAddressType, length, address, then the UUID's 16 bytes without a length
      `3.2.1.4.1.4.239.1.2.3.${UUID_A} = INTEGER 2`, // ifIndex of br0
      `3.2.1.4.1.4.239.5.5.5.${UUID_A} = INTEGER 2`,
      `3.2.1.5.1.4.239.1.2.3.${UUID_A} = Gauge32 7`, // vmIndex
      `3.2.1.5.1.4.239.5.5.5.${UUID_A} = Gauge32 7`,
      `3.2.1.6.1.4.239.1.2.3.${UUID_A} = OCTETS 07e8021d173b3b092b0000`, // 2024-02-29 23:59:59.9 +0:0
      `3.2.1.6.1.4.239.5.5.5.${UUID_A} = OCTETS 07e8010f0a141e042b0000`, // 2024-01-15 10:20:30.4 +0:0
      `3.2.1.7.1.4.239.1.2.3.${UUID_A} = INTEGER 2`, // awaitingReport
      `3.2.1.7.1.4.239.5.5.5.${UUID_A} = INTEGER 1`, // incomingMigration
      // vmmMcastRelayTable: group InetAddressType, length, address
      '3.3.1.3.1.4.239.5.5.5 = INTEGER 1',
      `3.3.1.3.${FF0E_1234} = INTEGER 2`,
      '3.3.1.4.1.4.239.5.5.5 = OCTETS c000020a',
      `3.3.1.4.${FF0E_1234} = OCTETS 20010db8000000000000000000000001`,
      '3.3.1.5.1.4.239.5.5.5 = Gauge32 5000',
      `3.3.1.5.${FF0E_1234} = Gauge32 0`,
      '3.3.1.6.1.4.239.5.5.5 = INTEGER 2', // active
      `3.3.1.6.${FF0E_1234} = INTEGER 1`, // requested
    ]);
  });

  test('no mobility agent: vmmMcastAgentPresent false(2), no proxy rows anywhere, the host\'s groups all host(1)', () => {
    const view = lines(build(ROWS, { ...FACTS, agent: null }));
    expect(view).toContain('3.1.0 = INTEGER 2');
    expect(view.filter((l) => l.startsWith('3.') && l !== '3.1.0 = INTEGER 2')).toEqual([]);
    expect(view.filter((l) => / = INTEGER 3$/.test(l))).toEqual([]);
    expect(view.filter((l) => l.startsWith('1.1.3.'))).toEqual([
      '1.1.3.5.1.1.4.239.1.2.3 = INTEGER 2',
      '1.1.3.7.3.1.4.239.1.2.3 = INTEGER 1',
      `1.1.3.7.3.${FF0E_1234} = INTEGER 2`,
    ]);
    expect(view.filter((l) => l.startsWith('2.1.4.'))).toEqual([
      '2.1.4.2.1.4.239.5.5.5 = INTEGER 1',
      '2.1.4.2.1.4.239.9.9.9 = INTEGER 1',
      '2.1.4.2.2.16.255.5.0.0.0.0.0.0.0.0.0.0.0.1.0.3 = INTEGER 1',
    ]);
  });

  test('an agent holding nothing: present true(1), the tables empty', () => {
    expect(lines(build(ROWS, { mdb: [], hostGroups: [], agent: { proxyJoins: [], relays: [] } }))).toEqual(['3.1.0 = INTEGER 1']);
  });

  test('no database read (mdb null): no group rows, the rest stands', () => {
    const view = lines(build(ROWS, { ...FACTS, mdb: null }));
    // Nothing says VM_A reported 239.1.2.3 now: both joins show as proxy.
    expect(view.filter((l) => l.startsWith('1.1.3.'))).toEqual(['1.1.3.7.3.1.4.239.1.2.3 = INTEGER 3', '1.1.3.7.3.1.4.239.5.5.5 = INTEGER 3']);
    expect(view).toContain('2.1.4.2.1.4.239.9.9.9 = INTEGER 1');
  });

  test('a join for a VM not here, on a bridge not here: vmIndex 0, no ifIndex cell, no group row', () => {
    const stranger = '99999999-8888-4777-8666-555555555555';
    const view = lines(build(ROWS, {
      mdb: [],
      hostGroups: [],
      agent: { proxyJoins: [{ group: '239.5.5.5', bridge: 'br7', vm: stranger, since: 0, reason: 'awaiting-report' }], relays: [] },
    }));
    const uuid = '153.153.153.153.136.136.71.119.134.102.85.85.85.85.85.85';
    expect(view).toEqual([
      '3.1.0 = INTEGER 1',
      `3.2.1.5.1.4.239.5.5.5.${uuid} = Gauge32 0`,
      `3.2.1.6.1.4.239.5.5.5.${uuid} = OCTETS 07b20101000000002b0000`, // the epoch
      `3.2.1.7.1.4.239.5.5.5.${uuid} = INTEGER 2`,
    ]);
  });

  test('a proxy join on another bridge than the NIC\'s is no group of that NIC', () => {
    const view = lines(build([vm(VM_A, 7, 3, 'vnet7', 'eth9')], {
      mdb: [],
      hostGroups: [],
      agent: { proxyJoins: [{ group: '239.5.5.5', bridge: 'br0', vm: VM_A, since: 0, reason: 'awaiting-report' }], relays: [] },
    }));
    expect(view.filter((l) => l.startsWith('1.1.'))).toEqual([]);
  });

  test('a NIC whose host device is gone, or that has no index: no rows, no failure', () => {
    const gone = vm(VM_A, 7, 3, 'vnet-gone');
    const unnumbered: VmRow = { ...vm(VM_B, 5, 1, 'vnet1'), indexes: { ...vm(VM_B, 5, 1, 'vnet1').indexes, nics: DeviceIndexes.EMPTY } };
    const view = lines(build([gone, unnumbered], { ...FACTS, agent: null }));
    expect(view.filter((l) => l.startsWith('1.1.'))).toEqual([]);
    // Both still name br0 as the bridge they use.
    expect(view.filter((l) => l.startsWith('2.1.4.2.'))).toHaveLength(3);
  });

  /**
   * A stand-in for MibViewBuilder that records what addMulticastObjects adds,
   * in order: a table's rows must come in index order (the view builder
   * takes them otherwise too, but then copies and sorts every instance
   * of the view at build()).
   */
  function recordOrder(rows: readonly VmRow[], facts: MulticastFacts): { table: string; index: Oid }[] {
    const added: { table: string; index: Oid }[] = [];
    const recorder = {
      declareObject: () => recorder,
      add: (oid: Oid) => {
        added.push({ table: 'scalar', index: oid.slice() });
        return recorder;
      },
      table: (entry: Oid) => ({
        row: (index: Oid) => { added.push({ table: formatOid(entry), index: [...entry, ...index] }); },
        end: () => undefined,
      }),
    };
    addMulticastObjects(recorder as unknown as MibViewBuilder, rows, facts, HOST);
    return added;
  }

  test('rows are added in OID order even when the facts come in reverse', () => {
    const reversed: MulticastFacts = {
      mdb: [...FACTS.mdb!].reverse(),
      hostGroups: [...FACTS.hostGroups].reverse(),
      agent: { proxyJoins: [...FACTS.agent!.proxyJoins].reverse(), relays: [...FACTS.agent!.relays].reverse() },
    };
    for (const [rows, facts] of [[ROWS, FACTS], [[...ROWS].reverse(), reversed]] as const) {
      const added = recordOrder(rows, facts);
      expect(added.length).toBe(4 + 3 + 1 + 2 + 2); // group rows, host rows, the scalar, proxy rows, relay rows
      for (let i = 1; i < added.length; i++) {
        const order = compareOids(added[i - 1].index, added[i].index);
        if (order >= 0) throw new Error(`${formatOid(added[i].index)} added after ${formatOid(added[i - 1].index)}`);
      }
      expect(lines(build(rows, facts))).toEqual(lines(build(ROWS, FACTS)));
    }
  });

  // BUG (src/model/vmm-mcast.ts): two database entries of one group on one
  // port make two rows with the same index, and the view builder throws on
  // the duplicate instance — which fails every refresh from then on (the
  // agent keeps serving its previous view, VM-MIB included, and sends no
  // notifications). The kernel lists a group twice on a port with IGMPv3/
  // MLDv2 source-specific entries ((S,G) next to (*,G), as in the capture
  // above) and on a VLAN-filtering bridge (one entry per VLAN).
  test('a group listed twice on a port (an (S,G) entry next to its (*,G)) makes one row', () => {
    const entries = parseMdbMessages(captured());
    const view = lines(build([vm(VM_B, 5, 1, 'vnet1')], { mdb: entries, hostGroups: [], agent: null }));
    expect(view.filter((l) => l.startsWith('1.1.3.'))).toEqual([
      '1.1.3.5.1.1.4.239.4.4.4 = INTEGER 2',
      `1.1.3.5.1.${FF0E_1234} = INTEGER 2`,
    ]);
  });

  // BUG (src/model/vmm-mcast.ts), the same failure from the state file: the
  // proxy-join index has no bridge, and the relay index only the group, so a
  // join held for one VM on two bridges (a VM with a NIC on each), or two
  // relays of one group, make a duplicate instance too.
  test('one group held for a VM on two bridges, or relayed twice: one row each, no failure', () => {
    const host: HostInfo = { ...HOST, interfaces: new Map([...HOST.interfaces, iface('br1', 3)]) };
    const view = lines(build(ROWS, {
      mdb: [],
      hostGroups: [],
      agent: {
        proxyJoins: [
          { group: '239.5.5.5', bridge: 'br0', vm: VM_A, since: 0, reason: 'incoming-migration' },
          { group: '239.5.5.5', bridge: 'br1', vm: VM_A, since: 0, reason: 'incoming-migration' },
        ],
        relays: [
          { group: '239.5.5.5', server: '192.0.2.10', port: 5000, state: 'failed' },
          { group: '239.5.5.5', server: '192.0.2.11', port: 5000, state: 'active' },
        ],
      },
    }, host));
    expect(view.filter((l) => l.startsWith('3.2.1.5.'))).toEqual([`3.2.1.5.1.4.239.5.5.5.${UUID_A} = Gauge32 7`]);
    expect(view.filter((l) => l.startsWith('3.3.1.6.'))).toHaveLength(1);
  });

  test('the captured dump, for a VM on vnet0: its groups, and not the solicited-node one', () => {
    const entries = parseMdbMessages(captured());
    const view = lines(build([vm(VM_A, 7, 3, 'vnet0')], { mdb: entries, hostGroups: [], agent: null }));
    expect(view.filter((l) => l.startsWith('1.1.'))).toEqual([
      '1.1.3.7.3.1.4.239.1.1.1 = INTEGER 2',
      '1.1.3.7.3.1.4.239.2.2.2 = INTEGER 2',
      '1.1.3.7.3.1.4.239.7.7.7 = INTEGER 1',
      '1.1.4.7.3.1.4.239.1.1.1 = INTEGER 2',
      '1.1.4.7.3.1.4.239.2.2.2 = INTEGER 1',
      '1.1.4.7.3.1.4.239.7.7.7 = INTEGER 1',
      '1.1.5.7.3.1.4.239.1.1.1 = TimeTicks 0',
      '1.1.5.7.3.1.4.239.2.2.2 = TimeTicks 25820',
      '1.1.5.7.3.1.4.239.7.7.7 = TimeTicks 25860',
    ]);
  });
});
