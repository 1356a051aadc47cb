import { adminString, integer, macBytes, scaleToInteger32, utf8Truncate, uuidBytes, counter64, timeTicks } from '../../src/model/values';
import { ValueType } from '../../agentx';

describe('SNMP value helpers', () => {
  test('SnmpAdminString is cut to 255 octets on a UTF-8 character boundary', () => {
    expect(utf8Truncate('a'.repeat(300), 255)).toHaveLength(255);
    // 'ß' is 2 bytes: 127 of them are 254 bytes, the 128th would straddle byte 255.
    const cut = utf8Truncate('ß'.repeat(200), 255);
    expect(cut.length).toBe(254);
    expect(cut.toString('utf8')).toBe('ß'.repeat(127));
    // '✓' is 3 bytes; 'x' + 85 of them = 256 bytes → one check mark dropped whole.
    const mixed = utf8Truncate('x' + '✓'.repeat(85), 255);
    expect(mixed.length).toBe(253);
    expect(Buffer.from(mixed.toString('utf8'), 'utf8').equals(mixed)).toBe(true);
    const v = adminString('grüße');
    expect(v.type === ValueType.OctetString && v.value.length).toBe(7);
  });

  test('Integer32 range is enforced and small integers are shared', () => {
    expect(integer(5)).toBe(integer(5));
    expect(() => integer(2 ** 31)).toThrow(RangeError);
    expect(() => integer(1.5)).toThrow(RangeError);
    expect(integer(-2147483648)).toEqual({ type: ValueType.Integer, value: -2147483648 });
  });

  test('scaleToInteger32 keeps the base unit while values fit and rounds up', () => {
    expect(scaleToInteger32([2048n * 1024n, 4096n * 1024n], 1024n)).toEqual({ unit: 1024, scaled: [2048, 4096] });
    expect(scaleToInteger32([1n, null], 1048576n)).toEqual({ unit: 1048576, scaled: [1, null] });
    // 4 TiB in KiB is 2^32: too big for Integer32 at unit 1024, fits at 1 MiB.
    const big = scaleToInteger32([4n << 40n, 1024n], 1024n);
    expect(big.unit).toBe(1048576);
    expect(big.scaled).toEqual([4194304, 1]);
  });

  test('MAC and UUID to bytes', () => {
    expect(macBytes('52:54:00:AB:cd:0f')).toEqual(Buffer.from([0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]));
    expect(macBytes('52:54:00')).toBeNull();
    expect(macBytes(null)).toBeNull();
    expect(uuidBytes('cd255090-d68d-4042-bc0f-13c69795266b').toString('hex')).toBe('cd255090d68d4042bc0f13c69795266b');
    expect(uuidBytes('not-a-uuid')).toHaveLength(0);
    expect(uuidBytes('CD255090D68D4042BC0F13C69795266B').toString('hex')).toBe('cd255090d68d4042bc0f13c69795266b');
    expect(uuidBytes('cd255090-d68d-4042-bc0f-13c69795266')).toHaveLength(0);
    expect(uuidBytes('cd255090-d68d-4042-bc0f-13c69795266b0')).toHaveLength(0);
    expect(uuidBytes('cd255090-d68d-4042-bc0f-13c69795266g')).toHaveLength(0);
    expect(uuidBytes('')).toHaveLength(0);
    expect(macBytes('52-54-0-a-bb-C')).toEqual(Buffer.from([0x52, 0x54, 0x00, 0x0a, 0xbb, 0x0c]));
    for (const bad of ['52:54:00:ab:cd:0f:', '52:54:00:ab:cd:0fx', '52::00:ab:cd:0f', '52:54:00:ab:cd:123', '52.54.00.ab.cd.0f', '']) {
      expect({ bad, bytes: macBytes(bad) }).toEqual({ bad, bytes: null });
    }
  });

  test('Counter64 and TimeTicks stay in range', () => {
    expect(counter64(-5n)).toEqual({ type: ValueType.Counter64, value: 0n });
    expect(counter64((1n << 64n) + 3n)).toEqual({ type: ValueType.Counter64, value: 3n });
    expect(timeTicks(2 ** 32 + 7)).toEqual({ type: ValueType.TimeTicks, value: 7 });
  });
});
