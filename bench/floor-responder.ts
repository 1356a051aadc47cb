// The benchmark FLOOR: the least an AgentX subagent can do to serve a table
// through Net-SNMP (platform-notes §4.3). Open, Register one subtree, then
// answer Get/GetNext from a sorted array of pre-encoded varbinds by binary
// search. Deliberately shares no code with agentx/, so the measured floor does
// not move when the real codec does.
//
// Script: node dist/bench/floor-responder.js <agentx-address> <rows>
//   serves 1.3.6.1.3.9999.10.1.{1,2,3}.<1..rows> (Integer, OctetString, Counter64).
import * as net from 'node:net';

// RFC 2741 §6.1 PDU types and flags, §5.4 value types.
const PDU_OPEN = 1;
const PDU_CLOSE = 2;
const PDU_REGISTER = 3;
const PDU_GET = 5;
const PDU_GETNEXT = 6;
const PDU_RESPONSE = 18;
const FLAG_NON_DEFAULT_CONTEXT = 0x08;
const FLAG_NETWORK_BYTE_ORDER = 0x10;
const TYPE_INTEGER = 2;
const TYPE_OCTET_STRING = 4;
const TYPE_COUNTER64 = 70;
const TYPE_NO_SUCH_OBJECT = 128;
const TYPE_NO_SUCH_INSTANCE = 129;
const TYPE_END_OF_MIB_VIEW = 130;
const ERROR_GEN_ERR = 5;
const CLOSE_REASON_SHUTDOWN = 5;
const HEADER_LENGTH = 20;

export const FLOOR_TABLE_OID: readonly number[] = [1, 3, 6, 1, 3, 9999, 10];
export const FLOOR_ENTRY_OID: readonly number[] = [...FLOOR_TABLE_OID, 1];

export type FloorValue =
  | { type: 'Integer'; value: number }
  | { type: 'OctetString'; value: string }
  | { type: 'Counter64'; value: bigint };

export interface FloorRow {
  oid: readonly number[];
  value: FloorValue;
}

export interface FloorResponderOptions {
  /** "unix:/path", "/path", "tcp:host:port" or "host:port". */
  address: string;
  subtree: readonly number[];
  rows: readonly FloorRow[];
  description?: string;
}

export interface FloorResponder {
  readonly sessionId: number;
  /** Get/GetNext PDUs answered so far. */
  requestsServed(): number;
  stop(): Promise<void>;
}

/** Row i: index Integer i, name "row-i", Counter64 i·(2^32+15) so values exceed 32 bits. */
export function floorTableRows(rowCount: number): FloorRow[] {
  const rows: FloorRow[] = [];
  for (let column = 1; column <= 3; column++) {
    for (let i = 1; i <= rowCount; i++) {
      const oid = [...FLOOR_ENTRY_OID, column, i];
      if (column === 1) rows.push({ oid, value: { type: 'Integer', value: i } });
      else if (column === 2) rows.push({ oid, value: { type: 'OctetString', value: `row-${i}` } });
      else rows.push({ oid, value: { type: 'Counter64', value: BigInt(i) * 4294967311n } });
    }
  }
  return rows;
}

function compareOids(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length - b.length;
}

// RFC 2741 §5.1: 1.3.6.1.<prefix>.… is sent as prefix + remaining sub-ids.
function encodeOid(oid: readonly number[]): Buffer {
  const compress = oid.length >= 5 && oid[0] === 1 && oid[1] === 3 && oid[2] === 6 && oid[3] === 1 && oid[4] > 0 && oid[4] < 256;
  const subids = compress ? oid.slice(5) : oid;
  const out = Buffer.alloc(4 + 4 * subids.length);
  out.writeUInt8(subids.length, 0);
  out.writeUInt8(compress ? oid[4] : 0, 1);
  subids.forEach((s, i) => out.writeUInt32BE(s, 4 + 4 * i));
  return out;
}

function encodeOctetString(bytes: Buffer): Buffer {
  const out = Buffer.alloc(4 + Math.ceil(bytes.length / 4) * 4);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

function encodeVarbind(type: number, oid: readonly number[], data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(type, 0);
  return Buffer.concat([head, encodeOid(oid), data]);
}

function encodeRow(row: FloorRow): Buffer {
  const v = row.value;
  if (v.type === 'Integer') {
    const data = Buffer.alloc(4);
    data.writeInt32BE(v.value, 0);
    return encodeVarbind(TYPE_INTEGER, row.oid, data);
  }
  if (v.type === 'OctetString') return encodeVarbind(TYPE_OCTET_STRING, row.oid, encodeOctetString(Buffer.from(v.value, 'utf8')));
  const data = Buffer.alloc(8);
  data.writeBigUInt64BE(v.value, 0);
  return encodeVarbind(TYPE_COUNTER64, row.oid, data);
}

function header(type: number, sessionId: number, transactionId: number, packetId: number, payloadLength: number): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUInt8(1, 0); // h.version
  h.writeUInt8(type, 1);
  h.writeUInt8(FLAG_NETWORK_BYTE_ORDER, 2);
  h.writeUInt32BE(sessionId, 4);
  h.writeUInt32BE(transactionId, 8);
  h.writeUInt32BE(packetId, 12);
  h.writeUInt32BE(payloadLength, 16);
  return h;
}

/** Reads an OID at `offset` honouring the PDU's byte order (RFC 2741 §5.1). */
function readOid(pdu: Buffer, offset: number, bigEndian: boolean): { oid: number[]; include: boolean; next: number } {
  const count = pdu.readUInt8(offset);
  const prefix = pdu.readUInt8(offset + 1);
  const oid = prefix !== 0 ? [1, 3, 6, 1, prefix] : [];
  for (let i = 0; i < count; i++) {
    const at = offset + 4 + 4 * i;
    oid.push(bigEndian ? pdu.readUInt32BE(at) : pdu.readUInt32LE(at));
  }
  return { oid, include: pdu.readUInt8(offset + 2) !== 0, next: offset + 4 + 4 * count };
}

export function parseAgentxAddress(address: string): net.NetConnectOpts {
  if (address.startsWith('unix:')) return { path: address.slice(5) };
  if (address.startsWith('/')) return { path: address };
  const hostPort = address.startsWith('tcp:') ? address.slice(4) : address;
  const colon = hostPort.lastIndexOf(':');
  const port = Number(hostPort.slice(colon + 1));
  if (colon <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`invalid AgentX address "${address}": use unix:/path/agentx.sock or tcp:127.0.0.1:705`);
  }
  return { host: hostPort.slice(0, colon), port };
}

export async function startFloorResponder(opts: FloorResponderOptions): Promise<FloorResponder> {
  const table = opts.rows.map((row) => ({ oid: row.oid, encoded: encodeRow(row) })).sort((a, b) => compareOids(a.oid, b.oid));
  const subtree = opts.subtree;
  let sessionId = 0;
  let nextPacketId = 1;
  let served = 0;
  let stopping = false;
  const awaiting = new Map<number, (pdu: Buffer) => void>();

  // Lowest index whose OID is > oid (or >= oid when inclusive).
  const lowerBound = (oid: readonly number[], inclusive: boolean): number => {
    let lo = 0;
    let hi = table.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareOids(table[mid].oid, oid);
      if (c < 0 || (c === 0 && !inclusive)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };

  const target = parseAgentxAddress(opts.address);
  const socket = net.connect(target);
  if (!('path' in target)) socket.setNoDelay(true); // §4.2: Nagle costs ~2x on TCP
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err) => reject(new Error(`floor responder cannot connect to ${opts.address}: ${err.message}`)));
  });
  socket.on('error', () => undefined); // 'close' follows; nothing to recover in a benchmark

  const answer = (request: Buffer): void => {
    const type = request.readUInt8(1);
    const flags = request.readUInt8(2);
    const bigEndian = (flags & FLAG_NETWORK_BYTE_ORDER) !== 0;
    const varbinds: Buffer[] = [];
    let error = 0;
    if (type === PDU_GET || type === PDU_GETNEXT) {
      let offset = HEADER_LENGTH;
      if (flags & FLAG_NON_DEFAULT_CONTEXT) {
        const len = bigEndian ? request.readUInt32BE(offset) : request.readUInt32LE(offset);
        offset += 4 + Math.ceil(len / 4) * 4;
      }
      while (offset < request.length) {
        const start = readOid(request, offset, bigEndian);
        const end = readOid(request, start.next, bigEndian);
        offset = end.next;
        if (type === PDU_GET) {
          const i = lowerBound(start.oid, true);
          if (i < table.length && compareOids(table[i].oid, start.oid) === 0) varbinds.push(table[i].encoded);
          else {
            const inside = compareOids(start.oid.slice(0, subtree.length), subtree) === 0;
            varbinds.push(encodeVarbind(inside ? TYPE_NO_SUCH_INSTANCE : TYPE_NO_SUCH_OBJECT, start.oid, Buffer.alloc(0)));
          }
        } else {
          const i = lowerBound(start.oid, start.include);
          const inRange = i < table.length && (end.oid.length === 0 || compareOids(table[i].oid, end.oid) < 0);
          varbinds.push(inRange ? table[i].encoded : encodeVarbind(TYPE_END_OF_MIB_VIEW, start.oid, Buffer.alloc(0)));
        }
      }
      served++;
    } else {
      error = ERROR_GEN_ERR; // Floor serves reads only.
    }
    const fixed = Buffer.alloc(8); // res.sysUpTime 0, res.error, res.index 0
    fixed.writeUInt16BE(error, 4);
    const payloadLength = fixed.length + varbinds.reduce((n, b) => n + b.length, 0);
    const ids = (at: number): number => (bigEndian ? request.readUInt32BE(at) : request.readUInt32LE(at));
    const h = header(PDU_RESPONSE, ids(4), ids(8), ids(12), payloadLength);
    socket.write(Buffer.concat([h, fixed, ...varbinds]));
  };

  // Stream re-framing: one 'data' chunk may hold part of a PDU or several PDUs.
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= HEADER_LENGTH) {
      const bigEndian = (pending.readUInt8(2) & FLAG_NETWORK_BYTE_ORDER) !== 0;
      const length = HEADER_LENGTH + (bigEndian ? pending.readUInt32BE(16) : pending.readUInt32LE(16));
      if (pending.length < length) break;
      const pdu = pending.subarray(0, length);
      pending = pending.subarray(length);
      const type = pdu.readUInt8(1);
      if (type === PDU_RESPONSE) awaiting.get(bigEndian ? pdu.readUInt32BE(12) : pdu.readUInt32LE(12))?.(pdu);
      else if (type === PDU_CLOSE) socket.end();
      else answer(pdu);
    }
  });

  const request = (type: number, payload: Buffer): Promise<Buffer> => {
    const packetId = nextPacketId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no AgentX response to PDU type ${type} from ${opts.address} in 5 s`)), 5000);
      const onClose = (): void => reject(new Error(`${opts.address} closed the AgentX session during PDU type ${type}`));
      socket.once('close', onClose);
      awaiting.set(packetId, (pdu) => {
        clearTimeout(timer);
        socket.off('close', onClose);
        awaiting.delete(packetId);
        const bigEndian = (pdu.readUInt8(2) & FLAG_NETWORK_BYTE_ORDER) !== 0;
        const error = bigEndian ? pdu.readUInt16BE(HEADER_LENGTH + 4) : pdu.readUInt16LE(HEADER_LENGTH + 4);
        if (error !== 0) reject(new Error(`AgentX PDU type ${type} to ${opts.address} failed with res.error ${error}`));
        else resolve(pdu);
      });
      socket.write(Buffer.concat([header(type, sessionId, 0, packetId, payload.length), payload]));
    });
  };

  try {
    const openFixed = Buffer.from([0, 0, 0, 0]); // o.timeout 0 = master's default
    const openResponse = await request(
      PDU_OPEN,
      Buffer.concat([openFixed, encodeOid([]), encodeOctetString(Buffer.from(opts.description ?? 'vmm-agentx floor responder'))]),
    );
    const openBigEndian = (openResponse.readUInt8(2) & FLAG_NETWORK_BYTE_ORDER) !== 0;
    sessionId = openBigEndian ? openResponse.readUInt32BE(4) : openResponse.readUInt32LE(4);
    const registerFixed = Buffer.from([0, 127, 0, 0]); // timeout default, priority 127 (RFC 2741 §6.2.3)
    await request(PDU_REGISTER, Buffer.concat([registerFixed, encodeOid(subtree)]));
  } catch (err) {
    socket.destroy();
    throw err;
  }

  return {
    sessionId,
    requestsServed: () => served,
    stop: async () => {
      if (stopping) return;
      stopping = true;
      if (!socket.destroyed) {
        const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
        const reason = Buffer.from([CLOSE_REASON_SHUTDOWN, 0, 0, 0]);
        socket.end(Buffer.concat([header(PDU_CLOSE, sessionId, 0, nextPacketId++, reason.length), reason]));
        const timer = setTimeout(() => socket.destroy(), 1000);
        await closed;
        clearTimeout(timer);
      }
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const [address, rowsText] = argv;
  const rowCount = Number(rowsText);
  if (!address || !Number.isInteger(rowCount) || rowCount < 0) {
    process.stderr.write('usage: node dist/bench/floor-responder.js <agentx-address e.g. unix:/tmp/agentx.sock> <rows>\n');
    process.exit(2);
  }
  const responder = await startFloorResponder({ address, subtree: FLOOR_TABLE_OID, rows: floorTableRows(rowCount) });
  process.stdout.write(`floor responder: ${rowCount} rows (${rowCount * 3} varbinds) under 1.3.6.1.3.9999.10 via ${address}\n`);
  const shutdown = (): void => {
    void responder.stop().then(() => process.exit(0));
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`floor responder: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
