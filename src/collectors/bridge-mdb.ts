// The bridges' multicast databases (IGMP/MLD snooping and static entries),
// per port, through rtnetlink RTM_GETMDB — what `bridge mdb show` prints —
// and the RTNLGRP_MDB group that tells when they change.
import type { Collector } from './collector';
import * as net from 'net';
import { netlinkDump, netlinkRequest, NetlinkError, NetlinkSubscription } from './netlink';
import type { MdbEntry } from '../snapshot';

const RTM_NEWMDB = 84;
const RTM_DELMDB = 85;
const RTM_GETMDB = 86;
const MDBA_SET_ENTRY = 1;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const EEXIST = 17;
const ENOENT = 2;
const EINVAL = 22;
const RTNLGRP_MDB = 26;
const AF_BRIDGE = 7;
const MDBA_MDB = 1;
const MDBA_MDB_ENTRY = 1;
const MDBA_MDB_ENTRY_INFO = 1;
const MDBA_MDB_EATTR_TIMER = 1;
const MDBA_MDB_EATTR_RTPROT = 5;
/** struct br_mdb_entry: ifindex u32, state u8, flags u8, vid u16, addr { u[16], proto be16 } (+2 padding). */
const BR_MDB_ENTRY_SIZE = 28;
const MDB_PERMANENT = 1;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const RTPROT_STATIC = 4;

/**
 * Decodes the messages of an RTM_GETMDB dump (the kernel answers with that
 * type; notifications are RTM_NEWMDB): each a struct br_port_msg, then
 * MDBA_MDB. Pure, for tests with captured bytes.
 */
export function parseMdbMessages(messages: readonly { type: number; payload: Buffer }[]): MdbEntry[] {
  const out: MdbEntry[] = [];
  for (const m of messages) {
    if ((m.type !== RTM_GETMDB && m.type !== RTM_NEWMDB) || m.payload.length < 8) continue;
    // struct br_port_msg: family u8, 3 bytes padding, ifindex u32 (the bridge).
    const p = m.payload;
    const bridgeIfIndex = p.readUInt32LE(4);
    // Offsets, not attributes(): a generator and a Buffer view per attribute cost more than the kernel's dump.
    for (let a = 8; a + 4 <= p.length;) {
      const aLen = p.readUInt16LE(a);
      if (aLen < 4 || a + aLen > p.length) break;
      if ((p.readUInt16LE(a + 2) & 0x3fff) === MDBA_MDB) {
        for (let b = a + 4, bEnd = a + aLen; b + 4 <= bEnd;) {
          const bLen = p.readUInt16LE(b);
          if (bLen < 4 || b + bLen > bEnd) break;
          if ((p.readUInt16LE(b + 2) & 0x3fff) === MDBA_MDB_ENTRY) {
            for (let c = b + 4, cEnd = b + bLen; c + 4 <= cEnd;) {
              const cLen = p.readUInt16LE(c);
              if (cLen < 4 || c + cLen > cEnd) break;
              if ((p.readUInt16LE(c + 2) & 0x3fff) === MDBA_MDB_ENTRY_INFO && cLen - 4 >= BR_MDB_ENTRY_SIZE) {
                const e = decodeEntry(bridgeIfIndex, p, c + 4, c + cLen);
                if (e !== null) out.push(e);
              }
              c += (cLen + 3) & ~3;
            }
          }
          b += (bLen + 3) & ~3;
        }
      }
      a += (aLen + 3) & ~3;
    }
  }
  return out;
}

/** The MDBA_MDB_ENTRY_INFO value at p[start, end): struct br_mdb_entry, then MDBA_MDB_EATTR_* attributes. */
function decodeEntry(bridgeIfIndex: number, p: Buffer, start: number, end: number): MdbEntry | null {
  const portIfIndex = p.readUInt32LE(start);
  const state = p[start + 4];
  const proto = p.readUInt16BE(start + 24);
  const g = start + 8;
  let group: string;
  if (proto === ETH_P_IP) group = `${p[g]}.${p[g + 1]}.${p[g + 2]}.${p[g + 3]}`;
  else if (proto === ETH_P_IPV6) group = ipv6Text(p, g);
  else return null; // layer-2 (MAC) entries
  let timerCs = 0;
  let rtprot: number | null = null;
  for (let a = start + BR_MDB_ENTRY_SIZE; a + 4 <= end;) {
    const len = p.readUInt16LE(a);
    if (len < 4 || a + len > end) break;
    const type = p.readUInt16LE(a + 2) & 0x3fff;
    if (type === MDBA_MDB_EATTR_TIMER && len >= 8) timerCs = p.readUInt32LE(a + 4);
    else if (type === MDBA_MDB_EATTR_RTPROT && len >= 5) rtprot = p[a + 4];
    a += (len + 3) & ~3;
  }
  const permanent = state === MDB_PERMANENT;
  return {
    bridgeIfIndex,
    portIfIndex,
    group,
    permanent,
    // Kernels before 5.11 do not say who added an entry: then a permanent one was configured.
    configured: rtprot === null ? permanent : rtprot === RTPROT_STATIC,
    timerCs,
  };
}

/** Full (uncompressed) lowercase IPv6 text: the model turns it back into 16 bytes, logs show it. */
function ipv6Text(p: Buffer, at: number): string {
  let text = ((p[at] << 8) | p[at + 1]).toString(16);
  for (let i = at + 2; i < at + 16; i += 2) text += `:${((p[i] << 8) | p[i + 1]).toString(16)}`;
  return text;
}

/** Every port entry of every bridge in this network namespace. */
export class BridgeMdbCollector implements Collector<void, MdbEntry[]> {
  readonly name = 'bridge-mdb';

  /** struct br_port_msg { family = AF_BRIDGE, ifindex = 0: all bridges }. */
  private readonly request = Buffer.from([AF_BRIDGE, 0, 0, 0, 0, 0, 0, 0]);

  async collect(): Promise<MdbEntry[]> {
    return Promise.resolve(parseMdbMessages(netlinkDump(RTM_GETMDB, this.request)));
  }
}

/**
 * struct br_port_msg for `bridgeIfIndex`, then MDBA_SET_ENTRY holding a
 * struct br_mdb_entry for a temporary (*, G) entry on `portIfIndex` — what
 * `bridge mdb add|del dev BR port P grp G temp` sends.
 */
function mdbEntryRequest(bridgeIfIndex: number, portIfIndex: number, group: string): Buffer {
  const family = net.isIP(group);
  if (family === 0) throw new Error(`"${group}" is not an IP address`);
  const b = Buffer.alloc(8 + 4 + BR_MDB_ENTRY_SIZE);
  b.writeUInt8(AF_BRIDGE, 0);
  b.writeUInt32LE(bridgeIfIndex, 4);
  b.writeUInt16LE(4 + BR_MDB_ENTRY_SIZE, 8);
  b.writeUInt16LE(MDBA_SET_ENTRY, 10);
  const e = 12;
  b.writeUInt32LE(portIfIndex, e);
  // state MDB_TEMPORARY (0), flags 0, vid 0: as a learned entry, aged by the bridge's membership interval.
  if (family === 4) {
    group.split('.').forEach((octet, i) => b.writeUInt8(Number(octet), e + 8 + i));
  } else {
    ipv6Bytes(group).copy(b, e + 8);
  }
  b.writeUInt16BE(family === 4 ? ETH_P_IP : ETH_P_IPV6, e + 24);
  return b;
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail = ''] = address.split('::');
  const words = (t: string): number[] => (t === '' ? [] : t.split(':').map((w) => parseInt(w, 16)));
  const h = words(head);
  const t = words(tail);
  const all = address.includes('::') ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** Adds a temporary entry for `group` on a bridge port; one already there (the VM's own report came first) is kept. */
export function addMdbEntry(bridgeIfIndex: number, portIfIndex: number, group: string): void {
  try {
    netlinkRequest(RTM_NEWMDB, NLM_F_CREATE | NLM_F_EXCL, mdbEntryRequest(bridgeIfIndex, portIfIndex, group));
  } catch (err) {
    if (!(err instanceof NetlinkError && err.errno === EEXIST)) throw err;
  }
}

/** Removes the entry; one already gone (aged out, or its port left) is no error. */
export function deleteMdbEntry(bridgeIfIndex: number, portIfIndex: number, group: string): void {
  try {
    netlinkRequest(RTM_DELMDB, 0, mdbEntryRequest(bridgeIfIndex, portIfIndex, group));
  } catch (err) {
    if (!(err instanceof NetlinkError && (err.errno === ENOENT || err.errno === EINVAL))) throw err;
  }
}

/** Calls `onChange` whenever a bridge's multicast database changes (RTNLGRP_MDB). */
export function watchBridgeMdb(onChange: () => void, onFailure: (err: Error) => void): NetlinkSubscription {
  return new NetlinkSubscription(RTNLGRP_MDB, onChange, onFailure);
}
