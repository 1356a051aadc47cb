// Plain data produced by the collectors. Nothing here knows about SNMP: the
// model (src/model/) turns a Snapshot into MIB rows. A value the source does
// not provide is null, never a made-up 0.

/** From the libvirt connection (virConnectGetType / GetVersion / GetLibVersion). */
export interface HypervisorInfo {
  /** Driver name as libvirt reports it, e.g. "QEMU" or "TEST". */
  type: string;
  /** Hypervisor version as "major.minor.micro", or null when the driver has none. */
  version: string | null;
  /** libvirt library version as "major.minor.micro". */
  libvirtVersion: string;
  /** URI of the connection, for logs. */
  uri: string;
}

export interface VcpuRecord {
  /** vCPU number as libvirt numbers it (0-based). */
  number: number;
  /** virVcpuInfo.state, or null when the domain is not running. */
  state: number | null;
  /** CPU time of this vCPU in nanoseconds, or null when unknown. */
  cpuTimeNs: bigint | null;
  /**
   * Pinning: host CPU numbers this vCPU may run on, or null when unknown.
   * For a running domain this is virDomainGetVcpuPinInfo; for an inactive one
   * the <vcpupin>/<vcpu cpuset> of the XML.
   */
  affinity: readonly number[] | null;
}

export interface DiskRecord {
  /** Guest-side target device, e.g. "vda"; the key for block stats. */
  target: string;
  /** <disk type>: file, block, network, volume, dir, nvme, vhostuser. */
  sourceKind: string;
  /** <disk device>: disk, cdrom, floppy, lun. */
  device: string;
  /** <driver type>: raw, qcow2, ... or null. */
  format: string | null;
  /** Path for file/block, URI-like "protocol://host:port/name" for network, null if empty (e.g. an ejected cdrom). */
  source: string | null;
  readonly: boolean;
  /** <target bus>: virtio, sata, scsi, ide, usb, fdc, ... or null. */
  bus: string | null;
  /** virDomainGetBlockInfo, in bytes; null when libvirt cannot tell. */
  capacity: bigint | null;
  allocation: bigint | null;
  physical: bigint | null;
  /** virDomainBlockStatsFlags fields; null when not reported. */
  rdReq: bigint | null;
  wrReq: bigint | null;
  rdBytes: bigint | null;
  wrBytes: bigint | null;
  rdTotalTimeNs: bigint | null;
  wrTotalTimeNs: bigint | null;
}

export interface NicRecord {
  /** <interface type>: bridge, network, direct, ethernet, user, ... */
  kind: string;
  mac: string | null;
  /** <model type>, e.g. "virtio", or null. */
  model: string | null;
  /** <target dev>: the host-side interface name, or null. */
  hostDevice: string | null;
  /** <source bridge|network|dev>: the parent the host-side interface hangs off, or null. */
  source: string | null;
}

export interface DomainRecord {
  /** Canonical lowercase UUID text (8-4-4-4-12). */
  uuid: string;
  name: string;
  /** Numeric domain id while running, else -1. */
  id: number;
  /** virDomainState and its reason (virDomainGetState). */
  state: number;
  reason: number;
  /** null when the call failed. */
  autostart: boolean | null;
  persistent: boolean | null;
  /** True while the domain has a managed-save image (virDomainHasManagedSaveImage). */
  managedSave: boolean;
  /** Configured guest OS as the XML gives it: libosinfo id if present, else <os><type>. */
  osType: string;
  /** vCPU counts from the XML: <vcpu current=...> and <vcpu>. */
  curVcpus: number;
  maxVcpus: number;
  /** Memory in KiB: current balloon (virDomainGetInfo.memory), <currentMemory>, <memory>, <maxMemory> (hotplug bound) or null. */
  memoryKiB: bigint;
  maxMemoryKiB: bigint;
  hotplugMemoryKiB: bigint | null;
  /** virDomainGetInfo.cpuTime in nanoseconds. */
  cpuTimeNs: bigint;
  vcpus: VcpuRecord[];
  disks: DiskRecord[];
  nics: NicRecord[];
  /** virDomainGetJobInfo type (0 none, 1 bounded, 2 unbounded) or null when the driver has no job API. */
  jobType: number | null;
  /** virDomainJobOperation of the active job (4 incoming, 5 outgoing migration, ...), or null when unknown. */
  jobOperation: number | null;
}

/** One network interface of the host as the kernel lists it. */
export interface HostInterface {
  name: string;
  ifIndex: number;
  /** ifIndex of the master (bridge) or the lower device, or 0. */
  parentIfIndex: number;
}

/** One line of the mount table (getmntent() fields). */
export interface MountEntry {
  device: string;
  mountPoint: string;
  fsType: string;
  options: string;
}

export interface HostInfo {
  /** Seconds since boot (/proc/uptime), for vmHvUpTime. */
  uptimeSeconds: number;
  /** Host CPU numbers /proc/cpuinfo or /proc/stat list now, ascending. */
  cpus: readonly number[];
  interfaces: Map<string, HostInterface>;
  /** The mount table snmpd reads, in its order. */
  mounts: readonly MountEntry[];
}

/**
 * Everything one refresh saw. Immutable once built: the model and the
 * responder may hold it while the next refresh builds a new one.
 */
export interface Snapshot {
  /** Date.now() when the refresh started. */
  takenAt: number;
  hypervisor: HypervisorInfo | null;
  /** null while libvirt is unreachable. */
  domains: DomainRecord[] | null;
  host: HostInfo;
  /** Disk image path as configured → with symlinks resolved, for vmStorageParent. */
  imagePaths: ReadonlyMap<string, string>;
  /** By UUID, the VMs with a migration running or finished; the others have none. */
  migrations: ReadonlyMap<string, MigrationState>;
  multicast: MulticastFacts;
}

/** The image file a disk reads, if it has one (file and dir disks with a source). */
export function imageFile(disk: DiskRecord): string | null {
  return disk.source !== null && (disk.sourceKind === 'file' || disk.sourceKind === 'dir') ? disk.source : null;
}

export type MigrationDirection = 'outgoing' | 'incoming';
export type MigrationResult = 'completed' | 'failed' | 'cancelled';

/** A migration job's figures as libvirt reports them (VIR_DOMAIN_JOB_*); null where it reports none. */
export interface MigrationFigures {
  elapsedMs: number | null;
  dataTotal: bigint | null;
  dataProcessed: bigint | null;
  dataRemaining: bigint | null;
  memoryTotal: bigint | null;
  memoryProcessed: bigint | null;
  memoryRemaining: bigint | null;
  /** Pages dirtied per second. */
  dirtyRate: number | null;
  iteration: number | null;
  expectedDowntimeMs: number | null;
  /** Of a finished job: how long the guest was paused, and how long set-up took. */
  downtimeMs: number | null;
  setupTimeMs: number | null;
}

/** A migration job running now. */
export interface ActiveMigration {
  direction: MigrationDirection;
  /** The guest already runs on the destination and pulls the pages it lacks. */
  postcopy: boolean;
  /** The latest sample; null where libvirt gives none (the destination) or none was taken yet. */
  figures: MigrationFigures | null;
}

/** The last migration job that ended. */
export interface FinishedMigration {
  result: MigrationResult;
  direction: MigrationDirection;
  /** When it ended: ms since the epoch, and the host's uptime then (centiseconds, for vmHvUpTime). */
  endedAt: number;
  endedUptimeTicks: number;
  totalTimeMs: number | null;
  downtimeMs: number | null;
  setupTimeMs: number | null;
  dataTransferred: bigint | null;
}

export interface MigrationState {
  active: ActiveMigration | null;
  last: FinishedMigration | null;
}

/** One port entry of a bridge's multicast database. */
export interface MdbEntry {
  bridgeIfIndex: number;
  /** The bridge port (the bridge's own ifindex for a membership of the host itself). */
  portIfIndex: number;
  /** The group address as text ("239.1.1.1", "ff0e:0:0:0:0:0:0:1234"). */
  group: string;
  /** Kept until removed (MDB_PERMANENT), rather than until its timer runs out. */
  permanent: boolean;
  /** Added by configuration (`bridge mdb add`), not learned from a report. */
  configured: boolean;
  /** Centiseconds before the entry expires unless refreshed; 0 when permanent. */
  timerCs: number;
}

/** A multicast group the host itself has joined on a device. */
export interface HostGroup {
  device: string;
  group: string;
}

/** A membership the multicast mobility agent holds for a VM. */
export interface ProxyJoin {
  group: string;
  /** The bridge it is held on. */
  bridge: string;
  /** The UUID of the VM it is held for (canonical lowercase text). */
  vm: string;
  /** When it was joined (ms since the epoch). */
  since: number;
  reason: 'incoming-migration' | 'awaiting-report';
}

export interface Relay {
  group: string;
  server: string;
  port: number;
  state: 'requested' | 'active' | 'failed';
}

/** What the multicast mobility agent publishes in its state file. */
export interface McastAgentState {
  proxyJoins: readonly ProxyJoin[];
  relays: readonly Relay[];
}

export interface MulticastFacts {
  /** Port entries of the bridges' multicast databases; null when they could not be read. */
  mdb: readonly MdbEntry[] | null;
  hostGroups: readonly HostGroup[];
  /** null: no mobility agent runs here. */
  agent: McastAgentState | null;
}
