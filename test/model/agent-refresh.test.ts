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
});
