// The example Zabbix template (examples/zabbix/) against a real Zabbix 6.0
// server: a private PostgreSQL + zabbix_server + PHP API (harness/zabbix.ts),
// a private snmpd with the real vmm-agentx CLI on the shipped libvirt fixture,
// the template imported through configuration.import, a host with an SNMPv2
// interface pointing at that snmpd, and then what an operator would look at:
// the fixture's 9 VMs discovered by name (a UTF-8 one included), their disks
// and NICs, values arriving (vmNumber = 9, each VM's state), the crashed VM's
// problem, the per-VM paused limit, no item or trigger Zabbix cannot evaluate,
// and "vmm-agentx: no VM-MIB data" once the agent stops (snmpd still up).
// Needs root and the Zabbix packages (harness/zabbix.ts zabbixMissing());
// skipped with the reason otherwise.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, DEMO_FIXTURE, requireBuiltCli, startAgent } from '../harness/agent';
import { pollUntil } from '../harness/poll';
import { sleep } from '../harness/process';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { startZabbixStack, ZabbixStack, zabbixMissing } from '../harness/zabbix';

const TEMPLATE_FILE = path.resolve(__dirname, '../../examples/zabbix/template_vmm_agentx_snmp.yaml');
const TEMPLATE = 'VMM AgentX by SNMP';
const HOST = 'hypervisor-under-test';
/** The per-VM paused limit the test sets for build-runner (paused in the fixture); the template's default is 30m. */
const PAUSED_MAX_SECONDS = 20;

const describeZabbix = describeUnless(firstReason(zabbixMissing(), missingTools('snmpd', 'snmpget')));

interface FixtureVm {
  name: string;
  uuid: string;
}

/** Name and UUID of every domain in the libvirt fixture the agent serves. */
function fixtureVms(): FixtureVm[] {
  const xml = fs.readFileSync(DEMO_FIXTURE, 'utf8');
  const vms: FixtureVm[] = [];
  for (const m of xml.matchAll(/<domain\b[\s\S]*?<name>([^<]*)<\/name>\s*<uuid>([^<]*)<\/uuid>/g)) {
    vms.push({ name: m[1], uuid: m[2].toLowerCase() });
  }
  return vms;
}

interface Item {
  itemid: string;
  key_: string;
  name: string;
  type: string;
  flags: string;
  state: string;
  error: string;
  lastvalue: string;
  lastclock: string;
  status: string;
}

interface Trigger {
  triggerid: string;
  description: string;
  value: string;
  state: string;
  error: string;
  flags: string;
}

const IMPORT_RULES = {
  groups: { createMissing: true },
  templates: { createMissing: true, updateExisting: true },
  templateLinkage: { createMissing: true },
  items: { createMissing: true, updateExisting: true, deleteMissing: true },
  discoveryRules: { createMissing: true, updateExisting: true, deleteMissing: true },
  triggers: { createMissing: true, updateExisting: true, deleteMissing: true },
  graphs: { createMissing: true, updateExisting: true, deleteMissing: true },
  valueMaps: { createMissing: true, updateExisting: true, deleteMissing: true },
};

// Item types as the API numbers them (both accepted by "check now", task type 6).
const ITEM_TYPE_SNMP = '20';
const ITEM_TYPE_CALCULATED = '15';

describeZabbix('Zabbix 6.0 with the example template (examples/zabbix)', () => {
  const vms = fixtureVms();
  let zbx: ZabbixStack;
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;
  let hostid = '';
  let templateid = '';
  const started = Date.now();
  const marks: Array<[string, number]> = [];
  const mark = (what: string): void => {
    marks.push([what, Date.now() - started]);
  };

  const items = async (): Promise<Item[]> =>
    zbx.call<Item[]>('item.get', {
      hostids: [hostid],
      output: ['itemid', 'key_', 'name', 'type', 'flags', 'state', 'error', 'lastvalue', 'lastclock', 'status'],
    });
  const itemByKey = async (key: string): Promise<Item | undefined> => (await items()).find((i) => i.key_ === key);
  /** "Check now" for these items or LLD rules (the server picks tasks up within a second or two). */
  const checkNow = async (itemids: string[]): Promise<void> => {
    if (itemids.length === 0) return;
    await zbx.call('task.create', itemids.map((itemid) => ({ type: 6, request: { itemid } })));
  };
  /** Polled items; with `calculated`, also the calculated ones (worth checking once their sources have values). */
  const checkableItems = (list: Item[], calculated = false): string[] =>
    list.filter((i) => [ITEM_TYPE_SNMP, ...(calculated ? [ITEM_TYPE_CALCULATED] : [])].includes(i.type) && i.status === '0')
      .map((i) => i.itemid);

  beforeAll(async () => {
    expect(vms).toHaveLength(9);
    requireBuiltCli();
    [zbx, snmpd] = await Promise.all([startZabbixStack(), startSnmpd()]);
    agent = await startAgent(snmpd, { refreshSeconds: 5 });
    mark(`stack up (schema ${zbx.schemaFromCache ? 'from the cached dump' : 'loaded from .sql.gz and cached'}; ${JSON.stringify(zbx.timings)})`);
  }, 300_000);

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    await zbx?.stop();
    mark('stopped');
    process.stdout.write(`zabbix.test.ts timeline (ms since start):\n${marks.map(([w, ms]) => `  ${String(ms).padStart(7)}  ${w}`).join('\n')}\n`);
  }, 60_000);

  it('imports the template (export format 6.0) through configuration.import, twice', async () => {
    expect(zbx.version).toMatch(/^6\.0\./);
    const source = fs.readFileSync(TEMPLATE_FILE, 'utf8');
    expect(await zbx.call('configuration.import', { format: 'yaml', source, rules: IMPORT_RULES })).toBe(true);
    // Importing again updates in place (same UUIDs), as an operator upgrading the template would.
    expect(await zbx.call('configuration.import', { format: 'yaml', source, rules: IMPORT_RULES })).toBe(true);
    const [tpl] = await zbx.call<Array<{ templateid: string; discoveries: unknown[]; items: unknown[]; macros: Array<{ macro: string }> }>>(
      'template.get',
      { filter: { host: TEMPLATE }, output: ['templateid'], selectDiscoveries: ['key_'], selectItems: ['key_'], selectMacros: ['macro'] },
    );
    expect(tpl).toBeDefined();
    templateid = tpl.templateid;
    expect(tpl.discoveries).toHaveLength(3);
    expect(tpl.macros.map((m) => m.macro)).toEqual(expect.arrayContaining(['{$VMM.VM.NAME.MATCHES}', '{$VMM.VM.NAME.NOT_MATCHES}', '{$VMM.VM.PAUSED.MAX}']));
    // It links beside Zabbix's own "Linux by SNMP" (no shared item key): a host with both is accepted.
    const [linux] = await zbx.call<Array<{ templateid: string }>>('template.get', { filter: { host: 'Linux by SNMP' }, output: ['templateid'] });
    expect(linux).toBeDefined();
    const [group] = await zbx.call<Array<{ groupid: string }>>('hostgroup.get', { filter: { name: 'Hypervisors' }, output: ['groupid'] });
    const both = await zbx.call<{ hostids: string[] }>('host.create', {
      host: 'linked-beside-linux-by-snmp', status: 1, groups: [{ groupid: group.groupid }],
      templates: [{ templateid }, { templateid: linux.templateid }],
      interfaces: [{ type: 2, main: 1, useip: 1, ip: '127.0.0.1', dns: '', port: '161', details: { version: 2, bulk: 1, community: 'public' } }],
    });
    await zbx.call('host.delete', both.hostids);
    mark('template imported');
  }, 120_000);

  it("discovers the fixture's 9 VMs by name (UTF-8 decoded), keyed on their UUIDs, with their disks and NICs", async () => {
    // The stock "Zabbix server" host polls an agent that is not there: out of the way.
    const stock = await zbx.call<Array<{ hostid: string }>>('host.get', { filter: { host: 'Zabbix server' }, output: ['hostid'] });
    for (const h of stock) await zbx.call('host.update', { hostid: h.hostid, status: 1 });
    const [group] = await zbx.call<Array<{ groupid: string }>>('hostgroup.get', { filter: { name: 'Hypervisors' }, output: ['groupid'] });
    const created = await zbx.call<{ hostids: string[] }>('host.create', {
      host: HOST,
      groups: [{ groupid: group.groupid }],
      templates: [{ templateid }],
      macros: [
        { macro: '{$SNMP_COMMUNITY}', value: 'public' },
        { macro: '{$VMM.VM.PAUSED.MAX:"build-runner"}', value: `${PAUSED_MAX_SECONDS}s` },
      ],
      interfaces: [{
        type: 2, main: 1, useip: 1, ip: '127.0.0.1', dns: '', port: String(snmpd.udpPort),
        details: { version: 2, bulk: 1, community: '{$SNMP_COMMUNITY}' },
      }],
    });
    hostid = created.hostids[0];
    mark('host created');

    const rules = await zbx.call<Array<{ itemid: string; key_: string }>>('discoveryrule.get', { hostids: [hostid], output: ['itemid', 'key_'] });
    expect(rules.map((r) => r.key_).sort()).toEqual(['vmm.vm.discovery', 'vmm.vm.disk.discovery', 'vmm.vm.net.discovery']);
    // The server reads new items into its configuration cache every CacheUpdateFrequency (2 s).
    await sleep(3000);
    await checkNow([...rules.map((r) => r.itemid), ...checkableItems(await items())]);

    const operKeys = vms.map((vm) => `vmm.vm.oper_state[${vm.uuid}]`);
    let lastNudge = Date.now();
    const { value: discovered } = await pollUntil('the VM discovery to create every fixture VM', async () => {
      const list = await items();
      if (Date.now() - lastNudge > 15_000) {
        lastNudge = Date.now(); // a task sent before the rule reached the cache is dropped: send it again
        await checkNow(rules.map((r) => r.itemid));
      }
      return list;
    }, (list) => operKeys.every((k) => list.some((i) => i.key_ === k)), 120_000, 1000);
    mark('9 VMs discovered');

    for (const vm of vms) {
      const oper = discovered.find((i) => i.key_ === `vmm.vm.oper_state[${vm.uuid}]`);
      expect(oper?.name).toBe(`VM ${vm.name}: operational state`);
    }
    expect(discovered.some((i) => i.name === 'VM fileserver-größe: operational state')).toBe(true);
    // Disks: named by image path / device / URL, joined to their VM by the rule's script.
    const web = vms.find((vm) => vm.name === 'web-01') as FixtureVm;
    await pollUntil('the disk and NIC discoveries', items, (list) =>
      list.some((i) => i.name === 'VM web-01: disk /var/lib/libvirt/images/web-01.qcow2: read rate') &&
      list.some((i) => i.key_ === `vmm.vm.net.model[${web.uuid},52:54:00:a1:30:09]`), 60_000, 1000);
    const all = await items();
    expect(all.filter((i) => i.key_.startsWith(`vmm.vm.disk.read.bytes[${web.uuid},`)).map((i) => i.name).sort()).toEqual([
      'VM web-01: disk /var/lib/libvirt/images/web-01-data.raw: read rate',
      'VM web-01: disk /var/lib/libvirt/images/web-01.qcow2: read rate',
      'VM web-01: disk /var/lib/libvirt/isos/debian-12.5.0-amd64-netinst.iso: read rate',
    ]);
    expect(all.some((i) => i.name === 'VM fileserver-größe: disk /var/lib/libvirt/images/fileserver-größe.qcow2: read rate')).toBe(true);
    // The fixture's taps do not exist on this host (vmNetworkIfIndex 0): no traffic items, by the rule's override.
    expect(all.filter((i) => i.key_.startsWith('vmm.vm.net.if.'))).toEqual([]);
    mark('disks and NICs discovered');
  }, 240_000);

  it('collects values: vmNumber = 9, each VM state as the fixture defines it, memory in bytes', async () => {
    const expectedOper: Record<string, string> = {
      'web-01': '4', 'db-primary': '4', 'build-runner': '8', 'legacy-erp': '11', 'analytics-02': '12',
      'ci-ephemeral-7': '4', 'mail-relay': '6', 'fileserver-größe': '4', 'kiosk-lobby': '6',
    };
    expect(Object.keys(expectedOper).sort()).toEqual(vms.map((vm) => vm.name).sort());
    const uuidOf = (name: string): string => (vms.find((vm) => vm.name === name) as FixtureVm).uuid;
    await checkNow(checkableItems(await items()));
    const wanted = (list: Item[]): boolean => {
      const value = (key: string): string | undefined => list.find((i) => i.key_ === key && i.lastclock !== '0')?.lastvalue;
      return value('vmm.vm.count') === '9' &&
        vms.every((vm) => value(`vmm.vm.oper_state[${vm.uuid}]`) === expectedOper[vm.name]) &&
        value(`vmm.vm.mem.unit[${uuidOf('web-01')}]`) !== undefined &&
        // Every item asserted below has been polled once (a busy server polls them in any order).
        [`vmm.vm.admin_state[${uuidOf('build-runner')}]`, `vmm.vm.migration.state[${uuidOf('web-01')}]`,
          `vmm.vm.migration.last.result[${uuidOf('web-01')}]`, 'vmm.hv.software', 'vmm.snmpd.uptime'].every((k) => value(k) !== undefined);
    };
    let lastNudge = Date.now();
    const { value: list } = await pollUntil('vmNumber and every VM state to arrive', async () => {
      const l = await items();
      if (Date.now() - lastNudge > 10_000) {
        lastNudge = Date.now();
        await checkNow(checkableItems(l.filter((i) => i.lastclock === '0')));
      }
      return l;
    }, wanted, 120_000, 1000);
    mark('vmNumber = 9 and every VM state valued');
    const value = (key: string): string | undefined => list.find((i) => i.key_ === key)?.lastvalue;
    expect(value(`vmm.vm.admin_state[${uuidOf('build-runner')}]`)).toBe('3');
    expect(value(`vmm.vm.migration.state[${uuidOf('web-01')}]`)).toBe('1');
    expect(value(`vmm.vm.migration.last.result[${uuidOf('web-01')}]`)).toBe('1');
    expect(value('vmm.hv.software')).toBe('TEST');
    expect(Number(value('vmm.snmpd.uptime'))).toBeGreaterThan(0);

    // A second poll gives the change-per-second items (CPU, disk rates) their first value, and the
    // calculated items (memory in bytes, disk sizes, latencies, migration progress) their sources.
    await checkNow(checkableItems(list));
    await sleep(3000);
    await checkNow(checkableItems(list, true));
    const { value: later } = await pollUntil('the CPU utilisation of a running VM (a rate: two polls) and its memory in bytes', items,
      (l) => [`vmm.vm.cpu.util[${uuidOf('web-01')}]`, `vmm.vm.mem.cur[${uuidOf('web-01')}]`].every((k) => l.some((i) => i.key_ === k && i.lastclock !== '0')),
      60_000, 1000);
    expect(later.find((i) => i.key_ === `vmm.vm.mem.cur[${uuidOf('web-01')}]`)?.lastvalue).toBe(String(2 * 1024 ** 3)); // 2097152 KiB x 1024
    mark('rates and calculated items valued');
  }, 240_000);

  it('raises the crashed VM, the per-VM paused limit, and evaluates every item and trigger without error', async () => {
    const triggers = async (): Promise<Trigger[]> =>
      zbx.call<Trigger[]>('trigger.get', { hostids: [hostid], output: ['description', 'value', 'state', 'error', 'flags'], expandDescription: true });
    await pollUntil('the problem "VM analytics-02: has crashed"', triggers,
      (l) => l.some((t) => t.description === 'VM analytics-02: has crashed' && t.value === '1'), 60_000, 1000);
    mark('crashed VM raised');

    // build-runner is paused; its own limit (context macro) is PAUSED_MAX_SECONDS: once its state has
    // been paused for longer than that, a fresh value raises the problem. The other VMs keep 30m.
    const buildRunner = vms.find((vm) => vm.name === 'build-runner') as FixtureVm;
    const oper = await itemByKey(`vmm.vm.oper_state[${buildRunner.uuid}]`);
    const pausedName = `VM build-runner: paused for longer than ${PAUSED_MAX_SECONDS}s`;
    await pollUntil(`the problem "${pausedName}"`, async () => {
      await checkNow([(oper as Item).itemid]);
      return triggers();
    }, (l) => l.some((t) => t.description === pausedName && t.value === '1'), (PAUSED_MAX_SECONDS + 60) * 1000, 5000);
    mark('paused VM raised');

    const problems = (await triggers()).filter((t) => t.value === '1').map((t) => t.description).sort();
    expect(problems).toEqual(['VM analytics-02: has crashed', pausedName]);

    // Nothing Zabbix cannot evaluate: no unsupported item, no trigger in the unknown state.
    // (A paused VM's trigger is unknown until its state has a value older than the limit.)
    const final = await items();
    const unvalued = final.filter((i) => i.lastclock === '0').map((i) => i.key_);
    process.stdout.write(`zabbix.test.ts: ${final.length} items on the host, ${unvalued.length} without a value yet:\n  ${unvalued.join('\n  ')}\n`);
    const unsupported = final.filter((i) => i.state === '1').map((i) => `${i.key_}: ${i.error}`);
    expect(unsupported).toEqual([]);
    const unknown = (await triggers())
      .filter((t) => t.state === '1' && !/: paused for longer than /.test(t.description))
      .map((t) => `${t.description}: ${t.error}`);
    expect(unknown).toEqual([]);
    mark('no unsupported item, no unknown trigger');
  }, 180_000);

  it('raises "vmm-agentx: no VM-MIB data" when the agent stops while snmpd keeps answering', async () => {
    // 30 s instead of the template's 5m; set only now, since vmHvUpTime is polled every minute.
    await zbx.call('usermacro.create', { hostid, macro: '{$VMM.NODATA.TIMEOUT}', value: '30s' });
    await agent.stop();
    const stoppedAt = Date.now();
    mark('agent stopped');
    const uptime = await itemByKey('vmm.hv.uptime');
    const triggers = async (): Promise<Trigger[]> =>
      zbx.call<Trigger[]>('trigger.get', { hostids: [hostid], output: ['description', 'value', 'state', 'error'], expandDescription: true });
    const { value: list } = await pollUntil('the problem "vmm-agentx: no VM-MIB data for 30s"', async () => {
      await checkNow([(uptime as Item).itemid]); // snmpd answers noSuchObject: the item goes unsupported, no data
      return triggers();
    }, (l) => l.some((t) => t.description === 'vmm-agentx: no VM-MIB data for 30s' && t.value === '1'), 150_000, 5000);
    mark(`"no VM-MIB data" raised ${Date.now() - stoppedAt} ms after the agent stopped`);
    expect(list.find((t) => t.description === 'Hypervisor snmpd is not answering')?.value).toBe('0');
    const item = await itemByKey('vmm.hv.uptime');
    expect({ state: item?.state, error: item?.error }).toEqual({ state: '1', error: 'No Such Object available on this agent at this OID' });
  }, 200_000);
});
