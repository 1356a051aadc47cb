// Pure parsing of libvirt domain XML (https://libvirt.org/formatdomain.html)
// into the configuration facts a DomainRecord needs. No libvirt calls here:
// the collector supplies the XML (virDomainGetXMLDesc) and merges runtime
// values on top.

import { XMLParser } from 'fast-xml-parser';
import type { DiskRecord, NicRecord } from '../snapshot';
import { sharedNumberList, sharedPins, sharedWord } from './interner';

/** The XML-derived part of a disk; runtime sizes and counters come from libvirt calls. */
export type XmlDisk = Pick<DiskRecord, 'target' | 'sourceKind' | 'device' | 'format' | 'source' | 'readonly' | 'bus'>;

export interface DomainXmlFacts {
  name: string;
  /** Lowercase 8-4-4-4-12 text. */
  uuid: string;
  /** libosinfo OS id (e.g. "http://debian.org/debian/12") if present, else <os><type> (e.g. "hvm"). */
  osType: string;
  curVcpus: number;
  maxVcpus: number;
  /** vCPU ids online in this definition: <vcpus><vcpu enabled='yes'> if listed, else 0..curVcpus-1. */
  onlineVcpus: readonly number[];
  /** <memory>, <currentMemory> (null if absent), <maxMemory> (null if absent); all in KiB. */
  memoryKiB: bigint;
  currentMemoryKiB: bigint | null;
  hotplugMemoryKiB: bigint | null;
  /** <cputune><vcpupin vcpu=N cpuset=...>: element N is vCPU N's host CPUs, null where it has no <vcpupin>. */
  vcpuPins: readonly (readonly number[] | null)[];
  /** <vcpu cpuset=...>: the default for vCPUs without their own <vcpupin>; null if absent. */
  defaultCpuset: readonly number[] | null;
  /** <vcpu placement='auto'>: numad chooses the CPUs at start, so the XML cannot tell. */
  placementAuto: boolean;
  disks: XmlDisk[];
  nics: NicRecord[];
}

export class DomainXmlError extends Error {
  override readonly name = 'DomainXmlError';
}

const LIBOSINFO_NS = 'http://libosinfo.org/xmlns/libvirt/domain/1.0';

// Every element becomes an object (text under '#text', attributes under '@_'),
// and no value is converted: "0-3" or a MAC address must stay text.
const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  textNodeName: '#text',
  alwaysCreateTextNode: true,
  parseTagValue: false,
  parseAttributeValue: false,
  ignoreDeclaration: true,
  ignorePiTags: true,
  trimValues: true,
});

interface XmlNode {
  [key: string]: XmlNode | XmlNode[] | string | undefined;
}

function children(node: XmlNode | undefined, name: string): XmlNode[] {
  const v = node?.[name];
  if (v === undefined || typeof v === 'string') return [];
  return Array.isArray(v) ? v : [v];
}
const first = (node: XmlNode | undefined, name: string): XmlNode | undefined => children(node, name)[0];
function attr(node: XmlNode | undefined, name: string): string | undefined {
  const v = node?.[`@_${name}`];
  return typeof v === 'string' ? detached(v) : undefined;
}
/** attr() for enumerations and names that many domains repeat ("virtio", "qcow2", "br0"). */
function wordAttr(node: XmlNode | undefined, name: string): string | undefined {
  const v = attr(node, name);
  return v === undefined ? undefined : sharedWord(v);
}
function text(node: XmlNode | undefined): string | undefined {
  const v = node?.['#text'];
  return typeof v === 'string' ? detached(v) : undefined;
}

/**
 * A copy sharing no memory with the document. V8 keeps a substring of 13 or
 * more characters as a slice of its parent, so one disk path kept in the
 * facts would keep the whole XML text alive: 16 MB at 10,000 VMs (measured
 * in a heap snapshot).
 */
function detached(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

/**
 * A string built by concatenation as one flat string: V8 keeps a template
 * result as a tree of its parts (a "cons string", ~100 bytes for a network
 * disk URI) until something flattens it, and cached facts live long.
 */
function flat(s: string | null): string | null {
  return s === null ? null : detached(s);
}

export function parseDomainXml(xml: string): DomainXmlFacts {
  let doc: XmlNode;
  try {
    doc = parser.parse(xml) as XmlNode;
  } catch (err) {
    throw new DomainXmlError(`domain XML is not well-formed: ${err instanceof Error ? err.message : String(err)}`);
  }
  const domain = first(doc, 'domain');
  if (domain === undefined) throw new DomainXmlError('domain XML has no <domain> root element');
  const name = text(first(domain, 'name'));
  const uuid = text(first(domain, 'uuid'));
  if (!name || !uuid) throw new DomainXmlError('domain XML lacks <name> or <uuid>');

  const vcpu = first(domain, 'vcpu');
  const maxVcpus = parseCount(text(vcpu) ?? '1', '<vcpu>');
  const curVcpus = attr(vcpu, 'current') !== undefined ? parseCount(attr(vcpu, 'current')!, '<vcpu current>') : maxVcpus;
  const cpusetText = attr(vcpu, 'cpuset');

  const memory = first(domain, 'memory');
  const currentMemory = first(domain, 'currentMemory');
  const maxMemory = first(domain, 'maxMemory');
  if (memory === undefined) throw new DomainXmlError('domain XML lacks <memory>');

  return {
    name,
    uuid: uuid.toLowerCase(),
    osType: sharedWord(libosinfoId(domain) ?? text(first(first(domain, 'os'), 'type')) ?? ''),
    curVcpus,
    maxVcpus,
    onlineVcpus: sharedNumberList(onlineVcpus(domain, curVcpus)),
    memoryKiB: toKiB(text(memory) ?? '', attr(memory, 'unit')),
    currentMemoryKiB: currentMemory ? toKiB(text(currentMemory) ?? '', attr(currentMemory, 'unit')) : null,
    hotplugMemoryKiB: maxMemory ? toKiB(text(maxMemory) ?? '', attr(maxMemory, 'unit')) : null,
    vcpuPins: vcpuPins(domain, maxVcpus),
    defaultCpuset: cpusetText !== undefined ? sharedNumberList(parseCpuset(cpusetText)) : null,
    placementAuto: attr(vcpu, 'placement') === 'auto',
    disks: children(first(domain, 'devices'), 'disk').map(parseDisk),
    nics: children(first(domain, 'devices'), 'interface').map(parseInterface),
  };
}

/**
 * The pinning the XML gives vCPU `id`: its <vcpupin>, else <vcpu cpuset>,
 * else every host CPU; null when numad places the domain (unknown until it runs).
 */
export function xmlAffinity(facts: DomainXmlFacts, id: number, hostCpus: number): number[] | null {
  const pinned = facts.vcpuPins[id] ?? facts.defaultCpuset;
  if (pinned !== null) return pinned.filter((cpu) => cpu < hostCpus);
  if (facts.placementAuto) return null;
  return Array.from({ length: hostCpus }, (_, cpu) => cpu);
}

/** The libosinfo <os id> under <metadata>, matched by namespace URI, whatever prefix the XML uses. */
function libosinfoId(domain: XmlNode): string | undefined {
  const metadata = first(domain, 'metadata');
  if (metadata === undefined) return undefined;
  for (const [key, value] of Object.entries(metadata)) {
    if (key.startsWith('@_') || key === '#text' || value === undefined || typeof value === 'string') continue;
    const colon = key.indexOf(':');
    const prefix = colon >= 0 ? key.slice(0, colon) : '';
    const nsAttr = prefix ? `xmlns:${prefix}` : 'xmlns';
    for (const element of Array.isArray(value) ? value : [value]) {
      if (attr(element, nsAttr) !== LIBOSINFO_NS) continue;
      const id = attr(first(element, prefix ? `${prefix}:os` : 'os'), 'id');
      if (id) return id;
    }
  }
  return undefined;
}

function onlineVcpus(domain: XmlNode, curVcpus: number): number[] {
  const listed = children(first(domain, 'vcpus'), 'vcpu');
  if (listed.length > 0) {
    return listed
      .filter((v) => attr(v, 'enabled') === 'yes')
      .map((v) => parseCount(attr(v, 'id') ?? '', '<vcpus><vcpu id>'))
      .sort((a, b) => a - b);
  }
  return Array.from({ length: curVcpus }, (_, i) => i);
}

/** Pins as a list by vCPU id rather than a Map (~280 bytes each even when small), shared between domains pinned alike. */
function vcpuPins(domain: XmlNode, maxVcpus: number): readonly (readonly number[] | null)[] {
  const pins: (readonly number[] | null)[] = [];
  for (const pin of children(first(domain, 'cputune'), 'vcpupin')) {
    const id = attr(pin, 'vcpu');
    const cpuset = attr(pin, 'cpuset');
    if (id === undefined || cpuset === undefined) continue;
    const vcpu = parseCount(id, '<vcpupin vcpu>');
    // No such vCPU (libvirt refuses such a definition); it must not size the list.
    if (vcpu >= maxVcpus) continue;
    while (pins.length <= vcpu) pins.push(null);
    pins[vcpu] = sharedNumberList(parseCpuset(cpuset));
  }
  return sharedPins(pins);
}

function parseDisk(disk: XmlNode): XmlDisk {
  const sourceKind = wordAttr(disk, 'type') ?? 'file';
  const device = wordAttr(disk, 'device') ?? 'disk';
  const target = first(disk, 'target');
  return {
    target: attr(target, 'dev') ?? '',
    sourceKind,
    device,
    format: wordAttr(first(disk, 'driver'), 'type') ?? null,
    source: flat(diskSource(sourceKind, first(disk, 'source'))),
    // A CD-ROM is read-only media even when the XML omits <readonly/>.
    readonly: first(disk, 'readonly') !== undefined || device === 'cdrom',
    bus: wordAttr(target, 'bus') ?? null,
  };
}

function diskSource(kind: string, source: XmlNode | undefined): string | null {
  if (source === undefined) return null;
  switch (kind) {
    case 'file':
      return attr(source, 'file') ?? null;
    case 'block':
      return attr(source, 'dev') ?? null;
    case 'dir':
      return attr(source, 'dir') ?? null;
    case 'network':
      return networkSource(source);
    case 'volume': {
      const pool = attr(source, 'pool');
      const volume = attr(source, 'volume');
      return pool !== undefined && volume !== undefined ? `${pool}/${volume}` : null;
    }
    case 'nvme': {
      const a = first(source, 'address');
      if (a === undefined) return null;
      const pci = `${hex(attr(a, 'domain'), 4)}:${hex(attr(a, 'bus'), 2)}:${hex(attr(a, 'slot'), 2)}.${hex(attr(a, 'function'), 1)}`;
      return `nvme://${pci}/${attr(source, 'namespace') ?? '1'}`;
    }
    case 'vhostuser':
      return attr(source, 'path') ?? null;
    default:
      return attr(source, 'file') ?? attr(source, 'dev') ?? null;
  }
}

/** "protocol://host:port/name" from the first <host>; unix-socket hosts as "protocol+unix:///name?socket=path". */
function networkSource(source: XmlNode): string | null {
  const protocol = attr(source, 'protocol');
  const name = attr(source, 'name') ?? '';
  if (protocol === undefined) return null;
  const host = first(source, 'host');
  const path = name.startsWith('/') ? name : `/${name}`;
  if (host !== undefined && attr(host, 'transport') === 'unix') {
    return `${protocol}+unix://${path}?socket=${attr(host, 'socket') ?? ''}`;
  }
  const hostName = attr(host, 'name');
  if (hostName === undefined) return `${protocol}://${path}`;
  const bracketed = hostName.includes(':') ? `[${hostName}]` : hostName;
  const port = attr(host, 'port');
  return `${protocol}://${bracketed}${port !== undefined ? `:${port}` : ''}${path}`;
}

function hex(value: string | undefined, width: number): string {
  const n = value === undefined ? 0 : Number.parseInt(value, value.startsWith('0x') ? 16 : 10);
  return (Number.isNaN(n) ? 0 : n).toString(16).padStart(width, '0');
}

function parseInterface(nic: XmlNode): NicRecord {
  const kind = wordAttr(nic, 'type') ?? 'ethernet';
  const source = first(nic, 'source');
  // For type='network' the live XML also names the bridge the network
  // created; that bridge, not the network name, is the host-side parent.
  const parent = wordAttr(source, 'bridge') ?? wordAttr(source, 'network') ?? (kind === 'direct' ? wordAttr(source, 'dev') : undefined);
  return {
    kind,
    mac: attr(first(nic, 'mac'), 'address')?.toLowerCase() ?? null,
    model: wordAttr(first(nic, 'model'), 'type') ?? null,
    hostDevice: attr(first(nic, 'target'), 'dev') ?? null,
    source: parent ?? null,
  };
}

function parseCount(value: string, what: string): number {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed)) throw new DomainXmlError(`${what} is not a whole number: "${value}"`);
  return Number(trimmed);
}

// libvirt scaled-integer units (formatdomain.html#memory-allocation):
// "b"/"bytes", SI "KB".."EB" (powers of 1000), binary "k"/"KiB".."e"/"EiB" (powers of 1024).
const UNIT_BYTES: ReadonlyMap<string, bigint> = new Map([
  ['b', 1n], ['bytes', 1n],
  ['kb', 1000n], ['mb', 1000n ** 2n], ['gb', 1000n ** 3n], ['tb', 1000n ** 4n], ['pb', 1000n ** 5n], ['eb', 1000n ** 6n],
  ['k', 1024n], ['kib', 1024n], ['m', 1024n ** 2n], ['mib', 1024n ** 2n], ['g', 1024n ** 3n], ['gib', 1024n ** 3n],
  ['t', 1024n ** 4n], ['tib', 1024n ** 4n], ['p', 1024n ** 5n], ['pib', 1024n ** 5n], ['e', 1024n ** 6n], ['eib', 1024n ** 6n],
]);

/** A memory amount in KiB, rounded up like libvirt does; `unit` defaults to KiB. */
export function toKiB(value: string, unit: string | undefined): bigint {
  const trimmed = value.trim();
  if (!/^\d+$/.test(trimmed)) throw new DomainXmlError(`memory amount is not a whole number: "${value}"`);
  const scale = UNIT_BYTES.get((unit ?? 'KiB').toLowerCase());
  if (scale === undefined) throw new DomainXmlError(`unknown memory unit "${unit}"`);
  const bytes = BigInt(trimmed) * scale;
  return (bytes + 1023n) / 1024n;
}

/**
 * libvirt cpuset syntax (formatdomain.html#cpu-allocation): comma-separated
 * CPU numbers and ranges "a-b"; "^n" (or "^a-b") removes CPUs. Returns the
 * sorted CPU numbers.
 */
/** libvirt's own bound on CPU numbers in a cpuset (VIR_DOMAIN_CPUMASK_LEN). */
const MAX_CPU = 4095;

export function parseCpuset(spec: string): number[] {
  const include = new Set<number>();
  const exclude = new Set<number>();
  for (const rawPart of spec.split(',')) {
    const part = rawPart.trim();
    if (part === '') throw new DomainXmlError(`empty element in cpuset "${spec}"`);
    const negated = part.startsWith('^');
    const body = negated ? part.slice(1).trim() : part;
    const m = /^(\d+)(?:\s*-\s*(\d+))?$/.exec(body);
    if (m === null) throw new DomainXmlError(`invalid cpuset element "${part}" in "${spec}"`);
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (hi < lo) throw new DomainXmlError(`descending range "${part}" in cpuset "${spec}"`);
    if (hi > MAX_CPU) throw new DomainXmlError(`CPU number above ${MAX_CPU} in cpuset "${spec}"`);
    for (let cpu = lo; cpu <= hi; cpu++) (negated ? exclude : include).add(cpu);
  }
  return [...include].filter((cpu) => !exclude.has(cpu)).sort((a, b) => a - b);
}
