/**
 * Lints the MIB modules in mib/ and checks that Net-SNMP resolves VM-MIB
 * names to the OIDs of RFC 7666.
 *
 * smilint exits 0 even when it reports errors (platform-notes §2.2), so
 * every check here is on its output text, never on its exit status.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { toolEnv } from '../harness/process';
import { describeUnless, missingTools } from '../harness/prereq';

const repoRoot = path.resolve(__dirname, '..', '..');
const projectMibDir = path.join(repoRoot, 'mib');
const baseMibDir = path.join(repoRoot, 'node_modules', 'net-snmp', 'lib', 'mibs');
/**
 * NET-SNMP-MIB (for netSnmpPlaypen), copied from the snmp package's
 * /usr/share/snmp/mibs into a directory of our own: that shared directory
 * changes under the test while the .deb test installs and purges the
 * project's modules there.
 */
const netSnmpMibDir = mkdtempSync(path.join(tmpdir(), 'vmm-netsnmp-mib-'));
try {
  copyFileSync('/usr/share/snmp/mibs/NET-SNMP-MIB.txt', path.join(netSnmpMibDir, 'NET-SNMP-MIB.txt'));
} catch {
  // No snmp package: the tests below that need it fail naming the module.
}
afterAll(() => rmSync(netSnmpMibDir, { recursive: true, force: true }));
const mibSearchPath = `${projectMibDir}:${baseMibDir}:${netSnmpMibDir}`;

/** The modules this project ships; a missing or unexpected file fails the suite. */
const expectedModuleFiles = [
  'HCNUM-TC.txt',
  'IANA-STORAGE-MEDIA-TYPE-MIB.txt',
  'INET-ADDRESS-MIB.txt',
  'SNMP-FRAMEWORK-MIB.txt',
  'UUID-TC-MIB.txt',
  'VM-MIB.txt',
  'VMM-AGENTX-MIB.txt',
];

/**
 * Level-6 smilint lines that are accepted, per module, exactly as smilint prints
 * them (paths relative to the repository root).  All of them come from keeping
 * the standard modules faithful to their RFCs:
 * - a TC-only module necessarily defines types it does not use itself;
 * - RFC 3411 declares ranged INTEGER rather than Integer32, gives SnmpEngineID
 *   and the model-number TCs no DISPLAY-HINT, and names the object snmpEngineID
 *   after the type SnmpEngineID.
 * - RFC 2856 names its TC-only module HCNUM-TC, not *-MIB; RFC 4001 gives
 *   InetAddress no DISPLAY-HINT (the paired InetAddressType decides).
 * VM-MIB and VMM-AGENTX-MIB, the modules the agent serves, have no accepted
 * lines: they must be clean.
 */
const acceptedLevel6Lines: Readonly<Record<string, readonly string[]>> = {
  'HCNUM-TC.txt': [
    "mib/HCNUM-TC.txt:51: [5] warning: module name `HCNUM-TC' should match `*-MIB'",
    "mib/HCNUM-TC.txt:32: [5] warning: current type `CounterBasedGauge64' is not referenced in this module",
    "mib/HCNUM-TC.txt:32: [5] warning: type `CounterBasedGauge64' has no format specification",
    "mib/HCNUM-TC.txt:43: [5] warning: current type `ZeroBasedCounter64' is not referenced in this module",
    "mib/HCNUM-TC.txt:43: [5] warning: type `ZeroBasedCounter64' has no format specification",
  ],
  'IANA-STORAGE-MEDIA-TYPE-MIB.txt': [
    "mib/IANA-STORAGE-MEDIA-TYPE-MIB.txt:40: [5] warning: current type `IANAStorageMediaType' is not referenced in this module",
  ],
  'INET-ADDRESS-MIB.txt': [
    "mib/INET-ADDRESS-MIB.txt:33: [5] warning: current type `InetAddressType' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:51: [5] warning: current type `InetAddress' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:51: [5] warning: type `InetAddress' has no format specification",
    "mib/INET-ADDRESS-MIB.txt:62: [5] warning: current type `InetAddressIPv4' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:69: [5] warning: current type `InetAddressIPv6' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:76: [5] warning: current type `InetAddressIPv4z' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:84: [5] warning: current type `InetAddressIPv6z' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:92: [5] warning: current type `InetAddressDNS' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:99: [5] warning: current type `InetAddressPrefixLength' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:107: [5] warning: current type `InetPortNumber' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:115: [5] warning: current type `InetAutonomousSystemNumber' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:122: [5] warning: current type `InetScopeType' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:137: [5] warning: current type `InetZoneIndex' is not referenced in this module",
    "mib/INET-ADDRESS-MIB.txt:145: [5] warning: current type `InetVersion' is not referenced in this module",
  ],
  'SNMP-FRAMEWORK-MIB.txt': [
    'mib/SNMP-FRAMEWORK-MIB.txt:82: [5] warning: use Integer32 instead of INTEGER in SMIv2',
    'mib/SNMP-FRAMEWORK-MIB.txt:93: [5] warning: use Integer32 instead of INTEGER in SMIv2',
    'mib/SNMP-FRAMEWORK-MIB.txt:149: [5] warning: use Integer32 instead of INTEGER in SMIv2',
    'mib/SNMP-FRAMEWORK-MIB.txt:158: [5] warning: use Integer32 instead of INTEGER in SMIv2',
    'mib/SNMP-FRAMEWORK-MIB.txt:170: [5] warning: use Integer32 instead of INTEGER in SMIv2',
    "mib/SNMP-FRAMEWORK-MIB.txt:138: [5] warning: identifier `snmpEngineID' differs from `SnmpEngineID' only in case",
    "mib/SNMP-FRAMEWORK-MIB.txt:44: [6] info: previous definition of `SnmpEngineID'",
    "mib/SNMP-FRAMEWORK-MIB.txt:44: [5] warning: type `SnmpEngineID' has no format specification",
    "mib/SNMP-FRAMEWORK-MIB.txt:73: [5] warning: current type `SnmpSecurityModel' is not referenced in this module",
    "mib/SNMP-FRAMEWORK-MIB.txt:73: [5] warning: type `SnmpSecurityModel' has no format specification",
    "mib/SNMP-FRAMEWORK-MIB.txt:84: [5] warning: current type `SnmpMessageProcessingModel' is not referenced in this module",
    "mib/SNMP-FRAMEWORK-MIB.txt:84: [5] warning: type `SnmpMessageProcessingModel' has no format specification",
    "mib/SNMP-FRAMEWORK-MIB.txt:95: [5] warning: current type `SnmpSecurityLevel' is not referenced in this module",
    "mib/SNMP-FRAMEWORK-MIB.txt:108: [5] warning: current type `SnmpAdminString' is not referenced in this module",
  ],
  'UUID-TC-MIB.txt': [
    "mib/UUID-TC-MIB.txt:28: [5] warning: current type `UUID' is not referenced in this module",
    "mib/UUID-TC-MIB.txt:41: [5] warning: current type `UUIDorZero' is not referenced in this module",
  ],
  'VM-MIB.txt': [],
  'VMM-AGENTX-MIB.txt': [],
};

/** Names and OIDs from RFC 7666 (and the companion modules) that must resolve. */
const expectedOids: ReadonlyArray<readonly [string, string]> = [
  ['VM-MIB::vmMIB', '.1.3.6.1.2.1.236'],
  ['VM-MIB::vmHvUpTime', '.1.3.6.1.2.1.236.1.1.4'],
  ['VM-MIB::vmTableLastChange', '.1.3.6.1.2.1.236.1.3'],
  ['VM-MIB::vmTable', '.1.3.6.1.2.1.236.1.4'],
  ['VM-MIB::vmCpuTime', '.1.3.6.1.2.1.236.1.4.1.17'],
  ['VM-MIB::vmCpuTable', '.1.3.6.1.2.1.236.1.5'],
  ['VM-MIB::vmCpuCoreTime', '.1.3.6.1.2.1.236.1.5.1.2'],
  ['VM-MIB::vmCpuAffinityTable', '.1.3.6.1.2.1.236.1.6'],
  // The affinity entry has no column 1 (RFC 7666 §6.1): 2 and 3 are correct.
  ['VM-MIB::vmCpuPhysIndex', '.1.3.6.1.2.1.236.1.6.1.2'],
  ['VM-MIB::vmCpuAffinity', '.1.3.6.1.2.1.236.1.6.1.3'],
  ['VM-MIB::vmStorageTable', '.1.3.6.1.2.1.236.1.7'],
  ['VM-MIB::vmStorageVmIndex', '.1.3.6.1.2.1.236.1.7.1.1'],
  ['VM-MIB::vmStorageMediaType', '.1.3.6.1.2.1.236.1.7.1.8'],
  ['VM-MIB::vmStorageWriteLatency', '.1.3.6.1.2.1.236.1.7.1.18'],
  ['VM-MIB::vmNetworkTable', '.1.3.6.1.2.1.236.1.8'],
  ['VM-MIB::vmNetworkPhysAddress', '.1.3.6.1.2.1.236.1.8.1.5'],
  ['VM-MIB::vmPerVMNotificationsEnabled', '.1.3.6.1.2.1.236.1.9'],
  ['VM-MIB::vmBulkNotificationsEnabled', '.1.3.6.1.2.1.236.1.10'],
  ['VM-MIB::vmAffectedVMs', '.1.3.6.1.2.1.236.1.11'],
  ['VM-MIB::vmRunning', '.1.3.6.1.2.1.236.0.1'],
  ['VM-MIB::vmDeleted', '.1.3.6.1.2.1.236.0.10'],
  ['VM-MIB::vmBulkRunning', '.1.3.6.1.2.1.236.0.11'],
  ['VM-MIB::vmBulkDeleted', '.1.3.6.1.2.1.236.0.20'],
  ['VM-MIB::vmReadOnlyCompliances', '.1.3.6.1.2.1.236.2.1.2'],
  ['VM-MIB::vmBulkNotificationOptionalGroup', '.1.3.6.1.2.1.236.2.2.9'],
  ['UUID-TC-MIB::uuidTCMIB', '.1.3.6.1.2.1.217'],
  ['IANA-STORAGE-MEDIA-TYPE-MIB::ianaStorageMediaTypeMIB', '.1.3.6.1.2.1.237'],
  ['SNMP-FRAMEWORK-MIB::snmpEngineID', '.1.3.6.1.6.3.10.2.1.1'],
  ['HCNUM-TC::hcnumTC', '.1.3.6.1.2.1.78'],
  // The project's module, under netSnmpPlaypen until a PEN is assigned.
  ['VMM-AGENTX-MIB::vmmAgentxMIB', '.1.3.6.1.4.1.8072.9999.9999.7666'],
  ['VMM-AGENTX-MIB::vmmMigrationJobState', '.1.3.6.1.4.1.8072.9999.9999.7666.1.1.1.1'],
  ['VMM-AGENTX-MIB::vmmMigrationExpectedDowntime', '.1.3.6.1.4.1.8072.9999.9999.7666.1.1.1.13'],
  ['VMM-AGENTX-MIB::vmmMigrationLastDataTransferred', '.1.3.6.1.4.1.8072.9999.9999.7666.1.1.1.20'],
  ['VMM-AGENTX-MIB::vmmMigrationStarted', '.1.3.6.1.4.1.8072.9999.9999.7666.0.1'],
  ['VMM-AGENTX-MIB::vmmMigrationFailed', '.1.3.6.1.4.1.8072.9999.9999.7666.0.3'],
  ['VMM-AGENTX-MIB::vmmMcastGroupSource', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.1.1.3'],
  ['VMM-AGENTX-MIB::vmmMcastGroupTimer', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.1.1.5'],
  ['VMM-AGENTX-MIB::vmmMcastHostGroupSource', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.2.1.4'],
  ['VMM-AGENTX-MIB::vmmMcastAgentPresent', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.3.1'],
  ['VMM-AGENTX-MIB::vmmMcastProxyJoinReason', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.3.2.1.7'],
  ['VMM-AGENTX-MIB::vmmMcastRelayState', '.1.3.6.1.4.1.8072.9999.9999.7666.1.2.3.3.1.6'],
  ['INET-ADDRESS-MIB::inetAddressMIB', '.1.3.6.1.2.1.76'],
];

/** SYNTAX lines `snmptranslate -Td` must print: the ranges and enums an agent relies on. */
const expectedSyntax: ReadonlyArray<readonly [string, string]> = [
  ['VM-MIB::vmOperState',
    'INTEGER {unknown(1), other(2), preparing(3), running(4), suspending(5), suspended(6), '
    + 'resuming(7), paused(8), migrating(9), shuttingdown(10), shutdown(11), crashed(12)}'],
  ['VM-MIB::vmAdminState', 'INTEGER {running(1), suspended(2), paused(3), shutdown(4)}'],
  ['VM-MIB::vmCpuAffinity', 'INTEGER {unknown(0), enable(1), disable(2)}'],
  ['VM-MIB::vmStorageMediaType',
    'INTEGER {other(1), unknown(2), hardDisk(3), opticalDisk(4), floppyDisk(5)}'],
  ['VM-MIB::vmStorageSourceType',
    'INTEGER {unknown(1), other(2), block(3), raw(4), sparse(5), network(6)}'],
  ['VM-MIB::vmMinMem', 'Integer32 (-1 | 0..2147483647)'],
  ['VM-MIB::vmStorageAllocatedSize', 'Integer32 (-1 | 0..2147483647)'],
  ['VM-MIB::vmUUID', 'OCTET STRING (0 | 16)'],
  ['VMM-AGENTX-MIB::vmmMigrationJobState',
    'INTEGER {none(1), active(2), completed(3), failed(4), cancelled(5), postcopy(6)}'],
  ['VMM-AGENTX-MIB::vmmMigrationDirection', 'INTEGER {none(1), outgoing(2), incoming(3)}'],
  ['VMM-AGENTX-MIB::vmmMigrationLastResult', 'INTEGER {none(1), completed(3), failed(4), cancelled(5)}'],
  ['VMM-AGENTX-MIB::vmmMigrationDataTotal', 'Counter64'],
  ['VMM-AGENTX-MIB::vmmMcastGroupSource', 'INTEGER {snooped(1), static(2), proxy(3)}'],
  ['VMM-AGENTX-MIB::vmmMcastGroupState', 'INTEGER {temporary(1), permanent(2)}'],
  ['VMM-AGENTX-MIB::vmmMcastHostGroupSource', 'INTEGER {host(1), proxy(2)}'],
  ['VMM-AGENTX-MIB::vmmMcastProxyJoinReason', 'INTEGER {incomingMigration(1), awaitingReport(2)}'],
  ['VMM-AGENTX-MIB::vmmMcastRelayState', 'INTEGER {requested(1), active(2), failed(3)}'],
];

interface ToolOutput {
  stdout: string;
  stderr: string;
}

/**
 * Runs a tool without a shell.  A non-zero exit still yields its output (the
 * assertions judge the text); failing to start the tool at all (ENOENT) throws
 * with a hint, so a missing package cannot look like a clean lint.
 */
function runTool(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<ToolOutput> {
  return new Promise((resolve, reject) => {
    execFile(file, [...args], { cwd: repoRoot, env: toolEnv(env), timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== 'number') {
        reject(new Error(`cannot run ${file} (${error.message}); install it: apt-get install smitools snmp`));
        return;
      }
      resolve({ stdout, stderr });
    });
  });
}

function smilint(level: number, moduleFile: string, searchPath = mibSearchPath): Promise<ToolOutput> {
  return runTool('smilint', ['-l', String(level), '-s', path.posix.join('mib', moduleFile)], {
    ...process.env,
    SMIPATH: searchPath,
  });
}

function outputLines(output: ToolOutput): string[] {
  return `${output.stdout}\n${output.stderr}`.split('\n').filter((line) => line.trim() !== '');
}

describeUnless(missingTools('smilint'))('smilint on mib/', () => {
  it('ships exactly the expected module files', async () => {
    const files = (await readdir(projectMibDir)).filter((name) => name.endsWith('.txt')).sort();
    expect(files).toEqual(expectedModuleFiles);
  });

  it.each(expectedModuleFiles)('%s is clean at level 4', async (moduleFile) => {
    expect(outputLines(await smilint(4, moduleFile))).toEqual([]);
  });

  it.each(expectedModuleFiles)('%s reports only accepted lines at level 6', async (moduleFile) => {
    const accepted = new Set(acceptedLevel6Lines[moduleFile]);
    const unexpected = outputLines(await smilint(6, moduleFile)).filter((line) => !accepted.has(line));
    expect(unexpected).toEqual([]);
  });

  it('reports an unresolvable import (so an empty result means something)', async () => {
    const lines = outputLines(await smilint(4, 'VM-MIB.txt', baseMibDir));
    expect(lines.some((line) => line.includes("failed to locate MIB module `UUID-TC-MIB'"))).toBe(true);
  });
});

describeUnless(missingTools('snmptranslate'))('snmptranslate with VM-MIB', () => {
  let persistentDir = '';
  let emptyConfigDir = '';

  beforeAll(async () => {
    persistentDir = await mkdtemp(path.join(tmpdir(), 'vmm-mib-persist-'));
    // Pre-created so the tools do not announce "Created directory" on stderr.
    await mkdir(path.join(persistentDir, 'cert_indexes'));
    emptyConfigDir = await mkdtemp(path.join(tmpdir(), 'vmm-mib-conf-'));
  });

  afterAll(async () => {
    await rm(persistentDir, { recursive: true, force: true });
    await rm(emptyConfigDir, { recursive: true, force: true });
  });

  /** A private, empty client config: Debian's /etc/snmp/snmp.conf sets `mibs :`. */
  function snmptranslate(args: readonly string[], searchPath = mibSearchPath): Promise<ToolOutput> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      SNMP_PERSISTENT_DIR: persistentDir,
      SNMPCONFPATH: emptyConfigDir,
    };
    delete env.MIBS;
    delete env.MIBDIRS;
    return runTool('snmptranslate', ['-M', searchPath, '-m', 'VM-MIB:VMM-AGENTX-MIB', ...args], env);
  }

  it('maps RFC 7666 names to their OIDs, with nothing on stderr', async () => {
    const output = await snmptranslate(['-On', ...expectedOids.map(([name]) => name)]);
    expect(output.stderr).toBe('');
    const translated = output.stdout.split('\n').filter((line) => line.trim() !== '');
    expect(translated).toEqual(expectedOids.map(([, oid]) => oid));
  });

  it.each(expectedSyntax)('%s has SYNTAX %s', async (name, syntax) => {
    const output = await snmptranslate(['-Td', name]);
    expect(output.stderr).toBe('');
    const syntaxLine = output.stdout.split('\n').find((line) => line.trimStart().startsWith('SYNTAX'));
    expect(syntaxLine?.replace(/^\s*SYNTAX\s+/, '').trim()).toBe(syntax);
  });

  it('complains on stderr when a module cannot be found (so an empty stderr means something)', async () => {
    const output = await snmptranslate(['-On', 'VM-MIB::vmTable'], baseMibDir);
    expect(output.stderr).toContain('Cannot find module (VM-MIB)');
  });
});
