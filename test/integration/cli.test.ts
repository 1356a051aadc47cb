// The vmm-agentx command line as an operator meets it.
import { runCommand, sleep, spawnManaged, stopProcess } from '../harness/process';
import { CLI_JS, DEMO_URI, requireBuiltCli, startAgent } from '../harness/agent';
import { startSnmpd, SnmpdInstance } from '../harness/snmpd';
import { snmpbulkwalk } from '../harness/snmp-tools';
import { canonical } from './walk-lines';
import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';

function cli(args: string[]) {
  return runCommand(process.execPath, [CLI_JS, ...args], { env: { ...process.env, LIBVIRT_DEFAULT_URI: '' }, timeoutMs: 30000 });
}

const LAUNCHER = path.resolve(__dirname, '../../bin/vmm-agentx');

beforeAll(() => requireBuiltCli());

describe('vmm-agentx command line', () => {
  test('runs as installed: bin/vmm-agentx gives node the runtime flags and environment, and they are accepted', async () => {
    // The unit, the demo and the bench start this launcher; --version says what the agent runs with.
    const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    delete env.MALLOC_ARENA_MAX;
    const version = await runCommand(LAUNCHER, ['--version'], { env, timeoutMs: 30000 });
    expect(version.exitCode).toBe(0);
    expect(version.stdout).toMatch(/flags: --max-semi-space-size=2 --heap-growing-percent=20, MALLOC_ARENA_MAX=2$/m);
    const r = await runCommand(LAUNCHER, ['--libvirt-uri', DEMO_URI, '--dump'], { env, timeoutMs: 30000 });
    expect(r.stderr).not.toMatch(/bad option|not allowed/);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^\.1\.3\.6\.1\.2\.1\.236\.1\.1\.1\.0 = STRING: "TEST"$/m);
  });

  test('an unknown flag gives one line on stderr and exit code 78 (EX_CONFIG)', async () => {
    const r = await cli(['--frobnicate']);
    expect(r.exitCode).toBe(78);
    expect(r.stderr.trim().split('\n')).toEqual(['vmm-agentx: unknown option --frobnicate; see --help']);
  });

  test('a bad value and a broken config file name the culprit', async () => {
    const bad = await cli(['--refresh', 'soon']);
    expect(bad.exitCode).toBe(78);
    expect(bad.stderr).toMatch(/--refresh: "soon" is not a decimal number/);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-cli-'));
    const conf = path.join(dir, 'broken.conf');
    await fs.writeFile(conf, 'refresh = 5\nlibvirt-url = test:///default\n');
    const r = await cli(['--config', conf]);
    expect(r.exitCode).toBe(78);
    expect(r.stderr.trim()).toBe(`vmm-agentx: ${conf}:2: unknown setting "libvirt-url"; see --help for the names`);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('an unreachable libvirt gives one clear line and exit code 1', async () => {
    const r = await cli(['--libvirt-uri', 'test:///nonexistent/node.xml', '--dump']);
    expect(r.exitCode).toBe(1);
    const lines = r.stderr.trim().split('\n').filter((l) => l.startsWith('vmm-agentx:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/cannot connect to libvirt at test:\/\/\/nonexistent\/node.xml: .*--libvirt-uri/);
  });

  test('--dump prints sorted numeric "OID = TYPE: value" lines and exits 0', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-cli-'));
    const r = await cli(['--libvirt-uri', DEMO_URI, '--dump', '--state-dir', dir]);
    expect(r.exitCode).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(100);
    for (const l of lines) expect(l).toMatch(/^(\.\d+)+ = [A-Za-z0-9-]+: /);
    const oids = lines.map((l) => l.split(' = ')[0].slice(1).split('.').map(Number));
    for (let i = 1; i < oids.length; i++) {
      const a = oids[i - 1], b = oids[i];
      let c = 0;
      for (let k = 0; k < Math.min(a.length, b.length) && c === 0; k++) c = a[k] - b[k];
      if (c === 0) c = a.length - b.length;
      expect(c).toBeLessThan(0);
    }
    expect(lines).toContain('.1.3.6.1.2.1.236.1.2.0 = INTEGER: 9');
    // --dump reads the state dir but never writes it.
    expect(await fs.readdir(dir)).toEqual([]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('--dump whose reader is gone ends as a pipeline writer does: status 141', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-cli-'));
    const proc = await spawnManaged(process.execPath, [CLI_JS, '--libvirt-uri', DEMO_URI, '--dump', '--state-dir', dir],
      { env: { ...process.env, LIBVIRT_DEFAULT_URI: '' } });
    // Closed before the dump is written (it takes a refresh first): its write fails with EPIPE.
    proc.closeOutput();
    const status = await Promise.race([proc.exited, sleep(15_000).then(() => null)]);
    if (status === null) await stopProcess(proc);
    expect(status).toEqual({ code: 141, signal: null });
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('--dump and --check leave a corrupt state file and stale temp files as they are', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-cli-'));
    const corrupt = '{"version":1,"lastIndex":200,"vms":{"x":{"index":150';
    await fs.writeFile(path.join(dir, 'vm-indexes.json'), corrupt);
    await fs.writeFile(path.join(dir, '.vm-indexes.json.4194305.1.tmp'), 'partial');
    for (const flag of ['--dump', '--check']) {
      const r = await cli(['--libvirt-uri', DEMO_URI, flag, '--state-dir', dir, '--agentx-socket', 'unix:/nonexistent/agentx.sock']);
      // --check fails on the absent AgentX socket; the state file is what matters here.
      expect(r.exitCode).toBe(flag === '--dump' ? 0 : 1);
      expect(r.stderr).toMatch(/vm-indexes\.json is corrupt .*left as it is/);
    }
    expect((await fs.readdir(dir)).sort()).toEqual(['.vm-indexes.json.4194305.1.tmp', 'vm-indexes.json']);
    expect(await fs.readFile(path.join(dir, 'vm-indexes.json'), 'utf8')).toBe(corrupt);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('--check without a master: each check on its line, exit 1 naming the AgentX socket and the fix', async () => {
    const r = await cli(['--libvirt-uri', DEMO_URI, '--check', '--agentx-socket', 'unix:/nonexistent/agentx.sock',
      '--state-dir', path.join(os.tmpdir(), `vmm-absent-${process.pid}`)]);
    expect(r.exitCode).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^libvirt: test:\/\/.*demo-host.xml ok: TEST .*, 9 domain\(s\)$/);
    expect(lines[1]).toMatch(/^agentx: unix:\/nonexistent\/agentx.sock FAILED: .*ENOENT.* — is snmpd running with "master agentx"\?$/);
    expect(lines[2]).toMatch(/^state dir: .* ok: absent; the agent creates it at start$/);
    expect(lines[3]).toMatch(/^linkage ok: /);
    expect(lines.at(-1)).toMatch(/^check: FAILED — agentx: unix:\/nonexistent\/agentx.sock: /);
  });

  test('--check with an unreachable libvirt still checks the rest, and exits 1 naming libvirt first', async () => {
    const r = await cli(['--libvirt-uri', 'test:///nonexistent/host.xml', '--check', '--agentx-socket', 'unix:/nonexistent/agentx.sock']);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/^libvirt: test:\/\/\/nonexistent\/host.xml FAILED: .* — is libvirtd running/m);
    expect(r.stdout).toMatch(/^agentx: .* FAILED/m);
    expect(r.stdout.trim().split('\n').at(-1)).toMatch(/^check: FAILED — libvirt: /);
  });

  test('--check against a real snmpd: the AgentX session opens and registers beside a running agent; exit 0', async () => {
    const snmpd = await startSnmpd();
    const agent = await startAgent(snmpd);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-check-'));
    try {
      const r = await cli(['--libvirt-uri', DEMO_URI, '--check', '--agentx-socket', snmpd.agentxAddress, '--state-dir', dir]);
      expect(r.stdout).toMatch(/^agentx: .* ok: session opened, VM-MIB and VMM-AGENTX-MIB registered, closed$/m);
      expect(r.stdout).toMatch(/^state dir: .* ok: writable$/m);
      expect(r.stdout.trim().split('\n').at(-1)).toBe('check: all passed');
      expect(r.exitCode).toBe(0);
      // The running agent still answers: the check registered below it and left.
      const walk = await snmpbulkwalk(snmpd, '.1.3.6.1.2.1.236.1.2');
      expect(walk.stdout).toMatch(/= INTEGER: 9/);
      // A state dir this user cannot write: named with the fix (root writes anywhere, so only as a plain user).
      if (process.getuid?.() !== 0) {
        await fs.chmod(dir, 0o500);
        const ro = await cli(['--libvirt-uri', DEMO_URI, '--check', '--agentx-socket', snmpd.agentxAddress, '--state-dir', dir]);
        expect(ro.exitCode).toBe(1);
        expect(ro.stdout).toMatch(/^state dir: .* FAILED: not writable/m);
      }
    } finally {
      await agent.stop();
      await snmpd.dispose();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('--dump and a walk through snmpd agree', () => {
  let snmpd: SnmpdInstance;
  beforeAll(async () => { snmpd = await startSnmpd(); });
  afterAll(async () => { await snmpd?.dispose(); });

  test('same instances, same values for everything that does not tick', async () => {
    const agent = await startAgent(snmpd);
    try {
      // Both modules the agent registers: VM-MIB, then VMM-AGENTX-MIB (under netSnmpPlaypen).
      const walk = (await snmpbulkwalk(snmpd, '.1.3.6.1.2.1.236')).stdout +
        (await snmpbulkwalk(snmpd, '.1.3.6.1.4.1.8072.9999.9999.7666')).stdout;
      const dump = await cli(['--libvirt-uri', DEMO_URI, '--dump', '--state-dir', agent.stateDir]);
      // Clocks and counters (the test driver's statistics are time-based) move between the two reads.
      const ticking = /^\.1\.3\.6\.1\.2\.1\.236\.1\.(1\.4|3|4\.1\.(16|17)|5\.1\.2|7\.1\.(1[3-8]))\./;
      const norm = (lines: string[]) => lines.filter((l) => !ticking.test(l));
      const walkLines = canonical(walk);
      const dumpLines = canonical(dump.stdout);
      expect(dumpLines.map((l) => l.split(' = ')[0])).toEqual(walkLines.map((l) => l.split(' = ')[0]));
      expect(norm(dumpLines)).toEqual(norm(walkLines));
    } finally {
      await agent.stop();
    }
  });
});
