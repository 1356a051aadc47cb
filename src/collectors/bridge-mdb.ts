// The bridges' multicast databases (IGMP/MLD snooping and static entries),
// per port, through rtnetlink RTM_GETMDB — what `bridge mdb show` prints —
// and the RTNLGRP_MDB group that tells when they change.
import type { Collector } from './collector';
import { netlinkDump, NetlinkSubscription } from './netlink';
import type { MdbEntry } from '../snapshot';

const RTM_NEWMDB = 84;
const RTM_GETMDB = 86;
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

  async collect(): Promise<MdbEntry[]> {
    // struct br_port_msg { family = AF_BRIDGE, ifindex = 0: all bridges }.
    const request = Buffer.alloc(8);
    request.writeUInt8(AF_BRIDGE, 0);
    return Promise.resolve(parseMdbMessages(netlinkDump(RTM_GETMDB, request)));
  }
}

/** Calls `onChange` whenever a bridge's multicast database changes (RTNLGRP_MDB). */
export function watchBridgeMdb(onChange: () => void, onFailure: (err: Error) => void): NetlinkSubscription {
  return new NetlinkSubscription(RTNLGRP_MDB, onChange, onFailure);
}
