// vmm-mcastd keeping a VM's multicast stream across a migration to another
// network, in the lab's namespaces (test/harness/mcast-lab.ts): agents on
// the three hypervisors, a relay server on the sender's link, the VM's port
// moving from hvS's bridge to hvA's (the router forwards there once someone
// joins) or hvB's (no multicast ever: the relay). The figure the issue sets —
// the interruption within the switchover pause plus 50 ms — is measured by
// `npm run bench:mobility`; here, beside other suites on a shared machine,
// the bound only tells the agent's path from the baseline's wait for a query.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { McastLab, mcastLabMissing, type Family } from '../harness/mcast-lab';
import { MCASTD_CLI, McastdRig, procIgmp6Form, SIGNALLING_PORT } from '../harness/mcastd-rig';
import { pollUntil } from '../harness/poll';
import { describeUnless, firstReason } from '../harness/prereq';
import { runCommand, sleep } from '../harness/process';
import { requireBuiltCli } from '../harness/agent';

const describeLab = describeUnless(firstReason(mcastLabMissing()));

const PAUSE_MS = 150;
/** The query interval is 3 s: a stream back within a second of the move did not wait for a query. */
const SHARED_MACHINE_SLACK_MS = 1000;
const PPS = 1725;
/** The router's query interval: the VM answers within it after the move. */
const QUERY_INTERVAL_SEC = 3;

async function labWithAgents(family: Family, signalling: 4 | 6): Promise<{ lab: McastLab; rig: McastdRig }> {
  const lab = await McastLab.create({ family, queryIntervalSec: QUERY_INTERVAL_SEC, queryResponseSec: 1, querier: 'router' });
  try {
    const rig = new McastdRig(lab, { signalling });
    await rig.start();
    return { lab, rig };
  } catch (err) {
    await lab.close();
    throw err;
  }
}

function hostForm(group: string, family: Family): string {
  return family === 4 ? group : procIgmp6Form(group);
}

describeLab('vmm-mcastd: a migration to another network keeps the multicast stream', () => {
  beforeAll(() => requireBuiltCli());

  test.each([
    [4, 6, 'A'],
    [6, 4, 'A'],
    [4, 4, 'B'],
    [6, 6, 'B'],
  ] as const)('IPv%s stream, IPv%s signalling, to net %s: the stream resumes once the port is up; joins held until the VM reports', async (family, signalling, dest) => {
    const { lab, rig } = await labWithAgents(family, signalling);
    try {
      await lab.startStream({ pps: PPS });
      await pollUntil('stream reaching the VM on S', async () => lab.receivedSoFar(), (n) => n > 50, 10_000, 50);
      const prepared = await rig.prepare(dest);
      const group = prepared.groups[0]?.address;
      expect(prepared.groups).toEqual([{ address: group, via: dest === 'A' ? 'direct' : 'relay', ...(dest === 'B' ? { relay: expect.anything() } : {}) }]);
      // State files are written just after the change (coalesced): poll, not read once.
      const held = (await pollUntil('destination state', async () => rig.state(dest),
        (st) => (st?.proxyJoins.length ?? 0) > 0 && (dest === 'A' || (st?.relays ?? []).some((r) => r.state === 'active')), 5000, 20)).value;
      expect(held?.proxyJoins).toEqual([expect.objectContaining({ group, bridge: 'br0', reason: 'incoming-migration' })]);
      expect(await rig.hostGroups(dest)).toContain(hostForm(group, family));
      if (dest === 'B') {
        expect(held?.relays).toEqual([expect.objectContaining({ group, state: 'active' })]);
        await pollUntil('relay subscriber', async () => rig.state('relay')?.relaySubscribers ?? [], (subs) => subs.some((x) => x.group === group), 5000, 20);
      }
      const sw = await lab.switchover({ to: dest, pauseMs: PAUSE_MS });
      await sleep(1500);
      const before = lab.receivedSoFar();
      await sleep(200);
      expect(lab.receivedSoFar()).toBeGreaterThan(before);
      // The VM's port got the group at once (the joins wait for its own report, which may already have come).
      await pollUntil('VM port found and given the group', async () => rig.agent(dest).output(),
        (o) => o.includes(`arrived on br0 port ${lab.addresses.ports[dest]}; forwarding ${group}`), 5000, 20);
      // The router asks within QUERY_INTERVAL_SEC; the VM answers within the response interval.
      if (dest === 'A') {
        await pollUntil('proxy join released after the VM reported', async () => rig.state(dest)?.proxyJoins.length ?? -1, (n) => n === 0,
          (QUERY_INTERVAL_SEC * 2 + 3) * 1000, 100);
        expect(await rig.hostGroups(dest)).not.toContain(hostForm(group, family));
      }
      const result = await lab.stopStream();
      console.log(`IPv${family} to ${dest}: T_PRE ${prepared.tPreMs.toFixed(1)} ms, pause ${sw.pauseMs.toFixed(0)} ms, ` +
        `interruption ${result.interruptionMs.toFixed(1)} ms, gap ${result.gapMs.toFixed(1)} ms, duplicates ${result.duplicates}, lost ${result.lost}`);
      expect(result.resumed).toBe(true);
      expect(result.interruptionMs).toBeLessThanOrEqual(sw.pauseMs + SHARED_MACHINE_SLACK_MS);
    } finally {
      await rig.close();
      await lab.close();
    }
  });

  // Replays are refused by the signalling itself (test/mcastd/signalling.test.ts); here, the daemon end to end.
  test('a forged request is refused with a log line and changes nothing; a MIGRATION_REQUEST with the key is served', async () => {
    const { lab, rig } = await labWithAgents(4, 4);
    try {
      const agentA = rig.agent('A');
      // A well-formed AGENT_REQUEST that claims to be hvS's, tagged with a key that is not the site's.
      const dist = JSON.stringify(path.dirname(MCASTD_CLI));
      const script = `const w=require(${dist}+'/wire.js');const {MessageKey}=require(${dist}+'/auth.js');` +
        `const m={type:w.MessageType.AGENT_REQUEST,senderId:w.senderIdFor('hvS'),bootId:1n,sequence:1,timestamp:Date.now(),` +
        `body:{migrationId:'forged',vm:{uuid:'${rig.vmUuid}',name:'evil'},nics:[{mac:'52:54:00:00:00:01',bridge:'br0',` +
        `groups:[{address:'239.9.9.9',family:4}]}]}};` +
        `const s=require('dgram').createSocket('udp4');s.send(w.encodeMessage(m,new MessageKey(require('crypto').randomBytes(32))),` +
        `${SIGNALLING_PORT},'${lab.addresses.nets.A.bridge.v4}',()=>s.close());`;
      await lab.exec('hvB', process.execPath, ['-e', script]);
      await pollUntil('refusal logged', async () => agentA.output(), (o) => /dropped AGENT_REQUEST from .*: bad tag/.test(o), 5000, 50);
      expect(rig.state('A')?.proxyJoins).toEqual([]);
      // The same request from a controller that has the key (the paper's MIGRATION_REQUEST to the source) is served.
      const controller = `const {SignallingEndpoint}=require(${dist}+'/signalling.js');const {loadKeyFile}=require(${dist}+'/auth.js');` +
        `const w=require(${dist}+'/wire.js');(async()=>{const e=await SignallingEndpoint.open({key:await loadKeyFile(${JSON.stringify(rig.keyFile)}),` +
        `senderId:w.senderIdFor('controller'),port:0,bindAddress6:null,log:()=>{}});` +
        `const r=await e.request({address:'${lab.addresses.nets.S.bridge.v4}',port:${SIGNALLING_PORT}},w.MessageType.MIGRATION_REQUEST,` +
        `{migrationId:'c-1',vm:{uuid:'${rig.vmUuid}',name:'${rig.vmName}'},destination:{address:'${lab.addresses.nets.A.bridge.v4}',port:${SIGNALLING_PORT}}});` +
        `process.stdout.write(JSON.stringify(r.body));await e.close();})().catch((err)=>{process.stdout.write(err.message);});`;
      const answer = JSON.parse(await lab.exec('hvB', process.execPath, ['-e', controller])) as unknown;
      expect(answer).toEqual({ migrationId: 'c-1', accepted: true, groups: [] });
      // libvirt stays read-only unless configured otherwise: a migration through it is refused before any signalling.
      const live = await runCommand(process.execPath, [MCASTD_CLI, '--config', rig.configFile('S'), 'migrate', rig.vmName, 'hvA'], { env: process.env });
      expect([live.exitCode, live.stderr.trim()]).toEqual([1, expect.stringMatching(/needs libvirt-readwrite yes .*\(or --prepare-only/)]);
    } finally {
      await rig.close();
      await lab.close();
    }
  });

  test('an agent killed mid-migration leaves no join, MDB entry or relay behind once restarted', async () => {
    const { lab, rig } = await labWithAgents(4, 4);
    try {
      await lab.startStream({ pps: 174 });
      await pollUntil('stream reaching the VM on S', async () => lab.receivedSoFar(), (n) => n > 10, 10_000, 50);
      const prepared = await rig.prepare('B');
      const group = prepared.groups[0].address;
      await lab.switchover({ to: 'B', pauseMs: PAUSE_MS });
      await pollUntil('VM port given the group', async () => rig.state('B')?.portEntries.length ?? 0, (n) => n === 1, 5000, 50);
      await pollUntil('relay subscriber', async () => rig.state('relay')?.relaySubscribers?.length ?? 0, (n) => n === 1, 5000, 50);
      await rig.kill('B');
      // The kernel drops a dead process's memberships; the MDB entry and the relay outlive it.
      expect(await rig.hostGroups('B')).not.toContain(group);
      expect((await lab.mdb('B')).some((e) => e.port === lab.addresses.ports.B && e.grp === group)).toBe(true);
      const restarted = await rig.startAgent('B');
      await pollUntil('restarted agent undid what it found', async () => restarted.output(), (o) => /undid what the previous vmm-mcastd/.test(o), 5000, 50);
      expect(restarted.output()).toMatch(/undid what the previous vmm-mcastd \(pid \d+\) left: 1 MDB entry, 1 relay/);
      // The entry the dead agent added (protocol static) is gone; the VM's own report may since have made one
      // the kernel learned (protocol kernel), which is the VM's and stays.
      const entries = JSON.parse(await lab.exec('hvB', 'bridge', ['-d', '-j', 'mdb', 'show', 'dev', 'br0'])) as { mdb?: { port: string; grp: string; protocol?: string }[] }[];
      expect(entries.flatMap((t) => t.mdb ?? []).filter((e) => e.port === lab.addresses.ports.B && e.grp === group && e.protocol !== 'kernel')).toEqual([]);
      await pollUntil('relay stopped', async () => rig.state('relay')?.relaySubscribers?.length ?? 0, (n) => n === 0, 5000, 50);
      const fresh = rig.state('B');
      expect(fresh).toMatchObject({ pid: restarted.pid, proxyJoins: [], relays: [], portEntries: [] });
      await lab.stopStream();
    } finally {
      await rig.close();
      await lab.close();
    }
  });

  test('--check proves each peer and the relay answer with the key; the state file goes when the agent stops', async () => {
    const { lab, rig } = await labWithAgents(4, 6);
    try {
      const check = await lab.exec('hvS', process.execPath, [MCASTD_CLI, '--config', rig.configFile('S'), '--check']);
      expect(check).toMatch(/^peer hvA: fd00:71::1 port 7666 ok: agent hvA answered in \d+ ms \(same key\)$/m);
      expect(check).toMatch(/^peer hvB: .* ok: agent hvB answered/m);
      expect(check).toMatch(/^relay server: .* ok: agent relay answered/m);
      expect(check).toMatch(/^bridge: br0 ok: snooping on, statistics on$/m);
      expect(check.trim().split('\n').pop()).toBe('check: all passed');
      // A peer with another key does not answer: --check says so and fails.
      fs.writeFileSync(rig.keyFile, `${'ab'.repeat(32)}\n`);
      const bad = await lab.exec('hvS', 'sh', ['-c', `${process.execPath} ${MCASTD_CLI} --config ${rig.configFile('S')} --check; echo "exit $?"`]);
      expect(bad).toMatch(/^peer hvA: .* FAILED: .*is its vmm-mcastd running, with the same key\?$/m);
      expect(bad.trim()).toMatch(/exit 1$/);
      const file = rig.stateFile('A');
      expect(fs.existsSync(file)).toBe(true);
      await lab.stop(rig.agent('A'));
      expect(fs.existsSync(file)).toBe(false);
    } finally {
      await rig.close();
      await lab.close();
    }
  });
});
