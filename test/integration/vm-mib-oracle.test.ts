// VM-MIB end to end: the real CLI serves the shipped libvirt fixture through a
// real snmpd, and every column of every table is checked against virsh (a
// separate process with its own copy of the fixture) using the README's
// mapping rules, and against snmpd's own host tables for the cross-MIB
// indexes (RFC 7666 §5). The test driver's CPU times and block counters are
// derived from the clock, so those are checked to lie between virsh's answers
// before and after the walk (allowing for the agent's refresh lag) and to move
// forward between two walks.
import { promises as fs, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AgentProcess, DEMO_FIXTURE, DEMO_URI, MIB_DIR, startAgent } from '../harness/agent';
import { sleep } from '../harness/process';
import { describeUnless, missingTools } from '../harness/prereq';
import { NPM_NET_SNMP_MIB_DIR, snmpbulkwalk, snmpwalk } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { expandCpuList, keyValues, seconds, virsh } from '../collectors/virsh-oracle';
import { hostUptimeTicks, ipLinkParents, mountPoints, realImagePath } from './host-facts';
import {
  activeDisks, dominfoBytes, expectedAdminState, expectedDisks, expectedNicIndexes, expectedNics, expectedOperState,
  expectedOsType, expectedStorageParent, inRange, LAG_MS, readVirsh, sampledBetween, scaled, vcpuCounts, VirshDomain,
  VirshFacts, xmlBytes,
} from './vm-mib-expected';
import {
  AFFINITY_ENTRY, CPU_ENTRY, indexByUuid, NETWORK_ENTRY, STORAGE_ENTRY, VM_ENTRY, VM_MIB, asMac,
  asBytes, asCounter64, asInteger, asTimeTicks, asUtf8, cell, columnOf, parseWalk, rowIndexes, scalarOf, Walk, WalkValue,
} from './walk-lines';
import { FILESYSTEM_STORAGE_TYPES, HR_PROCESSOR_FRW_ID, HR_STORAGE_DESCR, HR_STORAGE_TYPE, IF_DESCR } from '../harness/host-oids';

/** Net-SNMP numbers processors 196608 + CPU number (README). */
const HR_PROCESSOR_BASE = 196608;

// virsh is the oracle; snmpd runs as nobody when we are root, else as us.
const describeWithTools = describeUnless(missingTools('virsh', 'snmpd', 'snmpbulkwalk'));

// ------------------------------------------------------------------ helpers

async function walkVmMib(snmpd: SnmpdInstance): Promise<Walk> {
  return parseWalk((await snmpbulkwalk(snmpd, `.${VM_MIB}`)).stdout);
}

// ------------------------------------------------------------------ tests

describeWithTools('VM-MIB through snmpd equals virsh on the demo fixture', () => {
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;
  let agentStartedAt: number;
  let uptimeAtStart: number;
  let uptimeWhenReady: number;
  let disks: Map<string, string[]>;
  let before: VirshFacts;
  let after: VirshFacts;
  let walk: Walk;
  let walkEndedAt: number;
  let hvUptimeAround: [number, number];
  let vms: Array<{ d: VirshDomain; index: string }>;
  let hrProcessors: number[];
  let hrStorage: Map<string, number>;
  let ifIndexByName: Map<string, number>;
  let stateDir: string | undefined;

  beforeAll(async () => {
    snmpd = await startSnmpd();
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-oracle-state-'));
    uptimeAtStart = hostUptimeTicks();
    agentStartedAt = Date.now();
    agent = await startAgent(snmpd, { stateDir });
    uptimeWhenReady = hostUptimeTicks();
    disks = activeDisks(readVirsh(DEMO_URI));
    // Let a refresh or two pass, so running VMs have an uptime.
    await sleep(1200);
    before = readVirsh(DEMO_URI, disks);
    const hvBefore = hostUptimeTicks();
    walk = await walkVmMib(snmpd);
    walkEndedAt = Date.now();
    hvUptimeAround = [hvBefore, hostUptimeTicks()];
    after = readVirsh(DEMO_URI, disks);

    const byUuid = indexByUuid(walk);
    vms = [...before.domains.values()].map((d) => ({ d, index: byUuid.get(d.uuid) ?? 'missing' }));
    hrProcessors = [...columnOf(parseWalk((await snmpwalk(snmpd, HR_PROCESSOR_FRW_ID)).stdout), HR_PROCESSOR_FRW_ID).keys()].map(Number);
    const types = columnOf(parseWalk((await snmpwalk(snmpd, HR_STORAGE_TYPE)).stdout), HR_STORAGE_TYPE);
    const descrs = columnOf(parseWalk((await snmpwalk(snmpd, HR_STORAGE_DESCR)).stdout), HR_STORAGE_DESCR);
    hrStorage = new Map([...types].filter(([, t]) => FILESYSTEM_STORAGE_TYPES.has(t.text))
      .map(([index]) => [asUtf8(descrs.get(index)!, `hrStorageDescr.${index}`), Number(index)]));
    ifIndexByName = new Map([...columnOf(parseWalk((await snmpwalk(snmpd, IF_DESCR)).stdout), IF_DESCR)]
      .map(([index, v]) => [asUtf8(v, `ifDescr.${index}`), Number(index)]));
  });

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('has one vmTable row per domain, found by vmUUID; vmNumber is virsh list --all\'s count', () => {
    const uuids = indexByUuid(walk);
    expect([...uuids.keys()].sort()).toEqual([...before.domains.keys()].sort());
    expect(new Set(uuids.values()).size).toBe(uuids.size);
    expect([...uuids.values()].every((i) => Number(i) >= 1)).toBe(true);
    expect(asInteger(scalarOf(walk, `${VM_MIB}.1.2`))).toBe(before.listed);
    expect(before.listed).toBe(9);
    // Every row of every column belongs to a listed VM.
    const rows = rowIndexes(walk, VM_ENTRY, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
    expect([...rows].sort()).toEqual([...uuids.values()].sort());
  });

  it('reports the hypervisor, its uptime, vmTableLastChange and the notification switches', () => {
    const version = keyValues(virsh(DEMO_URI, ['version'])[0]);
    expect(asUtf8(scalarOf(walk, `${VM_MIB}.1.1.1`))).toBe(version.get('Using API')!.split(' ')[0]);
    expect(asUtf8(scalarOf(walk, `${VM_MIB}.1.1.2`))).toBe(version.get('Running hypervisor')!.split(' ')[1]);
    expect(scalarOf(walk, `${VM_MIB}.1.1.3`)).toEqual({ type: 'OID', text: '.0.0' });
    const hvUpTime = asTimeTicks(scalarOf(walk, `${VM_MIB}.1.1.4`));
    expect(inRange(hvUpTime, hvUptimeAround[0] - LAG_MS / 10, hvUptimeAround[1])).toBe('ok');
    const lastChange = asTimeTicks(scalarOf(walk, `${VM_MIB}.1.3`));
    expect(lastChange).toBeLessThanOrEqual(hvUpTime);
    // No VM came or went since the agent's first snapshot.
    expect(inRange(lastChange, uptimeAtStart, uptimeWhenReady)).toBe('ok');
    expect(asInteger(scalarOf(walk, `${VM_MIB}.1.9`))).toBe(1);
    expect(asInteger(scalarOf(walk, `${VM_MIB}.1.10`))).toBe(2);
  });

  it('vmTable: identity, states, flags, CPU counts and memory per the README rules', () => {
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const { d, index } of vms) {
      const xml = d.view.xml;
      const col = (c: number): WalkValue => cell(walk, VM_ENTRY, c, index);
      actual[d.name] = {
        name: asUtf8(col(2)),
        uuid: asBytes(col(3)).toString('hex'),
        osType: asUtf8(col(4)),
        adminState: asInteger(col(5)),
        operState: asInteger(col(6)),
        autoStart: asInteger(col(7)),
        persistent: asInteger(col(8)),
        curCpu: asInteger(col(9)),
        minCpu: asInteger(col(10)),
        maxCpu: asInteger(col(11)),
        memUnit: asInteger(col(12)),
        curMem: asInteger(col(13)),
        minMem: asInteger(col(14)),
        maxMem: asInteger(col(15)),
      };
      const vcpus = vcpuCounts(xml);
      // dominfo's CPU(s) is the current count too; a disagreement is the oracle's problem, not the agent's.
      if (Number(d.view.dominfo.get('CPU(s)')) !== vcpus.current) throw new Error(`${d.name}: dominfo CPU(s) != <vcpu current>`);
      const mem = scaled([dominfoBytes(d.view.dominfo.get('Used memory')), xmlBytes(xml, 'maxMemory') ?? dominfoBytes(d.view.dominfo.get('Max memory'))], 1024n);
      expected[d.name] = {
        name: d.name,
        uuid: d.uuid.replace(/-/g, ''),
        osType: expectedOsType(xml),
        adminState: expectedAdminState(d),
        operState: expectedOperState(d),
        autoStart: d.autostart === null ? 1 : d.autostart ? 2 : 3,
        persistent: d.persistent === null ? 1 : d.persistent ? 2 : 3,
        curCpu: vcpus.current,
        minCpu: -1,
        maxCpu: vcpus.maximum,
        memUnit: mem.unit,
        curMem: mem.values[0],
        minMem: -1,
        maxMem: mem.values[1],
      };
    }
    expect(actual).toEqual(expected);
    // The fixture exercises what it claims to (else the rules above go untested).
    const states = vms.map(({ d }) => `${d.state}/${d.managedSave ? 'ms' : ''}/${d.persistent ? 'p' : 't'}`).sort();
    expect(states).toEqual(['crashed//p', 'paused//p', 'pmsuspended//p', 'running//p', 'running//p', 'running//p',
      'running//t', 'shut off//p', 'shut off/ms/p']);
  });

  it('vmUpTime and vmCpuTime: 0 when inactive; for active VMs plausible and close to virsh\'s CPU time', () => {
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const { d, index } of vms) {
      const upTime = asTimeTicks(cell(walk, VM_ENTRY, 16, index));
      const cpuTime = Number(asCounter64(cell(walk, VM_ENTRY, 17, index)));
      if (d.id === null) {
        actual[d.name] = { upTime, cpuTime };
        expected[d.name] = { upTime: 0, cpuTime: 0 };
        continue;
      }
      const virshCpu = (f: VirshFacts): number => seconds(f.domains.get(d.uuid)!.view.dominfo.get('CPU time')!) * 1e6;
      actual[d.name] = {
        // The agent saw every VM start no earlier than its own start.
        upTime: inRange(upTime, 0, Math.ceil((walkEndedAt - agentStartedAt) / 10)),
        cpuTime: sampledBetween(cpuTime, virshCpu(before), virshCpu(after), [before, after], 1e5),
      };
      expected[d.name] = { upTime: 'ok', cpuTime: 'ok' };
    }
    expect(actual).toEqual(expected);
  });

  it('vmCpuTable: one row per vCPU (vmCpuIndex = vCPU + 1) with virsh vcpuinfo\'s CPU time', () => {
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const { d, index } of vms) {
      const times = columnOf(walk, `${CPU_ENTRY}.2`);
      const mine = [...times.keys()].filter((k) => k.startsWith(`${index}.`));
      actual[d.name] = Object.fromEntries(mine.map((k) => {
        const us = Number(asCounter64(times.get(k)!));
        const vcpu = Number(k.split('.')[1]) - 1;
        const at = (f: VirshFacts): string | undefined =>
          f.domains.get(d.uuid)!.view.vcpuinfo.find((b) => b.get('VCPU') === String(vcpu))?.get('CPU time');
        if (d.id === null) return [k, us];
        const [b, a] = [at(before), at(after)];
        return [k, b === undefined || a === undefined ? `no vCPU ${vcpu} in virsh`
          : sampledBetween(us, seconds(b) * 1e6, seconds(a) * 1e6, [before, after], 1e5)];
      }));
      expected[d.name] = Object.fromEntries(d.view.vcpuinfo.map((b) => [`${index}.${Number(b.get('VCPU')) + 1}`, d.id === null ? 0 : 'ok']));
    }
    expect(actual).toEqual(expected);
  });

  it('vmCpuAffinityTable: vCPU × snmpd\'s hrProcessorTable, enable/disable from virsh vcpupin', () => {
    expect(hrProcessors.length).toBe(os.cpus().length);
    const column = columnOf(walk, `${AFFINITY_ENTRY}.3`);
    const actual: Record<string, Record<string, number>> = {};
    const expected: Record<string, Record<string, number>> = {};
    for (const { d, index } of vms) {
      actual[d.name] = Object.fromEntries([...column].filter(([k]) => k.startsWith(`${index}.`)).map(([k, v]) => [k, asInteger(v)]));
      const pins = new Map(d.view.vcpupin.map(([vcpu, list]) => [Number(vcpu), expandCpuList(list)]));
      expected[d.name] = {};
      for (const b of d.view.vcpuinfo) {
        const vcpu = Number(b.get('VCPU'));
        const allowed = pins.get(vcpu);
        if (allowed === undefined) throw new Error(`virsh vcpupin ${d.name} has no vCPU ${vcpu}`);
        for (const hr of hrProcessors) expected[d.name][`${index}.${vcpu + 1}.${hr}`] = allowed.includes(hr - HR_PROCESSOR_BASE) ? 1 : 2;
      }
    }
    expect(actual).toEqual(expected);
    // Both values occur, so a swapped enable/disable cannot pass.
    const values = Object.values(actual).flatMap((m) => Object.values(m));
    expect(new Set(values)).toEqual(new Set([1, 2]));
  });

  it('vmStorageTable: one row per domblklist disk, every column per the README rules', () => {
    const mounts = mountPoints();
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const { d, index } of vms) {
      const rows = [...columnOf(walk, `${STORAGE_ENTRY}.6`)].filter(([k]) => k.startsWith(`${index}.`));
      const byResource = new Map(rows.map(([k, v]) => [asUtf8(v), k]));
      if (byResource.size !== rows.length) throw new Error(`${d.name}: two storage rows with one vmStorageResourceID`);
      const disksExpected = expectedDisks(d.view);
      expect(rows.length).toBe(disksExpected.length);
      for (const disk of disksExpected) {
        const key = `${d.name} ${disk.target}`;
        const row = byResource.get(disk.resourceId);
        if (row === undefined) {
          actual[key] = `no row with vmStorageResourceID "${disk.resourceId}"`;
        } else {
          const col = (c: number): WalkValue => cell(walk, STORAGE_ENTRY, c, row);
          actual[key] = {
            parent: asInteger(col(3)),
            sourceType: asInteger(col(4)),
            typeString: asUtf8(col(5)),
            resourceId: asUtf8(col(6)),
            access: asInteger(col(7)),
            mediaType: asInteger(col(8)),
            mediaString: asUtf8(col(9)),
            sizeUnit: asInteger(col(10)),
            defined: asInteger(col(11)),
            allocated: asInteger(col(12)),
          };
        }
        const fixedSize = disk.sourceType === 3 || disk.sourceType === 4;
        const sizes = scaled([disk.capacity, fixedSize ? disk.capacity : disk.allocation], 1048576n);
        expected[key] = {
          parent: expectedStorageParent(disk.imageFile === null ? null : realImagePath(disk.imageFile), mounts, hrStorage),
          sourceType: disk.sourceType,
          typeString: disk.typeString,
          resourceId: disk.resourceId,
          access: disk.access,
          mediaType: disk.mediaType,
          mediaString: disk.mediaString,
          sizeUnit: sizes.unit,
          defined: sizes.values[0],
          allocated: sizes.values[1],
        };
      }
    }
    expect(actual).toEqual(expected);
    // Files live on a filesystem snmpd lists; block and network disks have no parent.
    expect(Object.values(expected).some((e) => (e as { parent: number }).parent > 0)).toBe(true);
  });

  it('vmStorageTable counters: close to domblkstat for active disks, absent otherwise', () => {
    const COUNTERS: Array<[number, string]> = [[13, 'rd_req'], [14, 'wr_req'], [15, 'rd_bytes'], [16, 'wr_bytes'],
      [17, 'rd_total_times'], [18, 'wr_total_times']];
    const actual: Record<string, Record<string, unknown>> = {};
    const expected: Record<string, Record<string, unknown>> = {};
    for (const { d, index } of vms) {
      const rows = [...columnOf(walk, `${STORAGE_ENTRY}.6`)].filter(([k]) => k.startsWith(`${index}.`));
      for (const disk of expectedDisks(d.view)) {
        const key = `${d.name} ${disk.target}`;
        const row = rows.find(([, v]) => asUtf8(v) === disk.resourceId)?.[0];
        if (row === undefined) throw new Error(`${key}: no storage row (see the column test)`);
        const lo = before.domains.get(d.uuid)!.view.blkstat.get(disk.target);
        const hi = after.domains.get(d.uuid)!.view.blkstat.get(disk.target);
        actual[key] = {};
        expected[key] = {};
        for (const [c, name] of COUNTERS) {
          const v = walk.get(`${STORAGE_ENTRY}.${c}.${row}`);
          const got = v === undefined ? 'absent' : Number(asCounter64(v, `${key} ${name}`));
          const [b, a] = [lo?.get(name), hi?.get(name)];
          // Latency totals are ns in libvirt, µs in VM-MIB.
          const div = name.endsWith('_times') ? 1000 : 1;
          actual[key][name] = typeof got === 'number' && b !== undefined && a !== undefined
            ? sampledBetween(got, Number(b) / div, Number(a) / div, [before, after], 1) : got;
          expected[key][name] = b === undefined ? 'absent' : 'ok';
        }
      }
    }
    expect(actual).toEqual(expected);
    // Some disks do have counters (the active ones with media).
    expect(Object.values(expected).some((e) => e.rd_req === 'ok')).toBe(true);
  });

  it('vmNetworkTable: one row per domiflist NIC; model, MAC, and ifIndexes from snmpd\'s ifTable', async () => {
    const parents = await ipLinkParents();
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const { d, index } of vms) {
      const rows = [...columnOf(walk, `${NETWORK_ENTRY}.5`)].filter(([k]) => k.startsWith(`${index}.`));
      const byMac = new Map(rows.map(([k, v]) => [asMac(v, `vmNetworkPhysAddress.${k}`), k]));
      const nics = expectedNics(d.view);
      expect(rows.length).toBe(nics.length);
      for (const nic of nics) {
        const key = `${d.name} ${nic.mac}`;
        const row = byMac.get(nic.mac);
        const col = (c: number): WalkValue => cell(walk, NETWORK_ENTRY, c, row!);
        actual[key] = row === undefined ? 'no row with this MAC' : {
          ifIndex: asInteger(col(2)),
          parent: asInteger(col(3)),
          model: asUtf8(col(4)),
        };
        expected[key] = { ...expectedNicIndexes(nic, ifIndexByName, (n) => parents.get(n) ?? null), model: nic.model };
      }
    }
    expect(actual).toEqual(expected);
  });

  it('counters and clocks move forward between two walks; nothing else changes', async () => {
    await sleep(2200);
    const second = await walkVmMib(snmpd);
    expect([...second.keys()]).toEqual([...walk.keys()]);
    const ticking = new RegExp(`^${VM_MIB.replace(/\./g, '\\.')}\\.1\\.(1\\.4\\.0|4\\.1\\.1[67]\\.|5\\.1\\.2\\.|7\\.1\\.1[3-8]\\.)`);
    const steady = (w: Walk): Array<[string, WalkValue]> => [...w].filter(([oid]) => !ticking.test(oid));
    expect(steady(second)).toEqual(steady(walk));

    const active = new Set(vms.filter(({ d }) => d.id !== null).map(({ index }) => index));
    // vmUpTime counts from shutdown(4) → running(1) (RFC 7666); whether a
    // crashed or PM-suspended VM's keeps counting is left open here.
    const up = new Set(vms.filter(({ d }) => d.id !== null && [1, 3].includes(expectedAdminState(d))).map(({ index }) => index));
    const vmUpTime = `${VM_ENTRY}.16.`;
    const problems: string[] = [];
    for (const [oid, v1] of walk) {
      if (!ticking.test(oid)) continue;
      const v2 = second.get(oid)!;
      const n1 = v1.type === 'Timeticks' ? BigInt(asTimeTicks(v1)) : asCounter64(v1, oid);
      const n2 = v2.type === 'Timeticks' ? BigInt(asTimeTicks(v2)) : asCounter64(v2, oid);
      const vmIndex = oid.split('.')[11];
      if (oid.startsWith(vmUpTime) && active.has(vmIndex) && !up.has(vmIndex)) continue;
      const isActive = oid.endsWith('.1.4.0') ? true : active.has(vmIndex);
      if (isActive && !(n2 > n1)) problems.push(`${oid}: ${n1} then ${n2}, expected growth`);
      if (!isActive && (n1 !== 0n || n2 !== 0n)) problems.push(`${oid}: ${n1} then ${n2} for an inactive VM`);
    }
    expect(problems).toEqual([]);
  });

  it('resolves names with the shipped MIBs: snmpwalk VM-MIB::vmTable, no MIB errors', async () => {
    const r = await snmpwalk(snmpd, 'VM-MIB::vmTable', [], {
      mibDirs: [MIB_DIR, NPM_NET_SNMP_MIB_DIR], mibs: ['VM-MIB'], numericOids: false,
    });
    expect(r.stderr).toBe('');
    const vmTableInstances = [...walk.keys()].filter((oid) => oid.startsWith(`${VM_ENTRY}.`));
    expect(r.varbinds).toHaveLength(vmTableInstances.length);
    expect(r.varbinds.every((vb) => /^VM-MIB::vm[A-Za-z]+\.\d+$/.test(vb.oid))).toBe(true);
    const web = vms.find(({ d }) => d.name === 'web-01')!;
    const find = (name: string): string | undefined => r.varbinds.find((vb) => vb.oid === `VM-MIB::${name}.${web.index}`)?.value;
    expect(find('vmName')).toBe('web-01');
    expect(find('vmOperState')).toBe('running(4)');
    expect(find('vmPersistent')).toBe('persistent(2)');
    expect(find('vmUUID')).toMatch(/3b0da6f8-1558-4a67-aba7-390d59b406d2/i);
  });
});

// ------------------------------------------------------------------ indexes across restarts

/** The demo fixture with only the named domains, in a temp dir. */
async function fixtureWith(names: string[], dir: string): Promise<string> {
  const text = await fs.readFile(DEMO_FIXTURE, 'utf8');
  const kept = text.replace(/<domain\b[\s\S]*?<\/domain>/g, (block) =>
    names.some((n) => block.includes(`<name>${n}</name>`)) ? block : '');
  const file = path.join(dir, 'subset-host.xml');
  await fs.writeFile(file, kept);
  return file;
}

describeWithTools('vmIndex is kept per UUID in the state directory', () => {
  let snmpd: SnmpdInstance;
  const dirs: string[] = [];
  const tempDir = async (): Promise<string> => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-oracle-'));
    dirs.push(dir);
    return dir;
  };

  beforeAll(async () => {
    snmpd = await startSnmpd();
  });
  afterAll(async () => {
    await snmpd?.dispose();
    for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
  });

  /** Starts an agent, waits `settleMs`, walks VM-MIB and stops the agent, also when the walk fails. */
  const walkWithAgent = async (opts: { stateDir: string; libvirtUri?: string }, settleMs = 0) => {
    const agent = await startAgent(snmpd, opts);
    try {
      if (settleMs > 0) await sleep(settleMs);
      return await walkVmMib(snmpd);
    } finally {
      await agent.stop();
    }
  };

  const running = (): string[] => [...readVirsh(DEMO_URI).domains.values()].filter((d) => d.state === 'running').map((d) => d.uuid);

  it('survives agent restarts, and new VMs get the next unused indexes', async () => {
    const stateDir = await tempDir();
    // A first run that knows three VMs only, so the full fixture cannot get
    // the same numbers by chance: only the state file can keep them.
    const subset = await fixtureWith(['mail-relay', 'fileserver-größe', 'kiosk-lobby'], await tempDir());
    const firstMap = indexByUuid(await walkWithAgent({ stateDir, libvirtUri: `test://${subset}` }));
    expect([...firstMap.values()].sort()).toEqual(['1', '2', '3']);

    const secondWalk = await walkWithAgent({ stateDir }, 3500);
    const secondMap = indexByUuid(secondWalk);
    for (const [uuid, index] of firstMap) expect([uuid, secondMap.get(uuid)]).toEqual([uuid, index]);
    expect([...secondMap].filter(([uuid]) => !firstMap.has(uuid)).map(([, i]) => Number(i)).sort((a, b) => a - b))
      .toEqual([4, 5, 6, 7, 8, 9]);

    const thirdWalk = await walkWithAgent({ stateDir });
    expect(indexByUuid(thirdWalk)).toEqual(secondMap);
    // vmUpTime continues across the restart (the state file keeps when each run began).
    for (const uuid of running()) {
      const i = secondMap.get(uuid)!;
      const up2 = asTimeTicks(cell(secondWalk, VM_ENTRY, 16, i));
      const up3 = asTimeTicks(cell(thirdWalk, VM_ENTRY, 16, i));
      expect(up2).toBeGreaterThanOrEqual(150);
      expect([uuid, up3 >= up2]).toEqual([uuid, true]);
    }
  });

  it('moves a corrupt state file aside with one clear log line and still serves', async () => {
    const stateDir = await tempDir();
    const file = path.join(stateDir, 'vm-indexes.json');
    const garbage = '{"version": 1, "vms": [ this is not JSON\n';
    await fs.writeFile(file, garbage);
    const agent = await startAgent(snmpd, { stateDir });
    try {
      const map = indexByUuid(await walkVmMib(snmpd));
      expect(map.size).toBe(9);
      expect([...map.values()].map(Number).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const mentions = agent.log().split('\n').filter((l) => l.includes(file));
      expect(mentions).toHaveLength(1);
      expect(mentions[0]).toMatch(/error/);
      expect(mentions[0]).toMatch(/corrupt/);
      const aside = (await fs.readdir(stateDir)).filter((f) => f.startsWith('vm-indexes.json.corrupt-'));
      expect(aside).toHaveLength(1);
      expect(mentions[0]).toContain(path.join(stateDir, aside[0]));
      expect(await fs.readFile(path.join(stateDir, aside[0]), 'utf8')).toBe(garbage);
      // Rebuilt and written back as JSON.
      expect(() => JSON.parse(readFileSync(file, 'utf8')) as unknown).not.toThrow();
    } finally {
      await agent.stop();
    }
  });
});
