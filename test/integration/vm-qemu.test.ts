// A real QEMU guest under TCG in a private qemu:///session (platform-notes
// §8), seen through snmpd and the real vmm-agentx CLI: counters that only a
// running guest makes (CPU time, disk reads by the BIOS), sizes, the image's
// hrStorage parent, and the agent's read-only connection to the daemon.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, requireBuiltCli, startAgent } from '../harness/agent';
import { qemuSessionMissing, SessionLibvirtd, startSessionLibvirtd } from '../harness/libvirtd';
import { sleep, toolEnv } from '../harness/process';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { HR_STORAGE_DESCR } from '../harness/host-oids';
import { pollUntil } from '../harness/poll';
import { snmpget, SnmpVarbindLine, snmpwalk } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';

const describeWithQemu = describeUnless(firstReason(qemuSessionMissing(), missingTools('snmpd', 'snmpget')));

const VM_MIB = '.1.3.6.1.2.1.236';
const vmColumn = (column: number, vmIndex: number): string => `${VM_MIB}.1.4.1.${column}.${vmIndex}`;
const vmCpuCoreTime = (vmIndex: number, cpu: number): string => `${VM_MIB}.1.5.1.2.${vmIndex}.${cpu}`;
const vmStorageColumn = (column: number, vmIndex: number, storage: number): string => `${VM_MIB}.1.7.1.${column}.${vmIndex}.${storage}`;
const VM = { name: 2, operState: 6, upTime: 16, cpuTime: 17 } as const;
const STORAGE = {
  parent: 3, sourceType: 4, resourceId: 6, sizeUnit: 10, definedSize: 11, readIos: 13, readOctets: 15,
} as const;
const OPER = { running: '4', paused: '8' } as const;

const GUEST = 'vmm-tcg-guest';
const DISK_BYTES = 16 * 1024 * 1024;

/**
 * A raw disk whose first sector SeaBIOS boots: "jmp $" at 0 and the 0x55AA
 * signature at 510. The BIOS reads that sector (a real read I/O on vda), and
 * the guest then spins, so its vCPU time grows steadily under TCG.
 */
function writeBootableDisk(file: string, uid: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, DISK_BYTES);
    const sector = Buffer.alloc(512);
    sector[0] = 0xeb;
    sector[1] = 0xfe;
    sector[510] = 0x55;
    sector[511] = 0xaa;
    fs.writeSync(fd, sector, 0, 512, 0);
  } finally {
    fs.closeSync(fd);
  }
  fs.chownSync(file, uid, uid);
}

function guestXml(disk: string): string {
  // TCG (no KVM for nobody), 64 MiB, one vCPU, no network, no graphics.
  return `<domain type='qemu'>
  <name>${GUEST}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

beforeAll(() => requireBuiltCli());

describeWithQemu('a real qemu:///session TCG guest through snmpd', () => {
  let libvirtd: SessionLibvirtd;
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;
  let disk: string;
  let vmIndex: number;
  /** Wall clock just before and just after `virsh start`: the QEMU process started in between. */
  let guestStart: { before: number; after: number };
  const virsh = (...args: string[]) => libvirtd.virsh(libvirtd.qemuUri, args);
  const get = async (oid: string): Promise<SnmpVarbindLine> => (await snmpget(snmpd, [oid], ['-t', '2', '-r', '2'])).varbinds[0];
  const counter = async (oid: string): Promise<bigint> => {
    const v = await get(oid);
    if (v.type !== 'Counter64') throw new Error(`${oid} is ${v.type}: ${v.value}`);
    return BigInt(v.value);
  };

  beforeAll(async () => {
    libvirtd = await startSessionLibvirtd();
    disk = path.join(libvirtd.imageDir, 'vda.raw');
    writeBootableDisk(disk, libvirtd.uid);
    const xml = path.join(libvirtd.labDir, 'guest.xml');
    fs.writeFileSync(xml, guestXml(disk));
    await virsh('define', xml);
    guestStart = { before: Date.now(), after: 0 };
    await virsh('start', GUEST);
    guestStart.after = Date.now();
    snmpd = await startSnmpd();
    // Read-only is the agent's default; the URI reaches the nobody-owned session daemon as root.
    agent = await startAgent(snmpd, { libvirtUri: libvirtd.qemuUri, refreshSeconds: 1, stateDir: path.join(libvirtd.labDir, 'agent-state') });
    const names = await snmpwalk(snmpd, `${VM_MIB}.1.4.1.${VM.name}`);
    expect(names.varbinds.map((v) => v.value)).toEqual([GUEST]);
    vmIndex = Number(names.varbinds[0].oid.split('.').pop());
  }, 60_000);

  afterAll(async () => {
    if (libvirtd) {
      await virsh('destroy', GUEST).catch(() => undefined);
      await virsh('undefine', GUEST).catch(() => undefined);
    }
    await agent?.stop();
    await snmpd?.dispose();
    await libvirtd?.dispose();
  }, 30_000);

  test('the agent holds a read-only connection to the session daemon', async () => {
    const ids = (await libvirtd.virtAdmin(['srv-clients-list', 'libvirtd']))
      .split('\n').map((l) => l.trim().split(/\s+/)[0]).filter((id) => /^\d+$/.test(id));
    const clients = await Promise.all(ids.map(async (id) => {
      const info = await libvirtd.virtAdmin(['client-info', 'libvirtd', id]);
      return Object.fromEntries(info.split('\n').map((l) => l.split(/\s*:\s*/, 2)).filter((kv) => kv.length === 2));
    }));
    const agentsClient = clients.find((c) => c.unix_process_id === String(agent.proc.pid));
    expect(agentsClient).toMatchObject({ readonly: 'yes', transport: 'unix' });
  });

  test('running(4); vmCpuTime and vCPU 1 vmCpuCoreTime grow between two reads', async () => {
    await pollUntil('vmOperState running(4)', async () => (await get(vmColumn(VM.operState, vmIndex))).value, (v) => v === OPER.running, 5000);
    const cpu0 = await counter(vmColumn(VM.cpuTime, vmIndex));
    const core0 = await counter(vmCpuCoreTime(vmIndex, 1));
    // The guest spins: its vCPU thread runs whenever it gets a core; --refresh 1 picks up new values.
    const cpu1 = (await pollUntil('vmCpuTime to grow', () => counter(vmColumn(VM.cpuTime, vmIndex)), (v) => v > cpu0 + 100_000n, 10_000)).value;
    const core1 = (await pollUntil('vmCpuCoreTime.1 to grow', () => counter(vmCpuCoreTime(vmIndex, 1)), (v) => v > core0 + 100_000n, 10_000)).value;
    expect(cpu1).toBeGreaterThan(cpu0);
    expect(core1).toBeGreaterThan(core0);
    // One vCPU: its time is part of the VM's.
    expect(core1).toBeLessThanOrEqual(await counter(vmColumn(VM.cpuTime, vmIndex)));
    expect((await get(vmCpuCoreTime(vmIndex, 2))).type).toBe('noSuchInstance');
  });

  test('vda: real read counters, 16 MiB defined, raw source, parent = hrStorageIndex of the image filesystem', async () => {
    const row = async (column: number) => get(vmStorageColumn(column, vmIndex, 1));
    expect(await row(STORAGE.resourceId)).toMatchObject({ type: 'STRING', value: disk });
    // SeaBIOS read the boot sector: at least one read of at least 512 bytes.
    expect(await counter(vmStorageColumn(STORAGE.readIos, vmIndex, 1))).toBeGreaterThanOrEqual(1n);
    expect(await counter(vmStorageColumn(STORAGE.readOctets, vmIndex, 1))).toBeGreaterThanOrEqual(512n);
    const unit = Number((await row(STORAGE.sizeUnit)).value);
    const defined = Number((await row(STORAGE.definedSize)).value);
    expect(unit).toBeGreaterThan(0);
    expect(defined * unit).toBe(DISK_BYTES);
    expect((await row(STORAGE.sourceType)).value).toBe('4');

    // The filesystem snmpd's hrStorageTable lists for the image: the mount point df names.
    const mountPoint = execFileSync('df', ['--output=target', disk], { encoding: 'utf8', env: toolEnv() }).trim().split('\n').pop()!.trim();
    const storage = await snmpwalk(snmpd, HR_STORAGE_DESCR);
    const hrIndex = storage.varbinds.find((v) => v.value === mountPoint)?.oid.split('.').pop();
    expect(hrIndex).toBeDefined();
    expect((await row(STORAGE.parent)).value).toBe(hrIndex);
  });

  test('virsh suspend → paused(8), resume → running(4)', async () => {
    const oper = vmColumn(VM.operState, vmIndex);
    await virsh('suspend', GUEST);
    await pollUntil('paused(8)', async () => (await get(oper)).value, (v) => v === OPER.paused, 5000);
    // Paused, the vCPU thread no longer runs: its time stands still across refreshes.
    const core = await counter(vmCpuCoreTime(vmIndex, 1));
    await sleep(1500);
    expect(await counter(vmCpuCoreTime(vmIndex, 1))).toBe(core);
    await virsh('resume', GUEST);
    await pollUntil('running(4)', async () => (await get(oper)).value, (v) => v === OPER.running, 5000);
    expect(agent.proc.hasExited()).toBe(false);
  });

  test('an agent started while the guest runs, with a fresh state dir, reports the uptime since QEMU started', async () => {
    await agent.stop();
    // The guest keeps running while no agent watches it.
    await sleep(3000);
    agent = await startAgent(snmpd, { libvirtUri: libvirtd.qemuUri, refreshSeconds: 1, stateDir: path.join(libvirtd.labDir, 'fresh-state') });
    const agentStarted = Date.now();
    const v = await get(vmColumn(VM.upTime, vmIndex));
    const read = Date.now();
    expect(v.type).toBe('Timeticks');
    const upMs = Number(/\((\d+)\)/.exec(v.value)?.[1]) * 10;
    // Not the time since this agent first saw it (< ~2 s), the time since QEMU started (> 3 s), within a tick and a refresh.
    expect(upMs).toBeGreaterThan(read - agentStarted + 2500);
    expect(upMs).toBeGreaterThanOrEqual(read - guestStart.after - 1500);
    expect(upMs).toBeLessThanOrEqual(read - guestStart.before + 1500);
  });
});
