// The capture, the relay's two ends and the stream watch on a real kernel:
// two network namespaces joined by a veth pair (s0 in the "sender" one, r0 in
// the "receiver" one). The code under test runs in child processes started
// with `ip netns exec` (test/mcastd/mcast-child.js, on the compiled dist/),
// because a packet socket and a group membership belong to the namespace of
// the process that opens them. The namespaces carry a random suffix and are
// deleted by name afterwards.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { pollUntil } from '../harness/poll';
import { describeUnless, firstReason, missingTools, needsRoot } from '../harness/prereq';
import { ManagedProcess, runCommand, spawnManaged, stopProcess } from '../harness/process';

const describeAsRoot = describeUnless(firstReason(
  needsRoot('ip netns add, and packet sockets (CAP_NET_RAW) in them'),
  missingTools('ip', 'setpriv'),
));

const CHILD = path.join(__dirname, 'mcast-child.js');
const BUILT = path.join(__dirname, '..', '..', 'dist', 'src', 'mcastd', 'capture.js');
/** The paper's 20 Mbps stream: 1,450-byte datagrams, 1,725 a second. */
const RATE = 1725;
const SIZE = 1450;

interface ChildEvent {
  event: string;
  [key: string]: unknown;
}

interface GroupTally {
  count: number;
  unique: number;
  bad: number;
  outgoing: number;
  ports: number[];
  sources: string[];
  hopLimits: number[];
  sizes: number[];
  texts: string[];
}

function eventsOf(proc: ManagedProcess): ChildEvent[] {
  return proc.output().split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as ChildEvent);
}

async function waitForEvent(proc: ManagedProcess, name: string, timeoutMs = 15_000): Promise<ChildEvent> {
  const { value } = await pollUntil(`"${name}" from ${proc.commandLine}`, () => {
    const events = eventsOf(proc);
    const failed = events.find((e) => e.event === 'error');
    if (failed) throw new Error(`${proc.commandLine}: ${String(failed.message)}`);
    return events.find((e) => e.event === name) ?? null;
  }, (e) => e !== null, timeoutMs);
  return value as ChildEvent;
}

async function run(cmd: string, ...args: string[]): Promise<string> {
  const r = await runCommand(cmd, args, { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' } });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.exitCode}: ${r.stderr.trim()}`);
  return r.stdout;
}

describeAsRoot('multicast capture, relay and stream watch (network namespaces)', () => {
  const tag = randomBytes(3).toString('hex');
  const ns = { sender: `vmm-mcs-${tag}`, receiver: `vmm-mcr-${tag}` };
  const created: string[] = [];
  const children: ManagedProcess[] = [];

  function child(where: string, ...args: string[]): Promise<ManagedProcess> {
    return spawnManaged('ip', ['netns', 'exec', where, process.execPath, CHILD, ...args], { env: process.env }).then((proc) => {
      children.push(proc);
      return proc;
    });
  }

  /** Runs a child to its end and returns its events. */
  async function runChild(where: string, ...args: string[]): Promise<ChildEvent[]> {
    const proc = await child(where, ...args);
    const status = await proc.exited;
    if (status.code !== 0) throw new Error(`${proc.commandLine} exited with ${status.code}: ${proc.output()}`);
    return eventsOf(proc);
  }

  beforeAll(async () => {
    if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run "npm run build" first (npm test does)`);
    for (const n of [ns.sender, ns.receiver]) {
      await run('ip', 'netns', 'add', n);
      created.push(n);
      await run('ip', '-n', n, 'link', 'set', 'lo', 'up');
      // No duplicate address detection: the addresses (and MLD) are usable at once.
      await run('ip', 'netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
    }
    await run('ip', '-n', ns.sender, 'link', 'add', 's0', 'type', 'veth', 'peer', 'name', 'r0', 'netns', ns.receiver);
    await run('ip', '-n', ns.sender, 'addr', 'add', '10.77.0.1/24', 'dev', 's0');
    await run('ip', '-n', ns.sender, 'addr', 'add', 'fd00:77::1/64', 'dev', 's0');
    await run('ip', '-n', ns.receiver, 'addr', 'add', '10.77.0.2/24', 'dev', 'r0');
    await run('ip', '-n', ns.receiver, 'addr', 'add', 'fd00:77::2/64', 'dev', 'r0');
    await run('ip', '-n', ns.sender, 'link', 'set', 's0', 'up');
    await run('ip', '-n', ns.receiver, 'link', 'set', 'r0', 'up');
    await pollUntil('the link-local address on r0', () => run('ip', '-n', ns.receiver, '-6', 'addr', 'show', 'dev', 'r0', 'scope', 'link'),
      (out) => out.includes('fe80') && !out.includes('tentative'), 5000);
  }, 60_000);

  afterAll(async () => {
    for (const proc of children) await stopProcess(proc).catch(() => undefined);
    for (const n of created.reverse()) await run('ip', 'netns', 'del', n).catch(() => undefined);
  }, 60_000);

  test('without CAP_NET_RAW the capture says that is what it needs', async () => {
    const script = `try { new (require(${JSON.stringify(BUILT)}).MulticastCapture)('lo', () => undefined, { log: () => undefined }); }`
      + ' catch (e) { process.stdout.write(e.message); }';
    const r = await runCommand('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '-e', script],
      { env: process.env });
    expect(r.stdout).toBe('cannot open a packet socket to capture multicast on lo: needs CAP_NET_RAW (run as root or grant the capability)');
  });

  describe.each([
    ['IPv4', '239.77.1.2'],
    ['IPv6', 'ff0e::77:1'],
  ])('%s: a numbered stream of %s', (_family, group) => {
    test(`every one of ${RATE} datagrams of ${SIZE} bytes in a second is captured intact, with group, port and TTL`, async () => {
      const capture = await child(ns.receiver, 'capture', 'r0', String(RATE), group);
      await waitForEvent(capture, 'ready');
      const [sent] = await runChild(ns.sender, 'send', 's0', group, '5004', String(RATE), String(RATE), String(SIZE), '9');
      expect(sent).toMatchObject({ event: 'sent', sent: RATE, errors: 0 });
      const summary = await waitForEvent(capture, 'summary', 20_000);
      const tally = (summary.groups as Record<string, GroupTally>)[group];
      const cpuMicros = summary.cpuMicros as number;
      process.stdout.write(`capture ${group}: ${tally.unique}/${RATE} in ${Math.round(summary.spanMs as number)} ms, `
        + `${(cpuMicros / tally.count).toFixed(1)} ms CPU per 1,000 datagrams, kernel drops ${(summary.stats as { kernelDrops: number }).kernelDrops}\n`);
      expect(tally).toMatchObject({ count: RATE, unique: RATE, bad: 0, outgoing: 0, ports: [5004], hopLimits: [9], sizes: [SIZE] });
      expect(tally.sources).toEqual([group.includes(':') ? 'fd00:77::1' : '10.77.0.1']);
      expect((summary.stats as { kernelDrops: number }).kernelDrops).toBe(0);
    }, 40_000);

    test('malformed and truncated packets to the group are skipped; the capture goes on', async () => {
      const capture = await child(ns.receiver, 'capture', 'r0', '1', group);
      await waitForEvent(capture, 'ready');
      const [junk] = await runChild(ns.sender, 'junk', 's0', group);
      expect(junk.sent as number).toBeGreaterThanOrEqual(6);
      const summary = await waitForEvent(capture, 'summary', 20_000);
      // Only the last, well-formed one is reported.
      expect((summary.groups as Record<string, GroupTally>)[group]).toMatchObject({ count: 1, ports: [9], texts: ['ok'] });
      expect(capture.output()).not.toMatch(/"level":"error"/);
    }, 40_000);

    test('the Resender sends on the link with TTL / hop limit 1, and a joined application socket gets every datagram', async () => {
      const receiver = await child(ns.receiver, 'receive', 'r0', group, '6006', '200');
      await waitForEvent(receiver, 'ready');
      const [resent] = await runChild(ns.sender, 'resend', 's0', group, '6006', '200', '1000', String(SIZE));
      expect(resent).toMatchObject({ event: 'resent', sent: 200, failed: 0 });
      const summary = await waitForEvent(receiver, 'summary', 20_000);
      expect((summary.captured as Record<string, GroupTally>)[group]).toMatchObject({ unique: 200, bad: 0, hopLimits: [1], ports: [6006] });
      expect((summary.application as Record<string, GroupTally>)[group]).toMatchObject({ unique: 200, bad: 0 });
    }, 40_000);

    test('a GroupReceiver joins (the kernel holds the membership), hands on every port\'s datagrams, and leaves', async () => {
      const relay = await child(ns.receiver, 'relay', 'r0', '400', group);
      const ready = await waitForEvent(relay, 'ready');
      const hex = group.includes(':') ? 'ff0e0000000000000000000000770001' : '02014DEF';
      const table = (e: ChildEvent | Record<string, unknown>): string => String(group.includes(':') ? e.igmp6 : e.igmp);
      expect(table(ready)).toContain(hex);
      await Promise.all([
        runChild(ns.sender, 'send', 's0', group, '7001', '200', '1000', '300', '4'),
        runChild(ns.sender, 'send', 's0', group, '7002', '200', '1000', '300', '4'),
      ]);
      const summary = await waitForEvent(relay, 'summary', 20_000);
      const tally = (summary.groups as Record<string, GroupTally>)[group];
      expect(tally).toMatchObject({ count: 400, bad: 0 });
      expect([...tally.ports].sort()).toEqual([7001, 7002]);
      expect(table(summary.left as Record<string, unknown>)).not.toContain(hex);
    }, 40_000);

    test('StreamWatch ignores our own re-sent datagrams, fires on the network\'s, then reports the silence', async () => {
      const watch = await child(ns.receiver, 'watch', 'r0', group, '6008', '300');
      const resent = await waitForEvent(watch, 'resent');
      expect(resent).toMatchObject({ sent: 50, failed: 0, arrivedMeanwhile: false });
      // The capture did see them: as outgoing.
      expect(resent.outgoingSeen).toBe(50);
      expect(eventsOf(watch).some((e) => e.event === 'arrival')).toBe(false);
      await runChild(ns.sender, 'send', 's0', group, '6008', '100', '500', '200', '4');
      const waited = await waitForEvent(watch, 'waited');
      expect(waited.arrival).toMatchObject({ group, port: 6008, source: group.includes(':') ? 'fd00:77::1' : '10.77.0.1' });
      const silence = await waitForEvent(watch, 'silence', 5000);
      expect(silence.silentMs as number).toBeGreaterThanOrEqual(300);
      expect(silence.silentMs as number).toBeLessThan(600);
      await stopProcess(watch);
      expect(eventsOf(watch).filter((e) => e.event === 'arrival')).toHaveLength(1);
    }, 40_000);
  });
});
