// What VM-MIB should say about a libvirt domain, computed from virsh's
// answers with the rules README.md lists under "Mapping: libvirt and the host
// → VM-MIB". Deliberately written apart from src/model: a test that called
// the agent's own mapping could not catch a wrong mapping.
import { spawnSync } from 'child_process';
import { toolEnv } from '../harness/process';
import { attrIn, dash, diskBlocks, virsh, virshView, type VirshView } from '../collectors/virsh-oracle';

const INT32_MAX = 2147483647n;

/** Everything virsh says about one domain, plus the host-wide lists it is in. */
export interface VirshDomain {
  name: string;
  uuid: string;
  /** null for an inactive domain (dominfo "Id: -"). */
  id: number | null;
  /** domstate --reason, e.g. "paused" and "user". */
  state: string;
  reason: string;
  managedSave: boolean;
  /** From list --autostart / --no-autostart; null when in neither. */
  autostart: boolean | null;
  /** From list --persistent / --transient; null when in neither. */
  persistent: boolean | null;
  /** domjobinfo reports an active incoming or outgoing migration. */
  migrationJob: boolean;
  view: VirshView;
}

export interface VirshFacts {
  /** UUID → domain. */
  domains: Map<string, VirshDomain>;
  /** `list --all` row count. */
  listed: number;
  /** Date.now() just before the first and just after the last virsh call. */
  startedAt: number;
  endedAt: number;
}

const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter((l) => l !== '');

/** Active domains' disks that have a source: the ones domblkstat answers for. */
export function activeDisks(facts: VirshFacts): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const d of facts.domains.values()) {
    if (d.id === null) continue;
    out.set(d.name, d.view.blklist.filter((row) => dash(row[3]) !== null).map((row) => row[2]));
  }
  return out;
}

/**
 * One read of virsh: lists, per-domain views, and domblkstat for `disks`
 * (domain name → targets; see activeDisks) when given.
 */
export function readVirsh(uri: string, disks: Map<string, string[]> = new Map()): VirshFacts {
  const startedAt = Date.now();
  const [all, names, autostart, noAutostart, persistent, transient, managedSave] = virsh(uri, [
    'list --all',
    'list --all --name',
    'list --all --autostart --name',
    'list --all --no-autostart --name',
    'list --all --persistent --name',
    'list --all --transient --name',
    // --managed-save only marks rows; --with-managed-save filters.
    'list --all --with-managed-save --name',
  ]).map(lines);
  const views = virshView(uri, names, disks);
  const jobs = migrationJobs(uri, names.filter((n) => views.get(n)?.dominfo.get('Id') !== '-'));
  const domains = new Map<string, VirshDomain>();
  for (const name of names) {
    const view = views.get(name)!;
    const info = view.dominfo;
    const m = /^(.*) \((.*)\)$/.exec(view.domstate);
    if (!m) throw new Error(`virsh domstate --reason ${name} printed "${view.domstate}"`);
    const uuid = info.get('UUID')!;
    if (managedSave.includes(name) !== (info.get('Managed save') === 'yes')) {
      throw new Error(`virsh list --with-managed-save and dominfo disagree about ${name}`);
    }
    domains.set(uuid, {
      name,
      uuid,
      id: info.get('Id') === '-' ? null : Number(info.get('Id')),
      state: m[1],
      reason: m[2],
      managedSave: managedSave.includes(name),
      autostart: autostart.includes(name) ? true : noAutostart.includes(name) ? false : null,
      persistent: persistent.includes(name) ? true : transient.includes(name) ? false : null,
      migrationJob: jobs.has(name),
      view,
    });
  }
  return { domains, listed: all.length, startedAt, endedAt: Date.now() };
}

/** Names of domains with an active migration job; none when the driver has no job API. */
function migrationJobs(uri: string, names: string[]): Set<string> {
  const out = new Set<string>();
  for (const name of names) {
    const r = spawnSync('virsh', ['-q', '-c', uri, 'domjobinfo', name], { encoding: 'utf8', env: toolEnv() });
    if (r.status !== 0) {
      if (/not supported/.test(r.stderr)) return out;
      throw new Error(`virsh domjobinfo ${name}: ${r.stderr.trim()}`);
    }
    const type = /^Job type:\s+(.*)$/m.exec(r.stdout)?.[1] ?? 'None';
    const op = /^Operation:\s+(.*)$/m.exec(r.stdout)?.[1] ?? '';
    if (type !== 'None' && /migration/i.test(op)) out.add(name);
  }
  return out;
}

// ------------------------------------------------------------------ tolerances

/** The agent refreshes every second; a value may be this much older than the walk that shows it. */
export const LAG_MS = 3000;

/**
 * "ok" when `actual` can be the oracle's value at some moment between
 * LAG_MS before the first virsh read and the end of the second; otherwise
 * what is wrong. `resolution` covers virsh's rounding (dominfo prints CPU
 * time to 0.1 s, so two reads 100 ms apart may print the same value: the
 * rate estimate allows for it).
 */
export function sampledBetween(actual: number, before: number, after: number, facts: [VirshFacts, VirshFacts], resolution = 0): string {
  const [b, a] = facts;
  const rate = (after - before + 2 * resolution) / Math.max(1, a.startedAt - b.endedAt);
  const lo = before - resolution - rate * (LAG_MS + (b.endedAt - b.startedAt));
  const hi = after + resolution;
  return actual >= lo && actual <= hi ? 'ok' : `${actual} outside [${lo}, ${hi}] (virsh said ${before} then ${after})`;
}

export function inRange(actual: number, lo: number, hi: number): string {
  return actual >= lo && actual <= hi ? 'ok' : `${actual} outside [${lo}, ${hi}]`;
}

// ------------------------------------------------------------------ vmTable

/** VirtualMachineAdminState per README: running(1) suspended(2) paused(3) shutdown(4). */
export function expectedAdminState(d: VirshDomain): number {
  switch (d.state) {
    case 'running':
    case 'idle':
      return 1;
    case 'paused':
      if (['migrating', 'starting up', 'post-copy'].includes(d.reason)) return 1;
      if (d.reason === 'saving') return 2;
      if (d.reason === 'shutting down') return 4;
      return 3;
    case 'in shutdown':
    case 'crashed':
      return 4;
    case 'shut off':
      return d.managedSave || d.reason === 'saved' ? 2 : 4;
    case 'pmsuspended':
      return 2;
    default:
      throw new Error(`no README rule for the admin state of "${d.state} (${d.reason})"`);
  }
}

/** VirtualMachineOperState per README (RFC 7666 numbers). */
export function expectedOperState(d: VirshDomain): number {
  switch (d.state) {
    case 'running':
    case 'idle':
      return d.migrationJob || d.reason === 'post-copy' ? 9 : 4;
    case 'paused':
      if (d.migrationJob || d.reason === 'migrating' || d.reason === 'post-copy') return 9;
      if (d.reason === 'saving') return 5;
      if (d.reason === 'starting up') return 3;
      if (d.reason === 'shutting down') return 10;
      if (d.reason === 'crashed') return 12;
      return 8;
    case 'in shutdown':
      return 10;
    case 'shut off':
      if (d.managedSave || d.reason === 'saved') return 6;
      return d.reason === 'crashed' ? 12 : 11;
    case 'crashed':
      return 12;
    case 'pmsuspended':
      return 6;
    case 'no state':
      return 1;
    default:
      throw new Error(`no README rule for the oper state of "${d.state} (${d.reason})"`);
  }
}

/** libosinfo id from the metadata, else <os><type>. */
export function expectedOsType(xml: string): string {
  const osinfo = /<libosinfo:os id="([^"]+)"/.exec(xml)?.[1] ?? /<libosinfo:os id='([^']+)'/.exec(xml)?.[1];
  const osType = /<os>\s*<type[^>]*>([^<]+)<\/type>/.exec(xml)?.[1];
  if (osinfo === undefined && osType === undefined) throw new Error('dumpxml has neither libosinfo metadata nor <os><type>');
  return (osinfo ?? osType)!;
}

/** <vcpu current='C'>M</vcpu> → { current: C (or M), maximum: M }. */
export function vcpuCounts(xml: string): { current: number; maximum: number } {
  const m = /<vcpu\b([^>]*)>(\d+)<\/vcpu>/.exec(xml);
  if (!m) throw new Error('dumpxml has no <vcpu>');
  const current = /\scurrent='(\d+)'/.exec(m[1])?.[1];
  return { current: Number(current ?? m[2]), maximum: Number(m[2]) };
}

const UNIT_BYTES: Record<string, bigint> = {
  b: 1n, bytes: 1n, KB: 1000n, k: 1024n, KiB: 1024n, MB: 1000n ** 2n, M: 1024n ** 2n, MiB: 1024n ** 2n,
  GB: 1000n ** 3n, G: 1024n ** 3n, GiB: 1024n ** 3n, TB: 1000n ** 4n, T: 1024n ** 4n, TiB: 1024n ** 4n,
};

/** Bytes of an element such as <maxMemory slots='16' unit='KiB'>16777216</maxMemory>; null when absent. */
export function xmlBytes(xml: string, element: string): bigint | null {
  const m = new RegExp(`<${element}\\b([^>]*)>(\\d+)</${element}>`).exec(xml);
  if (!m) return null;
  const unit = /\sunit='([^']+)'/.exec(m[1])?.[1] ?? 'KiB';
  const factor = UNIT_BYTES[unit];
  if (factor === undefined) throw new Error(`unknown unit ${unit} in <${element}>`);
  return BigInt(m[2]) * factor;
}

/** "2097152 KiB" (dominfo) → bytes. */
export function dominfoBytes(text: string | undefined): bigint {
  const m = /^(\d+) KiB$/.exec(text ?? '');
  if (!m) throw new Error(`dominfo memory "${text}" is not "<n> KiB"`);
  return BigInt(m[1]) * 1024n;
}

/**
 * README: a unit of `base` bytes, or a larger power of 1024 times it when a
 * value would not fit an Integer32; values rounded up; null (unknown) → -1.
 */
export function scaled(values: readonly (bigint | null)[], base: bigint): { unit: number; values: number[] } {
  let unit = base;
  const fits = (u: bigint): boolean => values.every((v) => v === null || (v + u - 1n) / u <= INT32_MAX);
  while (!fits(unit)) unit *= 1024n;
  return { unit: Number(unit), values: values.map((v) => (v === null ? -1 : Number((v + unit - 1n) / unit))) };
}

// ------------------------------------------------------------------ vmStorageTable

export interface ExpectedDisk {
  target: string;
  /** vmStorageResourceID. */
  resourceId: string;
  /** The image file whose filesystem is vmStorageParent; null for block, network and empty drives. */
  imageFile: string | null;
  sourceType: number;
  typeString: string;
  access: number;
  mediaType: number;
  mediaString: string;
  capacity: bigint | null;
  allocation: bigint | null;
}

/** Disks of domblklist --details, completed from dumpxml and domblkinfo --all. */
export function expectedDisks(view: VirshView): ExpectedDisk[] {
  const blocks = diskBlocks(view.xml);
  if (blocks.length !== view.blklist.length) throw new Error('dumpxml and domblklist disagree on the number of disks');
  return view.blklist.map(([kind, device, target, listedSource], i) => {
    const block = blocks[i];
    const listed = dash(listedSource);
    const format = attrIn(block, 'driver', 'type');
    let resourceId = listed ?? '';
    if (kind === 'network' && listed !== null) {
      resourceId = `${attrIn(block, 'source', 'protocol')}://${attrIn(block, 'host', 'name')}:${attrIn(block, 'host', 'port')}/${listed}`;
    }
    let sourceType = 2;
    if (kind === 'block') sourceType = 3;
    else if (kind === 'network') sourceType = 6;
    else if (kind === 'file') sourceType = (format ?? 'raw') === 'raw' ? 4 : 5;
    const [infoTarget, capacity, allocation] = view.blkinfo[i];
    if (infoTarget !== target) throw new Error(`domblkinfo row ${i} is ${infoTarget}, domblklist says ${target}`);
    const big = (v: string): bigint | null => (v === '-' ? null : BigInt(v));
    return {
      target,
      resourceId,
      imageFile: (kind === 'file' || kind === 'dir') && listed !== null ? listed : null,
      sourceType,
      typeString: format ?? kind,
      access: block.includes('<readonly/>') || device === 'cdrom' ? 3 : 2,
      mediaType: device === 'disk' || device === 'lun' ? 3 : device === 'cdrom' ? 4 : device === 'floppy' ? 5 : 1,
      mediaString: attrIn(block, 'target', 'bus') ?? '',
      capacity: big(capacity),
      allocation: big(allocation),
    };
  });
}

/**
 * vmStorageParent: the hrStorageIndex (from snmpd's hrStorageTable, by mount
 * point) of the longest mount point holding `file`, or 0 when snmpd does not
 * list that filesystem or there is no file (block, network, empty drive).
 */
export function expectedStorageParent(file: string | null, mountPoints: readonly string[], hrStorage: Map<string, number>): number {
  if (file === null) return 0;
  let best: string | null = null;
  for (const mp of mountPoints) {
    const under = mp === '/' || file === mp || file.startsWith(`${mp}/`);
    if (under && (best === null || mp.length > best.length)) best = mp;
  }
  return best === null ? 0 : hrStorage.get(best) ?? 0;
}

// ------------------------------------------------------------------ vmNetworkTable

export interface ExpectedNic {
  mac: string;
  model: string;
  target: string | null;
  source: string | null;
}

export function expectedNics(view: VirshView): ExpectedNic[] {
  return view.iflist.map(([target, , source, model, mac]) => ({
    mac: mac.toLowerCase(),
    model: dash(model) ?? '',
    target: dash(target),
    source: dash(source),
  }));
}

/**
 * README: vmNetworkIfIndex is the ifIndex of the host-side interface (0 when
 * absent); vmNetworkParent the ifIndex of its bridge or lower device, else of
 * the <source> bridge/device, else 0. `parentOf` names an interface's master
 * or lower device.
 */
export function expectedNicIndexes(
  nic: ExpectedNic,
  ifIndexByName: Map<string, number>,
  parentOf: (name: string) => string | null,
): { ifIndex: number; parent: number } {
  const ifIndex = nic.target === null ? 0 : ifIndexByName.get(nic.target) ?? 0;
  const upper = ifIndex !== 0 ? parentOf(nic.target!) : null;
  const parentName = upper ?? nic.source;
  return { ifIndex, parent: parentName === null ? 0 : ifIndexByName.get(parentName) ?? 0 };
}
