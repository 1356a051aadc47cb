// Object identifiers of VM-MIB (RFC 7666). Facts: shared/reference/VM-MIB-facts.md §1.4–1.6.
export const VM_MIB = [1, 3, 6, 1, 2, 1, 236] as const;
export const vmNotifications = [...VM_MIB, 0];
export const vmObjects = [...VM_MIB, 1];

export const vmHypervisor = [...vmObjects, 1];
export const vmHvSoftware = [...vmHypervisor, 1];
export const vmHvVersion = [...vmHypervisor, 2];
export const vmHvObjectID = [...vmHypervisor, 3];
export const vmHvUpTime = [...vmHypervisor, 4];
export const vmNumber = [...vmObjects, 2];
export const vmTableLastChange = [...vmObjects, 3];
export const vmPerVMNotificationsEnabled = [...vmObjects, 9];
export const vmBulkNotificationsEnabled = [...vmObjects, 10];
export const vmAffectedVMs = [...vmObjects, 11];

/** Entry OIDs; a column is entry + arc. */
export const vmEntry = [...vmObjects, 4, 1];
export const vmCpuEntry = [...vmObjects, 5, 1];
export const vmCpuAffinityEntry = [...vmObjects, 6, 1];
export const vmStorageEntry = [...vmObjects, 7, 1];
export const vmNetworkEntry = [...vmObjects, 8, 1];

export enum VmColumn {
  Name = 2, UUID = 3, OSType = 4, AdminState = 5, OperState = 6, AutoStart = 7, Persistent = 8,
  CurCpuNumber = 9, MinCpuNumber = 10, MaxCpuNumber = 11, MemUnit = 12, CurMem = 13, MinMem = 14,
  MaxMem = 15, UpTime = 16, CpuTime = 17,
}
export enum VmCpuColumn { CoreTime = 2 }
/** vmCpuAffinityEntry has no arc 1: its columns are 2 (index) and 3. */
export enum VmCpuAffinityColumn { Affinity = 3 }
export enum VmStorageColumn {
  Parent = 3, SourceType = 4, SourceTypeString = 5, ResourceID = 6, Access = 7, MediaType = 8,
  MediaTypeString = 9, SizeUnit = 10, DefinedSize = 11, AllocatedSize = 12, ReadIOs = 13, WriteIOs = 14,
  ReadOctets = 15, WriteOctets = 16, ReadLatency = 17, WriteLatency = 18,
}
export enum VmNetworkColumn { IfIndex = 2, Parent = 3, Model = 4, PhysAddress = 5 }

/** Notification OIDs (vmNotifications.N). */
export enum VmNotification {
  Running = 1, Shuttingdown = 2, Shutdown = 3, Paused = 4, Suspending = 5, Suspended = 6, Resuming = 7,
  Migrating = 8, Crashed = 9, Deleted = 10,
  BulkRunning = 11, BulkShuttingdown = 12, BulkShutdown = 13, BulkPaused = 14, BulkSuspending = 15,
  BulkSuspended = 16, BulkResuming = 17, BulkMigrating = 18, BulkCrashed = 19, BulkDeleted = 20,
}

/** Textual conventions of VM-MIB (enum numbers exactly as the module defines them). */
export enum AdminState { Running = 1, Suspended = 2, Paused = 3, Shutdown = 4 }
export enum OperState {
  Unknown = 1, Other = 2, Preparing = 3, Running = 4, Suspending = 5, Suspended = 6, Resuming = 7,
  Paused = 8, Migrating = 9, Shuttingdown = 10, Shutdown = 11, Crashed = 12,
}
export enum AutoStart { Unknown = 1, Enabled = 2, Disabled = 3 }
export enum Persistent { Unknown = 1, Persistent = 2, Transient = 3 }
export enum StorageSourceType { Unknown = 1, Other = 2, Block = 3, Raw = 4, Sparse = 5, Network = 6 }
export enum StorageAccess { Unknown = 1, ReadWrite = 2, ReadOnly = 3 }
/** IANAStorageMediaType (IANA-STORAGE-MEDIA-TYPE-MIB, erratum 4710 numbering). */
export enum StorageMediaType { Other = 1, Unknown = 2, HardDisk = 3, OpticalDisk = 4, FloppyDisk = 5 }
export enum CpuAffinity { Unknown = 0, Enable = 1, Disable = 2 }
export enum TruthValue { True = 1, False = 2 }
