// Live migration watched through VMM-AGENTX-MIB, on real daemons only: two
// rootless qemu:///session libvirtds under two users (test/harness/
// migration-lab.ts) move the churn guest (a TCG guest that keeps dirtying
// memory), one vmm-agentx watches each daemon through its own snmpd, and each
// snmpd sends its notifications to its own snmptrapd. In order: an aborted
// migration (cancelled), seen through libvirt's events alone (the source
// agent's own look at jobs comes once an hour); one whose destination cannot
// be reached (failed), which sends no event and is seen by an agent that
// looks at jobs every second; and one held in progress, then released, that
// completes — its figures compared with `virsh domjobinfo --completed`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AgentProcess, requireBuiltCli, startAgent } from '../harness/agent';
import { JOB_TYPE, MigrationLab, migrationMissing, Side, startMigrationLab } from '../harness/migration-lab';
import { pollUntil } from '../harness/poll';
import { describeUnless, firstReason, missingTools } from '../harness/prereq';
import { parseVarbindLines, snmpget, snmpwalk, SnmpVarbindLine } from '../harness/snmp-tools';
import { SnmpdInstance, startSnmpd } from '../harness/snmpd';
import { startSnmptrapd, TrapReceiver } from '../harness/snmptrapd';

const describeWithLab = describeUnless(firstReason(migrationMissing(), missingTools('snmpd', 'snmptrapd', 'snmpget')));

const VM_MIB = '.1.3.6.1.2.1.236';
const VMM = '.1.3.6.1.4.1.8072.9999.9999.7666';
const SNMP_TRAP_OID = '.1.3.6.1.6.3.1.1.4.1.0';
const vmColumn = (column: number, vmIndex: number): string => `${VM_MIB}.1.4.1.${column}.${vmIndex}`;
const mig = (column: number, vmIndex: number): string => `${VMM}.1.1.1.${column}.${vmIndex}`;
const C = {
  jobState: 1, direction: 2, peer: 3, elapsed: 4, dataTotal: 5, dataProcessed: 6, dataRemaining: 7, memoryTotal: 8,
  dirtyRate: 11, iteration: 12, expectedDowntime: 13, lastResult: 14, lastDirection: 15, lastEnded: 16,
  lastTotalTime: 17, lastDowntime: 18, lastSetupTime: 19, lastDataTransferred: 20,
} as const;
const JOB = { none: '1', active: '2', completed: '3', failed: '4', cancelled: '5' } as const;
const DIRECTION = { none: '1', outgoing: '2', incoming: '3' } as const;
const OPER = { running: '4', migrating: '9', shutdown: '11' } as const;
const TRAP = {
  vmMigrating: `${VM_MIB}.0.8`,
  started: `${VMM}.0.1`,
  completed: `${VMM}.0.2`,
  failed: `${VMM}.0.3`,
} as const;

interface Watcher {
  snmpd: SnmpdInstance;
  traps: TrapReceiver;
  agent: AgentProcess;
}

function report(line: string): void {
  process.stdout.write(`migration: ${line}\n`);
}

/** User and system CPU of a process so far, in ms (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

beforeAll(() => requireBuiltCli());

describeWithLab('VMM-AGENTX-MIB through a real live migration (two session libvirtds, TCG guest)', () => {
  let lab: MigrationLab;
  const w = {} as Record<Side, Watcher>;

  async function get(side: Side, oids: string[]): Promise<Map<string, SnmpVarbindLine>> {
    const r = await snmpget(w[side].snmpd, oids);
    return new Map(r.varbinds.map((v) => [v.oid, v]));
  }

  async function value(side: Side, oid: string): Promise<string> {
    return (await get(side, [oid])).get(oid)?.value ?? '';
  }

  /** `--config FILE` args for an agent whose configuration file holds `lines`. */
  function configArgs(name: string, lines: string): string[] {
    const file = path.join(lab.labDir, `${name}.conf`);
    fs.writeFileSync(file, `${lines}\n`);
    return ['--config', file];
  }

  /** The vmIndex of the guest in this side's vmTable, once it is there. */
  async function vmIndexOf(side: Side, timeoutMs = 20_000): Promise<number> {
    const { value: index } = await pollUntil(`${lab.guestName} in the ${side} agent's vmTable`, async () => {
      const names = await snmpwalk(w[side].snmpd, `${VM_MIB}.1.4.1.2`);
      const row = names.varbinds.find((v) => v.value === lab.guestName);
      return row ? Number(row.oid.split('.').pop()) : 0;
    }, (i) => i > 0, timeoutMs, 100);
    return index;
  }

  /** Traps received on `side` since `from` (an index into its list) whose snmpTrapOID is `trapOid`. */
  function trapsOf(side: Side, trapOid: string, from = 0): Map<string, SnmpVarbindLine>[] {
    return w[side].traps.traps().slice(from)
      .map((text) => new Map(parseVarbindLines(text).map((v) => [v.oid, v])))
      .filter((vbs) => vbs.get(SNMP_TRAP_OID)?.value === trapOid);
  }

  async function waitTrap(side: Side, trapOid: string, from: number, timeoutMs = 20_000): Promise<Map<string, SnmpVarbindLine>> {
    const { value: found } = await pollUntil(`trap ${trapOid} at the ${side} snmptrapd`,
      () => trapsOf(side, trapOid, from)[0], (t) => t !== undefined, timeoutMs, 50);
    return found as Map<string, SnmpVarbindLine>;
  }

  beforeAll(async () => {
    lab = await startMigrationLab();
    for (const side of ['src', 'dst'] as const) {
      const traps = await startSnmptrapd();
      const snmpd = await startSnmpd({ trapSink: { port: traps.port } });
      const stateDir = fs.mkdtempSync(path.join(lab.labDir, `agent-${side}-`));
      // The source agent looks at a job unprompted once an hour: a migration it sees, it saw by its events.
      const extraArgs = side === 'src' ? configArgs('src-events-only', 'libvirt-job-poll 3600') : [];
      const agent = await startAgent(snmpd, { libvirtUri: lab.uris[side], refreshSeconds: 1, stateDir, extraArgs });
      w[side] = { snmpd, traps, agent };
    }
    report(`lab up in ${lab.timings.totalMs} ms`);
  }, 180_000);

  afterAll(async () => {
    for (const side of ['src', 'dst'] as const) {
      await w[side]?.agent.stop();
      await w[side]?.snmpd.dispose();
      await w[side]?.traps.stop();
    }
    await lab?.dispose();
  }, 120_000);

  /** The source agent's CPU per second with no migration (its refreshes only), to compare with the sampling figure. */
  let idleCpuPerSecond = 0;

  test('an aborted migration reads cancelled, with vmmMigrationFailed', async () => {
    const vm = await vmIndexOf('src');
    expect(await value('src', mig(C.jobState, vm))).toBe(JOB.none);
    const idleFrom = cpuMs(w.src.agent.proc.pid);
    const idleT0 = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    idleCpuPerSecond = (cpuMs(w.src.agent.proc.pid) - idleFrom) / ((Date.now() - idleT0) / 1000);
    const mark = w.src.traps.traps().length;
    const t0 = Date.now();
    const run = await lab.migrate({ bandwidth: 40 });
    // Its first iteration event, sent as the migration starts, is what shows it.
    await pollUntil('the source agent to show the job', () => value('src', mig(C.jobState, vm)), (v) => v === JOB.active, 20_000, 50);
    const seenMs = Date.now() - t0;
    report(`the source agent showed the migration active ${seenMs} ms after virsh migrate was started`);
    expect(seenMs).toBeLessThan(10_000);
    // The agent's own samples show the job moving memory before it is aborted.
    await pollUntil('the source agent to show data moving', () => value('src', mig(C.dataProcessed, vm)),
      (v) => Number(v) > 0, 20_000, 100);
    expect(await value('src', mig(C.jobState, vm))).toBe(JOB.active);
    expect(await value('src', mig(C.direction, vm))).toBe(DIRECTION.outgoing);
    expect((await lab.abort()).exitCode).toBe(0);
    expect((await run.done).ok).toBe(false);
    await pollUntil('cancelled(5)', () => value('src', mig(C.lastResult, vm)), (v) => v === JOB.cancelled, 20_000, 100);
    const row = await get('src', [mig(C.jobState, vm), mig(C.direction, vm), mig(C.lastDirection, vm), mig(C.lastDowntime, vm),
      vmColumn(6, vm)]);
    expect(row.get(mig(C.jobState, vm))?.value).toBe(JOB.cancelled);
    expect(row.get(mig(C.direction, vm))?.value).toBe(DIRECTION.none);
    expect(row.get(mig(C.lastDirection, vm))?.value).toBe(DIRECTION.outgoing);
    expect(row.get(mig(C.lastDowntime, vm))?.value).toBe('0');
    expect(row.get(vmColumn(6, vm))?.value).toBe(OPER.running);
    const trap = await waitTrap('src', TRAP.failed, mark);
    expect(trap.get(vmColumn(2, vm))?.value).toBe(lab.guestName);
    expect(trap.get(mig(C.lastResult, vm))?.value).toBe(JOB.cancelled);
    await waitTrap('src', TRAP.started, mark);
  }, 120_000);

  test('a migration whose destination cannot be reached reads failed, with vmmMigrationFailed', async () => {
    // No event comes of this job: an agent sees it only by looking at jobs, here every second.
    const stateDir = w.src.agent.stateDir;
    await w.src.agent.stop();
    w.src.agent = await startAgent(w.src.snmpd, {
      libvirtUri: lab.uris.src, refreshSeconds: 1, stateDir, extraArgs: configArgs('src-job-poll', 'libvirt-job-poll 1'),
    });
    const vm = await vmIndexOf('src');
    const mark = w.src.traps.traps().length;
    const run = await lab.migrateWithPortTaken({ bandwidth: 40 });
    // The source job lives for 2-3 s without moving any memory.
    await pollUntil('the source agent to show the job', () => value('src', mig(C.jobState, vm)), (v) => v === JOB.active, 20_000, 100);
    expect((await run.done).ok).toBe(false);
    await pollUntil('failed(4)', () => value('src', mig(C.lastResult, vm)), (v) => v === JOB.failed, 20_000, 100);
    const trap = await waitTrap('src', TRAP.failed, mark);
    expect(trap.get(mig(C.lastResult, vm))?.value).toBe(JOB.failed);
    expect(await value('src', vmColumn(6, vm))).toBe(OPER.running);
  }, 120_000);

  test('a held migration shows its progress; once released it completes with the figures virsh reports, on both sides', async () => {
    const vm = await vmIndexOf('src');
    const srcMark = w.src.traps.traps().length;
    const dstMark = w.dst.traps.traps().length;
    const run = await lab.migrate({ bandwidth: 40, hold: true });

    // During the job: active/outgoing, data processed growing between two reads, a dirty rate above 0.
    await pollUntil('a dirty rate above 0 (from the second pass on)', () => value('src', mig(C.dirtyRate, vm)),
      (v) => Number(v) > 0, 30_000, 200);
    const cols = [C.jobState, C.direction, C.elapsed, C.dataTotal, C.dataProcessed, C.dataRemaining, C.memoryTotal,
      C.dirtyRate, C.iteration, C.expectedDowntime].map((c) => mig(c, vm));
    const first = await get('src', [...cols, vmColumn(6, vm)]);
    const cpuBefore = cpuMs(w.src.agent.proc.pid);
    const t0 = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const second = await get('src', cols);
    const cpuPerSecond = (cpuMs(w.src.agent.proc.pid) - cpuBefore) / ((Date.now() - t0) / 1000);
    const n = (m: Map<string, SnmpVarbindLine>, c: number): number => Number(m.get(mig(c, vm))?.value);
    report(`during: elapsed ${n(first, C.elapsed)} → ${n(second, C.elapsed)} ms, data processed ${n(first, C.dataProcessed)} → ` +
      `${n(second, C.dataProcessed)} of ${n(second, C.dataTotal)} B, dirty rate ${n(second, C.dirtyRate)} pages/s, ` +
      `iteration ${n(second, C.iteration)}, expected downtime ${n(second, C.expectedDowntime)} ms; ` +
      `source agent CPU ${cpuPerSecond.toFixed(1)} ms per second while sampling (${idleCpuPerSecond.toFixed(1)} without a ` +
      'migration; both with a refresh every second)');
    expect(first.get(mig(C.jobState, vm))?.value).toBe(JOB.active);
    expect(first.get(mig(C.direction, vm))?.value).toBe(DIRECTION.outgoing);
    expect(first.get(vmColumn(6, vm))?.value).toBe(OPER.migrating);
    expect(n(second, C.dataProcessed)).toBeGreaterThan(n(first, C.dataProcessed));
    expect(n(second, C.elapsed)).toBeGreaterThan(n(first, C.elapsed));
    expect(n(second, C.dirtyRate)).toBeGreaterThan(0);
    expect(n(second, C.dataTotal)).toBeGreaterThan(n(second, C.dataRemaining));
    const vmMigrating = await waitTrap('src', TRAP.vmMigrating, srcMark);
    expect(vmMigrating.get(vmColumn(2, vm))?.value).toBe(lab.guestName);
    const started = await waitTrap('src', TRAP.started, srcMark);
    expect(started.get(mig(C.direction, vm))?.value).toBe(DIRECTION.outgoing);

    // The destination agent sees the VM arriving: incoming, active.
    const dvm = await vmIndexOf('dst');
    await pollUntil('incoming(3) at the destination', () => value('dst', mig(C.direction, dvm)),
      (v) => v === DIRECTION.incoming, 20_000, 100);
    expect(await value('dst', mig(C.jobState, dvm))).toBe(JOB.active);
    expect(await value('dst', vmColumn(6, dvm))).toBe(OPER.migrating);
    expect((await waitTrap('dst', TRAP.started, dstMark)).get(mig(C.direction, dvm))?.value).toBe(DIRECTION.incoming);

    await lab.release();
    const result = await run.done;
    expect(result.ok).toBe(true);

    // After: the last migration equals what virsh domjobinfo --completed reports.
    const virshSrc = await lab.completedStats('src');
    expect(virshSrc.type).toBe(JOB_TYPE.completed);
    await pollUntil('completed(3) at the source', () => value('src', mig(C.lastResult, vm)), (v) => v === JOB.completed, 30_000, 100);
    const last = await get('src', [C.jobState, C.lastDirection, C.lastTotalTime, C.lastDowntime, C.lastSetupTime,
      C.lastDataTransferred, C.lastEnded].map((c) => mig(c, vm)));
    const agentFigures = {
      totalTime: n(last, C.lastTotalTime), downtime: n(last, C.lastDowntime), setupTime: n(last, C.lastSetupTime),
      data: n(last, C.lastDataTransferred),
    };
    const virshFigures = {
      totalTime: virshSrc.stats.time_elapsed, downtime: virshSrc.stats.downtime, setupTime: virshSrc.stats.setup_time,
      data: virshSrc.stats.data_processed,
    };
    report(`completed: agent ${JSON.stringify(agentFigures)}; virsh domjobinfo --completed ${JSON.stringify(virshFigures)}`);
    expect(agentFigures).toEqual(virshFigures);
    expect(last.get(mig(C.jobState, vm))?.value).toBe(JOB.completed);
    expect(last.get(mig(C.lastDirection, vm))?.value).toBe(DIRECTION.outgoing);
    expect(Number(/\((\d+)\)/.exec(last.get(mig(C.lastEnded, vm))?.value ?? '')?.[1])).toBeGreaterThan(0);
    // The source keeps the domain defined (persistent), shut off.
    expect(await value('src', vmColumn(6, vm))).toBe(OPER.shutdown);
    const completed = await waitTrap('src', TRAP.completed, srcMark);
    expect(Number(completed.get(mig(C.lastTotalTime, vm))?.value)).toBe(virshFigures.totalTime);
    expect(Number(completed.get(mig(C.lastDowntime, vm))?.value)).toBe(virshFigures.downtime);
    expect(Number(completed.get(mig(C.lastDataTransferred, vm))?.value)).toBe(virshFigures.data);

    // The destination: running, the incoming migration completed with its own completed statistics.
    await pollUntil('running(4) at the destination', () => value('dst', vmColumn(6, dvm)), (v) => v === OPER.running, 20_000, 100);
    await pollUntil('completed(3) at the destination', () => value('dst', mig(C.lastResult, dvm)),
      (v) => v === JOB.completed, 20_000, 100);
    const virshDst = await lab.completedStats('dst');
    expect(await value('dst', mig(C.lastDirection, dvm))).toBe(DIRECTION.incoming);
    expect(Number(await value('dst', mig(C.lastDowntime, dvm)))).toBe(virshDst.stats.downtime);
    expect(Number(await value('dst', mig(C.lastDataTransferred, dvm)))).toBe(virshDst.stats.data_processed);
    expect(await value('dst', mig(C.direction, dvm))).toBe(DIRECTION.none);
    await waitTrap('dst', TRAP.completed, dstMark);

    // The last migration survives an agent restart (state dir).
    const stateDir = w.src.agent.stateDir;
    await w.src.agent.stop();
    w.src.agent = await startAgent(w.src.snmpd, { libvirtUri: lab.uris.src, refreshSeconds: 1, stateDir });
    await pollUntil('the restarted agent to serve the last migration', () => value('src', mig(C.lastTotalTime, vm)),
      (v) => Number(v) === virshFigures.totalTime, 20_000, 100);
    expect(await value('src', mig(C.lastResult, vm))).toBe(JOB.completed);
  }, 240_000);
});
