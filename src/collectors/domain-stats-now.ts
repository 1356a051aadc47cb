// A domain's bulk stats record completed by direct per-domain calls, for a
// driver that answers from this process's memory but leaves groups out of
// virConnectGetAllDomainStats (the test driver fills only state.*). Made on
// the calling thread, a call costs 2-3 µs of CPU against ~50 µs through the
// libuv pool, and a domain completed this way is then built like a steady
// QEMU domain (steadyRecord), with no promise at all.
//
// Only for a domain whose configuration is known (cached XML facts): the
// disks to ask come from it. Any failure gives null and leaves the record as
// it was; the domain's ordinary query then makes the calls again and reports
// what failed, with the rules that apply there (a vanished domain, a minor
// failure).

import {
  blockInfoNow,
  blockStatsNow,
  domainInfoNow,
  domainVcpusNow,
  legacyBlockStatsNow,
} from '../libvirt/domain-calls';
import { bulkBlock, type BulkBlock, type DomainStats } from '../libvirt/domain-stats';
import type { DomainXmlFacts } from './domain-xml';
import type { DomainTarget, DriverSupport } from './libvirt-domain';

/**
 * `t.stats` with the missing CPU, memory, vCPU and block values filled in,
 * `t.stats` itself when nothing is missing, or null when a call failed or
 * the block stats API is not learned yet (the ordinary query learns it).
 */
export function statsCompletedNow(t: DomainTarget, facts: DomainXmlFacts, support: DriverSupport): DomainStats | null {
  const s = t.stats;
  if (s.state === null) return null;
  const active = t.id !== -1;
  const needInfo = s.balloonKiB === null || (active && s.cpuTimeNs === null);
  const needVcpus = active && !s.vcpuGroup;
  const needBlocks = s.blockCount === null && facts.disks.length > 0;
  if (!needInfo && !needVcpus && !needBlocks) return s;
  if (needBlocks && active && support.blockStatsFlags === 'unknown') return null;
  try {
    const info = needInfo ? domainInfoNow(t.dom) : null;
    return {
      state: s.state,
      reason: s.reason,
      balloonKiB: info?.memoryKiB ?? s.balloonKiB,
      cpuTimeNs: info?.cpuTimeNs ?? s.cpuTimeNs,
      vcpuGroup: s.vcpuGroup || needVcpus,
      vcpus: needVcpus ? domainVcpusNow(t.dom, facts.maxVcpus) : s.vcpus,
      blockCount: needBlocks ? facts.disks.length : s.blockCount,
      blocks: needBlocks ? blocksNow(t, facts, active, support) : s.blocks,
    };
  } catch {
    return null;
  }
}

/** block.<i>.* for each disk of the XML, in its order; an empty drive has a name and nothing else. */
function blocksNow(t: DomainTarget, facts: DomainXmlFacts, active: boolean, support: DriverSupport): BulkBlock[] {
  const blocks = new Array<BulkBlock>(facts.disks.length);
  for (let i = 0; i < blocks.length; i++) {
    const { target, source } = facts.disks[i];
    if (source === null || target === '') {
      blocks[i] = bulkBlock(target, null, null);
      continue;
    }
    const sizes = blockInfoNow(t.dom, target);
    const counters = !active ? null : support.blockStatsFlags === 'yes' ? blockStatsNow(t.dom, target) : legacyBlockStatsNow(t.dom, target);
    blocks[i] = bulkBlock(target, sizes, counters);
  }
  return blocks;
}
