// Test oracle: builds AgentX PDUs byte by byte from the RFC 2741 layouts.
// Deliberately plain and independent of agentx/ (no imports from it, no shared
// helpers): if codec and builder agree, two separate readings of the RFC agree.
// Numbers used here are the RFC's wire values, written out on purpose.

export type ByteOrder = 'be' | 'le';

export interface HeaderSpec {
  type: number;
  /** Flag bits other than NETWORK_BYTE_ORDER (0x10), which `build` sets from the byte order. */
  flags?: number;
  sessionId?: number;
  transactionId?: number;
  packetId?: number;
}

export class PduBuilder {
  private readonly bytes: number[] = [];

  constructor(readonly order: ByteOrder = 'be') {}

  get length(): number {
    return this.bytes.length;
  }

  addUInt8(n: number): this {
    this.bytes.push(n & 0xff);
    return this;
  }

  addUInt16(n: number): this {
    const hi = (n >>> 8) & 0xff;
    const lo = n & 0xff;
    if (this.order === 'be') this.bytes.push(hi, lo);
    else this.bytes.push(lo, hi);
    return this;
  }

  addUInt32(n: number): this {
    const b = [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
    if (this.order === 'le') b.reverse();
    this.bytes.push(...b);
    return this;
  }

  addInt32(n: number): this {
    return this.addUInt32(n >>> 0);
  }

  addUInt64(n: bigint): this {
    const b: number[] = [];
    for (let shift = 56n; shift >= 0n; shift -= 8n) b.push(Number((n >> shift) & 0xffn));
    if (this.order === 'le') b.reverse();
    this.bytes.push(...b);
    return this;
  }

  addZeros(n: number): this {
    for (let i = 0; i < n; i++) this.bytes.push(0);
    return this;
  }

  /** Raw bytes, e.g. to add garbage. */
  addHex(hex: string): this {
    for (let i = 0; i < hex.length; i += 2) this.bytes.push(parseInt(hex.slice(i, i + 2), 16));
    return this;
  }

  /**
   * An OID exactly as it goes on the wire (§5.1): the caller states the prefix
   * and the sub-ids after it, so compression is spelled out in each test.
   */
  addOid(subids: number[], opts: { prefix?: number; include?: boolean } = {}): this {
    this.addUInt8(subids.length);
    this.addUInt8(opts.prefix ?? 0);
    this.addUInt8(opts.include ? 1 : 0);
    this.addUInt8(0);
    for (const s of subids) this.addUInt32(s);
    return this;
  }

  /** §5.3: length, bytes, zero padding to a multiple of 4. Strings are taken as UTF-8. */
  addOctets(data: Buffer | string): this {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    this.addUInt32(buf.length);
    for (const byte of buf) this.bytes.push(byte);
    while (this.bytes.length % 4 !== 0) this.bytes.push(0);
    return this;
  }

  /** §5.4 varbind header: type, reserved; the caller adds name and value. */
  addVarBindHead(type: number): this {
    return this.addUInt16(type).addZeros(2);
  }

  /** The payload alone. */
  payload(): Buffer {
    return Buffer.from(this.bytes);
  }

  /** Header (§6.1) + payload; payload_length is the number of bytes added so far. */
  build(h: HeaderSpec): Buffer {
    const header = new PduBuilder(this.order);
    header.addUInt8(1);
    header.addUInt8(h.type);
    header.addUInt8((h.flags ?? 0) | (this.order === 'be' ? 0x10 : 0));
    header.addUInt8(0);
    header.addUInt32(h.sessionId ?? 0);
    header.addUInt32(h.transactionId ?? 0);
    header.addUInt32(h.packetId ?? 0);
    header.addUInt32(this.bytes.length);
    return Buffer.concat([header.payload(), this.payload()]);
  }
}

// ---- a sample of every PDU type, for the framer and fuzz tests ----

const IDS = { sessionId: 0x01020304, transactionId: 0x0a0b0c0d, packetId: 0x11223344 };

/** One or more frames of each of the 18 PDU types, in the given byte order. */
export function sampleFrames(order: ByteOrder): Buffer[] {
  const b = (): PduBuilder => new PduBuilder(order);
  const frames: Buffer[] = [];
  // Open (1)
  frames.push(b().addUInt8(5).addZeros(3).addOid([1, 8072, 3, 2, 10], { prefix: 4 }).addOctets('vmm-agentx').build({ type: 1, ...IDS }));
  // Close (2)
  frames.push(b().addUInt8(5).addZeros(3).build({ type: 2, ...IDS }));
  // Register (3), plain and with context + range
  frames.push(b().addUInt8(0).addUInt8(127).addUInt8(0).addZeros(1).addOid([1, 236], { prefix: 2 }).build({ type: 3, ...IDS }));
  frames.push(
    b().addOctets('ctx').addUInt8(30).addUInt8(200).addUInt8(10).addZeros(1)
      .addOid([1, 2, 2, 1, 1, 7], { prefix: 2 }).addUInt32(22).build({ type: 3, flags: 0x09, ...IDS }),
  );
  // Unregister (4)
  frames.push(b().addZeros(1).addUInt8(127).addUInt8(0).addZeros(1).addOid([1, 236], { prefix: 2 }).build({ type: 4, ...IDS }));
  // Get (5), GetNext (6)
  frames.push(
    b().addOid([1, 1, 1, 0], { prefix: 2 }).addOid([]).addOid([1, 3, 6, 1, 2, 1, 1, 5, 0]).addOid([]).build({ type: 5, ...IDS }),
  );
  frames.push(b().addOid([1, 236, 1], { prefix: 2, include: true }).addOid([1, 237], { prefix: 2 }).build({ type: 6, ...IDS }));
  // GetBulk (7)
  frames.push(
    b().addUInt16(1).addUInt16(10).addOid([1, 1, 3], { prefix: 2 }).addOid([]).addOid([1, 2, 2, 1, 2], { prefix: 2 }).addOid([])
      .build({ type: 7, ...IDS }),
  );
  // TestSet (8) with every value type
  const testSet = b();
  testSet.addVarBindHead(2).addOid([1, 1], { prefix: 3 }).addInt32(-5);
  testSet.addVarBindHead(4).addOid([1, 2], { prefix: 3 }).addOctets('grüße ✓');
  testSet.addVarBindHead(5).addOid([1, 3], { prefix: 3 });
  testSet.addVarBindHead(6).addOid([1, 4], { prefix: 3 }).addOid([1, 4, 1, 8072], { prefix: 0 });
  testSet.addVarBindHead(64).addOid([1, 5], { prefix: 3 }).addOctets(Buffer.from([192, 0, 2, 1]));
  testSet.addVarBindHead(65).addOid([1, 6], { prefix: 3 }).addUInt32(0xffffffff);
  testSet.addVarBindHead(66).addOid([1, 7], { prefix: 3 }).addUInt32(7);
  testSet.addVarBindHead(67).addOid([1, 8], { prefix: 3 }).addUInt32(123456);
  testSet.addVarBindHead(68).addOid([1, 9], { prefix: 3 }).addOctets(Buffer.from([0x9f, 0x78, 0x04, 0x3f, 0x80, 0, 0]));
  testSet.addVarBindHead(70).addOid([1, 10], { prefix: 3 }).addUInt64(0x0123456789abcdefn);
  testSet.addVarBindHead(128).addOid([1, 11], { prefix: 3 });
  testSet.addVarBindHead(129).addOid([1, 12], { prefix: 3 });
  testSet.addVarBindHead(130).addOid([1, 13], { prefix: 3 });
  frames.push(testSet.build({ type: 8, ...IDS }));
  // CommitSet (9), UndoSet (10), CleanupSet (11)
  for (const type of [9, 10, 11]) frames.push(b().build({ type, ...IDS }));
  // Notify (12)
  frames.push(
    b().addVarBindHead(67).addOid([1, 1, 3, 0], { prefix: 2 }).addUInt32(4711)
      .addVarBindHead(6).addOid([1, 1, 4, 1, 0], { prefix: 6 }).addOid([1, 236, 0, 1], { prefix: 2 })
      .build({ type: 12, ...IDS }),
  );
  // Ping (13) with context
  frames.push(b().addOctets('vrf-blue').build({ type: 13, flags: 0x08, ...IDS }));
  // IndexAllocate (14), IndexDeallocate (15)
  frames.push(b().addVarBindHead(2).addOid([1, 236, 9, 1], { prefix: 2 }).addInt32(0).build({ type: 14, flags: 0x04, ...IDS }));
  frames.push(b().addVarBindHead(2).addOid([1, 236, 9, 1], { prefix: 2 }).addInt32(3).build({ type: 15, ...IDS }));
  // AddAgentCaps (16), RemoveAgentCaps (17)
  frames.push(b().addOid([1, 236, 2, 1], { prefix: 2 }).addOctets('VM-MIB compliance').build({ type: 16, ...IDS }));
  frames.push(b().addOid([1, 236, 2, 1], { prefix: 2 }).build({ type: 17, ...IDS }));
  // Response (18)
  frames.push(
    b().addUInt32(105).addUInt16(0).addUInt16(0)
      .addVarBindHead(4).addOid([1, 236, 1, 2, 1, 3, 42], { prefix: 2 }).addOctets('vm-042')
      .build({ type: 18, ...IDS }),
  );
  frames.push(b().addUInt32(1).addUInt16(263).addUInt16(1).build({ type: 18, ...IDS }));
  return frames;
}
