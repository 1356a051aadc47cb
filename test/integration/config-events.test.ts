// A refresh reads a domain's configuration (XML, pinning, autostart, ...)
// only when a libvirt event says it changed; the resync reads it all again
// and logs what changed without one. Seen through the real agent, snmpd and
// a session libvirtd serving the test driver, changed by virsh from outside.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, requireBuiltCli, startAgent } from '../harness/agent';
import { libvirtdMissing, SessionLibvirtd, startSessionLibvirtd } from '../harness/libvirtd';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { pollUntil } from '../harness/poll';
import { snmpget, snmpwalk } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';

const describeWithDaemon = describeUnless(firstReason(libvirtdMissing(), missingTools('snmpd', 'snmpget', 'snmpwalk')));

const VM_MIB = '.1.3.6.1.2.1.236';
const vmColumn = (column: number, vmIndex: number): string => `${VM_MIB}.1.4.1.${column}.${vmIndex}`;
const COL = { name: 2, osType: 4, autoStart: 7, curCpus: 9 } as const;
const AUTOSTART = { enabled: '2', disabled: '3' } as const;
const affinityOf = (vmIndex: number): string => `${VM_MIB}.1.6.1.3.${vmIndex}`;
const LIBOSINFO = 'http://libosinfo.org/xmlns/libvirt/domain/1.0';
const REFRESH_S = 1;
const RESYNC_S = 6;

/** A fixed UUID per name, so that a second definition updates the first. */
const uuidOf = (name: string): string => `6f1c0000-0000-4000-8000-${Buffer.from(name.padEnd(6, '-')).toString('hex').slice(0, 12)}`;
const domainXml = (name: string, vcpus: number): string =>
  `<domain type='test'><name>${name}</name><uuid>${uuidOf(name)}</uuid><memory unit='MiB'>64</memory>` +
  `<vcpu placement='static'>${vcpus}</vcpu>` +
  `<os><type>hvm</type></os></domain>\n`;

beforeAll(() => requireBuiltCli());

describeWithDaemon('configuration re-read on events, and the resync', () => {
  let libvirtd: SessionLibvirtd;
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;
  const virsh = async (...args: string[]): Promise<void> => void (await libvirtd.virsh(libvirtd.testUri, args));
  const get = async (oid: string): Promise<string> => (await snmpget(snmpd, [oid])).varbinds[0]?.value ?? '';
  const resyncLines = (): string[] => agent.log().split('\n').filter((l) => l.includes('resync: domain'));
  const write = (name: string, vcpus: number): string => {
    const file = path.join(libvirtd.labDir, `${name}.xml`);
    fs.writeFileSync(file, domainXml(name, vcpus));
    return file;
  };
  let index: (name: string) => Promise<number>;

  beforeAll(async () => {
    libvirtd = await startSessionLibvirtd();
    snmpd = await startSnmpd();
    const conf = path.join(libvirtd.labDir, 'vmm-agentx.conf');
    fs.writeFileSync(conf, `libvirt-resync ${RESYNC_S}\n`);
    agent = await startAgent(snmpd, {
      libvirtUri: libvirtd.testUri, refreshSeconds: REFRESH_S, extraArgs: ['--config', conf, '--log-level', 'debug'],
      stateDir: path.join(libvirtd.labDir, 'agent-state'),
    });
    index = async (name) => {
      const { value } = await pollUntil(`${name} in vmTable`, async () => {
        const walk = await snmpwalk(snmpd, `${VM_MIB}.1.4.1.${COL.name}`);
        return walk.varbinds.find((v) => v.value === name)?.oid;
      }, (oid) => oid !== undefined, 10_000);
      return Number(value!.split('.').pop());
    };
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    await libvirtd?.dispose();
  });

  test('a change libvirt announces is served at once, and no resync reports it', async () => {
    await virsh('define', write('web', 1));
    await virsh('start', 'web');
    const web = await index('web');
    // metadata-change: the libosinfo OS id is what vmOSType shows.
    await virsh('metadata', 'web', LIBOSINFO, '--key', 'libosinfo', '--set', '<libosinfo><os id="http://debian.org/debian/12"/></libosinfo>');
    const os = await pollUntil('vmOSType from the new metadata', () => get(vmColumn(COL.osType, web)),
      (v) => v === 'http://debian.org/debian/12', 5000);
    // lifecycle defined/updated: a shut-off domain's new definition.
    await virsh('define', write('db', 1));
    const db = await index('db');
    expect(await get(vmColumn(COL.curCpus, db))).toBe('1');
    await virsh('define', write('db', 2));
    const cpus = await pollUntil('vmCurCpuNumber from the new definition', () => get(vmColumn(COL.curCpus, db)), (v) => v === '2', 5000);
    process.stdout.write(`config events: metadata → vmOSType in ${os.ms} ms, redefinition → vmCurCpuNumber in ${cpus.ms} ms\n`);
    expect(resyncLines()).toEqual([]);
    // The timer's refreshes read no XML: only those the events triggered did.
    const lastRefresh = (): string => agent.log().split('\n').filter((l) => /refresh: .* libvirt calls/.test(l)).pop() ?? '';
    const steady = await pollUntil('a refresh of every domain', async () => lastRefresh(),
      (l) => l.includes('virConnectGetAllDomainStats') && !/; libvirt asked about/.test(l), 5000);
    expect(steady.value).not.toContain('virDomainGetXMLDesc');
  }, 60_000);

  test('what libvirt does not announce (autostart; the test driver\'s vCPU pinning) shows at the resync, which says so', async () => {
    const web = await index('web');
    expect(await get(vmColumn(COL.autoStart, web))).toBe(AUTOSTART.disabled);
    const affinity = async (): Promise<string> => (await snmpwalk(snmpd, affinityOf(web))).varbinds.map((v) => v.value).join(',');
    const pinnedBefore = await affinity();
    const t0 = Date.now();
    await virsh('autostart', 'web');
    await virsh('vcpupin', 'web', '0', '0');
    // Refreshes come and go meanwhile; only the resync reads these again.
    await new Promise((r) => setTimeout(r, 2500 * REFRESH_S));
    const early = Date.now() - t0 < RESYNC_S * 1000 - 500;
    const seen = await pollUntil('vmAutoStart enabled', () => get(vmColumn(COL.autoStart, web)), (v) => v === AUTOSTART.enabled,
      (RESYNC_S + 5) * 1000);
    expect(await affinity()).not.toBe(pinnedBefore);
    const lines = resyncLines().filter((l) => l.includes('domain web '));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/vCPU pinning, autostart changed with no event from libvirt/);
    process.stdout.write(`config events: autostart and vcpupin (no event) served after ${Date.now() - t0} ms ` +
      `(resync every ${RESYNC_S} s)\n`);
    // Still the old value 2.5 s on, unless a resync fell due by then.
    if (early) expect(seen.ms).toBeGreaterThan(0);
  }, 60_000);
});
