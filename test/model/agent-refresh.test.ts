import { VmmAgent, DomainSource } from '../../src/agent';
import { DEFAULTS } from '../../src/config';
import { VmIndexStore } from '../../src/state/index-store';
import type { DomainRecord } from '../../src/snapshot';
import { domainRecord } from '../harness/records';
import { recordingLog } from '../harness/log';
import { parseOid, ValueType } from '../../agentx';

const domain = (curVcpus: number): DomainRecord => domainRecord({ id: 1, curVcpus, maxVcpus: 2, vcpus: [], disks: [], nics: [] });

describe('VmmAgent refresh', () => {
  test('a refresh that throws is logged once and the previous view keeps being served', async () => {
    let next: DomainRecord[] = [domain(2)];
    const source: DomainSource = {
      name: 'libvirt',
      hypervisorInfo: () => null,
      collect: async () => next,
      lastKnown: () => next,
      onEvent: () => undefined,
      close: async () => undefined,
    };
    const { lines, log } = recordingLog();
    const config = { ...DEFAULTS, procRoot: '/nonexistent/proc', sysRoot: '/nonexistent/sys', mountsFile: '/nonexistent/mtab' };
    const agent = new VmmAgent({ config, domains: source, store: VmIndexStore.memory(log), log });
    await agent.refresh();
    const curCpus = parseOid('1.3.6.1.2.1.236.1.4.1.9.1');
    expect(agent.view?.get(curCpus)).toEqual({ type: ValueType.Integer, value: 2 });
    // A vCPU count no Integer32 can hold: building the view fails.
    next = [domain(2 ** 40)];
    await expect(agent.refresh()).resolves.toBeUndefined();
    expect(lines.filter((l) => l.startsWith('error: refresh failed'))).toHaveLength(1);
    expect(agent.view?.get(curCpus)).toEqual({ type: ValueType.Integer, value: 2 });
    await agent.stop();
  });

  test('domains an event named are asked again within seconds when that refresh could not reach libvirt', async () => {
    const asked: (string[] | 'all')[] = [];
    let failing = true;
    let onEvent: (uuid: string) => void = () => undefined;
    const records = [domain(2)];
    const source: DomainSource = {
      name: 'libvirt',
      hypervisorInfo: () => null,
      collect: async (only) => {
        asked.push(only === undefined ? 'all' : [...only]);
        if (only !== undefined && failing) throw new Error('libvirt has not answered the previous domain list yet');
        return records;
      },
      lastKnown: () => records,
      onEvent: (cb) => { onEvent = cb; },
      close: async () => undefined,
    };
    const { log } = recordingLog();
    // The regular refresh is an hour away: only the retry can ask again.
    const config = { ...DEFAULTS, refreshSeconds: 3600, procRoot: '/nonexistent/proc', sysRoot: '/nonexistent/sys', mountsFile: '/nonexistent/mtab' };
    const agent = new VmmAgent({ config, domains: source, store: VmIndexStore.memory(log), log });
    await agent.start();
    onEvent(records[0].uuid);
    const until = Date.now() + 5000;
    while (asked.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(asked).toEqual(['all', [records[0].uuid]]);
    failing = false;
    while (asked.length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(asked).toEqual(['all', [records[0].uuid], [records[0].uuid]]);
    // Answered: no further retry.
    await new Promise((r) => setTimeout(r, 1500));
    expect(asked).toHaveLength(3);
    await agent.stop();
  });
});
