// The Debian package as an operator gets it: `npm run package` builds it,
// `apt-get install ./…deb` installs it on this machine, the agent as
// installed (/usr/bin/vmm-agentx, as its own user, with its state dir) serves
// a private snmpd, the MIB modules resolve system-wide, and a purge leaves
// nothing behind. Root only; it installs and removes a package for real.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEMO_URI, waitForVmMib } from '../harness/agent';
import { runCommand, spawnManaged, stopProcess } from '../harness/process';
import { describeUnless, firstReason, missingTools, needsRoot } from '../harness/prereq';
import { snmpwalk } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';

const ROOT = path.resolve(__dirname, '../..');
const PACKAGE = 'vmm-agentx';
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

const describeAsRoot = describeUnless(firstReason(
  needsRoot('apt-get install of the built package'),
  missingTools('dpkg-deb', 'apt-get', 'snmpd', 'snmpwalk', 'snmptranslate', 'setpriv'),
));

async function sh(command: string, args: string[], timeoutMs = 300_000): Promise<string> {
  const r = await runCommand(command, args, { env, timeoutMs });
  if (r.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

async function installed(): Promise<boolean> {
  const r = await runCommand('dpkg-query', ['-W', '-f=${Status}', PACKAGE], { env });
  return r.stdout.includes('install ok installed');
}

describeAsRoot('the .deb: install, run as installed, purge', () => {
  let deb: string;
  let wasInstalled = false;

  beforeAll(async () => {
    wasInstalled = await installed();
    if (wasInstalled) return;
    deb = (await sh('bash', [path.join(ROOT, 'scripts/package.sh')], 600_000)).trim().split('\n').pop() ?? '';
  }, 600_000);

  afterAll(async () => {
    if (!wasInstalled && await installed()) await sh('apt-get', ['purge', '-y', '-q', PACKAGE]).catch(() => undefined);
  }, 300_000);

  test('installs with apt-get, serves a walk as installed, and purges cleanly', async () => {
    if (wasInstalled) {
      process.stdout.write('deb: vmm-agentx is installed on this machine already; not touching it\n');
      return;
    }
    expect(deb).toMatch(/vmm-agentx_.*\.deb$/);
    const t0 = Date.now();
    await sh('apt-get', ['install', '-y', '-q', '--no-install-recommends', deb]);
    process.stdout.write(`deb: installed ${path.basename(deb)} in ${Date.now() - t0} ms\n`);

    expect((await sh('/usr/bin/vmm-agentx', ['--version'])).split('\n')[0]).toMatch(/^vmm-agentx \d+\.\d+\.\d+$/);
    // Monitoring Plugins convention: --version exits UNKNOWN (3).
    const plugin = await runCommand('/usr/bin/check_vmm', ['--version'], { env });
    expect([plugin.exitCode, plugin.stdout]).toEqual([3, expect.stringMatching(/check_vmm/)]);
    expect(fs.existsSync('/etc/vmm-agentx.conf')).toBe(true);
    expect(fs.existsSync('/lib/systemd/system/vmm-agentx.service')).toBe(true);
    // The mobility agent: its launcher, unit and conffile.
    expect(await sh('/usr/bin/vmm-mcastd', ['--help'])).toMatch(/^usage: vmm-mcastd/);
    expect(fs.existsSync('/lib/systemd/system/vmm-mcastd.service')).toBe(true);
    expect(fs.readFileSync('/var/lib/dpkg/info/vmm-agentx.conffiles', 'utf8').split('\n')).toContain('/etc/vmm-mcastd.conf');
    const state = fs.statSync('/var/lib/vmm-agentx');
    expect(state.mode & 0o777).toBe(0o700);
    const user = (await sh('id', ['-u', 'vmm-agentx'])).trim();
    expect(state.uid).toBe(Number(user));

    // The MIB modules resolve with Net-SNMP's own search path and config.
    const translated = await sh('snmptranslate', ['-m', '+VM-MIB:VMM-AGENTX-MIB', '-On', 'VM-MIB::vmNumber', 'VMM-AGENTX-MIB::vmmMigrationJobState']);
    // (snmptranslate puts a blank line between the answers.)
    expect(translated.split('\n').filter((l) => l.trim() !== '')).toEqual(['.1.3.6.1.2.1.236.1.2', '.1.3.6.1.4.1.8072.9999.9999.7666.1.1.1.1']);

    // The agent as installed, as its user, with its state dir, behind a private snmpd.
    // The installed agent runs as its own user: the socket must admit it (what agentXPerms is for).
    const snmpd: SnmpdInstance = await startSnmpd({ extraConfig: ['agentXPerms 0666 0755'] });
    const fixture = path.join(fs.mkdtempSync('/tmp/vmm-deb-'), 'host.xml');
    fs.copyFileSync(DEMO_URI.replace(/^test:\/\//, ''), fixture);
    fs.chmodSync(path.dirname(fixture), 0o755);
    fs.chmodSync(fixture, 0o644);
    const agent = await spawnManaged('setpriv', ['--reuid=vmm-agentx', '--regid=vmm-agentx', '--init-groups', '/usr/bin/vmm-agentx',
      '--libvirt-uri', `test://${fixture}`, '--agentx-socket', snmpd.agentxAddress, '--state-dir', '/var/lib/vmm-agentx'], { env });
    try {
      await waitForVmMib(snmpd, agent);
      const walk = await snmpwalk(snmpd, '.1.3.6.1.2.1.236.1.4.1.2');
      expect(walk.varbinds).toHaveLength(9);
    } finally {
      await stopProcess(agent);
      await snmpd.dispose();
      fs.rmSync(path.dirname(fixture), { recursive: true, force: true });
    }
    expect(fs.existsSync('/var/lib/vmm-agentx/vm-indexes.json')).toBe(true);

    await sh('apt-get', ['purge', '-y', '-q', PACKAGE]);
    for (const gone of ['/usr/lib/vmm-agentx', '/usr/bin/vmm-agentx', '/etc/vmm-agentx.conf', '/var/lib/vmm-agentx',
      '/lib/systemd/system/vmm-agentx.service', '/usr/share/snmp/mibs/VM-MIB.txt', '/usr/bin/vmm-mcastd', '/etc/vmm-mcastd.conf',
      '/lib/systemd/system/vmm-mcastd.service']) {
      expect([gone, fs.existsSync(gone)]).toEqual([gone, false]);
    }
    expect((await runCommand('id', ['vmm-agentx'], { env })).exitCode).not.toBe(0);
    expect(await installed()).toBe(false);
  }, 600_000);
});
