// Snapshot → VM-MIB rows. Pure: the same snapshot and indexes give the same
// view. Every choice of how a libvirt fact becomes an RFC 7666 value is made
// here (and listed in README.md under "Mapping").
import { MibView, MibViewBuilder, Oid, Value } from '../../agentx';
import type { DiskRecord, DomainRecord, HostInfo, NicRecord, Snapshot } from '../snapshot';
import { filesystemFor } from '../collectors/mounts';
import type { VmIndexes } from '../state/index-store';
import {
  adminString, counter64, integer, macBytes, objectId, octets, scaleToInteger32, timeTicks, uuidBytes,
} from './values';
import { adminState, operState } from './vm-state';
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

/** A table in column-major form: rows sorted by index, one value (or undefined: absent) per column. */
interface Table {
  entry: Oid;
  columns: readonly number[];
  rows: { index: number[]; cells: (Value | undefined)[] }[];
}

const ZERO_DOT_ZERO: Oid = [0, 0];
const NS_PER_US = 1000n;

export function hvUpTimeTicks(host: HostInfo): number {
  return Math.floor(host.uptimeSeconds * 100);
}

/** Rows of the VMs in vmIndex order. */
export function vmRows(snapshot: Snapshot, indexes: Map<string, VmIndexes>): VmRow[] {
  const rows: VmRow[] = [];
  for (const domain of snapshot.domains ?? []) {
    const idx = indexes.get(domain.uuid);
    if (idx) rows.push({ domain, indexes: idx });
  }
  return rows.sort((a, b) => a.indexes.vmIndex - b.indexes.vmIndex);
}

export function buildVmMibView(snapshot: Snapshot, rows: readonly VmRow[], state: ModelState): MibView {
  const b = new MibViewBuilder();
  const hv = snapshot.hypervisor;
  const scalar = (oid: Oid, value: Value): void => {
    b.declareObject(oid);
    b.add([...oid, 0], value);
  };
  // Instances are added in OID order so the builder never has to sort.
  scalar(O.vmHvSoftware, adminString(hv ? hv.type : ''));
  scalar(O.vmHvVersion, adminString(hv ? hv.version ?? hv.libvirtVersion : ''));
  scalar(O.vmHvObjectID, objectId(ZERO_DOT_ZERO));
  scalar(O.vmHvUpTime, timeTicks(hvUpTimeTicks(snapshot.host)));
  scalar(O.vmNumber, integer(rows.length));
  scalar(O.vmTableLastChange, timeTicks(state.tableLastChange));
  addTable(b, vmTable(rows, state));
  addTable(b, vmCpuTable(rows));
  addTable(b, vmCpuAffinityTable(rows, snapshot.host));
  addTable(b, vmStorageTable(rows, snapshot.host, snapshot.imagePaths));
  addTable(b, vmNetworkTable(rows, snapshot.host));
  scalar(O.vmPerVMNotificationsEnabled, integer(state.perVmNotificationsEnabled ? O.TruthValue.True : O.TruthValue.False));
  scalar(O.vmBulkNotificationsEnabled, integer(state.bulkNotificationsEnabled ? O.TruthValue.True : O.TruthValue.False));
  return b.build();
}

function addTable(b: MibViewBuilder, t: Table): void {
  t.columns.forEach((arc, c) => {
    const column = [...t.entry, arc];
    b.declareObject(column);
    for (const row of t.rows) {
      const v = row.cells[c];
      if (v !== undefined) b.add([...column, ...row.index], v);
    }
  });
}

function vmTable(rows: readonly VmRow[], state: ModelState): Table {
  const C = O.VmColumn;
  const columns = [C.Name, C.UUID, C.OSType, C.AdminState, C.OperState, C.AutoStart, C.Persistent, C.CurCpuNumber,
    C.MinCpuNumber, C.MaxCpuNumber, C.MemUnit, C.CurMem, C.MinMem, C.MaxMem, C.UpTime, C.CpuTime];
  return {
    entry: O.vmEntry,
    columns,
    rows: rows.map(({ domain: d, indexes }) => {
      const maxBytes = (d.hotplugMemoryKiB ?? d.maxMemoryKiB) * 1024n;
      const mem = scaleToInteger32([d.memoryKiB * 1024n, maxBytes], 1024n);
      const upSince = indexes.runningSince;
      const admin = adminState(d);
      const cells: Value[] = [
        adminString(d.name),
        octets(uuidBytes(d.uuid)),
        adminString(d.osType),
        integer(admin),
        integer(state.libvirtLost ? O.OperState.Unknown : operState(d)),
        integer(d.autostart === null ? O.AutoStart.Unknown : d.autostart ? O.AutoStart.Enabled : O.AutoStart.Disabled),
        integer(d.persistent === null ? O.Persistent.Unknown : d.persistent ? O.Persistent.Persistent : O.Persistent.Transient),
        integer(d.curVcpus),
        // libvirt has no configured lower bound for vCPUs or memory.
        integer(-1),
        integer(d.maxVcpus),
        integer(mem.unit),
        integer(mem.scaled[0] ?? 0),
        integer(-1),
        integer(mem.scaled[1] ?? -1),
        // Counted from the last shutdown → running change; a crashed domain kept
        // around by on_crash=preserve is active but administratively down.
        timeTicks(d.id >= 0 && admin !== O.AdminState.Shutdown && upSince !== null ? (state.now - upSince) / 10 : 0),
        // Some drivers report a clock-based CPU time for shut-off domains; an inactive VM has used none.
        counter64(d.id >= 0 ? d.cpuTimeNs / NS_PER_US : 0n),
      ];
      return { index: [indexes.vmIndex], cells };
    }),
  };
}

function vmCpuTable(rows: readonly VmRow[]): Table {
  const out: Table['rows'] = [];
  for (const { domain: d, indexes } of rows) {
    for (const v of sortedVcpus(d)) {
      // An inactive VM's vCPUs have used no time since it stopped; a running
      // one whose time libvirt did not report gets no value rather than a false 0.
      const time = d.id < 0 ? 0n : v.cpuTimeNs;
      out.push({ index: [indexes.vmIndex, v.number + 1], cells: [time === null ? undefined : counter64(time / NS_PER_US)] });
    }
  }
  return { entry: O.vmCpuEntry, columns: [O.VmCpuColumn.CoreTime], rows: out };
}

function vmCpuAffinityTable(rows: readonly VmRow[], host: HostInfo): Table {
  const hostCpus = [...host.cpuDeviceIndex.entries()].sort((a, b) => a[1] - b[1]);
  const out: Table['rows'] = [];
  for (const { domain: d, indexes } of rows) {
    for (const v of sortedVcpus(d)) {
      const allowed = v.affinity === null ? null : new Set(v.affinity);
      for (const [cpu, hrDeviceIndex] of hostCpus) {
        const affinity = allowed === null ? O.CpuAffinity.Unknown : allowed.has(cpu) ? O.CpuAffinity.Enable : O.CpuAffinity.Disable;
        out.push({ index: [indexes.vmIndex, v.number + 1, hrDeviceIndex], cells: [integer(affinity)] });
      }
    }
  }
  return { entry: O.vmCpuAffinityEntry, columns: [O.VmCpuAffinityColumn.Affinity], rows: out };
}

function sortedVcpus(d: DomainRecord): DomainRecord['vcpus'] {
  return d.vcpus.slice().sort((a, b) => a.number - b.number);
}

function vmStorageTable(rows: readonly VmRow[], host: HostInfo, imagePaths: Map<string, string>): Table {
  const C = O.VmStorageColumn;
  const columns = [C.Parent, C.SourceType, C.SourceTypeString, C.ResourceID, C.Access, C.MediaType, C.MediaTypeString,
    C.SizeUnit, C.DefinedSize, C.AllocatedSize, C.ReadIOs, C.WriteIOs, C.ReadOctets, C.WriteOctets, C.ReadLatency,
    C.WriteLatency];
  const out: Table['rows'] = [];
  for (const { domain: d, indexes } of rows) {
    const disks = d.disks
      .map((disk) => ({ disk, index: indexes.disks.get(disk.target) }))
      .filter((x): x is { disk: DiskRecord; index: number } => x.index !== undefined)
      .sort((a, b) => a.index - b.index);
    for (const { disk, index } of disks) {
      out.push({ index: [indexes.vmIndex, index], cells: storageCells(disk, host, imagePaths) });
    }
  }
  return { entry: O.vmStorageEntry, columns, rows: out };
}

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

function storageCells(disk: DiskRecord, host: HostInfo, imagePaths: Map<string, string>): (Value | undefined)[] {
  const sourceType = storageSourceType(disk);
  const fixedSize = sourceType === O.StorageSourceType.Block || sourceType === O.StorageSourceType.Raw;
  // For block and raw sources RFC 7666 makes the allocated size equal to the defined size.
  const allocation = fixedSize ? disk.capacity : disk.allocation;
  const sizes = scaleToInteger32([disk.capacity, allocation], 1048576n);
  const parent = disk.source && (disk.sourceKind === 'file' || disk.sourceKind === 'dir')
    ? filesystemFor(host.filesystems, imagePaths.get(disk.source) ?? disk.source)?.hrStorageIndex ?? 0
    : 0;
  const opt = (v: bigint | null, div = 1n): Value | undefined => (v === null ? undefined : counter64(v / div));
  const readonly = disk.readonly || disk.device === 'cdrom';
  return [
    integer(parent),
    integer(sourceType),
    adminString(disk.format ?? disk.sourceKind),
    adminString(disk.source ?? ''),
    integer(readonly ? O.StorageAccess.ReadOnly : O.StorageAccess.ReadWrite),
    integer(storageMediaType(disk)),
    adminString(disk.bus ?? ''),
    integer(sizes.unit),
    integer(sizes.scaled[0] ?? -1),
    integer(sizes.scaled[1] ?? -1),
    opt(disk.rdReq),
    opt(disk.wrReq),
    opt(disk.rdBytes),
    opt(disk.wrBytes),
    opt(disk.rdTotalTimeNs, NS_PER_US),
    opt(disk.wrTotalTimeNs, NS_PER_US),
  ];
}

function vmNetworkTable(rows: readonly VmRow[], host: HostInfo): Table {
  const C = O.VmNetworkColumn;
  const out: Table['rows'] = [];
  for (const { domain: d, indexes } of rows) {
    const nics = d.nics
      .map((nic, pos) => ({ nic, index: indexes.nics.get(nicKey(nic, pos)) }))
      .filter((x): x is { nic: NicRecord; index: number } => x.index !== undefined)
      .sort((a, b) => a.index - b.index);
    for (const { nic, index } of nics) {
      const iface = nic.hostDevice ? host.interfaces.get(nic.hostDevice) : undefined;
      const parent = iface ? iface.parentIfIndex : nic.source ? host.interfaces.get(nic.source)?.ifIndex ?? 0 : 0;
      const mac = macBytes(nic.mac);
      out.push({
        index: [indexes.vmIndex, index],
        cells: [integer(iface?.ifIndex ?? 0), integer(parent), adminString(nic.model ?? ''), octets(mac ?? Buffer.alloc(0))],
      });
    }
  }
  return { entry: O.vmNetworkEntry, columns: [C.IfIndex, C.Parent, C.Model, C.PhysAddress], rows: out };
}

/** The key a NIC keeps its vmNetworkIndex under: its MAC, or its position when it has none. */
export function nicKey(nic: NicRecord, position: number): string {
  return nic.mac ? nic.mac.toLowerCase() : `#${position}`;
}
