// examples/prometheus/snmp.yml in Debian's own Prometheus snmp_exporter
// (package prometheus-snmp-exporter, 0.21 on Debian 12): the exporter walks a
// private snmpd, behind which the agent serves the demo fixture and a
// mobility-agent state file of ours, and its answer, fetched as Prometheus
// would, is checked against what virsh says about the fixture
// (vm-mib-expected.ts) and against that state file.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentProcess, DEMO_URI, startAgent } from '../harness/agent';
import { pollUntil } from '../harness/poll';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import {
  Exposition, HttpAnswer, Sample, SnmpExporter, parseExposition, snmpExporterMissing, startSnmpExporter,
} from '../harness/snmp-exporter';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import {
  VirshFacts, activeDisks, expectedAdminState, expectedDisks, expectedNics, expectedOperState, readVirsh,
} from './vm-mib-expected';

const CONFIG = path.resolve(__dirname, '../../examples/prometheus/snmp.yml');
const SCRAPE_EXAMPLE = path.resolve(__dirname, '../../examples/prometheus/prometheus.yml');
const MODULE = 'vmm_agentx';

const OPER_STATES = ['unknown', 'other', 'preparing', 'running', 'suspending', 'suspended', 'resuming', 'paused',
  'migrating', 'shuttingdown', 'shutdown', 'crashed'];
const ADMIN_STATES = ['running', 'suspended', 'paused', 'shutdown'];

/** A VM the mobility agent holds a group for that has not arrived (no vmTable row). */
const AWAY_UUID = '2f8e4a5e-7c3b-4b8e-9d6a-3e1f0a9b8c7d';
const HERE_NAME = 'web-01';
const GROUP6 = 'FF0E:0000:0000:0000:0000:0000:0000:1234';

/** The mobility agent's state file (README "State file"), so that its tables have rows. */
function mobilityAgentState(hereUuid: string): unknown {
  return {
    version: 1,
    proxyJoins: [
      { group: 'ff0e::1234', bridge: 'lo', vm: hereUuid, since: '2026-12-07T06:00:00Z', reason: 'awaiting-report' },
      { group: '239.1.1.1', bridge: 'lo', vm: AWAY_UUID, since: '2026-12-07T06:00:05Z', reason: 'incoming-migration' },
    ],
    relays: [
      { group: '239.1.1.1', server: '192.0.2.10', port: 5000, state: 'active' },
      { group: 'ff0e::1234', server: '2001:db8::10', port: 5001, state: 'failed' },
    ],
  };
}

/** How snmp_exporter 0.21 renders a 16-byte OCTET STRING: "0x" and upper-case hex. */
const uuidLabel = (uuid: string): string => `0x${uuid.replace(/-/g, '').toUpperCase()}`;

const reason = firstReason(missingTools('snmpd', 'snmpget', 'virsh'), snmpExporterMissing());

describeUnless(reason)(`snmp_exporter module ${MODULE} (examples/prometheus/snmp.yml)`, () => {
  let snmpd: SnmpdInstance | undefined;
  let agent: AgentProcess | undefined;
  let exporter: SnmpExporter | undefined;
  let dir: string | undefined;
  let facts: VirshFacts;
  let answer: HttpAnswer;
  let scrape: Exposition;

  const series = (name: string): Sample[] => scrape.samples.filter((s) => s.name === name);

  beforeAll(async () => {
    facts = readVirsh(DEMO_URI);
    const here = [...facts.domains.values()].find((d) => d.name === HERE_NAME);
    if (here === undefined) throw new Error(`the fixture has no domain ${HERE_NAME}`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-prometheus-'));
    fs.writeFileSync(path.join(dir, 'state.json'), JSON.stringify(mobilityAgentState(here.uuid)));
    fs.writeFileSync(path.join(dir, 'agent.conf'), `mcast-agent-state = ${path.join(dir, 'state.json')}\n`);
    snmpd = await startSnmpd();
    agent = await startAgent(snmpd, { extraArgs: ['--config', path.join(dir, 'agent.conf')] });
    exporter = await startSnmpExporter(CONFIG);
    const target = `127.0.0.1:${snmpd.udpPort}`;
    // The first scrape normally has everything; the state file is read on the agent's first refresh.
    ({ value: answer } = await pollUntil(
      'a scrape with the mobility agent present',
      () => exporter!.scrape(MODULE, target),
      (a) => a.status !== 200 || /^vmmMcastAgentPresent\{vmmMcastAgentPresent="true"\} 1$/m.test(a.body),
      10_000,
      200,
    ));
    process.stdout.write(`${exporter.version}: scrape of ${MODULE} took ${answer.ms} ms\n`);
    scrape = parseExposition(answer.body);
  });

  afterAll(async () => {
    await exporter?.stop();
    await agent?.stop();
    await snmpd?.dispose();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers 200 with well-formed samples and no snmp_error', () => {
    expect({ status: answer.status, body: answer.status === 200 ? '' : answer.body }).toEqual({ status: 200, body: '' });
    expect(series('snmp_error')).toEqual([]);
    expect(series('snmp_scrape_pdus_returned')[0]?.value).toBeGreaterThan(0);
    expect(exporter!.log()).not.toMatch(/level=(warn|error)/);
  });

  it('vmNumber is the number of domains, a gauge', () => {
    expect(series('vmNumber')).toEqual([{ name: 'vmNumber', labels: {}, value: facts.domains.size }]);
    expect(facts.domains.size).toBe(9);
    expect(scrape.types.get('vmNumber')).toBe('gauge');
  });

  it('vmOperState and vmAdminState: a state set per VM, labelled with its name and UUID, one state at 1, as in the fixture', () => {
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const d of facts.domains.values()) {
      expected[uuidLabel(d.uuid)] = {
        vm_name: d.name,
        vmOperState: OPER_STATES[expectedOperState(d) - 1],
        vmAdminState: ADMIN_STATES[expectedAdminState(d) - 1],
      };
    }
    for (const [metric, states] of [['vmOperState', OPER_STATES], ['vmAdminState', ADMIN_STATES]] as const) {
      expect(scrape.types.get(metric)).toBe('gauge');
      for (const [vmIndex, samples] of byVmIndex(series(metric))) {
        const uuid = samples[0].labels.vm_uuid;
        const row = (actual[uuid] ??= {}) as Record<string, unknown>;
        row.vm_name = samples[0].labels.vm_name;
        // Every sample of one VM has the same name and UUID, and the set has every state once.
        for (const s of samples) expect([s.labels.vm_name, s.labels.vm_uuid, s.labels.vm_index]).toEqual([row.vm_name, uuid, vmIndex]);
        expect(samples.map((s) => s.labels[metric]).sort()).toEqual([...states].sort());
        const on = samples.filter((s) => s.value === 1);
        expect(samples.filter((s) => s.value !== 0 && s.value !== 1)).toEqual([]);
        row[metric] = on.length === 1 ? on[0].labels[metric] : `${on.length} states at 1`;
      }
    }
    expect(actual).toEqual(expected);
  });

  it('the migration job state, direction and last result: a state set per VM with one state at 1 (none: no migrations here)', () => {
    const names = new Set([...facts.domains.values()].map((d) => d.name));
    for (const metric of ['vmmMigrationJobState', 'vmmMigrationDirection', 'vmmMigrationLastResult', 'vmmMigrationLastDirection']) {
      const groups = byVmIndex(series(metric));
      expect(new Set([...groups.values()].map((g) => g[0].labels.vm_name))).toEqual(names);
      for (const samples of groups.values()) {
        expect(samples.filter((s) => s.value === 1).map((s) => s.labels[metric])).toEqual(['none']);
        expect(samples.filter((s) => s.value === 0)).toHaveLength(samples.length - 1);
      }
    }
  });

  it('counters are counters, gauges are gauges (the CounterBasedGauge64 migration figures too)', () => {
    const types = (names: string[]): Record<string, string | undefined> =>
      Object.fromEntries(names.map((n) => [n, scrape.types.get(n)]));
    // (vmStorageReadLatency and vmStorageWriteLatency are counters too, but libvirt's test driver has no latency figures.)
    const counters = ['vmCpuTime', 'vmCpuCoreTime', 'vmStorageReadIOs', 'vmStorageWriteIOs', 'vmStorageReadOctets',
      'vmStorageWriteOctets'];
    const gauges = ['vmNumber', 'vmCurMem', 'vmMinMem', 'vmMaxMem', 'vmMemUnit', 'vmCurCpuNumber', 'vmUpTime',
      'vmStorageDefinedSize', 'vmmMigrationDataTotal', 'vmmMigrationDataProcessed', 'vmmMigrationDataRemaining',
      'vmmMigrationMemoryTotal', 'vmmMigrationMemoryProcessed', 'vmmMigrationMemoryRemaining',
      'vmmMigrationLastDataTransferred', 'vmmMigrationDirtyRate'];
    expect(types(counters)).toEqual(Object.fromEntries(counters.map((n) => [n, 'counter'])));
    expect(types(gauges)).toEqual(Object.fromEntries(gauges.map((n) => [n, 'gauge'])));
    // One vmCpuTime per VM; the running ones have used some CPU.
    const cpu = new Map(series('vmCpuTime').map((s) => [s.labels.vm_name, s.value]));
    expect(cpu.size).toBe(facts.domains.size);
    for (const d of facts.domains.values()) {
      if (d.state === 'running') expect({ [d.name]: cpu.get(d.name)! > 0 }).toEqual({ [d.name]: true });
    }
    expect(series('vmCurMem').every((s) => s.value > 0 && s.labels.vm_name !== '')).toBe(true);
  });

  it('per-disk series carry the VM name and UUID: every disk has its vmStorageResourceID, active disks have counters', () => {
    const disks = activeDisks(facts);
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const d of facts.domains.values()) {
      const mine = (name: string): Sample[] => series(name).filter((s) => s.labels.vm_uuid === uuidLabel(d.uuid));
      const resources = mine('vmStorageResourceID');
      actual[d.name] = {
        names: [...new Set(resources.map((s) => s.labels.vm_name))],
        resources: resources.map((s) => s.labels.vmStorageResourceID).sort(),
        readOctets: mine('vmStorageReadOctets').length,
        writeIOs: mine('vmStorageWriteIOs').length,
      };
      const active = disks.get(d.name)?.length ?? 0;
      expected[d.name] = {
        names: [d.name],
        resources: expectedDisks(d.view).map((x) => x.resourceId).sort(),
        readOctets: active,
        writeIOs: active,
      };
      // A counter's disk is one of the VM's disks: same (vm_index, vm_storage_index) as a resource series.
      const keys = new Set(resources.map((s) => `${s.labels.vm_index}.${s.labels.vm_storage_index}`));
      for (const s of mine('vmStorageReadOctets')) expect(keys.has(`${s.labels.vm_index}.${s.labels.vm_storage_index}`)).toBe(true);
    }
    expect(actual).toEqual(expected);
    expect(series('vmStorageReadOctets').length).toBeGreaterThan(0);
  });

  it('per-NIC series carry the VM name and UUID: one vmNetworkPhysAddress per domiflist row, with its MAC', () => {
    const actual: Record<string, unknown> = {};
    const expected: Record<string, unknown> = {};
    for (const d of facts.domains.values()) {
      const nics = series('vmNetworkPhysAddress').filter((s) => s.labels.vm_uuid === uuidLabel(d.uuid));
      actual[d.name] = {
        names: [...new Set(nics.map((s) => s.labels.vm_name))],
        macs: nics.map((s) => s.labels.vmNetworkPhysAddress.toLowerCase()).sort(),
        withIfIndexLabel: nics.filter((s) => /^\d+$/.test(s.labels.ifIndex ?? '')).length,
      };
      const macs = expectedNics(d.view).map((n) => n.mac).sort();
      expected[d.name] = { names: macs.length > 0 ? [d.name] : [], macs, withIfIndexLabel: macs.length };
    }
    expect(actual).toEqual(expected);
  });

  it('mobility agent: proxy joins by group (text) and VM UUID (hex), the VM\'s name once it is here; relays', () => {
    const here = [...facts.domains.values()].find((d) => d.name === HERE_NAME)!;
    const hereIndex = series('vmOperState').find((s) => s.labels.vm_name === HERE_NAME)!.labels.vm_index;
    const joins = (name: string): Array<Record<string, unknown>> => series(name)
      .filter((s) => name.endsWith('Reason') ? s.value === 1 : true)
      .map((s): Record<string, unknown> => ({ ...s.labels, value: s.value }))
      .sort((a, b) => String(a.mcast_group).localeCompare(String(b.mcast_group)));
    const away = { mcast_group: '239.1.1.1', vm_uuid: uuidLabel(AWAY_UUID), vm_index: '0', vm_name: '' };
    const arrived = { mcast_group: GROUP6, vm_uuid: uuidLabel(here.uuid), vm_index: hereIndex, vm_name: HERE_NAME };
    expect(joins('vmmMcastProxyJoinVmIndex')).toEqual([{ ...away, value: 0 }, { ...arrived, value: Number(hereIndex) }]);
    expect(joins('vmmMcastProxyJoinSince')).toEqual([
      { ...away, value: Date.parse('2026-12-07T06:00:05Z') / 1000 },
      { ...arrived, value: Date.parse('2026-12-07T06:00:00Z') / 1000 },
    ]);
    expect(joins('vmmMcastProxyJoinReason')).toEqual([
      { ...away, vmmMcastProxyJoinReason: 'incomingMigration', value: 1 },
      { ...arrived, vmmMcastProxyJoinReason: 'awaitingReport', value: 1 },
    ]);
    expect(joins('vmmMcastProxyJoinIfIndex').map((j) => j.value)).toEqual([1, 1]); // lo
    expect(joins('vmmMcastRelayServerAddress')).toEqual([
      { mcast_group: '239.1.1.1', vmmMcastRelayServerAddress: '192.0.2.10', value: 1 },
      { mcast_group: GROUP6, vmmMcastRelayServerAddress: '2001:0DB8:0000:0000:0000:0000:0000:0010', value: 1 },
    ]);
    expect(joins('vmmMcastRelayServerPort').map((j) => j.value)).toEqual([5000, 5001]);
    expect(series('vmmMcastRelayState').filter((s) => s.value === 1).map((s) => s.labels.vmmMcastRelayState).sort())
      .toEqual(['active', 'failed']);
  });

  it('the example scrape config\'s metric_relabel_configs turn vm_uuid into the UUID virsh shows', () => {
    const relabel = exampleUuidRelabel();
    const actual = new Map(series('vmOperState').map((s) => [relabel(s.labels.vm_uuid), s.labels.vm_name]));
    expect(actual).toEqual(new Map([...facts.domains.values()].map((d) => [d.uuid, d.name])));
    expect([...actual.keys()].every((u) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(u))).toBe(true);
  });
});

/**
 * The vm_uuid rules of examples/prometheus/prometheus.yml, applied as
 * Prometheus does: the regex anchored at both ends, $n replaced (the same
 * syntax in Go's Expand and JavaScript's replace for these rules), then the
 * lowercase action.
 */
function exampleUuidRelabel(): (value: string) => string {
  const text = fs.readFileSync(SCRAPE_EXAMPLE, 'utf8');
  const rule = new RegExp([
    String.raw`- source_labels: \[vm_uuid\]\n\s+regex: '([^']+)'\n\s+replacement: '([^']+)'\n\s+target_label: vm_uuid\n`,
    String.raw`\s+- source_labels: \[vm_uuid\]\n\s+action: lowercase\n\s+target_label: vm_uuid\n`,
  ].join('')).exec(text);
  if (rule === null) throw new Error(`${SCRAPE_EXAMPLE} has no vm_uuid replace + lowercase rules in the expected shape`);
  const re = new RegExp(`^(?:${rule[1]})$`);
  return (value) => (re.test(value) ? value.replace(re, rule[2]) : value).toLowerCase();
}

/** Samples grouped by their vm_index label. */
function byVmIndex(samples: Sample[]): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>();
  for (const s of samples) {
    const list = out.get(s.labels.vm_index) ?? [];
    list.push(s);
    out.set(s.labels.vm_index, list);
  }
  return out;
}
