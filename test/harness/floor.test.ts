// The benchmark floor responder against a real snmpd: the numbers it produces
// are only a floor if it serves the same table correctly.
import { FLOOR_TABLE_OID, FloorResponder, floorTableRows, startFloorResponder } from '../../bench/floor-responder';
import { SnmpdInstance, startSnmpd } from './snmpd';
import { SnmpVarbindLine, snmpbulkwalk, snmpget, snmpwalk } from './snmp-tools';

const ROWS = 100;

function expectedTable(rows: number): SnmpVarbindLine[] {
  const expected: SnmpVarbindLine[] = [];
  for (let i = 1; i <= rows; i++) expected.push({ oid: `.1.3.6.1.3.9999.10.1.1.${i}`, type: 'INTEGER', value: String(i) });
  for (let i = 1; i <= rows; i++) expected.push({ oid: `.1.3.6.1.3.9999.10.1.2.${i}`, type: 'STRING', value: `row-${i}` });
  for (let i = 1; i <= rows; i++) {
    expected.push({ oid: `.1.3.6.1.3.9999.10.1.3.${i}`, type: 'Counter64', value: String(BigInt(i) * 4294967311n) });
  }
  return expected;
}

describe.each(['unix', 'tcp'] as const)('floor responder over %s', (transport) => {
  let snmpd: SnmpdInstance | undefined;
  let responder: FloorResponder | undefined;

  beforeAll(async () => {
    snmpd = await startSnmpd({ agentxTransport: transport });
    responder = await startFloorResponder({
      address: snmpd.agentxAddress,
      subtree: FLOOR_TABLE_OID,
      rows: floorTableRows(ROWS),
    });
  });

  afterAll(async () => {
    await responder?.stop();
    await snmpd?.dispose();
  });

  it(`bulkwalks all ${ROWS * 3} varbinds in order with their values`, async () => {
    const walk = await snmpbulkwalk(snmpd!, '1.3.6.1.3.9999.10');
    expect(walk.varbinds).toEqual(expectedTable(ROWS));
    // Net-SNMP turns an SNMP GetBulk into one AgentX GetNext per varbind (platform-notes §4.1), plus the end probe.
    expect(responder!.requestsServed()).toBeGreaterThanOrEqual(ROWS * 3);
  });

  it('gives the same answer to a GETNEXT walk', async () => {
    const walk = await snmpwalk(snmpd!, '1.3.6.1.3.9999.10.1.2');
    expect(walk.varbinds).toEqual(expectedTable(ROWS).slice(ROWS, 2 * ROWS));
  });

  it('answers Get, with noSuchInstance for a missing row', async () => {
    const get = await snmpget(snmpd!, ['1.3.6.1.3.9999.10.1.3.7', '1.3.6.1.3.9999.10.1.2.101', '1.3.6.1.3.9999.10.1.1.1']);
    expect(get.varbinds).toEqual([
      { oid: '.1.3.6.1.3.9999.10.1.3.7', type: 'Counter64', value: '30064771177' },
      { oid: '.1.3.6.1.3.9999.10.1.2.101', type: 'noSuchInstance', value: '' },
      { oid: '.1.3.6.1.3.9999.10.1.1.1', type: 'INTEGER', value: '1' },
    ]);
  });

  it('stop() closes the session so snmpd drops the registration', async () => {
    await responder!.stop();
    const get = await snmpget(snmpd!, ['1.3.6.1.3.9999.10.1.1.1']);
    expect(get.varbinds[0].type).toBe('noSuchObject');
  });
});
