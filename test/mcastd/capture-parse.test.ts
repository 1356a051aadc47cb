// The packet parser and address helpers of the multicast capture, on crafted
// packets: no socket, no privileges.
import { canonicalGroup, formatIpv6, parseUdp } from '../../src/mcastd/capture';
import { mulberry32 } from '../harness/mulberry32';

function ipv6Bytes(text: string): number[] {
  const [head, tail = ''] = text.split('::');
  const words = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const h = words(head);
  const t = words(tail);
  return [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t].flatMap((w) => [w >> 8, w & 0xff]);
}

function udp4(payload: Buffer, options: { ihlWords?: number; flagsOffset?: number; dst?: number[] } = {}): Buffer {
  const ihl = (options.ihlWords ?? 5) * 4;
  const p = Buffer.alloc(ihl + 8 + payload.length);
  p[0] = 0x40 | (ihl / 4);
  p.writeUInt16BE(p.length, 2);
  p.writeUInt16BE(options.flagsOffset ?? 0, 6);
  p[8] = 7;
  p[9] = 17;
  Buffer.from([192, 0, 2, 1]).copy(p, 12);
  Buffer.from(options.dst ?? [239, 1, 2, 3]).copy(p, 16);
  p.writeUInt16BE(4000, ihl);
  p.writeUInt16BE(5001, ihl + 2);
  p.writeUInt16BE(8 + payload.length, ihl + 4);
  payload.copy(p, ihl + 8);
  return p;
}

/** An IPv6 UDP packet, with extension headers given as [type, bytes] in order. */
function udp6(payload: Buffer, extensions: Array<[number, Buffer]> = []): Buffer {
  const ext = Buffer.concat(extensions.map(([, b]) => b));
  const p = Buffer.alloc(40 + ext.length + 8 + payload.length);
  p[0] = 0x60;
  p.writeUInt16BE(p.length - 40, 4);
  p[6] = extensions.length > 0 ? extensions[0][0] : 17;
  p[7] = 1;
  Buffer.from(ipv6Bytes('2001:db8::1')).copy(p, 8);
  Buffer.from(ipv6Bytes('ff0e::1:2')).copy(p, 24);
  let off = 40;
  extensions.forEach(([, b], i) => {
    b.copy(p, off);
    p[off] = i + 1 < extensions.length ? extensions[i + 1][0] : 17;
    off += b.length;
  });
  p.writeUInt16BE(4000, off);
  p.writeUInt16BE(5002, off + 2);
  p.writeUInt16BE(8 + payload.length, off + 4);
  payload.copy(p, off + 8);
  return p;
}

/** An options-type extension header (hop-by-hop, routing, destination options) of `units` × 8 bytes. */
function optionsHeader(units: number): Buffer {
  const b = Buffer.alloc(units * 8);
  b[1] = units - 1;
  return b;
}

function fragmentHeader(offsetUnits: number, more: boolean): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt16BE((offsetUnits << 3) | (more ? 1 : 0), 2);
  return b;
}

const payload = Buffer.from('numbered stream payload');

describe('parseUdp', () => {
  test('an IPv4 UDP datagram: ports, payload, TTL; options in the header are skipped', () => {
    for (const ihlWords of [5, 6, 15]) {
      const p = udp4(payload, { ihlWords });
      const u = parseUdp(p, p.length);
      expect(u).toMatchObject({ family: 4, sourcePort: 4000, port: 5001, hopLimit: 7, fragment: false, destinationOffset: 16, sourceOffset: 12 });
      expect(p.subarray(u!.payloadOffset, u!.payloadOffset + u!.payloadLength).toString()).toBe(payload.toString());
    }
  });

  test('link padding after the IPv4 packet is not payload', () => {
    const p = Buffer.concat([udp4(Buffer.from('ab')), Buffer.alloc(20)]);
    const u = parseUdp(p, p.length);
    expect(u?.payloadLength).toBe(2);
  });

  test('IPv4 fragments: a later one is skipped, the first is flagged', () => {
    const later = udp4(payload, { flagsOffset: 0x2000 | 185 });
    expect(parseUdp(later, later.length)).toBeNull();
    const last = udp4(payload, { flagsOffset: 185 });
    expect(parseUdp(last, last.length)).toBeNull();
    const first = udp4(payload, { flagsOffset: 0x2000 });
    expect(parseUdp(first, first.length)?.fragment).toBe(true);
    const dontFragment = udp4(payload, { flagsOffset: 0x4000 });
    expect(parseUdp(dontFragment, dontFragment.length)?.fragment).toBe(false);
  });

  test('an IPv6 UDP datagram, also behind hop-by-hop, routing and destination options headers', () => {
    for (const ext of [[], [[0, optionsHeader(1)]], [[0, optionsHeader(1)], [43, optionsHeader(3)], [60, optionsHeader(2)]]] as Array<Array<[number, Buffer]>>) {
      const p = udp6(payload, ext);
      const u = parseUdp(p, p.length);
      expect(u).toMatchObject({ family: 6, sourcePort: 4000, port: 5002, hopLimit: 1, fragment: false, destinationOffset: 24, sourceOffset: 8 });
      expect(p.subarray(u!.payloadOffset, u!.payloadOffset + u!.payloadLength).toString()).toBe(payload.toString());
    }
  });

  test('IPv6 fragments: a later one is skipped, the first is flagged', () => {
    const later = udp6(payload, [[44, fragmentHeader(20, true)]]);
    expect(parseUdp(later, later.length)).toBeNull();
    const first = udp6(payload, [[44, fragmentHeader(0, true)]]);
    expect(parseUdp(first, first.length)?.fragment).toBe(true);
  });

  test('not UDP: another protocol, an unknown extension header, another version', () => {
    const tcp = udp4(payload);
    tcp[9] = 6;
    expect(parseUdp(tcp, tcp.length)).toBeNull();
    const esp = udp6(payload, [[50, optionsHeader(1)]]);
    expect(parseUdp(esp, esp.length)).toBeNull();
    const v5 = udp4(payload);
    v5[0] = 0x55;
    expect(parseUdp(v5, v5.length)).toBeNull();
  });

  test('every truncation of good packets is refused, never thrown', () => {
    const packets = [udp4(payload), udp4(payload, { ihlWords: 7 }), udp6(payload), udp6(payload, [[0, optionsHeader(2)], [44, fragmentHeader(0, true)]])];
    for (const p of packets) {
      for (let n = 0; n < p.length; n++) {
        // The parser is told the true captured length; the buffer is larger, as the capture's is.
        const buf = Buffer.concat([p.subarray(0, n), Buffer.alloc(64)]);
        expect(() => parseUdp(buf, n)).not.toThrow();
        expect(parseUdp(buf, n)).toBeNull();
      }
    }
  });

  test('lengths that lie (IP total or payload length, UDP length, header length) are refused', () => {
    const total = udp4(payload);
    total.writeUInt16BE(total.length + 1, 2);
    const udpLength = udp4(payload);
    udpLength.writeUInt16BE(200, 24);
    const udpShort = udp4(payload);
    udpShort.writeUInt16BE(7, 24);
    const ihl = udp4(payload);
    ihl[0] = 0x44;
    const v6Length = udp6(payload);
    v6Length.writeUInt16BE(4000, 4);
    const jumbo = udp6(payload);
    jumbo.writeUInt16BE(0, 4);
    const chain = udp6(payload, [[60, optionsHeader(1)]]);
    chain[41] = 200;
    for (const p of [total, udpLength, udpShort, ihl, v6Length, jumbo, chain]) expect(parseUdp(p, p.length)).toBeNull();
    expect(parseUdp(Buffer.alloc(0), 0)).toBeNull();
    expect(parseUdp(Buffer.alloc(10), 20)).toBeNull();
  });

  test('random bytes never throw', () => {
    const next = mulberry32(14);
    const random = (): number => next() / 2 ** 32;
    const buf = Buffer.alloc(256);
    let parsed = 0;
    const fuzz = (): void => {
      for (let i = 0; i < 5000; i++) {
        const n = Math.floor(random() * 256);
        for (let j = 0; j < n; j++) buf[j] = Math.floor(random() * 256);
        // Half of them look like IPv4 or IPv6 UDP so that the deeper checks run.
        if (i % 2 === 0 && n > 10) {
          buf[0] = random() < 0.5 ? 0x45 : 0x60;
          buf[9] = 17;
          buf[6] = [0, 17, 43, 44, 60][Math.floor(random() * 5)];
        }
        if (parseUdp(buf, n) !== null) parsed++;
      }
    };
    expect(fuzz).not.toThrow();
    expect(parsed).toBeLessThan(5000);
  });
});

describe('addresses', () => {
  test('canonicalGroup: RFC 5952 IPv6, dotted IPv4; a unicast address is refused', () => {
    expect(canonicalGroup('FF0E:0:0:0:0:0:1:2')).toBe('ff0e::1:2');
    expect(canonicalGroup('ff02::1:ff00:1')).toBe('ff02::1:ff00:1');
    expect(canonicalGroup('239.1.2.3')).toBe('239.1.2.3');
    expect(() => canonicalGroup('10.0.0.1')).toThrow(/not a multicast/);
    expect(() => canonicalGroup('2001:db8::1')).toThrow(/not a multicast/);
    expect(() => canonicalGroup('nonsense')).toThrow(/not a multicast/);
  });

  test('formatIpv6 compresses the longest run of zero words only, and not a single one', () => {
    expect(formatIpv6(Buffer.from(ipv6Bytes('2001:db8:0:0:1:0:0:1')))).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(Buffer.from(ipv6Bytes('2001:db8:0:1:1:1:1:1')))).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpv6(Buffer.alloc(16))).toBe('::');
    expect(formatIpv6(Buffer.from(ipv6Bytes('fe80::1')))).toBe('fe80::1');
    expect(formatIpv6(Buffer.from(ipv6Bytes('1::')))).toBe('1::');
  });
});
