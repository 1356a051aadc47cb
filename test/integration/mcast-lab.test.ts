// The multicast lab (test/harness/mcast-lab.ts) behaves as issue 14's
// measurements need: a VM on the join-driven network gets the stream, a
// switchover keeps the VM's carrier and leaves the destination bridge without
// its groups, and without an agent the stream comes back on A only when the
// VM answers a query, and never on B. The figures are logged: they are the
// baseline the agent is measured against.
import * as fs from 'node:fs';
import { Hypervisor, McastLab, mcastLabMissing, StreamResult } from '../harness/mcast-lab';
import { isPidAlive, sleep } from '../harness/process';
import { describeUnless } from '../harness/prereq';

const describeAsRoot = describeUnless(mcastLabMissing());
const PAUSE_MS = 300;
const QUERY_INTERVAL_S = 5;
const QUERY_RESPONSE_S = 1;

function summary(r: StreamResult): string {
  const sw = r.switchovers[0];
  return `sent ${r.sent} (${r.achievedPps.toFixed(1)}/s) received ${r.received} lost ${r.lost} duplicates ${r.duplicates} ` +
    `interruption ${r.interruptionMs.toFixed(0)} ms gap ${r.gapMs.toFixed(0)} ms resumed ${r.resumed}` +
    (sw ? ` pause ${sw.pauseMs.toFixed(0)} ms first after up ${sw.firstAfterUpMs?.toFixed(0) ?? '-'} ms` : '');
}

/** One lab, one stream, one switchover after 2 s; the stream ends `afterMs` after the switchover. */
async function migrateOnce(options: {
  family: 4 | 6; to: Hypervisor; querier: 'hypervisor' | 'router'; pps: number; afterMs: number;
}): Promise<StreamResult> {
  const lab = await McastLab.create({ family: options.family, queryIntervalSec: QUERY_INTERVAL_S, queryResponseSec: QUERY_RESPONSE_S, querier: options.querier });
  try {
    await lab.startStream({ pps: options.pps });
    await sleep(2000);
    await lab.switchover({ to: options.to, pauseMs: PAUSE_MS });
    await sleep(options.afterMs);
    return await lab.stopStream();
  } finally {
    await lab.close();
  }
}

describeAsRoot('the multicast lab (network namespaces, snooping bridges, join-driven router)', () => {
  test('a VM on A gets the stream once it joins: the router forwards after its report', async () => {
    const lab = await McastLab.create({ family: 4, queryIntervalSec: QUERY_INTERVAL_S, queryResponseSec: QUERY_RESPONSE_S, start: 'A' });
    try {
      await lab.startStream({ pps: 1725 });
      await sleep(3000);
      const r = await lab.stopStream();
      console.log(`VM on A, 20 Mbps: ${summary(r)}`);
      expect(Math.abs(r.achievedPps - 1725)).toBeLessThan(1725 * 0.02);
      expect(r.firstSeq).not.toBeNull();
      expect(r.lost).toBeLessThanOrEqual(r.sent * 0.005);
      expect(r.duplicates).toBe(0);
      const forward = lab.routerEvents().find((e) => e.event === 'forward');
      expect(forward).toMatchObject({ group: r.group, downstream: 'netA' });
    } finally {
      await lab.close();
    }
  }, 60_000);

  test('a switchover keeps the VM carrier; the source bridge forgets the port, the destination does not know it', async () => {
    const lab = await McastLab.create({ family: 4, queryIntervalSec: 60, queryResponseSec: QUERY_RESPONSE_S, querier: 'router' });
    try {
      await lab.startStream({ pps: 174 });
      await sleep(1000);
      expect(await lab.mdb('S')).toContainEqual(expect.objectContaining({ port: 'vnet0', grp: '239.70.0.1' }));
      const carrier = await lab.vmCarrierChanges();
      const sw = await lab.switchover({ to: 'B', pauseMs: PAUSE_MS });
      expect(sw.pauseMs).toBeGreaterThanOrEqual(PAUSE_MS);
      expect(sw.pauseMs).toBeLessThan(PAUSE_MS + 100);
      expect((await lab.mdb('S')).filter((e) => e.port === 'vnet0')).toEqual([]);
      // Nothing at all on the fresh port (the NIC plumbing sends no reports of its own).
      expect((await lab.mdb('B')).filter((e) => e.port === 'vnet2')).toEqual([]);
      await lab.switchover({ to: 'A', pauseMs: 50 });
      expect(await lab.vmCarrierChanges()).toBe(carrier);
      expect(lab.vmOn).toBe('A');
      await lab.stopStream();
    } finally {
      await lab.close();
    }
  }, 60_000);

  test('baseline, no agent, S→A: the stream comes back when the VM answers a query (router querier)', async () => {
    const r = await migrateOnce({ family: 4, to: 'A', querier: 'router', pps: 174, afterMs: (QUERY_INTERVAL_S + QUERY_RESPONSE_S) * 1000 + 1500 });
    console.log(`baseline S→A, IPv4, router querier every ${QUERY_INTERVAL_S} s: ${summary(r)}`);
    expect(r.resumed).toBe(true);
    expect(r.interruptionMs).toBeGreaterThan(PAUSE_MS);
    expect(r.interruptionMs).toBeLessThan(PAUSE_MS + (QUERY_INTERVAL_S + QUERY_RESPONSE_S) * 1000 + 500);
    expect(r.duplicates).toBe(0);
  }, 60_000);

  test('baseline, no agent, S→A with the hypervisor bridge as querier: it queries the new port at once (IPv6)', async () => {
    const r = await migrateOnce({ family: 6, to: 'A', querier: 'hypervisor', pps: 174, afterMs: 4000 });
    console.log(`baseline S→A, IPv6, hypervisor querier: ${summary(r)}`);
    expect(r.resumed).toBe(true);
    expect(r.interruptionMs).toBeLessThan(PAUSE_MS + QUERY_RESPONSE_S * 1000 + 500);
  }, 60_000);

  test('baseline, no agent, S→B: the stream never comes back', async () => {
    const r = await migrateOnce({ family: 4, to: 'B', querier: 'hypervisor', pps: 174, afterMs: (QUERY_INTERVAL_S + QUERY_RESPONSE_S) * 1000 });
    console.log(`baseline S→B, IPv4: ${summary(r)}`);
    expect(r.resumed).toBe(false);
    expect(r.switchovers[0].firstAfterUpMs).toBeNull();
  }, 60_000);

  test('close() removes every namespace and process, also after a step threw', async () => {
    const lab = await McastLab.create({ family: 4, queryIntervalSec: QUERY_INTERVAL_S });
    const names = Object.values(lab.ns);
    let pids: number[] = [];
    try {
      await lab.startStream({ pps: 174 });
      pids = [lab.router?.pid ?? 0];
      await lab.exec('vm', 'false', []);
    } catch {
      // the step that failed
    } finally {
      await lab.close();
    }
    for (const name of names) expect(fs.existsSync(`/run/netns/${name}`)).toBe(false);
    for (const pid of pids) expect(isPidAlive(pid)).toBe(false);
    expect(fs.existsSync(lab.dir)).toBe(false);
    await lab.close();
  }, 60_000);
});
