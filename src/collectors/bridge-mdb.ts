// The bridges' multicast databases (IGMP/MLD snooping and static entries),
// per port, through rtnetlink RTM_GETMDB — what `bridge mdb show` prints —
// and the RTNLGRP_MDB group that tells when they change.
import type { Collector } from './collector';
import { attributes, netlinkDump, NetlinkSubscription } from './netlink';
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
    const bridgeIfIndex = m.payload.readUInt32LE(4);
    for (const [type, mdb] of attributes(m.payload, 8)) {
      if (type !== MDBA_MDB) continue;
      for (const [t2, entry] of attributes(mdb)) {
        if (t2 !== MDBA_MDB_ENTRY) continue;
        for (const [t3, info] of attributes(entry)) {
          if (t3 !== MDBA_MDB_ENTRY_INFO || info.length < BR_MDB_ENTRY_SIZE) continue;
          const e = decodeEntry(bridgeIfIndex, info);
          if (e !== null) out.push(e);
        }
      }
    }
  }
  return out;
}

function decodeEntry(bridgeIfIndex: number, info: Buffer): MdbEntry | null {
  const portIfIndex = info.readUInt32LE(0);
  const state = info.readUInt8(4);
  const proto = info.readUInt16BE(24);
  let group: string;
  if (proto === ETH_P_IP) group = [...info.subarray(8, 12)].join('.');
  else if (proto === ETH_P_IPV6) group = ipv6Text(info.subarray(8, 24));
  else return null; // layer-2 (MAC) entries
  let timerCs = 0;
  let rtprot: number | null = null;
  for (const [type, value] of attributes(info, BR_MDB_ENTRY_SIZE)) {
    if (type === MDBA_MDB_EATTR_TIMER && value.length >= 4) timerCs = value.readUInt32LE(0);
    else if (type === MDBA_MDB_EATTR_RTPROT && value.length >= 1) rtprot = value.readUInt8(0);
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
function ipv6Text(bytes: Buffer): string {
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(bytes.readUInt16BE(i).toString(16));
  return words.join(':');
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
