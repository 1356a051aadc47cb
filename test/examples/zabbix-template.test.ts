/**
 * Static checks of the example Zabbix template (examples/zabbix/), no daemons:
 *
 * - Always (regex extraction over the YAML text, plus snmptranslate): every
 *   numeric OID it polls — plain snmp_oid fields and the OIDs inside the
 *   6.0-style discovery[{#MACRO},OID,...] keys — names a readable object of
 *   the project's MIB modules (VM-MIB, VMM-AGENTX-MIB) or of IF-MIB (the
 *   taps' counters) or SNMPv2-MIB (sysUpTime), a scalar with .0 or a column
 *   with an LLD macro as instance; every value map an
 *   item names exists; every item on an enumerated object has one, and a map
 *   named after a MIB object or TC lists exactly its enumeration.
 * - With python3-yaml (the file parsed into a tree): export format 6.0, fresh
 *   and unique UUIDs, every leaf a string (Zabbix 6.0 rejects `lifetime: 0`),
 *   unique keys, no walk[] (6.4), every key a trigger / calculated item /
 *   graph / dependency names exists, every LLD macro used is one the rule's
 *   script produces, every user macro is defined.
 * - The LLD rules' JavaScript (run with node, and with Zabbix's own engine
 *   when zabbix_js is installed) on input shaped like Zabbix 6.0's discovery[]
 *   output: hex-encoded UTF-8 names decoded, UUIDs and MACs normalised, disks
 *   and NICs joined to their VM.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCommand, toolEnv } from '../harness/process';
import { describeUnless, findTool, missingTools } from '../harness/prereq';

const repoRoot = path.resolve(__dirname, '..', '..');
const TEMPLATE_FILE = path.join(repoRoot, 'examples', 'zabbix', 'template_vmm_agentx_snmp.yaml');
const TEMPLATE_NAME = 'VMM AgentX by SNMP';
const MIB_PATH = [path.join(repoRoot, 'mib'), path.join(repoRoot, 'node_modules', 'net-snmp', 'lib', 'mibs'), '/usr/share/snmp/mibs'].join(':');
const MIB_MODULES = 'VM-MIB:VMM-AGENTX-MIB:IF-MIB:SNMPv2-MIB';

const text = fs.readFileSync(TEMPLATE_FILE, 'utf8');

// ---------------------------------------------------------------- regex extraction

interface PolledOid {
  /** The OID as written, e.g. "1.3.6.1.2.1.236.1.4.1.6.{#SNMPINDEX}". */
  raw: string;
  /** Without the instance part. */
  object: string;
  /** "scalar" (.0), "column" (an LLD macro instance) or "walk" (inside discovery[]). */
  kind: 'scalar' | 'column' | 'walk';
  /** The value map of the item, if any (not for walks). */
  valuemap?: string;
}

/** Every snmp_oid field (with the value map of its item), OIDs inside discovery[] keys separately. */
function polledOids(): PolledOid[] {
  const out: PolledOid[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)snmp_oid: '?([^'\n]+?)'?\s*$/.exec(lines[i]);
    if (!m) continue;
    const [, indent, oid] = m;
    const discovery = /^discovery\[(.*)\]$/.exec(oid);
    if (discovery) {
      const params = discovery[1].split(',');
      for (let p = 1; p < params.length; p += 2) out.push({ raw: params[p], object: params[p].replace(/^\./, ''), kind: 'walk' });
      continue;
    }
    // The item's other fields at the same indent, up to the next list entry at a smaller indent.
    let valuemap: string | undefined;
    for (let j = i + 1; j < lines.length; j++) {
      const line = lines[j];
      const lineIndent = /^(\s*)/.exec(line)?.[1].length ?? 0;
      if (line.trim() !== '' && lineIndent < indent.length) break;
      if (lineIndent === indent.length && /^\s*valuemap:\s*$/.test(line)) {
        valuemap = /^\s*name: '?([^'\n]+?)'?\s*$/.exec(lines[j + 1] ?? '')?.[1];
      }
    }
    const column = /^(.*)\.\{#[A-Z0-9_.]+\}$/.exec(oid);
    if (column) out.push({ raw: oid, object: column[1], kind: 'column', valuemap });
    else if (oid.endsWith('.0')) out.push({ raw: oid, object: oid.slice(0, -2), kind: 'scalar', valuemap });
    else out.push({ raw: oid, object: oid, kind: 'scalar', valuemap }); // fails below: no .0
  }
  return out;
}

/** The value maps the template defines: name → value → new value. */
function definedValueMaps(): Map<string, Map<string, string>> {
  const section = text.slice(text.indexOf('\n      valuemaps:\n'));
  const maps = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  let pendingValue: string | undefined;
  for (const line of section.split('\n').slice(2)) {
    if (/^ {0,5}\S/.test(line)) break;
    const name = /^ {10}name: '?([^'\n]+?)'?\s*$/.exec(line);
    if (name) {
      current = new Map();
      maps.set(name[1], current);
      continue;
    }
    const value = /^\s*- value: '?([^'\n]*?)'?\s*$/.exec(line);
    if (value) pendingValue = value[1];
    const newValue = /^\s*newvalue: '?([^'\n]*?)'?\s*$/.exec(line);
    if (newValue && current && pendingValue !== undefined) {
      current.set(pendingValue, newValue[1]);
      pendingValue = undefined;
    }
  }
  return maps;
}

/** Every `valuemap: name:` reference in items and prototypes. */
function referencedValueMaps(): string[] {
  return [...text.matchAll(/\n\s*valuemap:\n\s*name: '?([^'\n]+?)'?\s*\n/g)].map((m) => m[1]);
}

interface MibObject {
  oid: string;
  /** "VM-MIB::vmOperState", or with a suffix when the OID is below an object. */
  name: string;
  syntax: string;
  access: string;
  tc: string | undefined;
  /** value → label, for enumerated INTEGERs. */
  enumeration: Map<string, string> | undefined;
  /** The parent node in the ::= line ends in "Entry(1)": a table column. */
  column: boolean;
}

/** snmptranslate -Td for all OIDs in one call, parsed per object. */
/**
 * The snmp tools' stderr without the notice they print when run as root for
 * the first time on a machine (net-snmp creates its persistent directory):
 * not a problem with the MIBs.
 */
function withoutFirstRunNotice(stderr: string): string {
  return stderr.replace(/^Created directory: \S+\n/gm, '');
}

async function describeOids(oids: string[]): Promise<Map<string, MibObject>> {
  const r = await runCommand('snmptranslate', ['-M', MIB_PATH, '-m', MIB_MODULES, '-Td', '-OS', ...oids.map((o) => `.${o}`)], { env: { ...process.env, MIBS: '' } });
  expect(withoutFirstRunNotice(r.stderr)).toBe('');
  const blocks = r.stdout.split(/\n(?=[A-Za-z0-9-]+::\S+\n)/);
  expect(blocks).toHaveLength(oids.length);
  const out = new Map<string, MibObject>();
  blocks.forEach((block, i) => {
    const enumText = /SYNTAX\s+INTEGER\s*\{([^}]*)\}/.exec(block)?.[1];
    const parent = /::= \{ .* (\w+)\((\d+)\) \d+ \}/.exec(block);
    out.set(oids[i], {
      oid: oids[i],
      name: block.split('\n')[0].trim(),
      syntax: /SYNTAX\s+([^\n]*)/.exec(block)?.[1].trim() ?? '',
      access: /MAX-ACCESS\s+(\S+)/.exec(block)?.[1] ?? '',
      tc: /-- TEXTUAL CONVENTION (\S+)/.exec(block)?.[1],
      enumeration: enumText === undefined ? undefined
        : new Map([...enumText.matchAll(/([A-Za-z][\w-]*)\((-?\d+)\)/g)].map((m) => [m[2], m[1]])),
      column: parent !== null && /Entry$/.test(parent[1]),
    });
  });
  return out;
}

describeUnless(missingTools('snmptranslate'))('the Zabbix template: OIDs and value maps (regex extraction + snmptranslate)', () => {
  const oids = polledOids();
  const maps = definedValueMaps();
  let described: Map<string, MibObject>;

  beforeAll(async () => {
    described = await describeOids([...new Set(oids.map((o) => o.object))]);
  });

  it('polls only numeric OIDs (the Zabbix server loads no MIB files), dozens of them', () => {
    expect(oids.length).toBeGreaterThan(50);
    for (const o of oids) expect(o.object).toMatch(/^1\.3\.6\.1\.(2\.1\.(236|31|2|1)|4\.1\.8072\.9999\.9999\.7666)\.[0-9.]+$/);
  });

  it('names a readable object of VM-MIB, VMM-AGENTX-MIB, IF-MIB or SNMPv2-MIB with every OID, scalars as .0 and columns with an LLD index', () => {
    const problems: string[] = [];
    for (const o of oids) {
      const obj = described.get(o.object) as MibObject;
      if (!/^(VM-MIB|VMM-AGENTX-MIB|IF-MIB|SNMPv2-MIB)::[A-Za-z][A-Za-z0-9]*$/.test(obj.name)) {
        problems.push(`${o.raw}: not an object of the MIB modules (resolves to ${obj.name})`);
        continue;
      }
      if (!/^read-(only|write)$/.test(obj.access)) problems.push(`${o.raw}: ${obj.name} is ${obj.access || 'not an OBJECT-TYPE'}`);
      if (o.kind === 'scalar' && (obj.column || !o.raw.endsWith('.0'))) problems.push(`${o.raw}: ${obj.name} polled as a scalar`);
      if (o.kind !== 'scalar' && !obj.column) problems.push(`${o.raw}: ${obj.name} is not a table column`);
    }
    expect(problems).toEqual([]);
  });

  it('polls the hypervisor scalars, vmTable, vmStorageTable, vmNetworkTable and vmmMigrationTable', () => {
    const names = new Set(oids.map((o) => described.get(o.object)?.name));
    for (const name of [
      'SNMPv2-MIB::sysUpTime', 'VM-MIB::vmHvSoftware', 'VM-MIB::vmHvVersion', 'VM-MIB::vmHvUpTime', 'VM-MIB::vmNumber', 'VM-MIB::vmTableLastChange',
      'VM-MIB::vmPerVMNotificationsEnabled', 'VM-MIB::vmBulkNotificationsEnabled',
      'VM-MIB::vmName', 'VM-MIB::vmUUID', 'VM-MIB::vmAdminState', 'VM-MIB::vmOperState', 'VM-MIB::vmAutoStart', 'VM-MIB::vmPersistent',
      'VM-MIB::vmCurCpuNumber', 'VM-MIB::vmCurMem', 'VM-MIB::vmMemUnit', 'VM-MIB::vmCpuTime',
      'VM-MIB::vmStorageReadOctets', 'VM-MIB::vmStorageWriteOctets', 'VM-MIB::vmStorageReadIOs', 'VM-MIB::vmStorageWriteIOs',
      'VM-MIB::vmNetworkPhysAddress', 'VM-MIB::vmNetworkIfIndex', 'IF-MIB::ifHCInOctets', 'IF-MIB::ifHCOutOctets',
      'VMM-AGENTX-MIB::vmmMigrationJobState', 'VMM-AGENTX-MIB::vmmMigrationDirection', 'VMM-AGENTX-MIB::vmmMigrationDataRemaining',
      'VMM-AGENTX-MIB::vmmMigrationLastResult', 'VMM-AGENTX-MIB::vmmMigrationLastEnded',
    ]) {
      expect([...names]).toContain(name);
    }
  });

  it('defines every value map an item names, and uses every one it defines', () => {
    const referenced = new Set(referencedValueMaps());
    expect([...referenced].filter((name) => !maps.has(name))).toEqual([]);
    expect([...maps.keys()].filter((name) => !referenced.has(name))).toEqual([]);
  });

  it('gives every item on an enumerated object a value map that lists exactly its enumeration', () => {
    const problems: string[] = [];
    for (const o of oids.filter((x) => x.kind !== 'walk')) {
      const obj = described.get(o.object) as MibObject;
      if (obj.enumeration === undefined) {
        if (o.valuemap !== undefined) problems.push(`${o.raw} (${obj.name}, ${obj.syntax}) has value map ${o.valuemap} but no enumeration`);
        continue;
      }
      if (o.valuemap === undefined) {
        problems.push(`${o.raw} (${obj.name}) is enumerated but has no value map`);
        continue;
      }
      // A map is named after the object ("VM-MIB::vmOperState") or after its TC ("SNMPv2-TC::TruthValue").
      const mapObject = o.valuemap.split('::')[1];
      if (o.valuemap !== obj.name && mapObject !== obj.tc) problems.push(`${o.raw} (${obj.name}, TC ${obj.tc}) uses value map ${o.valuemap}`);
      const map = maps.get(o.valuemap);
      const want = JSON.stringify([...obj.enumeration].sort());
      const got = JSON.stringify([...(map ?? new Map<string, string>())].sort());
      if (want !== got) problems.push(`value map ${o.valuemap} is ${got}, ${obj.name} enumerates ${want}`);
    }
    expect(problems).toEqual([]);
    // Every enumerated object the template polls has a map named after it or its TC.
    for (const name of ['VM-MIB::vmAdminState', 'VM-MIB::vmOperState', 'VM-MIB::vmAutoStart', 'VM-MIB::vmPersistent',
      'VMM-AGENTX-MIB::vmmMigrationJobState', 'VMM-AGENTX-MIB::vmmMigrationDirection', 'VMM-AGENTX-MIB::vmmMigrationLastResult',
      'VMM-AGENTX-MIB::vmmMigrationLastDirection', 'SNMPv2-TC::TruthValue']) {
      expect([...maps.keys()]).toContain(name);
    }
  });
});

// ---------------------------------------------------------------- the parsed tree

type Node = string | Node[] | { [key: string]: Node };

/** The YAML as a tree (python3-yaml), or the reason it cannot be parsed here. */
function parseYaml(): { tree: Node; typed: string[] } | { reason: string } {
  if (!findTool('python3')) return { reason: 'no python3 (apt-get install python3-yaml)' };
  const probe = spawnSync('python3', ['-c', 'import yaml'], { env: toolEnv() });
  if (probe.status !== 0) return { reason: 'no python3-yaml (apt-get install python3-yaml)' };
  // BaseLoader: every scalar stays a string, as Zabbix's importer reads them; SafeLoader (YAML 1.1
  // types) too, to list the leaves a typing YAML parser would turn into numbers or booleans.
  const script = [
    'import json, sys, yaml',
    'src = open(sys.argv[1], encoding="utf-8").read()',
    'def typed(node, path):',
    '    if isinstance(node, dict):',
    '        return [p for k, v in node.items() for p in typed(v, path + "/" + str(k))]',
    '    if isinstance(node, list):',
    '        return [p for i, v in enumerate(node) for p in typed(v, path + "/" + str(i))]',
    '    return [] if isinstance(node, str) else [path + " = " + repr(node)]',
    'print(json.dumps({"tree": yaml.load(src, Loader=yaml.BaseLoader), "typed": typed(yaml.safe_load(src), "")}))',
  ].join('\n');
  const r = spawnSync('python3', ['-c', script, TEMPLATE_FILE], { env: toolEnv(), encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) return { tree: '', typed: [`the template does not parse as YAML: ${r.stderr}`] };
  return JSON.parse(r.stdout) as { tree: Node; typed: string[] };
}

type Obj = { [key: string]: Node };
const obj = (n: Node | undefined): Obj => (n !== undefined && typeof n === 'object' && !Array.isArray(n) ? n : {});
const list = (n: Node | undefined): Obj[] => (Array.isArray(n) ? n.map(obj) : []);
const str = (n: Node | undefined): string => (typeof n === 'string' ? n : '');

/** Every object in the tree, with its path. */
function walk(node: Node, at: string, visit: (o: Obj, at: string) => void): void {
  if (Array.isArray(node)) node.forEach((child, i) => walk(child, `${at}[${i}]`, visit));
  else if (typeof node === 'object') {
    visit(node, at);
    for (const [k, v] of Object.entries(node)) walk(v, `${at}/${k}`, visit);
  }
}

/** Item keys a trigger expression, formula or dependency names on this template ("/T/key" or "//key"). */
function keysIn(expression: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`(?:/${TEMPLATE_NAME}/|\\(//)([^,()[\\]]+(?:\\[[^\\]]*\\])?)`, 'g');
  for (const m of expression.matchAll(re)) out.push(m[1]);
  return out;
}

const yaml = parseYaml();

describeUnless('reason' in yaml ? yaml.reason : null)('the Zabbix template: structure (python3-yaml)', () => {
  const parsedTree = 'tree' in yaml ? yaml.tree : '';
  const template = list(obj(obj(parsedTree).zabbix_export).templates)[0] ?? {};
  const rules = list(template.discovery_rules);

  it('parses, and every leaf is a string (Zabbix 6.0 rejects `lifetime: 0`: numbers and booleans must be quoted)', () => {
    expect('typed' in yaml ? yaml.typed : []).toEqual([]);
  });

  it('is a 6.0 export (Debian 12 runs 6.0.14, which rejects newer formats) with one template', () => {
    const exp = obj(obj(parsedTree).zabbix_export);
    expect(str(exp.version)).toBe('6.0');
    expect(list(exp.templates)).toHaveLength(1);
    expect(str(template.template)).toBe(TEMPLATE_NAME);
    expect(list(template.groups).map((g) => str(g.name))).toEqual(['Templates/Virtualization']);
  });

  it('gives every object a UUID of its own (32 hex digits), the stock group keeping its stock one', () => {
    const uuids: string[] = [];
    const missing: string[] = [];
    walk(parsedTree, '', (o, at) => {
      if (o.uuid !== undefined) uuids.push(str(o.uuid));
      const needsUuid = /\/(templates|items|triggers|discovery_rules|item_prototypes|trigger_prototypes|graph_prototypes|valuemaps)\[\d+\]$/.test(at) ||
        at === '/zabbix_export/groups[0]';
      if (needsUuid && o.uuid === undefined) missing.push(at);
    });
    expect(missing).toEqual([]);
    expect(uuids.length).toBeGreaterThan(80);
    for (const u of uuids) expect(u).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(uuids).size).toBe(uuids.length);
    // "Templates/Virtualization" exists in every Zabbix 6.0 database under this UUID.
    expect(str(list(obj(obj(parsedTree).zabbix_export).groups)[0].uuid)).toBe('02e4df4f20b848e79267641790f241da');
  });

  it('uses discovery[] LLD keys, not walk[] (6.4), and SNMP items all have an OID', () => {
    expect(text).not.toMatch(/walk\[/);
    for (const rule of rules) {
      expect(str(rule.type)).toBe('SNMP_AGENT');
      expect(str(rule.snmp_oid)).toMatch(/^discovery\[\{#VM\.NAME\},1\.3\.6\.1\.2\.1\.236\.1\.4\.1\.2,\{#VM\.UUID\},1\.3\.6\.1\.2\.1\.236\.1\.4\.1\.3[,\]]/);
    }
    walk(template, '', (o, at) => {
      if (str(o.type) === 'SNMP_AGENT') expect({ at, oid: str(o.snmp_oid) !== '' }).toEqual({ at, oid: true });
    });
  });

  it('has unique item keys; every key a trigger, calculated item, dependency or graph names exists where it may', () => {
    const templateKeys = list(template.items).map((i) => str(i.key));
    const allKeys = [...templateKeys, ...rules.map((r) => str(r.key))];
    const problems: string[] = [];
    const check = (where: string, keys: string[], known: string[]): void => {
      for (const k of keys) if (!known.includes(k)) problems.push(`${where}: ${k}`);
    };
    for (const item of list(template.items)) {
      for (const t of list(item.triggers)) {
        check(`trigger ${str(t.name)}`, keysIn(str(t.expression) + str(t.recovery_expression)), templateKeys);
        for (const d of list(t.dependencies)) check(`dependency of ${str(t.name)}`, keysIn(str(d.expression)), templateKeys);
      }
    }
    const templateTriggers = list(template.items).flatMap((i) => list(i.triggers));
    for (const rule of rules) {
      const protoKeys = list(rule.item_prototypes).map((p) => str(p.key));
      allKeys.push(...protoKeys);
      const known = [...templateKeys, ...protoKeys];
      for (const p of list(rule.item_prototypes)) {
        if (str(p.type) === 'CALCULATED') check(`formula of ${str(p.name)}`, keysIn(str(p.params)), protoKeys);
        for (const t of list(p.trigger_prototypes)) {
          check(`trigger ${str(t.name)}`, keysIn(str(t.expression) + str(t.recovery_expression)), known);
          for (const d of list(t.dependencies)) {
            // A prototype may depend on a template trigger: same name and expression.
            if (!templateTriggers.some((tt) => str(tt.name) === str(d.name) && str(tt.expression) === str(d.expression))) {
              problems.push(`dependency of ${str(t.name)} on ${str(d.name)}: no such template trigger`);
            }
          }
        }
      }
      for (const g of list(rule.graph_prototypes)) {
        for (const gi of list(g.graph_items)) {
          if (str(obj(gi.item).host) !== TEMPLATE_NAME) problems.push(`graph ${str(g.name)}: host ${str(obj(gi.item).host)}`);
          check(`graph ${str(g.name)}`, [str(obj(gi.item).key)], protoKeys);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(new Set(allKeys).size).toBe(allKeys.length);
    // Linkable beside Zabbix's "Linux by SNMP" / "Generic by SNMP" (a shared key would refuse the link).
    expect(allKeys.filter((k) => !k.startsWith('vmm.'))).toEqual([]);
  });

  it('makes "vmm-agentx: no VM-MIB data" suppress every VM trigger, and "snmpd is not answering" suppress that one', () => {
    const nodata = list(template.items).flatMap((i) => list(i.triggers)).find((t) => str(t.expression).startsWith(`nodata(/${TEMPLATE_NAME}/vmm.hv.uptime,`)) as Obj;
    expect(str(nodata.expression)).toBe(`nodata(/${TEMPLATE_NAME}/vmm.hv.uptime,{$VMM.NODATA.TIMEOUT})=1`);
    expect(list(nodata.dependencies).map((d) => str(d.expression))).toEqual([`nodata(/${TEMPLATE_NAME}/vmm.snmpd.uptime,{$VMM.SNMP.TIMEOUT})=1`]);
    const prototypes = rules.flatMap((r) => list(r.item_prototypes)).flatMap((p) => list(p.trigger_prototypes));
    expect(prototypes.map((t) => str(t.name)).sort()).toEqual([
      'VM {#VM.NAME}: has crashed',
      'VM {#VM.NAME}: last migration failed or was cancelled',
      'VM {#VM.NAME}: migration running for more than {$VMM.MIGRATION.ELAPSED.MAX}',
      'VM {#VM.NAME}: paused for longer than {$VMM.VM.PAUSED.MAX:"{#VM.NAME}"}',
    ]);
    for (const t of prototypes) expect(list(t.dependencies).map((d) => str(d.expression))).toEqual([str(nodata.expression)]);
  });

  it('uses only LLD macros its rule produces, and only user macros the template defines', () => {
    const problems: string[] = [];
    for (const rule of rules) {
      const step = list(rule.preprocessing).find((s) => str(s.type) === 'JAVASCRIPT');
      const script = Array.isArray(step?.parameters) ? str(step.parameters[0]) : '';
      const produced = new Set([...script.matchAll(/'(\{#[A-Z0-9_.]+\})':/g)].map((m) => m[1]));
      expect(produced).toContain('{#SNMPINDEX}');
      const used = JSON.stringify([rule.item_prototypes, rule.graph_prototypes, rule.filter, rule.overrides]);
      for (const m of used.matchAll(/\{#[A-Z0-9_.]+\}/g)) if (!produced.has(m[0])) problems.push(`${str(rule.name)}: ${m[0]}`);
    }
    const defined = new Set(list(template.macros).map((m) => str(m.macro)));
    for (const m of text.matchAll(/\{\$([A-Z0-9_.]+)(?::[^}]*)?\}/g)) {
      if (!defined.has(`{$${m[1]}}`)) problems.push(`user macro {$${m[1]}} is not defined`);
    }
    expect(problems).toEqual([]);
    for (const name of ['{$VMM.VM.NAME.MATCHES}', '{$VMM.VM.NAME.NOT_MATCHES}', '{$VMM.VM.PAUSED.MAX}']) expect(defined).toContain(name);
  });

  it('filters every discovery rule on the VM name macro pair', () => {
    for (const rule of rules) {
      const conditions = list(obj(rule.filter).conditions).map((c) => `${str(c.macro)} ${str(c.operator) || 'MATCHES_REGEX'} ${str(c.value)}`);
      expect(conditions).toEqual(['{#VM.NAME} MATCHES_REGEX {$VMM.VM.NAME.MATCHES}', '{#VM.NAME} NOT_MATCHES_REGEX {$VMM.VM.NAME.NOT_MATCHES}']);
    }
  });
});

// ---------------------------------------------------------------- the LLD scripts

/** The JavaScript preprocessing step of each discovery rule, by rule key (regex: no YAML parser needed). */
function lldScripts(): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.split('\n');
  let ruleKey = '';
  for (let i = 0; i < lines.length; i++) {
    const key = /^ {10}key: (vmm\.vm\.[a-z.]*discovery)\s*$/.exec(lines[i]);
    if (key) ruleKey = key[1];
    if (/^ {12}- type: JAVASCRIPT\s*$/.test(lines[i]) && /^ {16}- \|\s*$/.test(lines[i + 2] ?? '')) {
      const body: string[] = [];
      for (let j = i + 3; j < lines.length && (lines[j] === '' || lines[j].startsWith(' '.repeat(18))); j++) body.push(lines[j].slice(18));
      out.set(ruleKey, body.join('\n').trimEnd() + '\n');
    }
  }
  return out;
}

/** What Zabbix 6.0's discovery[] hands the script: Net-SNMP's "Hex-STRING" text for octets it cannot print. */
const hex = (bytes: Buffer | string): string =>
  [...(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes)].map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(' ') + ' ';
const uuidHex = (uuid: string): string => hex(Buffer.from(uuid.replace(/-/g, ''), 'hex'));

const WEB = '3b0da6f8-1558-4a67-aba7-390d59b406d2';
const FS = 'f37447a6-3368-4953-9f4d-bc31f66d965d';
const discoveryInput = JSON.stringify([
  { '{#SNMPINDEX}': '4', '{#VM.NAME}': 'web-01', '{#VM.UUID}': uuidHex(WEB) },
  { '{#SNMPINDEX}': '9', '{#VM.NAME}': hex('fileserver-größe'), '{#VM.UUID}': uuidHex(FS) },
  // A name that only looks like hex (printable octets come as text): kept as it is.
  { '{#SNMPINDEX}': '10', '{#VM.NAME}': '41 42 ', '{#VM.UUID}': uuidHex('00000000-0000-0000-0000-00000000000a') },
  // All 16 UUID octets printable: Net-SNMP prints them as text.
  { '{#SNMPINDEX}': '11', '{#VM.NAME}': 'printable-uuid', '{#VM.UUID}': 'ABCDEFGHIJKLMNOP' },
  { '{#SNMPINDEX}': '4.1', '{#VM.DISK.RESOURCE}': '/var/lib/libvirt/images/web-01.qcow2', '{#VM.DISK.BUS}': 'virtio', '{#VM.DISK.MEDIA}': '3' },
  { '{#SNMPINDEX}': '4.3', '{#VM.DISK.RESOURCE}': '', '{#VM.DISK.BUS}': 'sata', '{#VM.DISK.MEDIA}': '4' },
  { '{#SNMPINDEX}': '9.1', '{#VM.DISK.RESOURCE}': hex('/var/lib/libvirt/images/fileserver-größe.qcow2'), '{#VM.DISK.BUS}': 'sata', '{#VM.DISK.MEDIA}': '3' },
  { '{#SNMPINDEX}': '12.1', '{#VM.DISK.RESOURCE}': '/orphan', '{#VM.DISK.BUS}': 'virtio', '{#VM.DISK.MEDIA}': '3' },
]);
const nicInput = JSON.stringify([
  { '{#SNMPINDEX}': '4', '{#VM.NAME}': 'web-01', '{#VM.UUID}': uuidHex(WEB) },
  { '{#SNMPINDEX}': '4.2', '{#VM.NIC.MAC}': '52 54 00 AA 69 EA ', '{#VM.NIC.MODEL}': 'e1000', '{#VM.NIC.IFINDEX}': '17', '{#VM.NIC.PARENT}': '4' },
  { '{#SNMPINDEX}': '4.3', '{#VM.NIC.MAC}': 'ABCDEF', '{#VM.NIC.MODEL}': 'virtio', '{#VM.NIC.IFINDEX}': '0', '{#VM.NIC.PARENT}': '0' },
]);

const expected: Record<string, unknown> = {
  'vmm.vm.discovery': [
    { '{#SNMPINDEX}': '4', '{#VM.NAME}': 'web-01', '{#VM.UUID}': WEB },
    { '{#SNMPINDEX}': '9', '{#VM.NAME}': 'fileserver-größe', '{#VM.UUID}': FS },
    { '{#SNMPINDEX}': '10', '{#VM.NAME}': '41 42 ', '{#VM.UUID}': '00000000-0000-0000-0000-00000000000a' },
    { '{#SNMPINDEX}': '11', '{#VM.NAME}': 'printable-uuid', '{#VM.UUID}': '41424344-4546-4748-494a-4b4c4d4e4f50' },
  ],
  'vmm.vm.disk.discovery': [
    { '{#SNMPINDEX}': '4.1', '{#VM.NAME}': 'web-01', '{#VM.UUID}': WEB, '{#VM.DISK.INDEX}': '1', '{#VM.DISK.BUS}': 'virtio', '{#VM.DISK.MEDIA}': 'disk',
      '{#VM.DISK.RESOURCE}': '/var/lib/libvirt/images/web-01.qcow2', '{#VM.DISK.NAME}': '/var/lib/libvirt/images/web-01.qcow2' },
    { '{#SNMPINDEX}': '4.3', '{#VM.NAME}': 'web-01', '{#VM.UUID}': WEB, '{#VM.DISK.INDEX}': '3', '{#VM.DISK.BUS}': 'sata', '{#VM.DISK.MEDIA}': 'cdrom',
      '{#VM.DISK.RESOURCE}': '', '{#VM.DISK.NAME}': 'cdrom 3 (sata, empty)' },
    { '{#SNMPINDEX}': '9.1', '{#VM.NAME}': 'fileserver-größe', '{#VM.UUID}': FS, '{#VM.DISK.INDEX}': '1', '{#VM.DISK.BUS}': 'sata', '{#VM.DISK.MEDIA}': 'disk',
      '{#VM.DISK.RESOURCE}': '/var/lib/libvirt/images/fileserver-größe.qcow2', '{#VM.DISK.NAME}': '/var/lib/libvirt/images/fileserver-größe.qcow2' },
  ],
  'vmm.vm.net.discovery': [
    { '{#SNMPINDEX}': '4.2', '{#VM.NAME}': 'web-01', '{#VM.UUID}': WEB, '{#VM.NIC.INDEX}': '2', '{#VM.NIC.MAC}': '52:54:00:aa:69:ea',
      '{#VM.NIC.MODEL}': 'e1000', '{#VM.NIC.IFINDEX}': '17', '{#VM.NIC.PARENT}': '4' },
    { '{#SNMPINDEX}': '4.3', '{#VM.NAME}': 'web-01', '{#VM.UUID}': WEB, '{#VM.NIC.INDEX}': '3', '{#VM.NIC.MAC}': '41:42:43:44:45:46',
      '{#VM.NIC.MODEL}': 'virtio', '{#VM.NIC.IFINDEX}': '0', '{#VM.NIC.PARENT}': '0' },
  ],
};

describe("the Zabbix template: the discovery rules' scripts", () => {
  const scripts = lldScripts();

  it('has one script per discovery rule', () => {
    expect([...scripts.keys()].sort()).toEqual(['vmm.vm.discovery', 'vmm.vm.disk.discovery', 'vmm.vm.net.discovery']);
  });

  it.each(['vmm.vm.discovery', 'vmm.vm.disk.discovery', 'vmm.vm.net.discovery'])('%s: decodes, normalises and joins (node)', (key) => {
    const run = new Function('value', scripts.get(key) as string) as (value: string) => string;
    const input = key === 'vmm.vm.net.discovery' ? nicInput : discoveryInput;
    expect(JSON.parse(run(input))).toEqual(expected[key]);
  });
});

const zabbixJs = findTool('zabbix_js');
describeUnless(zabbixJs ? null : 'no zabbix_js (apt-get install zabbix-server-pgsql)')("the Zabbix template: the scripts in Zabbix's own JavaScript engine (zabbix_js, Duktape)", () => {
  const scripts = lldScripts();
  it.each(['vmm.vm.discovery', 'vmm.vm.disk.discovery', 'vmm.vm.net.discovery'])('%s: gives the same as in node', async (key) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-zbxjs-'));
    try {
      fs.writeFileSync(path.join(dir, 'script.js'), scripts.get(key) as string);
      fs.writeFileSync(path.join(dir, 'input.json'), key === 'vmm.vm.net.discovery' ? nicInput : discoveryInput);
      const r = await runCommand(zabbixJs as string, ['-s', path.join(dir, 'script.js'), '-i', path.join(dir, 'input.json')], { env: process.env });
      expect(r.stderr.trim()).toBe('');
      expect(JSON.parse(r.stdout)).toEqual(expected[key]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
