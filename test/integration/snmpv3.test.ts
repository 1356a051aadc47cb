// examples/snmpd/snmpv3-readonly.conf in a real snmpd: the SNMPv3 user reads
// VM-MIB and VMM-AGENTX-MIB over authPriv (SHA-256 + AES), and nothing weaker
// or outside its view gets through.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, requireBuiltCli, startAgent } from '../harness/agent';
import { runCommand } from '../harness/process';
import { describeUnless, missingTools } from '../harness/prereq';
import { clientEnvironment } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';

const SNIPPET = path.resolve(__dirname, '../../examples/snmpd/snmpv3-readonly.conf');
const AUTH = 'change-this-auth-pass';
const PRIV = 'change-this-priv-pass';

beforeAll(() => requireBuiltCli());

describeUnless(missingTools('snmpd', 'snmpwalk', 'snmpget'))('SNMPv3 authPriv read-only view (examples/snmpd/snmpv3-readonly.conf)', () => {
  let snmpd: SnmpdInstance;
  let agent: AgentProcess;

  beforeAll(async () => {
    snmpd = await startSnmpd({ extraConfig: fs.readFileSync(SNIPPET, 'utf8').split('\n') });
    agent = await startAgent(snmpd);
  }, 60_000);

  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
  });

  function v3(tool: string, level: string, auth: string, oid: string) {
    const security = level === 'authPriv' ? ['-a', 'SHA-256', '-A', auth, '-x', 'AES', '-X', PRIV]
      : level === 'authNoPriv' ? ['-a', 'SHA-256', '-A', auth] : [];
    return runCommand(tool, ['-v3', '-l', level, '-u', 'vmmnms', ...security, '-On', '-t', '2', '-r', '0',
      `127.0.0.1:${snmpd.udpPort}`, oid], { env: clientEnvironment(snmpd), timeoutMs: 30_000 });
  }

  test('authPriv reads VM-MIB and the extension', async () => {
    const vmNumber = await v3('snmpget', 'authPriv', AUTH, '.1.3.6.1.2.1.236.1.2.0');
    expect(vmNumber.stdout.trim()).toBe('.1.3.6.1.2.1.236.1.2.0 = INTEGER: 9');
    const names = await v3('snmpwalk', 'authPriv', AUTH, '.1.3.6.1.2.1.236.1.4.1.2');
    const rows = (text: string): number => (text.match(/^\.1\.3\.6\.1\./gm) ?? []).length;
    expect(rows(names.stdout)).toBe(9);
    const migration = await v3('snmpwalk', 'authPriv', AUTH, '.1.3.6.1.4.1.8072.9999.9999.7666.1.1.1.1');
    expect(rows(migration.stdout)).toBe(9);
  });

  test('outside the view, a wrong passphrase, and weaker security levels get nothing', async () => {
    const ip = await v3('snmpwalk', 'authPriv', AUTH, '.1.3.6.1.2.1.4');
    expect(ip.stdout).not.toMatch(/^\.1\.3\.6\.1\.2\.1\.4\./m);
    const wrong = await v3('snmpget', 'authPriv', 'not-the-auth-pass', '.1.3.6.1.2.1.236.1.2.0');
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toMatch(/[Aa]uthentication failure/);
    const authOnly = await v3('snmpget', 'authNoPriv', AUTH, '.1.3.6.1.2.1.236.1.2.0');
    expect(authOnly.stdout).not.toMatch(/INTEGER: 9/);
    const set = await runCommand('snmpset', ['-v3', '-l', 'authPriv', '-u', 'vmmnms', '-a', 'SHA-256', '-A', AUTH, '-x', 'AES', '-X', PRIV,
      '-On', '-t', '2', '-r', '0', `127.0.0.1:${snmpd.udpPort}`, '.1.3.6.1.2.1.236.1.9.0', 'i', '2'], { env: clientEnvironment(snmpd), timeoutMs: 30_000 });
    expect(set.exitCode).not.toBe(0);
    expect(set.stdout + set.stderr).toMatch(/noAccess|authorizationError|notWritable/);
  });
});
