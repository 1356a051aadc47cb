// RFC 7666 §5 ties VM-MIB to the host's own MIBs: vmNetworkIfIndex and
// vmNetworkParent are IF-MIB ifIndex values, vmCpuPhysIndex is an
// hrDeviceIndex of HOST-RESOURCES-MIB's hrProcessorTable. This builds the
// fixture's host-side NICs and bridges in a network namespace, runs snmpd and
// the agent inside it (`ip netns exec` also gives each a sysfs of that
// namespace), and checks the agent's numbers against snmpd's tables. The
// AgentX socket is a path in a temp dir, so it connects across the namespace.
// Needs root (ip netns); skipped with that reason otherwise.
import { mkdtempSync, rmSync, statSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { AgentProcess, DEMO_URI, startAgent } from '../harness/agent';
import { runCommand } from '../harness/process';
import { describeUnless, firstReason, missingTools, needsRoot } from '../harness/prereq';
import { HR_PROCESSOR_FRW_ID, IF_DESCR } from '../harness/host-oids';
import { snmpbulkwalk, snmpwalk } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { ipLinkParents } from './host-facts';
import { expectedNicIndexes, expectedNics, readVirsh, VirshFacts } from './vm-mib-expected';
import {
  AFFINITY_ENTRY, asInteger, asMac, asUtf8, cell, columnOf, indexByUuid, NETWORK_ENTRY, parseWalk, VM_MIB, Walk,
} from './walk-lines';


/**
 * The host side of the fixture's NICs. Names are the fixture's <target dev>
 * and <source bridge>/<source dev>; `parent` is what the interface is
 * enslaved to or stacked on. macvtap needs the macvlan module, which this
 * kernel lacks, so mvtap-db0 is a vxlan: it too has a lower device (eth0).
 * The network-type NICs sit on virbr0, the bridge libvirt gives its
 * "default" network; tap-ci7 is on no bridge.
 */
const BRIDGES = ['br0', 'br-build', 'virbr0'];
const PORTS: Array<{ name: string; parent: string | null }> = [
  { name: 'tap-web01-0', parent: 'br0' },
  { name: 'tap-web01-1', parent: 'virbr0' },
  { name: 'mvtap-db0', parent: 'eth0' },
  { name: 'tap-build0', parent: 'br-build' },
  { name: 'tap-ci7', parent: null },
  { name: 'tap-fs0', parent: 'br0' },
  { name: 'tap-kiosk0', parent: 'virbr0' },
];
/**
 * Fixture NICs left out: analytics-02's tap-anl02 (<source bridge='br0'>), and
 * testnet0, the name the test driver gives the NICs without <target dev> of
 * legacy-erp (network "default") and mail-relay (<source bridge='br0'>).
 */
const ABSENT = ['tap-anl02', 'testnet0', 'testnet0'];

const describeAsRoot = describeUnless(firstReason(
  needsRoot('ip netns add (a network namespace with the fixture\'s bridges and taps)'),
  missingTools('ip', 'virsh', 'snmpd', 'snmpbulkwalk'),
));

async function ip(...args: string[]): Promise<void> {
  const r = await runCommand('ip', args, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (r.exitCode !== 0) throw new Error(`ip ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim()}`);
}

describeAsRoot('VM-MIB indexes equal snmpd\'s ifTable and hrProcessorTable inside a network namespace', () => {
  const ns = `vmm-link-${randomBytes(4).toString('hex')}`;
  const inNs = ['ip', 'netns', 'exec', ns];
  let nsCreated = false;
  let snmpd: SnmpdInstance | undefined;
  let agent: AgentProcess | undefined;
  let walk: Walk;
  let facts: VirshFacts;
  let ifIndexByName: Map<string, number>;
  let hrProcessors: number[];
  let stateDir: string | undefined;

  beforeAll(async () => {
    await ip('netns', 'add', ns);
    nsCreated = true;
    const ipn = (...args: string[]): Promise<void> => ip('-n', ns, ...args);
    await ipn('link', 'set', 'lo', 'up');
    for (const bridge of BRIDGES) await ipn('link', 'add', bridge, 'type', 'bridge');
    // The NIC the direct (macvtap) interface is stacked on; its peer plays the wire.
    await ipn('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-wire');
    for (const [i, port] of PORTS.entries()) {
      if (port.name === 'mvtap-db0') {
        await ipn('link', 'add', port.name, 'type', 'vxlan', 'id', '42', 'dev', 'eth0', 'dstport', '4789');
        continue;
      }
      // The veth peer plays the guest's side of the tap.
      await ipn('link', 'add', port.name, 'type', 'veth', 'peer', 'name', `guest${i}`);
      if (port.parent !== null) await ipn('link', 'set', port.name, 'master', port.parent);
    }
    snmpd = await startSnmpd({ commandPrefix: inNs });
    stateDir = mkdtempSync(path.join(os.tmpdir(), 'vmm-linkage-state-'));
    agent = await startAgent(snmpd, { commandPrefix: inNs, stateDir });
    walk = parseWalk((await snmpbulkwalk(snmpd, `.${VM_MIB}`)).stdout);
    ifIndexByName = new Map([...columnOf(parseWalk((await snmpwalk(snmpd, IF_DESCR)).stdout), IF_DESCR)]
      .map(([index, v]) => [asUtf8(v, `ifDescr.${index}`), Number(index)]));
    hrProcessors = [...columnOf(parseWalk((await snmpwalk(snmpd, HR_PROCESSOR_FRW_ID)).stdout), HR_PROCESSOR_FRW_ID).keys()].map(Number);
    facts = readVirsh(DEMO_URI);
  });

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    if (nsCreated) await ip('netns', 'del', ns);
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  it('runs snmpd and the agent in the namespace, talking AgentX over a unix socket path', async () => {
    const nsInode = statSync(`/run/netns/${ns}`).ino;
    expect(statSync(`/proc/${snmpd!.pid}/ns/net`).ino).toBe(nsInode);
    expect(statSync(`/proc/${agent!.proc.pid}/ns/net`).ino).toBe(nsInode);
    expect(snmpd!.agentxAddress).toMatch(/^unix:\//);
    // snmpd's ifTable is the namespace's: exactly what this test created.
    const created = ['lo', ...BRIDGES, 'eth0', 'eth0-wire', ...PORTS.map((p) => p.name),
      ...PORTS.filter((p) => p.name !== 'mvtap-db0').map((p) => `guest${PORTS.indexOf(p)}`)];
    expect([...ifIndexByName.keys()].sort()).toEqual(created.sort());
    // The topology is as intended, so the expectations below rest on it.
    const parents = await ipLinkParents(['-n', ns]);
    for (const port of PORTS) expect([port.name, parents.get(port.name)]).toEqual([port.name, port.parent]);
  });

  it('vmNetworkIfIndex / vmNetworkParent are ifTable\'s ifIndex of the tap and of its bridge or lower device', () => {
    // The fixture still has the NICs this namespace was built for.
    const targets = [...facts.domains.values()].flatMap((d) => expectedNics(d.view).map((n) => n.target)).sort();
    expect(targets).toEqual([...PORTS.map((p) => p.name), ...ABSENT].sort());

    const parentOf = (name: string): string | null => PORTS.find((p) => p.name === name)?.parent ?? null;
    const byUuid = indexByUuid(walk);
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const d of facts.domains.values()) {
      const vmIndex = byUuid.get(d.uuid);
      const rows = [...columnOf(walk, `${NETWORK_ENTRY}.5`)].filter(([k]) => k.startsWith(`${vmIndex}.`));
      const byMac = new Map(rows.map(([k, v]) => [asMac(v, `vmNetworkPhysAddress.${k}`), k]));
      for (const nic of expectedNics(d.view)) {
        const row = byMac.get(nic.mac);
        const key = `${d.name} ${nic.target}`;
        actual[key] = row === undefined ? `no row for ${d.name} ${nic.mac}` : {
          ifIndex: asInteger(cell(walk, NETWORK_ENTRY, 2, row)),
          parent: asInteger(cell(walk, NETWORK_ENTRY, 3, row)),
          source: nic.source,
        };
        expected[key] = { ...expectedNicIndexes(nic, ifIndexByName, parentOf), source: nic.source };
      }
    }
    expect(actual).toEqual(expected);
    // The cases this set-up exists for: present taps, bridges, a lower device, absent taps.
    const e = new Map(Object.entries(expected as Record<string, { ifIndex: number; parent: number; source: string | null }>)
      .map(([key, v]) => [key.slice(key.lastIndexOf(' ') + 1), v] as const));
    for (const p of PORTS) expect([p.name, e.get(p.name)?.ifIndex]).toEqual([p.name, ifIndexByName.get(p.name)]);
    expect(e.get('tap-web01-0')?.parent).toBe(ifIndexByName.get('br0'));
    expect(e.get('tap-build0')?.parent).toBe(ifIndexByName.get('br-build'));
    expect(e.get('tap-kiosk0')?.parent).toBe(ifIndexByName.get('virbr0'));
    expect(e.get('mvtap-db0')?.parent).toBe(ifIndexByName.get('eth0'));
    expect(e.get('tap-ci7')?.parent).toBe(0);
    const absent = Object.entries(expected as Record<string, { ifIndex: number; parent: number; source: string | null }>)
      .filter(([key]) => ABSENT.includes(key.slice(key.lastIndexOf(' ') + 1)));
    expect(absent.map(([key, v]) => [key, v])).toEqual(absent.map(([key, v]) =>
      [key, { ifIndex: 0, parent: v.source === 'br0' ? ifIndexByName.get('br0') : 0, source: v.source }]));
    expect(absent.filter(([, v]) => v.parent !== 0)).toHaveLength(2);
  });

  it('vmCpuPhysIndex: every value is an hrDeviceIndex of hrProcessorTable, each vCPU has them all', () => {
    expect(hrProcessors.length).toBeGreaterThan(0);
    const perVcpu = new Map<string, number[]>();
    for (const index of columnOf(walk, `${AFFINITY_ENTRY}.3`).keys()) {
      const [vm, vcpu, phys] = index.split('.');
      const key = `${vm}.${vcpu}`;
      perVcpu.set(key, [...(perVcpu.get(key) ?? []), Number(phys)]);
    }
    // One group per vCPU of every VM (vcpuinfo's count).
    const vcpus = [...facts.domains.values()].reduce((n, d) => n + d.view.vcpuinfo.length, 0);
    expect(perVcpu.size).toBe(vcpus);
    for (const [key, phys] of perVcpu) expect([key, phys.sort((a, b) => a - b)]).toEqual([key, hrProcessors]);
  });
});
