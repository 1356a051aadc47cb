// Net-SNMP client tools (snmpget, snmpwalk, snmpbulkwalk, …) run against a
// private snmpd, with their own persistent dir and config so Debian's
// /etc/snmp/snmp.conf ("mibs :") and /var/lib/snmp stay out of the picture
// (platform-notes §2.3).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runCommand } from './process';

/** What the tools need to know about an agent; an SnmpdInstance fits. */
export interface SnmpAgentTarget {
  readonly labDir: string;
  readonly udpPort: number;
  /**
   * Run the tools through this command, e.g. ['ip', 'netns', 'exec', ns] for an
   * agent inside a network namespace: its 127.0.0.1 is that namespace's loopback.
   */
  readonly commandPrefix?: readonly string[];
}

/** MIB modules shipped by the npm net-snmp package (SNMPv2-SMI, SNMPv2-MIB, IF-MIB, …). */
export const NPM_NET_SNMP_MIB_DIR = path.resolve(__dirname, '..', '..', 'node_modules', 'net-snmp', 'lib', 'mibs');

export interface SnmpToolOptions {
  /** MIB directories, passed as -M dir1:dir2 (replaces the default search path). */
  mibDirs?: string[];
  /** Modules to load (-m A:B). Without it no MIB is loaded and output is numeric. */
  mibs?: string[];
  /** Add -On (default true). Set false when testing name output. */
  numericOids?: boolean;
  community?: string;
  /** Kill the tool after this long (default 60 000 ms). */
  timeoutMs?: number;
  /** Resolve instead of reject when the tool exits non-zero (default false). */
  allowFailure?: boolean;
}

export interface SnmpVarbindLine {
  /** As printed: ".1.3.6.1.2.1.1.1.0" with -On, or a name such as "SNMPv2-MIB::sysDescr.0". */
  oid: string;
  /** "STRING", "INTEGER", "Counter64", "OID", "Timeticks", "Hex-STRING", …, or
   *  "noSuchObject" / "noSuchInstance" / "endOfMibView". An empty string prints as `""` → "STRING". */
  type: string;
  /** Text after "TYPE: "; STRING values are unquoted and unescaped. */
  value: string;
}

export interface SnmpToolResult {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  varbinds: SnmpVarbindLine[];
}

const EXCEPTION_TEXTS: ReadonlyArray<[string, string]> = [
  ['No Such Object available on this agent at this OID', 'noSuchObject'],
  ['No Such Instance currently exists at this OID', 'noSuchInstance'],
  ['No more variables left in this MIB View (It is past the end of the MIB tree)', 'endOfMibView'],
];

function unquote(text: string): string {
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) {
    return text.slice(1, -1).replace(/\\(["\\])/g, '$1');
  }
  return text;
}

function parseAssignment(oid: string, rhs: string): SnmpVarbindLine {
  for (const [text, type] of EXCEPTION_TEXTS) if (rhs === text) return { oid, type, value: '' };
  if (rhs === '""') return { oid, type: 'STRING', value: '' };
  const typed = /^([A-Za-z][A-Za-z0-9-]*): ?([\s\S]*)$/.exec(rhs);
  if (!typed) return { oid, type: '', value: rhs };
  const [, type, value] = typed;
  return { oid, type, value: type === 'STRING' ? unquote(value) : value };
}

// A new varbind starts with an OID or a MIB name followed by " = "; any other
// line continues the previous value (multi-line strings).
const VARBIND_START = /^((?:\.?[0-9]+(?:\.[0-9]+)*)|(?:[A-Za-z][\w-]*::\S+)|(?:[A-Za-z][\w-]*(?:\.\S+)?)) = ([\s\S]*)$/;

/** Splits Net-SNMP "OID = TYPE: value" output into varbinds. */
export function parseVarbindLines(text: string): SnmpVarbindLine[] {
  const entries: Array<{ oid: string; rhs: string }> = [];
  for (const line of text.split('\n')) {
    const start = VARBIND_START.exec(line);
    if (start) entries.push({ oid: start[1], rhs: start[2] });
    else if (entries.length > 0) entries[entries.length - 1].rhs += '\n' + line;
  }
  for (const entry of entries) entry.rhs = entry.rhs.replace(/\n+$/, '');
  return entries.map((e) => parseAssignment(e.oid, e.rhs));
}

/** An OCTET STRING as snmptrapd/snmpget print it: Hex-STRING, or STRING when every byte is printable. */
export function octetsOf(v: SnmpVarbindLine | undefined): Buffer {
  if (v === undefined) throw new Error('varbind missing');
  if (v.type === 'Hex-STRING') return Buffer.from(v.value.replace(/\s+/g, ''), 'hex');
  if (v.type === 'STRING') return Buffer.from(v.value, 'latin1');
  throw new Error(`not an OCTET STRING: ${v.type}: ${v.value}`);
}

/** vmIndexes set in a VM-MIB VirtualMachineList (octet k covers 8k+1..8k+8, MSB first). */
export function bitmapIndexes(bytes: Buffer): number[] {
  const out: number[] = [];
  bytes.forEach((byte, k) => {
    for (let bit = 0; bit < 8; bit++) if (byte & (0x80 >> bit)) out.push(8 * k + bit + 1);
  });
  return out;
}

/** Creates <lab>/clientpersist and an empty private <lab>/clientconf/snmp.conf once. */
export function clientEnvironment(target: SnmpAgentTarget): NodeJS.ProcessEnv {
  const persistDir = path.join(target.labDir, 'clientpersist');
  const confDir = path.join(target.labDir, 'clientconf');
  fs.mkdirSync(persistDir, { recursive: true });
  fs.mkdirSync(confDir, { recursive: true });
  const confFile = path.join(confDir, 'snmp.conf');
  if (!fs.existsSync(confFile)) fs.writeFileSync(confFile, '# private client config: no MIBs unless -m/-M say so\n');
  return {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    SNMP_PERSISTENT_DIR: persistDir,
    SNMPCONFPATH: confDir,
    // An empty list: the default module list would print "Cannot find module" for every absent MIB.
    MIBS: '',
  };
}

function commonArgs(target: SnmpAgentTarget, options: SnmpToolOptions): string[] {
  const args = ['-v2c', '-c', options.community ?? 'public', '-t', '5', '-r', '1'];
  if (options.numericOids ?? true) args.push('-On');
  if (options.mibDirs && options.mibDirs.length > 0) args.push('-M', options.mibDirs.join(':'));
  if (options.mibs && options.mibs.length > 0) args.push('-m', options.mibs.join(':'));
  return args;
}

/**
 * Runs any Net-SNMP client tool as `tool <defaults> <extraArgs> 127.0.0.1:<port> <operands>`.
 * Later flags in extraArgs override the defaults (e.g. "-t", "30", "-Cr50", "-m", "ALL").
 */
export async function runSnmpTool(
  tool: string,
  target: SnmpAgentTarget,
  operands: readonly string[],
  extraArgs: readonly string[] = [],
  options: SnmpToolOptions = {},
): Promise<SnmpToolResult> {
  const args = [...commonArgs(target, options), ...extraArgs, `127.0.0.1:${target.udpPort}`, ...operands];
  const [command, ...commandArgs] = [...(target.commandPrefix ?? []), tool, ...args];
  const result = await runCommand(command, commandArgs, { env: clientEnvironment(target), timeoutMs: options.timeoutMs });
  if (result.exitCode !== 0 && !options.allowFailure) {
    throw new Error(
      `${[command, ...commandArgs].join(' ')} exited with ${result.exitCode ?? 'a signal (timeout?)'}: ${result.stderr.trim() || result.stdout.trim()}`,
    );
  }
  return { ...result, varbinds: parseVarbindLines(result.stdout) };
}

export function snmpget(
  target: SnmpAgentTarget, oids: readonly string[], extraArgs: readonly string[] = [], options: SnmpToolOptions = {},
): Promise<SnmpToolResult> {
  return runSnmpTool('snmpget', target, oids, extraArgs, options);
}

export function snmpwalk(
  target: SnmpAgentTarget, oid: string, extraArgs: readonly string[] = [], options: SnmpToolOptions = {},
): Promise<SnmpToolResult> {
  return runSnmpTool('snmpwalk', target, [oid], extraArgs, options);
}

export function snmpbulkwalk(
  target: SnmpAgentTarget, oid: string, extraArgs: readonly string[] = [], options: SnmpToolOptions = {},
): Promise<SnmpToolResult> {
  return runSnmpTool('snmpbulkwalk', target, [oid], extraArgs, options);
}
