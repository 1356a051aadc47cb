// The storm guard with real daemons: 500 VMs of the test driver (behind a
// session libvirtd) start at once, and snmptrapd receives a bounded number of
// notifications — per-VM ones up to the rate limit, then only bulk ones —
// which together still name every VM that started.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, requireBuiltCli, startAgent } from '../harness/agent';
import { libvirtdMissing, SessionLibvirtd, startSessionLibvirtd } from '../harness/libvirtd';
import { sleep } from '../harness/process';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { pollUntil } from '../harness/poll';
import { bitmapIndexes, octetsOf, parseVarbindLines, snmpget } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { startSnmptrapd, TrapReceiver } from '../harness/snmptrapd';

const describeWithDaemon = describeUnless(firstReason(libvirtdMissing(), missingTools('snmpd', 'snmptrapd', 'snmpget')));

const VMS = 500;
const LIMIT = 20;
const VM_MIB = '.1.3.6.1.2.1.236';
const SNMP_TRAP_OID = '.1.3.6.1.6.3.1.1.4.1.0';
const VM_RUNNING = `${VM_MIB}.0.1`;
const VM_BULK_RUNNING = `${VM_MIB}.0.11`;
const vmAffectedVMs = `${VM_MIB}.1.11.0`;

const domainXml = (name: string): string =>
  `<domain type='test'><name>${name}</name><memory unit='MiB'>16</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>\n`;

beforeAll(() => requireBuiltCli());

describeWithDaemon(`storm guard: ${VMS} VMs starting at once`, () => {
  let libvirtd: SessionLibvirtd;
  let traps: TrapReceiver;
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;

  beforeAll(async () => {
    libvirtd = await startSessionLibvirtd();
    traps = await startSnmptrapd();
    snmpd = await startSnmpd({ trapSink: { port: traps.port } });
    const conf = path.join(libvirtd.labDir, 'vmm-agentx.conf');
    fs.writeFileSync(conf, `notifications-bulk yes\nnotifications-rate-limit ${LIMIT}\n`);
    agent = await startAgent(snmpd, {
      libvirtUri: libvirtd.testUri, refreshSeconds: 600, extraArgs: ['--config', conf],
      stateDir: path.join(libvirtd.labDir, 'agent-state'),
    });
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    await traps?.stop();
    await libvirtd?.dispose();
  });

  test('per-VM notifications up to the limit, then bulk ones; together they name every VM; one log line', async () => {
    const names = Array.from({ length: VMS }, (_, i) => `burst-${String(i).padStart(3, '0')}`);
    const defines = names.map((n) => {
      const file = path.join(libvirtd.labDir, `${n}.xml`);
      fs.writeFileSync(file, domainXml(n));
      return `define ${file}`;
    });
    await libvirtd.virsh(libvirtd.testUri, [defines.join(' ; ')]);
    const vmNumber = `${VM_MIB}.1.2.0`;
    await pollUntil(`vmNumber = ${VMS + 1}`, async () => (await snmpget(snmpd, [vmNumber])).varbinds[0]?.value,
      (v) => v === String(VMS + 1), 60_000);
    const before = traps.traps().length;

    // One virsh process starts all of them, back to back.
    const started = Date.now();
    await libvirtd.virsh(libvirtd.testUri, [names.map((n) => `start ${n}`).join(' ; ')]);
    const stormMs = Date.now() - started;

    // Every started VM is named by a vmRunning or a vmBulkRunning.
    const named = async (): Promise<Set<number>> => {
      const seen = new Set<number>();
      for (const text of traps.traps().slice(before)) {
        const vbs = parseVarbindLines(text);
        const trapOid = vbs.find((v) => v.oid === SNMP_TRAP_OID)?.value;
        if (trapOid === VM_BULK_RUNNING) {
          // A short bitmap whose bytes are all printable comes as STRING, not Hex-STRING.
          for (const i of bitmapIndexes(octetsOf(vbs.find((v) => v.oid === vmAffectedVMs)))) seen.add(i);
        } else if (trapOid === VM_RUNNING) {
          const name = vbs.find((v) => v.oid.startsWith(`${VM_MIB}.1.4.1.2.`));
          if (name) seen.add(Number(name.oid.split('.').pop()));
        }
      }
      return seen;
    };
    try {
      await pollUntil(`all ${VMS} VMs named by a notification`, named, (s) => s.size >= VMS, 60_000);
    } catch (err) {
      // What the agent did meanwhile says whether it refreshed, and what it sent.
      const tail = agent.log().split('\n').filter((l) => !l.includes(' debug: collector ')).slice(-40).join('\n');
      const got = traps.traps().slice(before).map((text) => parseVarbindLines(text)
        .filter((v) => v.oid === SNMP_TRAP_OID || v.oid === vmAffectedVMs).map((v) => `${v.type}: ${v.value}`).join(' / '));
      throw new Error(`${(err as Error).message}\n${(await named()).size} VMs named by ${got.length} notifications:\n` +
        `${got.join('\n')}\nthe agent's log ends:\n${tail}`);
    }
    await sleep(1500); // anything still on its way

    const received = traps.traps().slice(before).map((text) => parseVarbindLines(text).find((v) => v.oid === SNMP_TRAP_OID)?.value);
    const perVm = received.filter((t) => t === VM_RUNNING).length;
    const bulk = received.filter((t) => t === VM_BULK_RUNNING).length;
    const seconds = Math.ceil(stormMs / 1000) + 1;
    process.stdout.write(`storm: ${VMS} VMs started in ${stormMs} ms; ${received.length} notifications ` +
      `(${perVm} vmRunning, ${bulk} vmBulkRunning)\n`);
    // Nothing but these two (a failure names what else came).
    expect(received.filter((t) => t !== VM_RUNNING && t !== VM_BULK_RUNNING)).toEqual([]);
    // The per-VM ones stay within the limit for each second the storm lasted.
    expect(perVm).toBeLessThanOrEqual(LIMIT * seconds);
    expect(perVm).toBeLessThan(VMS);
    expect(received.length).toBeLessThan(VMS / 2);
    const stormLines = agent.log().split('\n').filter((l) => l.includes('per-VM notifications in one second'));
    expect(stormLines).toHaveLength(1);
    expect(stormLines[0]).toContain('sending only bulk notifications');
  }, 180_000);
});
