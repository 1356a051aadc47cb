// The indexes our host collectors compute must be the ones the real Net-SNMP
// 5.9.3 snmpd shows (RFC 7666 §5: vmCpuPhysIndex = hrDeviceIndex of
// hrProcessorTable, vmStorageParent = hrStorageIndex, vmNetworkIfIndex /
// vmNetworkParent = ifIndex). Three set-ups, each with a private snmpd:
// - this host as it is;
// - a network namespace with a bridge, a tap-like veth port and a vxlan over
//   a "physical" veth, snmpd running inside it;
// - a private mount namespace whose /proc/cpuinfo, /proc/stat and mount table
//   are our fixtures (an offline CPU, every fs-type case), so the parsers are
//   checked against snmpd on inputs this machine does not have.
// The first runs as any user (snmpd as nobody when root, else as us); the
// namespace ones need root (ip netns; unshare -m) and are skipped, with that
// reason, otherwise.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseMounts, readMounts } from '../../src/collectors/mounts';
import { cpuDeviceIndexes, NETSNMP_MEM_TYPE_MAX, storageIndexes } from '../../src/model/linkage';
import { DEFAULT_HOST_PATHS, hostPaths } from '../../src/collectors/paths';
import { readProcfs } from '../../src/collectors/procfs';
import { readInterfaces } from '../../src/collectors/sysfs-net';
import { freeUdpPort } from '../harness/ports';
import { ManagedProcess, runCommand, sleep, spawnManaged, stopProcess } from '../harness/process';
import {
  SnmpAgentTarget,
  SnmpVarbindLine,
  clientEnvironment,
  parseVarbindLines,
  snmpget,
  snmpwalk,
} from '../harness/snmp-tools';
import { chownForSnmpd, SNMPD_BINARY, snmpdUserPrefix, SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { describeUnless, firstReason, missingTools, needsRoot } from '../harness/prereq';
import { FILESYSTEM_STORAGE_TYPES, HR_PROCESSOR_FRW_ID, HR_STORAGE_DESCR, HR_STORAGE_TYPE, IF_DESCR } from '../harness/host-oids';

const SYS_UPTIME = '1.3.6.1.2.1.1.3.0';

const FIXTURES = path.resolve(__dirname, '..', 'fixtures', 'host');
const SNMP_TOOLS = missingTools('snmpd', 'snmpget', 'snmpwalk');
const describeWithSnmpd = describeUnless(SNMP_TOOLS);
const describeInNetns = describeUnless(firstReason(needsRoot('ip netns add'), missingTools('ip'), SNMP_TOOLS));
const describeInMountNs = describeUnless(firstReason(
  needsRoot('unshare --mount and mount --bind over /proc files'), missingTools('unshare', 'mount'), SNMP_TOOLS,
));

/** Column instance index → value, from a walk of one column. */
function columnValues(varbinds: readonly SnmpVarbindLine[], column: string): Map<number, string> {
  const prefix = `.${column}.`;
  const values = new Map<number, string>();
  for (const vb of varbinds) {
    if (!vb.oid.startsWith(prefix)) throw new Error(`walk of ${column} returned ${vb.oid} (${vb.type})`);
    values.set(Number(vb.oid.slice(prefix.length)), vb.value);
  }
  return values;
}

/** hrStorageDescr → hrStorageIndex for the rows with a filesystem hrStorageType. */
function snmpdFilesystems(types: Map<number, string>, descrs: Map<number, string>): Map<string, number> {
  const result = new Map<string, number>();
  for (const [index, type] of types) {
    if (!FILESYSTEM_STORAGE_TYPES.has(type)) continue;
    const descr = descrs.get(index);
    if (descr === undefined) throw new Error(`hrStorageTable row ${index} has a type but no descr`);
    result.set(descr, index);
  }
  return result;
}

function ourFilesystems(mountTableText: string): Map<string, number> {
  const listed = storageIndexes(parseMounts(mountTableText)).filter((f) => f.hrStorageIndex !== 0);
  return new Map(listed.map((f) => [f.mountPoint, f.hrStorageIndex]));
}

function invert(map: Map<number, string>): Map<string, number> {
  return new Map([...map].map(([index, name]) => [name, index]));
}

async function run(command: string, args: string[]): Promise<string> {
  const result = await runCommand(command, args, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (result.exitCode !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.exitCode}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/**
 * snmpd started through a wrapper command (ip netns exec, unshare), which the
 * harness's startSnmpd cannot do yet. Same lab layout and flags as the harness.
 */
interface WrappedSnmpd extends SnmpAgentTarget {
  readonly child: ManagedProcess;
  dispose(): Promise<void>;
}

async function startWrappedSnmpd(
  wrapper: readonly string[],
  isReady: (target: SnmpAgentTarget) => Promise<boolean>,
): Promise<WrappedSnmpd> {
  const labDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-snmpd-wrapped-'));
  const udpPort = await freeUdpPort();
  const configPath = path.join(labDir, 'snmpd.conf');
  const persistDir = path.join(labDir, 'persist');
  fs.mkdirSync(persistDir);
  fs.writeFileSync(
    configPath,
    [`agentAddress udp:127.0.0.1:${udpPort}`, 'rocommunity public 127.0.0.1', 'dontLogTCPWrappersConnects yes', ''].join('\n'),
  );
  fs.chmodSync(labDir, 0o755);
  chownForSnmpd([labDir, persistDir, configPath]);

  const snmpdArgs = [
    ...snmpdUserPrefix(),
    SNMPD_BINARY, '-f', '-Lo', '-C', '-I', '-smux', '-c', configPath,
  ];
  const child = await spawnManaged(wrapper[0], [...wrapper.slice(1), ...snmpdArgs], {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', SNMP_PERSISTENT_DIR: persistDir, MIBS: '' },
    cwd: labDir,
    logFile: path.join(labDir, 'snmpd.log'),
  });
  const target = { labDir, udpPort };
  const dispose = async (): Promise<void> => {
    await stopProcess(child, 3000);
    fs.rmSync(labDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.hasExited()) break;
    if (await isReady(target)) return { ...target, child, dispose };
    await sleep(50);
  }
  const output = child.output();
  await dispose();
  throw new Error(`snmpd via "${wrapper.join(' ')}" did not answer within 10 s; output:\n${output}`);
}

describeWithSnmpd('host indexes equal snmpd 5.9.3 on this host', () => {
  let snmpd: SnmpdInstance;
  beforeAll(async () => {
    snmpd = await startSnmpd();
  });
  afterAll(async () => {
    await snmpd?.dispose();
  });

  it('computes exactly the hrDeviceIndex set of hrProcessorTable', async () => {
    const walk = await snmpwalk(snmpd, HR_PROCESSOR_FRW_ID);
    const snmpdIndexes = [...columnValues(walk.varbinds, HR_PROCESSOR_FRW_ID).keys()];
    const ours = readProcfs(DEFAULT_HOST_PATHS);
    expect(snmpdIndexes.length).toBeGreaterThan(0);
    expect([...cpuDeviceIndexes(ours.cpus).values()]).toEqual(snmpdIndexes);
    expect(ours.uptimeSeconds).toBeGreaterThan(0);
  });

  it('computes the hrStorageIndex of every filesystem row of hrStorageTable', async () => {
    // Other tests may mount (ip netns add mounts /run/netns) while we walk; only
    // a walk during which the mount table stayed the same can be compared.
    let mountTable = '';
    let snmpdRows = new Map<string, number>();
    for (let attempt = 0; attempt < 3; attempt++) {
      const before = fs.readFileSync(DEFAULT_HOST_PATHS.mountsFile, 'utf8');
      const types = columnValues((await snmpwalk(snmpd, HR_STORAGE_TYPE)).varbinds, HR_STORAGE_TYPE);
      const descrs = columnValues((await snmpwalk(snmpd, HR_STORAGE_DESCR)).varbinds, HR_STORAGE_DESCR);
      mountTable = fs.readFileSync(DEFAULT_HOST_PATHS.mountsFile, 'utf8');
      snmpdRows = snmpdFilesystems(types, descrs);
      if (mountTable === before) break;
    }
    expect(snmpdRows.size).toBeGreaterThan(0);
    expect([...snmpdRows.values()].every((index) => index > NETSNMP_MEM_TYPE_MAX)).toBe(true);
    expect(ourFilesystems(mountTable)).toEqual(snmpdRows);
    // readMounts reads the same file through the configured default.
    expect((await readMounts(DEFAULT_HOST_PATHS)).length).toBe(parseMounts(mountTable).length);
  });

  it('maps interface names to the ifIndex of ifTable', async () => {
    const snmpdIfs = invert(columnValues((await snmpwalk(snmpd, IF_DESCR)).varbinds, IF_DESCR));
    const ours = await readInterfaces(DEFAULT_HOST_PATHS);
    expect(new Map([...ours].map(([name, i]) => [name, i.ifIndex]))).toEqual(snmpdIfs);
  });
});

describeInNetns('interface indexes equal snmpd 5.9.3 inside a network namespace', () => {
  const ns = `vmmtest-${randomBytes(4).toString('hex')}`;
  let snmpd: WrappedSnmpd | undefined;

  const inNs = (tool: string, target: SnmpAgentTarget, operands: string[]) =>
    runCommand('ip', ['netns', 'exec', ns, tool, '-v2c', '-c', 'public', '-On', '-t', '2', '-r', '1',
      `127.0.0.1:${target.udpPort}`, ...operands], { env: clientEnvironment(target) });

  beforeAll(async () => {
    await run('ip', ['netns', 'add', ns]);
    const ipn = (...args: string[]) => run('ip', ['-n', ns, ...args]);
    await ipn('link', 'set', 'lo', 'up');
    await ipn('link', 'add', 'br-test', 'type', 'bridge');
    // tap-web01 is the host side of a VM NIC; its peer plays the guest side.
    await ipn('link', 'add', 'tap-web01', 'type', 'veth', 'peer', 'name', 'vm-web01');
    await ipn('link', 'set', 'tap-web01', 'master', 'br-test');
    // A "physical" NIC with a vxlan on it: sysfs gives the vxlan a lower_phys0 link.
    await ipn('link', 'add', 'phys0', 'type', 'veth', 'peer', 'name', 'phys0-peer');
    await ipn('link', 'add', 'vx-web02', 'type', 'vxlan', 'id', '42', 'dev', 'phys0', 'dstport', '4789');
    snmpd = await startWrappedSnmpd(['ip', 'netns', 'exec', ns], async (target) =>
      (await inNs('snmpget', target, [SYS_UPTIME])).exitCode === 0);
  });

  afterAll(async () => {
    await snmpd?.dispose();
    await run('ip', ['netns', 'del', ns]);
  });

  it('reads the namespace\'s sysfs and matches its ifTable, parents included', async () => {
    if (!snmpd) throw new Error('snmpd did not start');
    const walk = await inNs('snmpwalk', snmpd, [IF_DESCR]);
    expect(walk.exitCode).toBe(0);
    const snmpdIfs = invert(columnValues(parseVarbindLines(walk.stdout), IF_DESCR));
    expect([...snmpdIfs.keys()].sort()).toEqual(['br-test', 'lo', 'phys0', 'phys0-peer', 'tap-web01', 'vm-web01', 'vx-web02']);

    // ip netns exec gave snmpd a mount namespace with this netns's sysfs on /sys;
    // /proc/<pid>/root/sys is that sysfs, seen from here.
    const ours = await readInterfaces(hostPaths({ sysRoot: `/proc/${snmpd.child.pid}/root/sys` }));
    expect(new Map([...ours].map(([name, i]) => [name, i.ifIndex]))).toEqual(snmpdIfs);
    expect(ours.get('tap-web01')?.parentIfIndex).toBe(snmpdIfs.get('br-test'));
    expect(ours.get('vx-web02')?.parentIfIndex).toBe(snmpdIfs.get('phys0'));
    expect(ours.get('br-test')?.parentIfIndex).toBe(0);
    expect(ours.get('vm-web01')?.parentIfIndex).toBe(0);
  });
});

describeInMountNs('parsers equal snmpd 5.9.3 on fixture /proc and mount table (private mount namespace)', () => {
  let snmpd: WrappedSnmpd | undefined;
  let fixtureCopies: string;

  beforeAll(async () => {
    // Copies readable by nobody whatever the checkout's modes are.
    fixtureCopies = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-host-fixtures-'));
    fs.chmodSync(fixtureCopies, 0o755);
    const copy = (relative: string): string => {
      const target = path.join(fixtureCopies, relative.replace(/\//g, '_'));
      fs.copyFileSync(path.join(FIXTURES, relative), target);
      fs.chmodSync(target, 0o644);
      return target;
    };
    const cpuinfo = copy('proc-cpu1-offline/cpuinfo');
    const stat = copy('proc-cpu1-offline/stat');
    const mtab = copy('mtab-variety');
    // snmpd opens /proc/cpuinfo, /proc/stat and /etc/mtab → /proc/self/mounts.
    // unshare, sh, setpriv and snmpd all exec in turn, so $$ is snmpd's PID.
    const script = 'mount --bind "$1" /proc/cpuinfo && mount --bind "$2" /proc/stat && ' +
      'mount --bind "$3" /proc/$$/mounts && shift 3 && exec "$@"';
    snmpd = await startWrappedSnmpd(
      ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', cpuinfo, stat, mtab],
      async (target) => (await snmpget(target, [SYS_UPTIME], [], { allowFailure: true, timeoutMs: 5000 })).exitCode === 0,
    );
  });

  afterAll(async () => {
    await snmpd?.dispose();
    if (fixtureCopies) fs.rmSync(fixtureCopies, { recursive: true, force: true });
  });

  it('numbers processors with CPU 1 offline as readProcfs does', async () => {
    if (!snmpd) throw new Error('snmpd did not start');
    const walk = await snmpwalk(snmpd, HR_PROCESSOR_FRW_ID);
    const ours = readProcfs(hostPaths({ procRoot: path.join(FIXTURES, 'proc-cpu1-offline') }));
    expect([...columnValues(walk.varbinds, HR_PROCESSOR_FRW_ID).keys()]).toEqual([196608, 196610, 196611]);
    expect([...cpuDeviceIndexes(ours.cpus).values()]).toEqual([196608, 196610, 196611]);
  });

  it('lists every fs-type case of mtab-variety at the index storageIndexes gives it', async () => {
    if (!snmpd) throw new Error('snmpd did not start');
    const types = columnValues((await snmpwalk(snmpd, HR_STORAGE_TYPE)).varbinds, HR_STORAGE_TYPE);
    const descrs = columnValues((await snmpwalk(snmpd, HR_STORAGE_DESCR)).varbinds, HR_STORAGE_DESCR);
    const snmpdRows = snmpdFilesystems(types, descrs);
    expect(snmpdRows.size).toBe(19);
    expect(ourFilesystems(fs.readFileSync(path.join(FIXTURES, 'mtab-variety'), 'utf8'))).toEqual(snmpdRows);
  });
});
