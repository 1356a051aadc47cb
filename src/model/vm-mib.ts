// Snapshot → VM-MIB rows. Pure: the same snapshot and indexes give the same
// view. Every choice of how a libvirt fact becomes an RFC 7666 value is made
// here (and listed in README.md under "Mapping").
import { MibView, MibViewBuilder, Oid, truthValueScalar, Value, VarBind, WritableObject, type MibTableBuilder } from '../../agentx';
import { imageFile } from '../snapshot';
import type { DiskRecord, DomainRecord, HostInfo, NicRecord, Snapshot } from '../snapshot';
import type { DeviceKeys, VmIndexes } from '../state/index-store';
import { filesystemFor, HostLinkage } from './linkage';
import {
  adminString, counter64, integer, macBytes, objectId, octets, scaleToInteger32, timeTicks, uuidBytes,
} from './values';
import { adminState, operState } from './vm-state';
import { addMigrationTable } from './vmm-agentx-mib';
import { addMulticastObjects } from './vmm-mcast';
import * as O from './vm-mib-oids';

export interface ModelState {
  /** vmHvUpTime (centiseconds) when a vmTable row was last created or deleted. */
  tableLastChange: number;
  perVmNotificationsEnabled: boolean;
  bulkNotificationsEnabled: boolean;
  /** libvirt has been unreachable past the grace period: every vmOperState reads unknown(1). */
  libvirtLost: boolean;
  /** Date.now() to compute vmUpTime against. */
  now: number;
}

export interface VmRow {
  domain: DomainRecord;
  indexes: VmIndexes;
}

/**
 * A table: its rows are visited once, in index order, and each row's facts
 * are worked out once; every column turns them into its cell as the row is
 * added (agentx/table-builder.ts packs the cells), so no row outlives its
 * visit. A cell of undefined is an absent instance.
 *
 * Tables are defined once, at module level, and read what a view is built
 * from (ViewSource) as an argument: functions made anew for every view
 * would be compiled anew too, since V8's optimised code for a call site
 * holds on to the closures it saw there, and drops it when they die.
 */
interface Table<R extends IndexedRow> {
  entry: Oid;
  /** How many rows the visitor will likely give (sizes the buffers). */
  expectedRows: (s: ViewSource) => number;
  /** Gives the rows to `sink` in index order; it may reuse one row object. */
  rows: (s: ViewSource, sink: RowSink<R>) => void;
  columns: readonly (readonly [arc: number, cell: (row: R) => Value | undefined])[];
}

/** What one view is built from. */
interface ViewSource {
  snapshot: Snapshot;
  rows: readonly VmRow[];
  host: HostLinkage;
  state: ModelState;
}

interface IndexedRow {
  /** The instance index: the sub-identifiers after the column OID. */
  index: readonly number[];
}

const ZERO_DOT_ZERO: Oid = [0, 0];
const NS_PER_US = 1000n;

export function hvUpTimeTicks(host: HostInfo): number {
  return Math.floor(host.uptimeSeconds * 100);
}

/**
 * What the index store numbers, for these domains: device keys in XML order
 * (the store numbers new VMs in UUID order). `runStarts`: when runs really
 * started, where the host tells.
 */
export function indexKeys(domains: readonly DomainRecord[], runStarts: ReadonlyMap<string, number>): DeviceKeys[] {
  return domains.map((d) => ({
    uuid: d.uuid,
    name: d.name,
    running: d.id >= 0,
    domainId: d.id,
    disks: d.disks.map((disk) => disk.target),
    nics: d.nics.map((nic, pos) => nicKey(nic, pos)),
    startedAt: runStarts.get(d.uuid) ?? null,
  }));
}

/**
 * Every number the model does not make up itself: the index store's VM and
 * device indexes, and snmpd's indexes of host objects (model/linkage.ts).
 */
export interface Numbering {
  vms: ReadonlyMap<string, VmIndexes>;
  host: HostLinkage;
}

/**
 * The model's step: a snapshot, its numbering and the model state give the
 * rows and the view serving them. `previous`: the view this one replaces
 * (its sizes and shared parts are reused).
 */
export async function vmMibView(
  snapshot: Snapshot,
  numbering: Numbering,
  state: ModelState,
  previous?: MibView,
): Promise<{ rows: VmRow[]; view: MibView }> {
  const rows = vmRows(snapshot, numbering.vms);
  return { rows, view: await buildVmMibViewInSlices(snapshot, rows, numbering.host, state, previous) };
}

/** Rows of the VMs in vmIndex order. */
export function vmRows(snapshot: Snapshot, indexes: ReadonlyMap<string, VmIndexes>): VmRow[] {
  const rows: VmRow[] = [];
  for (const domain of snapshot.domains ?? []) {
    const idx = indexes.get(domain.uuid);
    if (idx) rows.push({ domain, indexes: idx });
  }
  return rows.sort((a, b) => a.indexes.vmIndex - b.indexes.vmIndex);
}

/** `previous`: the view this one replaces, whose sizes it most likely shares (so the builder allocates once). */
export function buildVmMibView(snapshot: Snapshot, rows: readonly VmRow[], host: HostLinkage, state: ModelState, previous?: MibView): MibView {
  const b = new MibViewBuilder(previous);
  const source: ViewSource = { snapshot, rows, host, state };
  for (const step of VIEW_STEPS) step(b, source);
  return b.build();
}

/**
 * buildVmMibView, giving the event loop a turn between tables: at 10,000
 * VMs the whole build takes ~300 ms, which AgentX requests would otherwise
 * wait out; a table alone takes at most about a third of it.
 */
export async function buildVmMibViewInSlices(
  snapshot: Snapshot,
  rows: readonly VmRow[],
  host: HostLinkage,
  state: ModelState,
  previous?: MibView,
): Promise<MibView> {
  const b = new MibViewBuilder(previous);
  const source: ViewSource = { snapshot, rows, host, state };
  for (const step of VIEW_STEPS) {
    step(b, source);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return b.build();
}

function scalar(b: MibViewBuilder, oid: Oid, value: Value): void {
  b.declareObject(oid);
  b.add([...oid, 0], value);
}

/** The view's parts in OID order (so the builder never has to sort), each a separate step. */
const VIEW_STEPS: readonly ((b: MibViewBuilder, s: ViewSource) => void)[] = [
  (b, s) => {
    const hv = s.snapshot.hypervisor;
    scalar(b, O.vmHvSoftware, adminString(hv ? hv.type : ''));
    scalar(b, O.vmHvVersion, adminString(hv ? hv.version ?? hv.libvirtVersion : ''));
    scalar(b, O.vmHvObjectID, objectId(ZERO_DOT_ZERO));
    scalar(b, O.vmHvUpTime, timeTicks(hvUpTimeTicks(s.snapshot.host)));
    scalar(b, O.vmNumber, integer(s.rows.length));
    scalar(b, O.vmTableLastChange, timeTicks(s.state.tableLastChange));
    addTable(b, VM_TABLE, s);
  },
  (b, s) => addTable(b, VM_CPU_TABLE, s),
  (b, s) => addTable(b, VM_CPU_AFFINITY_TABLE, s),
  (b, s) => addTable(b, VM_STORAGE_TABLE, s),
  (b, s) => {
    addTable(b, VM_NETWORK_TABLE, s);
    for (const { oid, ...value } of notificationSwitches(s.state)) {
      b.declareObject(oid.slice(0, -1));
      b.add(oid, value as Value);
    }
  },
  // VMM-AGENTX-MIB follows VM-MIB in OID order (enterprises > mib-2).
  (b, s) => addMigrationTable(b, s.rows, s.snapshot.migrations, hvUpTimeTicks(s.snapshot.host), s.state.now),
  (b, s) => addMulticastObjects(b, s.rows, s.snapshot.multicast, s.snapshot.host),
];

/** The model state a Set may change, and what the agent does with a change. */
export interface WritableState {
  get(): ModelState;
  /** Serve `next` (the state after a Set's commit or undo) at once. */
  set(next: ModelState, object: string): void;
}

type SwitchKey = 'perVmNotificationsEnabled' | 'bulkNotificationsEnabled';

/** VM-MIB's only writable objects (RFC 7666): the two notification switches, TruthValue scalars. */
const NOTIFICATION_SWITCHES: readonly { oid: Oid; name: string; key: SwitchKey }[] = [
  { oid: O.vmPerVMNotificationsEnabled, name: 'vmPerVMNotificationsEnabled', key: 'perVmNotificationsEnabled' },
  { oid: O.vmBulkNotificationsEnabled, name: 'vmBulkNotificationsEnabled', key: 'bulkNotificationsEnabled' },
];

/**
 * The writable objects of VM-MIB over the agent's model state. Their values
 * do not survive a restart (RFC 7666): the configuration gives them at start.
 */
export function vmMibWritables(state: WritableState): { oid: Oid; object: WritableObject }[] {
  return NOTIFICATION_SWITCHES.map(({ oid, name, key }) => ({
    oid,
    object: truthValueScalar(oid, {
      get: () => state.get()[key],
      set: (enabled) => state.set({ ...state.get(), [key]: enabled }, name),
    }),
  }));
}

/**
 * vmPerVMNotificationsEnabled.0 and vmBulkNotificationsEnabled.0 for a model
 * state: part of every view, and what a Set of them replaces in the view
 * being served (MibView.withValues), with no rebuild.
 */
export function notificationSwitches(state: ModelState): VarBind[] {
  const truth = (on: boolean): Value => integer(on ? O.TruthValue.True : O.TruthValue.False);
  return [
    { oid: [...O.vmPerVMNotificationsEnabled, 0], ...truth(state.perVmNotificationsEnabled) },
    { oid: [...O.vmBulkNotificationsEnabled, 0], ...truth(state.bulkNotificationsEnabled) },
  ];
}

function addTable<R extends IndexedRow>(b: MibViewBuilder, t: Table<R>, s: ViewSource): void {
  const table = b.table(t.entry, t.columns.map(([arc]) => arc), t.expectedRows(s));
  t.rows(s, new RowSink(table, t.columns));
  table.end();
}

/** Turns each row it is given into its cells and adds them to the table. */
class RowSink<R extends IndexedRow> {
  /** One scratch array of cells: the table builder packs them at once. */
  private readonly cells: (Value | undefined)[];

  constructor(
    private readonly table: MibTableBuilder,
    private readonly columns: Table<R>['columns'],
  ) {
    this.cells = new Array<Value | undefined>(columns.length);
  }

  add(row: R): void {
    const { cells, columns } = this;
    for (let k = 0; k < columns.length; k++) cells[k] = columns[k][1](row);
    this.table.row(row.index, cells);
  }
}

const vcpuCount = (d: DomainRecord): number => d.vcpus.length;
const diskCount = (d: DomainRecord): number => d.disks.length;
const nicCount = (d: DomainRecord): number => d.nics.length;

/** The sum of `per` over the VMs: how many rows a per-device table will have. */
function countOf(rows: readonly VmRow[], per: (d: DomainRecord) => number): number {
  let n = 0;
  for (const { domain } of rows) n += per(domain);
  return n;
}

interface VmTableRow extends IndexedRow {
  d: DomainRecord;
  admin: O.AdminState;
  upSince: number | null;
  mem: { unit: number; scaled: (number | null)[] };
  state: ModelState;
}

const VM_TABLE: Table<VmTableRow> = {
  entry: O.vmEntry,
  expectedRows: (s) => s.rows.length,
  rows: (s, sink) => {
    for (const { domain: d, indexes } of s.rows) {
      const maxBytes = (d.hotplugMemoryKiB ?? d.maxMemoryKiB) * 1024n;
      const mem = scaleToInteger32([d.memoryKiB * 1024n, maxBytes], 1024n);
      sink.add({ index: [indexes.vmIndex], d, admin: adminState(d), upSince: indexes.runningSince, mem, state: s.state });
    }
  },
  columns: [
    [O.VmColumn.Name, ({ d }) => adminString(d.name)],
    [O.VmColumn.UUID, ({ d }) => octets(uuidBytes(d.uuid))],
    [O.VmColumn.OSType, ({ d }) => adminString(d.osType)],
    [O.VmColumn.AdminState, ({ admin }) => integer(admin)],
    [O.VmColumn.OperState, ({ d, state }) => integer(state.libvirtLost ? O.OperState.Unknown : operState(d))],
    [O.VmColumn.AutoStart, ({ d }) => integer(d.autostart === null ? O.AutoStart.Unknown : d.autostart ? O.AutoStart.Enabled : O.AutoStart.Disabled)],
    [O.VmColumn.Persistent, ({ d }) => integer(d.persistent === null ? O.Persistent.Unknown : d.persistent ? O.Persistent.Persistent : O.Persistent.Transient)],
    [O.VmColumn.CurCpuNumber, ({ d }) => integer(d.curVcpus)],
    // libvirt has no configured lower bound for vCPUs or memory.
    [O.VmColumn.MinCpuNumber, () => integer(-1)],
    [O.VmColumn.MaxCpuNumber, ({ d }) => integer(d.maxVcpus)],
    [O.VmColumn.MemUnit, ({ mem }) => integer(mem.unit)],
    [O.VmColumn.CurMem, ({ mem }) => integer(mem.scaled[0] ?? 0)],
    [O.VmColumn.MinMem, () => integer(-1)],
    [O.VmColumn.MaxMem, ({ mem }) => integer(mem.scaled[1] ?? -1)],
    // Counted from the last shutdown → running change; a crashed domain kept
    // around by on_crash=preserve is active but administratively down.
    [O.VmColumn.UpTime, ({ d, admin, upSince, state }) =>
      timeTicks(d.id >= 0 && admin !== O.AdminState.Shutdown && upSince !== null ? (state.now - upSince) / 10 : 0)],
    // Some drivers report a clock-based CPU time for shut-off domains; an inactive VM has used none.
    [O.VmColumn.CpuTime, ({ d }) => counter64(d.id >= 0 ? d.cpuTimeNs / NS_PER_US : 0n)],
  ],
};

const VM_CPU_TABLE: Table<IndexedRow & { timeNs: bigint | null }> = {
  entry: O.vmCpuEntry,
  expectedRows: (s) => countOf(s.rows, vcpuCount),
  rows: (s, sink) => {
    for (const { domain: d, indexes } of s.rows) {
      for (const v of sortedVcpus(d)) {
        // An inactive VM's vCPUs have used no time since it stopped; a running
        // one whose time libvirt did not report gets no value rather than a false 0.
        sink.add({ index: [indexes.vmIndex, v.number + 1], timeNs: d.id < 0 ? 0n : v.cpuTimeNs });
      }
    }
  },
  columns: [[O.VmCpuColumn.CoreTime, ({ timeNs }) => (timeNs === null ? undefined : counter64(timeNs / NS_PER_US))]],
};

/** Host CPUs as [CPU number, hrDeviceIndex], by hrDeviceIndex. */
const hostCpusOf = (host: HostLinkage): [number, number][] => [...host.cpuDeviceIndex.entries()].sort((a, b) => a[1] - b[1]);

const VM_CPU_AFFINITY_TABLE: Table<IndexedRow & { affinity: O.CpuAffinity }> = {
  entry: O.vmCpuAffinityEntry,
  expectedRows: (s) => countOf(s.rows, vcpuCount) * s.host.cpuDeviceIndex.size,
  rows: (s, sink) => {
    const hostCpus = hostCpusOf(s.host);
    const index = [0, 0, 0];
    const row = { index, affinity: O.CpuAffinity.Unknown };
    // One reused bitmap of the vCPU's allowed host CPUs (no Set per vCPU).
    const allowed = new Uint8Array(hostCpus.reduce((max, [cpu]) => Math.max(max, cpu + 1), 0));
    for (const { domain: d, indexes } of s.rows) {
      index[0] = indexes.vmIndex;
      for (const v of sortedVcpus(d)) {
        index[1] = v.number + 1;
        allowed.fill(0);
        for (const cpu of v.affinity ?? []) if (cpu < allowed.length) allowed[cpu] = 1;
        for (const [cpu, hrDeviceIndex] of hostCpus) {
          index[2] = hrDeviceIndex;
          row.affinity = v.affinity === null ? O.CpuAffinity.Unknown : allowed[cpu] === 1 ? O.CpuAffinity.Enable : O.CpuAffinity.Disable;
          sink.add(row);
        }
      }
    }
  },
  columns: [[O.VmCpuAffinityColumn.Affinity, ({ affinity }) => integer(affinity)]],
};

const vcpuNumber = (v: DomainRecord['vcpus'][number]): number => v.number;

/** vCPUs by number; libvirt lists them in order, so the usual case copies and sorts nothing. */
function sortedVcpus(d: DomainRecord): DomainRecord['vcpus'] {
  return inOrder(d.vcpus, vcpuNumber) ? d.vcpus : d.vcpus.slice().sort((a, b) => a.number - b.number);
}

/**
 * A VM's devices that have an index, by index (libvirt's order is usually
 * index order already). `keyOf`: the key the index store numbers a device under.
 */
function byDeviceIndex<T>(
  items: readonly T[],
  keyOf: (item: T, position: number) => string,
  indexes: Pick<ReadonlyMap<string, number>, 'get'>,
): { item: T; index: number }[] {
  const out: { item: T; index: number }[] = [];
  for (let pos = 0; pos < items.length; pos++) {
    const index = indexes.get(keyOf(items[pos], pos));
    if (index !== undefined) out.push({ item: items[pos], index });
  }
  return inOrder(out, deviceIndexOf) ? out : out.sort((a, b) => a.index - b.index);
}

const deviceIndexOf = (x: { index: number }): number => x.index;
const diskKey = (disk: DiskRecord): string => disk.target;

function inOrder<T>(items: readonly T[], key: (item: T) => number): boolean {
  for (let i = 1; i < items.length; i++) if (key(items[i - 1]) > key(items[i])) return false;
  return true;
}

interface StorageRow extends IndexedRow {
  disk: DiskRecord;
  parent: number;
  sourceType: O.StorageSourceType;
  sizes: { unit: number; scaled: (number | null)[] };
}

/** A counter's value, scaled down by `div`; absent when unknown. */
const optionalCounter = (v: bigint | null, div = 1n): Value | undefined => (v === null ? undefined : counter64(v / div));

const VM_STORAGE_TABLE: Table<StorageRow> = {
  entry: O.vmStorageEntry,
  expectedRows: (s) => countOf(s.rows, diskCount),
  rows: (s, sink) => {
    for (const { domain: d, indexes } of s.rows) {
      for (const { item: disk, index } of byDeviceIndex(d.disks, diskKey, indexes.disks)) {
        sink.add(storageRow([indexes.vmIndex, index], disk, s.host, s.snapshot.imagePaths));
      }
    }
  },
  columns: [
    [O.VmStorageColumn.Parent, ({ parent }) => integer(parent)],
    [O.VmStorageColumn.SourceType, ({ sourceType }) => integer(sourceType)],
    [O.VmStorageColumn.SourceTypeString, ({ disk }) => adminString(disk.format ?? disk.sourceKind)],
    [O.VmStorageColumn.ResourceID, ({ disk }) => adminString(disk.source ?? '')],
    [O.VmStorageColumn.Access, ({ disk }) => integer(disk.readonly || disk.device === 'cdrom' ? O.StorageAccess.ReadOnly : O.StorageAccess.ReadWrite)],
    [O.VmStorageColumn.MediaType, ({ disk }) => integer(storageMediaType(disk))],
    [O.VmStorageColumn.MediaTypeString, ({ disk }) => adminString(disk.bus ?? '')],
    [O.VmStorageColumn.SizeUnit, ({ sizes }) => integer(sizes.unit)],
    [O.VmStorageColumn.DefinedSize, ({ sizes }) => integer(sizes.scaled[0] ?? -1)],
    [O.VmStorageColumn.AllocatedSize, ({ sizes }) => integer(sizes.scaled[1] ?? -1)],
    [O.VmStorageColumn.ReadIOs, ({ disk }) => optionalCounter(disk.rdReq)],
    [O.VmStorageColumn.WriteIOs, ({ disk }) => optionalCounter(disk.wrReq)],
    [O.VmStorageColumn.ReadOctets, ({ disk }) => optionalCounter(disk.rdBytes)],
    [O.VmStorageColumn.WriteOctets, ({ disk }) => optionalCounter(disk.wrBytes)],
    [O.VmStorageColumn.ReadLatency, ({ disk }) => optionalCounter(disk.rdTotalTimeNs, NS_PER_US)],
    [O.VmStorageColumn.WriteLatency, ({ disk }) => optionalCounter(disk.wrTotalTimeNs, NS_PER_US)],
  ],
};

const SPARSE_FORMATS = new Set(['qcow', 'qcow2', 'qed', 'vmdk', 'vdi', 'vhd', 'vpc', 'vhdx', 'cow', 'dmg', 'cloop', 'bochs', 'parallels', 'luks']);

export function storageSourceType(disk: DiskRecord): O.StorageSourceType {
  switch (disk.sourceKind) {
    case 'block':
      return O.StorageSourceType.Block;
    case 'network':
      return O.StorageSourceType.Network;
    case 'file': {
      // libvirt treats a file without <driver type> as raw.
      const format = disk.format ?? 'raw';
      if (format === 'raw') return O.StorageSourceType.Raw;
      return SPARSE_FORMATS.has(format) ? O.StorageSourceType.Sparse : O.StorageSourceType.Other;
    }
    default:
      return O.StorageSourceType.Other;
  }
}

/** The host file (or directory) a disk lives in, or null for block devices, network disks and empty drives. */

export function storageMediaType(disk: DiskRecord): O.StorageMediaType {
  switch (disk.device) {
    case 'disk':
    case 'lun':
      return O.StorageMediaType.HardDisk;
    case 'cdrom':
      return O.StorageMediaType.OpticalDisk;
    case 'floppy':
      return O.StorageMediaType.FloppyDisk;
    default:
      return O.StorageMediaType.Other;
  }
}

function storageRow(index: number[], disk: DiskRecord, host: HostLinkage, imagePaths: ReadonlyMap<string, string>): StorageRow {
  const sourceType = storageSourceType(disk);
  const fixedSize = sourceType === O.StorageSourceType.Block || sourceType === O.StorageSourceType.Raw;
  // For block and raw sources RFC 7666 makes the allocated size equal to the defined size.
  const allocation = fixedSize ? disk.capacity : disk.allocation;
  const image = imageFile(disk);
  const parent = image !== null
    ? filesystemFor(host.filesystems, imagePaths.get(image) ?? image)?.hrStorageIndex ?? 0
    : 0;
  return { index, disk, parent, sourceType, sizes: scaleToInteger32([disk.capacity, allocation], 1048576n) };
}

interface NetworkRow extends IndexedRow {
  ifIndex: number;
  parent: number;
  model: string;
  mac: Buffer | null;
}

const VM_NETWORK_TABLE: Table<NetworkRow> = {
  entry: O.vmNetworkEntry,
  expectedRows: (s) => countOf(s.rows, nicCount),
  rows: (s, sink) => {
    const { interfaces } = s.snapshot.host;
    for (const { domain: d, indexes } of s.rows) {
      for (const { item: nic, index } of byDeviceIndex(d.nics, nicKey, indexes.nics)) {
        const iface = nic.hostDevice ? interfaces.get(nic.hostDevice) : undefined;
        const parent = iface ? iface.parentIfIndex : nic.source ? interfaces.get(nic.source)?.ifIndex ?? 0 : 0;
        sink.add({ index: [indexes.vmIndex, index], ifIndex: iface?.ifIndex ?? 0, parent, model: nic.model ?? '', mac: macBytes(nic.mac) });
      }
    }
  },
  columns: [
    [O.VmNetworkColumn.IfIndex, ({ ifIndex }) => integer(ifIndex)],
    [O.VmNetworkColumn.Parent, ({ parent }) => integer(parent)],
    [O.VmNetworkColumn.Model, ({ model }) => adminString(model)],
    [O.VmNetworkColumn.PhysAddress, ({ mac }) => octets(mac ?? Buffer.alloc(0))],
  ],
};

/** The key a NIC keeps its vmNetworkIndex under: its MAC, or its position when it has none. */
export function nicKey(nic: NicRecord, position: number): string {
  return nic.mac ? nic.mac.toLowerCase() : `#${position}`;
}
