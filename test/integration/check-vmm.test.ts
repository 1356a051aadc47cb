// check_vmm as a monitoring system runs it: the launcher bin/check_vmm (built
// plugin in dist/) against a private snmpd with vmm-agentx on the demo
// fixture, over SNMPv2c and SNMPv3 authPriv. The fixture, as virsh sees it
// (virsh -c test:///…/examples/libvirt/demo-host.xml list --all):
//   running: web-01, db-primary, ci-ephemeral-7, fileserver-größe
//   paused: build-runner   crashed: analytics-02   pmsuspended: kiosk-lobby
//   shut off: legacy-erp, mail-relay (with a managed-save image: suspended(6))
// The migration history is seeded in the agent's state dir
// (vm-migrations.json), since the test driver cannot migrate.
import { existsSync, promises as fs, readFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { AgentProcess, DEMO_URI, requireBuiltCli, startAgent } from '../harness/agent';
import { freeUdpPort } from '../harness/ports';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { CommandResult, runCommand } from '../harness/process';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';

const LAUNCHER = path.resolve(__dirname, '../../bin/check_vmm');
const PLUGIN_JS = path.resolve(__dirname, '../../dist/src/plugin/check-vmm.js');
const V3 = ['-v', '3', '-u', 'vmmuser', '-l', 'authPriv', '-a', 'SHA-256', '-A', 'authpass123', '-x', 'AES', '-X', 'privpass123'];

const UUID = {
  'web-01': '3b0da6f8-1558-4a67-aba7-390d59b406d2',
  'db-primary': '19273a13-c03c-4051-8a22-22f62911ef60',
  'fileserver-größe': 'f37447a6-3368-4953-9f4d-bc31f66d965d',
};

/** Runs bin/check_vmm with node on PATH, as Icinga would; its result and how long it took. */
async function checkVmm(args: string[]): Promise<CommandResult & { ms: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
  const t0 = Date.now();
  const r = await runCommand(LAUNCHER, args, { env, timeoutMs: 30_000 });
  return { ...r, ms: Date.now() - t0 };
}

/** stdout must be exactly one line; returns it with the exit code. */
function outcome(r: CommandResult): { line: string; exit: number | null } {
  const lines = r.stdout.split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toBe('');
  expect(r.stderr).toBe('');
  return { line: lines[0], exit: r.exitCode };
}

const STATE_PERFDATA =
  'vms=9;;;0 unknown=0;;;0 other=0;;;0 preparing=0;;;0 running=4;;;0 suspending=0;;;0 suspended=2;;;0 resuming=0;;;0 ' +
  'paused=1;;;0 migrating=0;;;0 shuttingdown=0;;;0 shutdown=1;;;0 crashed=1;;;0';

describe('check_vmm without an agent', () => {
  beforeAll(() => {
    requireBuiltCli();
    if (!existsSync(PLUGIN_JS)) throw new Error(`${PLUGIN_JS} is missing: npm run build`);
  });

  test('--help and --version print and exit 3 (UNKNOWN), as the guidelines ask', async () => {
    const help = await checkVmm(['--help']);
    expect(help.exitCode).toBe(3);
    expect(help.stdout).toMatch(/^check_vmm \d+\.\d+\.\d+ \(vmm-agentx\)\n/);
    for (const mode of ['states', 'count', 'vm', 'migration']) expect(help.stdout).toMatch(new RegExp(`^  ${mode} `, 'm'));
    expect(help.stdout).toContain('@10:20   inside 10..20');
    const version = await checkVmm(['-V']);
    expect(version.exitCode).toBe(3);
    expect(version.stdout).toMatch(/^check_vmm \d+\.\d+\.\d+ \(vmm-agentx\)\n$/);
  });

  test('bad arguments: UNKNOWN with what is wrong and a usage hint', async () => {
    const cases: Array<[string[], string]> = [
      [[], '-H HOST is required'],
      [['-H', '127.0.0.1', '-m', 'disks'], '-m: "disks" is not one of states, count, vm, migration'],
      [['-H', '127.0.0.1', '-m', 'count', '-w', '20:10'], '--warning: "20:10" is not a threshold range: its start 20 is above its end 10'],
      [['-H', '127.0.0.1', '-m', 'count', '-c', '5:~'], '--critical: "5:~" is not a threshold range: "~" (negative infinity) can only be the start'],
      [['-H', '127.0.0.1', '-v', '3'], '-v 3 needs -u USER'],
    ];
    const results = await Promise.all(cases.map(([args]) => checkVmm(args)));
    for (const [i, [, why]] of cases.entries()) {
      const { line, exit } = outcome(results[i]);
      expect(exit).toBe(3);
      expect(line).toBe(`VMM UNKNOWN - ${why}; usage: check_vmm -H HOST [-m MODE] [options], see check_vmm --help`);
    }
  });

  test('a port nobody answers on: UNKNOWN within -t 1', async () => {
    const port = await freeUdpPort();
    const r = await checkVmm(['-H', '127.0.0.1', '-p', String(port), '-t', '1']);
    const { line, exit } = outcome(r);
    expect(exit).toBe(3);
    expect(line).toBe(`VMM UNKNOWN - no answer from 127.0.0.1:${port} (SNMPv2c) within 1 s (wrong community, or no snmpd there?)`);
    // 1 s for the plugin plus starting node on a busy machine.
    expect(r.ms).toBeLessThan(8000);
  });
});

describeUnless(firstReason(missingTools('snmpd', 'virsh')))('check_vmm against vmm-agentx on the demo fixture', () => {
  let snmpd: SnmpdInstance;
  let agent: AgentProcess | undefined;
  let stateDir: string;
  let host: string[];

  beforeAll(async () => {
    snmpd = await startSnmpd({
      extraConfig: [
        'createUser vmmuser SHA-256 authpass123 AES privpass123', 'rouser vmmuser priv',
        'createUser vmmdes SHA authpass123 DES privpass123', 'rouser vmmdes priv',
      ],
    });
    host = ['-H', '127.0.0.1', '-p', String(snmpd.udpPort)];
  });
  afterAll(async () => {
    await agent?.stop();
    await snmpd?.dispose();
    if (stateDir) await fs.rm(stateDir, { recursive: true, force: true });
  });

  test('before the agent connects, snmpd serves no VM-MIB: UNKNOWN', async () => {
    const { line, exit } = outcome(await checkVmm([...host, '-m', 'count']));
    expect(exit).toBe(3);
    expect(line).toBe(`VMM UNKNOWN - 127.0.0.1:${snmpd.udpPort} serves no VM-MIB (vmNumber.0: noSuchObject): ` +
      'is vmm-agentx running and connected to that snmpd, and does its view include mib-2.236?');
  });

  describe('with the agent', () => {
    beforeAll(async () => {
      // The fixture is what the expectations below say.
      const list = await runCommand('virsh', ['-c', DEMO_URI, 'list', '--all'], { env: process.env, timeoutMs: 30_000 });
      expect(list.stdout).toMatch(/ analytics-02 +crashed\n/);
      expect(list.stdout).toMatch(/ build-runner +paused\n/);
      expect(list.stdout).toMatch(/ legacy-erp +shut off\n/);
      expect(list.stdout.match(/ running\n/g)).toHaveLength(4);

      // Last migrations, ended on vmHvUpTime (the host's /proc/uptime):
      // web-01's failed 120 s ago, db-primary's was cancelled 1000 s ago,
      // fileserver-größe's completed 60 s ago.
      const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
      if (!(uptime > 1100)) throw new Error(`the host has been up ${uptime} s; the seeded history needs 1100 s`);
      const now = Date.now();
      const ended = (result: string, direction: string, ago: number) => ({
        result, direction, endedAt: now - ago * 1000, endedUptimeTicks: Math.round((uptime - ago) * 100),
        totalTimeMs: 4000, downtimeMs: null, setupTimeMs: null, dataTransferred: null,
      });
      stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-check-state-'));
      await fs.writeFile(path.join(stateDir, 'vm-migrations.json'), JSON.stringify({
        version: 1,
        vms: {
          [UUID['web-01']]: ended('failed', 'outgoing', 120),
          [UUID['db-primary']]: ended('cancelled', 'incoming', 1000),
          [UUID['fileserver-größe']]: ended('completed', 'incoming', 60),
        },
      }));
      agent = await startAgent(snmpd, { stateDir });
    });

    test('states: CRITICAL for the crashed VM, the paused one named too', async () => {
      const { line, exit } = outcome(await checkVmm(host));
      expect(line).toBe('VMM CRITICAL - 1 crashed: analytics-02; 1 paused: build-runner; ' +
        `9 VMs: 4 running, 2 suspended, 1 paused, 1 shutdown, 1 crashed | ${STATE_PERFDATA}`);
      expect(exit).toBe(2);
      const shut = outcome(await checkVmm([...host, '-m', 'states', '--warn-shutdown']));
      expect(shut.line).toMatch(/^VMM CRITICAL - 1 crashed: analytics-02; 1 paused: build-runner; 1 shutdown: legacy-erp; 9 VMs: /);
      expect(shut.exit).toBe(2);
    });

    test('count: vmNumber against -w and -c ranges, perfdata vms=N', async () => {
      const expectations: Array<[string[], string, number]> = [
        [[], 'VMM OK - 9 VMs | vms=9;;;0', 0],
        [['-w', '10', '-c', '20'], 'VMM OK - 9 VMs | vms=9;10;20;0', 0],
        [['-w', '10:', '-c', '5:'], 'VMM WARNING - 9 VMs (warning range 10:) | vms=9;10:;5:;0', 1],
        [['-w', '~:8', '-c', '@9:9'], 'VMM CRITICAL - 9 VMs (critical range @9:9) | vms=9;~:8;@9:9;0', 2],
        [['-w', '@1:8'], 'VMM OK - 9 VMs | vms=9;@1:8;;0', 0],
        [['-w', '9:9', '-c', '9'], 'VMM OK - 9 VMs | vms=9;9:9;9;0', 0],
        [['--state', 'running', '-c', '5:'], 'VMM CRITICAL - 4 VMs running (critical range 5:) | running=4;;5:;0', 2],
        [['--state', 'crashed', '-w', '0'], 'VMM WARNING - 1 VM crashed (warning range 0) | crashed=1;0;;0', 1],
        [['--state', 'migrating', '-c', '0'], 'VMM OK - 0 VMs migrating | migrating=0;;0;0', 0],
      ];
      const results = await Promise.all(expectations.map(([args]) => checkVmm([...host, '-m', 'count', ...args])));
      for (const [i, [, expected, code]] of expectations.entries()) {
        const { line, exit } = outcome(results[i]);
        expect(line).toBe(expected);
        expect(exit).toBe(code);
      }
    });

    test('vm: a named VM by its state; absent is CRITICAL', async () => {
      const expectations: Array<[string, RegExp, number]> = [
        ['web-01', /^VMM OK - web-01 is running \(vmIndex \d+, (up \S+( \S+)?, )?2 vCPUs, 2 GiB\) \| uptime=[\d.]+s;;;0 vcpus=2;;;0 memory=2147483648B;;;0$/, 0],
        ['fileserver-größe', /^VMM OK - fileserver-größe is running \(vmIndex \d+, .*6 GiB\) \| /, 0],
        ['analytics-02', /^VMM CRITICAL - analytics-02 has crashed \(vmIndex \d+, 4 vCPUs, 16 GiB\) \| uptime=0s;;;0 vcpus=4;;;0 memory=17179869184B;;;0$/, 2],
        ['build-runner', /^VMM WARNING - build-runner is paused \(/, 1],
        ['legacy-erp', /^VMM WARNING - legacy-erp is shut down \(/, 1],
        ['mail-relay', /^VMM WARNING - mail-relay is suspended \(/, 1],
        ['kiosk-lobby', /^VMM WARNING - kiosk-lobby is suspended \(/, 1],
        ['nope', /^VMM CRITICAL - no VM named "nope" among the 9 VMs here$/, 2],
        ['WEB-01', /^VMM CRITICAL - no VM named "WEB-01" among the 9 VMs here$/, 2],
      ];
      const results = await Promise.all(expectations.map(([name]) => checkVmm([...host, '-m', 'vm', '-n', name])));
      for (const [i, [, expected, code]] of expectations.entries()) {
        const { line, exit } = outcome(results[i]);
        expect(line).toMatch(expected);
        expect(exit).toBe(code);
      }
    });

    test('migration: a failed or cancelled last migration within --since is CRITICAL', async () => {
      const all = outcome(await checkVmm([...host, '-m', 'migration']));
      expect(all.line).toMatch(new RegExp(
        '^VMM CRITICAL - last migration of (db-primary \\(incoming\\) was cancelled 1[67]m \\d+s ago; ' +
        'last migration of web-01 \\(outgoing\\) failed 2m \\d+s ago|web-01 \\(outgoing\\) failed 2m \\d+s ago; ' +
        'last migration of db-primary \\(incoming\\) was cancelled 1[67]m \\d+s ago); no migration under way; 9 VMs ' +
        '\\| active=0;;;0 longest=0s;600;1800;0 failed=2;;;0$'));
      expect(all.exit).toBe(2);
      const recent = outcome(await checkVmm([...host, '-m', 'migration', '--since', '600', '-w', '60', '-c', '120']));
      expect(recent.line).toMatch(/^VMM CRITICAL - last migration of web-01 \(outgoing\) failed 2m \d+s ago; no migration under way; 9 VMs \| active=0;;;0 longest=0s;60;120;0 failed=1;;;0$/);
      expect(recent.exit).toBe(2);
      for (const since of ['60', '0']) {
        const ok = outcome(await checkVmm([...host, '-m', 'migration', '--since', since]));
        expect(ok.line).toBe(`VMM OK - no migration under way; ${since === '0' ? '' : `none failed or was cancelled in the last ${since} s; `}` +
          '9 VMs | active=0;;;0 longest=0s;600;1800;0 failed=0;;;0');
        expect(ok.exit).toBe(0);
      }
    });

    test('SNMPv3 authPriv (SHA-256 with AES, SHA with DES) reads the same; a wrong pass phrase or level is UNKNOWN', async () => {
      const v3 = outcome(await checkVmm([...host, ...V3, '-m', 'count']));
      expect(v3).toEqual({ line: 'VMM OK - 9 VMs | vms=9;;;0', exit: 0 });
      const states = outcome(await checkVmm([...host, ...V3]));
      expect(states.line).toContain(`| ${STATE_PERFDATA}`);
      expect(states.exit).toBe(2);

      // DES: OpenSSL 3 keeps it in its legacy provider, which the launcher loads for -x DES.
      const des = outcome(await checkVmm([...host, '-v', '3', '-u', 'vmmdes', '-a', 'SHA', '-A', 'authpass123', '-xDES', '-X', 'privpass123', '-m', 'count']));
      expect(des).toEqual({ line: 'VMM OK - 9 VMs | vms=9;;;0', exit: 0 });

      const wrong = V3.map((a) => (a === 'authpass123' ? 'wrongpass123' : a));
      expect(outcome(await checkVmm([...host, ...wrong, '-t', '3']))).toEqual({
        line: `VMM UNKNOWN - 127.0.0.1:${snmpd.udpPort} (SNMPv3 user "vmmuser"): Wrong Digest (incorrect password, community or key)`,
        exit: 3,
      });
      const noPriv = outcome(await checkVmm([...host, '-v', '3', '-u', 'vmmuser', '-a', 'SHA-256', '-A', 'authpass123', '-t', '3']));
      expect(noPriv.line).toMatch(/^VMM UNKNOWN - 127\.0\.0\.1:\d+ refused the request \(SNMPv3 user "vmmuser"\): AuthorizationError /);
      expect(noPriv.exit).toBe(3);
    });

    test('a wrong community gets no answer: UNKNOWN within -t', async () => {
      const { line, exit } = outcome(await checkVmm([...host, '-C', 'private', '-t', '1']));
      expect(line).toBe(`VMM UNKNOWN - no answer from 127.0.0.1:${snmpd.udpPort} (SNMPv2c) within 1 s (wrong community, or no snmpd there?)`);
      expect(exit).toBe(3);
    });
  });
});
