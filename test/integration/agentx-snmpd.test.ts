// agentx/ against a real, private Net-SNMP snmpd: what a manager sees through
// the master with the Net-SNMP tools.
import * as path from 'path';
import { existsSync } from 'fs';
import * as v8 from 'v8';
import * as vm from 'vm';
// The npm net-snmp package is the SNMP manager here (it ships no types).
const snmp = require('net-snmp');
import { startSnmpd, SnmpdInstance } from '../harness/snmpd';
import { startSnmptrapd, TrapReceiver } from '../harness/snmptrapd';
import { runSnmpTool, snmpbulkwalk, snmpget, snmpwalk } from '../harness/snmp-tools';
import { pollUntil } from '../harness/poll';
import { isPidAlive, ManagedProcess, spawnManaged, stopProcess } from '../harness/process';
import { DEMO_CAPS, DEMO_WRITABLE, startTableAgent, TableAgent } from '../../bench/table-agent';
import { ValueType } from '../../agentx';

const ROWS = 300;
const TABLE = '.1.3.6.1.3.9999.10';
const TABLE_AGENT_JS = path.resolve(__dirname, '../../dist/bench/table-agent.js');

for (const transport of ['unix', 'tcp'] as const) {
  describe(`agentx/ through a real snmpd over ${transport}`, () => {
    let snmpd: SnmpdInstance;
    let agent: TableAgent;

    beforeAll(async () => {
      snmpd = await startSnmpd({ agentxTransport: transport, extraConfig: ['rwcommunity private 127.0.0.1'] });
      agent = await startTableAgent(snmpd.agentxAddress, ROWS);
    });
    afterAll(async () => {
      await agent?.stop();
      await snmpd?.dispose();
    });

    test('snmpget reads a scalar and a table cell with the right types', async () => {
      const r = await snmpget(snmpd, ['.1.3.6.1.3.9999.1.0', `${TABLE}.1.2.7`, `${TABLE}.1.3.${ROWS}`]);
      expect(r.varbinds).toEqual([
        { oid: '.1.3.6.1.3.9999.1.0', type: 'INTEGER', value: '42' },
        { oid: `${TABLE}.1.2.7`, type: 'STRING', value: 'row-7' },
        { oid: `${TABLE}.1.3.${ROWS}`, type: 'Counter64', value: (BigInt(ROWS) * 4294967311n).toString() },
      ]);
    });

    test('a missing row is noSuchInstance, a missing column noSuchObject', async () => {
      const r = await snmpget(snmpd, [`${TABLE}.1.2.${ROWS + 1}`, `${TABLE}.1.9.1`]);
      expect(r.varbinds.map((v) => v.type)).toEqual(['noSuchInstance', 'noSuchObject']);
    });

    test('snmpwalk and snmpbulkwalk return the whole table, identically, in order', async () => {
      const walk = await snmpwalk(snmpd, TABLE);
      const bulk = await snmpbulkwalk(snmpd, TABLE);
      expect(walk.varbinds).toHaveLength(3 * ROWS);
      expect(bulk.stdout).toBe(walk.stdout);
      expect(walk.varbinds[0]).toEqual({ oid: `${TABLE}.1.1.1`, type: 'INTEGER', value: '1' });
      expect(walk.varbinds[3 * ROWS - 1].oid).toBe(`${TABLE}.1.3.${ROWS}`);
    });

    test('10 concurrent bulkwalks all complete with identical output', async () => {
      const walks = await Promise.all(Array.from({ length: 10 }, () => snmpbulkwalk(snmpd, TABLE, ['-Cr25'])));
      for (const w of walks) {
        expect(w.varbinds).toHaveLength(3 * ROWS);
        expect(w.stdout).toBe(walks[0].stdout);
      }
    });

    test('the agent capabilities appear in sysORTable', async () => {
      const r = await snmpwalk(snmpd, '.1.3.6.1.2.1.1.9.1');
      const id = r.varbinds.find((v) => v.oid.startsWith('.1.3.6.1.2.1.1.9.1.2.') && v.value === `.${DEMO_CAPS.join('.')}`);
      expect(id).toBeDefined();
      const row = id!.oid.split('.').pop();
      const descr = r.varbinds.find((v) => v.oid === `.1.3.6.1.2.1.1.9.1.3.${row}`);
      expect(descr?.value).toBe('vmm-agentx demo table capabilities');
    });

    test('snmpset goes through TestSet/CommitSet to the writable object, with RFC errors', async () => {
      const set = (type: string, value: string) => runSnmpTool('snmpset', snmpd, [`${DEMO_WRITABLE.join('.')}.0`, type, value],
        [], { community: 'private', allowFailure: true });
      const ok = await set('i', '17');
      expect(ok.exitCode).toBe(0);
      expect(agent.writableValue()).toBe(17);
      expect((await snmpget(snmpd, ['.1.3.6.1.3.9999.1.0'])).varbinds[0].value).toBe('17');
      const wrongValue = await set('i', '1000');
      expect(wrongValue.stderr).toMatch(/wrongValue/);
      const wrongType = await set('s', 'x');
      expect(wrongType.stderr).toMatch(/wrongType/);
      const readOnly = await runSnmpTool('snmpset', snmpd, [`${TABLE}.1.2.1`, 's', 'x'], [], { community: 'private', allowFailure: true });
      expect(readOnly.stderr).toMatch(/notWritable/);
      expect(agent.writableValue()).toBe(17);
    });
  });
}

describe('a Notify reaches a real snmptrapd through snmpd', () => {
  let snmpd: SnmpdInstance;
  let traps: TrapReceiver;
  let agent: TableAgent;
  beforeAll(async () => {
    traps = await startSnmptrapd();
    snmpd = await startSnmpd({ trapSink: { port: traps.port } });
    agent = await startTableAgent(snmpd.agentxAddress, 3);
  });
  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    await traps?.stop();
  });

  test('trap OID, payload and the master\'s sysUpTime arrive', async () => {
    const trapOid = [1, 3, 6, 1, 3, 9999, 0, 1];
    await agent.session.notify(trapOid, [
      { oid: [1, 3, 6, 1, 3, 9999, 10, 1, 2, 1], type: ValueType.OctetString, value: Buffer.from('grüße ✓', 'utf8') },
    ]);
    const text = await traps.waitFor((t) => t.includes('.1.3.6.1.3.9999.0.1'), 10000);
    expect(text).toMatch(/\.1\.3\.6\.1\.6\.3\.1\.1\.4\.1\.0 = OID: \.1\.3\.6\.1\.3\.9999\.0\.1/);
    expect(text).toMatch(/\.1\.3\.6\.1\.2\.1\.1\.3\.0 = Timeticks: \((\d+)\)/);
    // snmptrapd prints non-ASCII octets as hex: all 11 UTF-8 bytes arrived, no more, no fewer.
    const hex = [...Buffer.from('grüße ✓', 'utf8')].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(' ');
    expect(text).toContain(`.1.3.6.1.3.9999.10.1.2.1 = Hex-STRING: ${hex}`);
  });
});

describe('10,000 SETs through a real snmpd', () => {
  let snmpd: SnmpdInstance;
  let agent: TableAgent;
  beforeAll(async () => {
    snmpd = await startSnmpd({ extraConfig: ['rwcommunity private 127.0.0.1'] });
    agent = await startTableAgent(snmpd.agentxAddress, 3);
  });
  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
  });

  test('leave no Set transaction behind and the heap where it was', async () => {
    const manager = snmp.createSession('127.0.0.1', 'private', { port: snmpd.udpPort, version: snmp.Version2c, timeout: 5000, retries: 1 });
    const set = (value: number): Promise<void> => new Promise((resolve, reject) => {
      manager.set([{ oid: `${DEMO_WRITABLE.join('.')}.0`, type: snmp.ObjectType.Integer, value }], (err: Error | null) => (err ? reject(err) : resolve()));
    });
    const gc = collectGarbage();
    const run = async (count: number): Promise<number> => {
      let highest = 0;
      // Ten in flight, as a busy manager would; snmpd serialises them.
      const lanes = Array.from({ length: 10 }, async (_, lane) => {
        for (let i = lane; i < count; i += 10) {
          await set(i % 100);
          highest = Math.max(highest, agent.responder.openTransactions);
        }
      });
      await Promise.all(lanes);
      return highest;
    };
    try {
      await run(1000);
      gc();
      const heapBefore = process.memoryUsage().heapUsed;
      const rssBefore = process.memoryUsage().rss;
      const highest = await run(10_000);
      // snmpd sends CleanupSet after its Response to the manager: let the last ones land.
      await waitUntil(async () => agent.responder.openTransactions === 0, 5000);
      gc();
      const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
      process.stdout.write(`10,000 SETs: at most ${highest} open transactions, heap ${(heapGrowth / 1048576).toFixed(1)} MB, ` +
        `RSS ${((process.memoryUsage().rss - rssBefore) / 1048576).toFixed(1)} MB\n`);
      expect(agent.responder.openTransactions).toBe(0);
      expect(highest).toBeLessThanOrEqual(10);
      // A transaction left behind holds ~2 kB: 10,000 of them would be ~20 MB.
      expect(heapGrowth).toBeLessThan(5 * 1048576);
    } finally {
      manager.close();
    }
  }, 180_000);
});

/** The V8 gc() function, without starting node with --expose-gc. */
function collectGarbage(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

describe('the subagent process survives snmpd restarts', () => {
  let snmpd: SnmpdInstance;
  let proc: ManagedProcess;
  beforeAll(async () => {
    if (!existsSync(TABLE_AGENT_JS)) throw new Error(`${TABLE_AGENT_JS} missing: run "npm run build" (npm test does)`);
    snmpd = await startSnmpd();
    proc = await spawnManaged(process.execPath, [TABLE_AGENT_JS, snmpd.agentxAddress, '50'], { env: process.env });
    await waitUntil(async () => (await snmpget(snmpd, [`${TABLE}.1.1.1`], [], { allowFailure: true })).stdout.includes('INTEGER'), 10000);
  });
  afterAll(async () => {
    if (proc) await stopProcess(proc);
    await snmpd?.dispose();
  });

  test('answers again within 5 s of each restart and never exits', async () => {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      await snmpd.stop();
      await new Promise((r) => setTimeout(r, 300));
      const t0 = Date.now();
      await snmpd.restart();
      await waitUntil(async () => (await snmpget(snmpd, [`${TABLE}.1.1.1`], ['-t', '1', '-r', '0'], { allowFailure: true })).stdout.includes('INTEGER'), 5000);
      times.push(Date.now() - t0);
      expect(isPidAlive(proc.pid)).toBe(true);
    }
    expect(Math.max(...times)).toBeLessThan(5000);
    process.stdout.write(`reconnect after snmpd restart answered in ${times.join(', ')} ms\n`);
    expect(proc.hasExited()).toBe(false);
  });
});

/** Resolves once `probe` is true, rejects after `timeoutMs`. */
async function waitUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  await pollUntil('the condition', probe, (ok) => ok, timeoutMs, 50);
}
