// The agent's own rules, with a fake domain source and a fake clock: the
// libvirt grace period, the notification baseline across an outage, the
// notification switches as SNMP SETs, and a SET that lands during a refresh.
import { VmmAgent, DomainSource } from '../../src/agent';
import { DEFAULTS } from '../../src/config';
import type { Notification } from '../../src/notifications';
import { VmIndexStore } from '../../src/state/index-store';
import type { DomainRecord } from '../../src/snapshot';
import { formatOid, parseOid, ResponseError, ValueType } from '../../agentx';
import { domainRecord } from '../harness/records';
import { recordingLog } from '../harness/log';
import * as model from '../../src/model/vm-mib';

const VM_MIB = '1.3.6.1.2.1.236';
const operStateOf = (vmIndex: number) => parseOid(`${VM_MIB}.1.4.1.6.${vmIndex}`);
const perVmSwitch = parseOid(`${VM_MIB}.1.9.0`);
const OPER = { unknown: 1, running: 4, paused: 8 } as const;
const VIR_DOMAIN_PAUSED = 3;
const GRACE_S = 30;

/** A domain source whose answers the test sets; `hold()` makes the next collect() wait for `release()`. */
class FakeDomains implements DomainSource {
  readonly name = 'libvirt';
  domains: DomainRecord[] = [domainRecord({ disks: [], nics: [] })];
  down = false;
  private last: DomainRecord[] = [];
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  collecting = false;

  hypervisorInfo() { return { type: 'TEST', version: null, libvirtVersion: '9.0.0', uri: 'test:///fake' }; }
  async collect(): Promise<DomainRecord[]> {
    this.collecting = true;
    try {
      if (this.gate) await this.gate;
    } finally {
      this.collecting = false;
    }
    if (this.down) throw new Error('connection lost');
    this.last = this.domains;
    return this.domains;
  }
  lastKnown(): DomainRecord[] { return this.last; }
  onEvent(): void {}
  async close(): Promise<void> {}
  hold(): void { this.gate = new Promise((resolve) => { this.open = resolve; }); }
  release(): void { this.open?.(); this.gate = null; }
}

function lab() {
  let now = 1_900_000_000_000;
  const domains = new FakeDomains();
  const { lines, log } = recordingLog();
  const config = {
    ...DEFAULTS, libvirtGraceSeconds: GRACE_S,
    procRoot: '/nonexistent/proc', sysRoot: '/nonexistent/sys', mountsFile: '/nonexistent/mtab',
  };
  const agent = new VmmAgent({ config, domains, store: VmIndexStore.memory(log), log, clock: () => now });
  const sent: Notification[] = [];
  agent.setNotifier(async (n) => { sent.push(n); });
  return {
    agent, domains, lines, sent,
    advance: (ms: number) => { now += ms; },
    operState: () => agent.view?.get(operStateOf(1)),
    trapNames: () => sent.map((n) => formatOid(n.trapOid)),
  };
}

const ctx = (transactionId: number) => ({ sessionId: 1, transactionId, packetId: transactionId });

describe('VmmAgent', () => {
  test('libvirt away: last values for the grace period, then unknown(1), fresh values once back', async () => {
    const l = lab();
    await l.agent.refresh();
    expect(l.operState()).toEqual({ type: ValueType.Integer, value: OPER.running });
    l.domains.down = true;
    l.advance(1000);
    await l.agent.refresh();
    l.advance(GRACE_S * 1000 - 1);
    await l.agent.refresh();
    expect(l.operState()).toEqual({ type: ValueType.Integer, value: OPER.running });
    l.advance(1);
    await l.agent.refresh();
    expect(l.operState()).toEqual({ type: ValueType.Integer, value: OPER.unknown });
    expect(l.lines.filter((x) => x.includes('libvirt unavailable'))).toHaveLength(1);
    l.domains.down = false;
    l.advance(1000);
    await l.agent.refresh();
    expect(l.operState()).toEqual({ type: ValueType.Integer, value: OPER.running });
    expect(l.lines.filter((x) => x.includes('libvirt is back'))).toHaveLength(1);
    await l.agent.stop();
  });

  test('a change while libvirt was away is notified once it is back, from the last known state; nothing during the outage', async () => {
    const l = lab();
    await l.agent.refresh();
    expect(l.sent).toEqual([]);
    l.domains.down = true;
    for (let i = 0; i < 3; i++) {
      l.advance(GRACE_S * 1000);
      await l.agent.refresh();
    }
    expect(l.sent).toEqual([]);
    l.domains.down = false;
    l.domains.domains = [domainRecord({ disks: [], nics: [], state: VIR_DOMAIN_PAUSED, reason: 1 })];
    l.advance(1000);
    await l.agent.refresh();
    expect(l.trapNames()).toEqual([`${VM_MIB}.0.4`]);
    // The varbinds carry the previous vmOperState: running, as last seen before the outage.
    expect(l.sent[0].varbinds[2]).toMatchObject({ type: ValueType.Integer, value: OPER.running });
    await l.agent.stop();
  });

  test('vmPerVMNotificationsEnabled set to false(2) by SET: served at once, and state changes send nothing', async () => {
    const l = lab();
    await l.agent.refresh();
    const r = l.agent.responder;
    expect(r.testSet([{ oid: perVmSwitch, type: ValueType.Integer, value: 2 }], ctx(1)).error).toBe(ResponseError.NoError);
    expect(r.commitSet(ctx(1)).error).toBe(ResponseError.NoError);
    r.cleanupSet(ctx(1));
    expect(l.agent.view?.get(perVmSwitch)).toEqual({ type: ValueType.Integer, value: 2 });
    l.domains.domains = [domainRecord({ disks: [], nics: [], state: VIR_DOMAIN_PAUSED, reason: 1 })];
    await l.agent.refresh();
    expect(l.operState()).toEqual({ type: ValueType.Integer, value: OPER.paused });
    expect(l.sent).toEqual([]);
    // Undo (a later varbind of the same SET failed) puts the old value back.
    expect(r.testSet([{ oid: perVmSwitch, type: ValueType.Integer, value: 1 }], ctx(2)).error).toBe(ResponseError.NoError);
    r.commitSet(ctx(2));
    r.undoSet(ctx(2));
    r.cleanupSet(ctx(2));
    expect(l.agent.view?.get(perVmSwitch)).toEqual({ type: ValueType.Integer, value: 2 });
    await l.agent.stop();
  });

  test('a SET that lands while a refresh is collecting is not lost when that refresh publishes', async () => {
    const l = lab();
    await l.agent.refresh();
    l.domains.hold();
    const refreshing = l.agent.refresh();
    while (!l.domains.collecting) await new Promise((resolve) => setImmediate(resolve));
    const r = l.agent.responder;
    expect(r.testSet([{ oid: perVmSwitch, type: ValueType.Integer, value: 2 }], ctx(1)).error).toBe(ResponseError.NoError);
    r.commitSet(ctx(1));
    r.cleanupSet(ctx(1));
    l.domains.release();
    await refreshing;
    expect(l.agent.view?.get(perVmSwitch)).toEqual({ type: ValueType.Integer, value: 2 });
    await l.agent.stop();
  });

  test('a SET that lands while the view is being built is not lost either', async () => {
    const l = lab();
    await l.agent.refresh();
    const r = l.agent.responder;
    let setDuringBuild = false;
    const build = jest.spyOn(model, 'vmMibView').mockImplementationOnce(async (...args) => {
      // The SET arrives after the refresh took its model state, before it publishes.
      setDuringBuild = true;
      expect(r.testSet([{ oid: perVmSwitch, type: ValueType.Integer, value: 2 }], ctx(1)).error).toBe(ResponseError.NoError);
      r.commitSet(ctx(1));
      r.cleanupSet(ctx(1));
      build.mockRestore();
      return model.vmMibView(...args);
    });
    await l.agent.refresh();
    expect(setDuringBuild).toBe(true);
    expect(l.agent.view?.get(perVmSwitch)).toEqual({ type: ValueType.Integer, value: 2 });
    await l.agent.stop();
  });
});
