// Object identifiers of VMM-AGENTX-MIB (mib/VMM-AGENTX-MIB.txt), the
// project's module under Net-SNMP's netSnmpPlaypen until it has a PEN.
export const VMM_AGENTX_MIB = [1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 7666] as const;
export const vmmNotifications = [...VMM_AGENTX_MIB, 0];
export const vmmObjects = [...VMM_AGENTX_MIB, 1];

export const vmmMigrationEntry = [...vmmObjects, 1, 1];

export enum MigrationColumn {
  JobState = 1, Direction = 2, Peer = 3, Elapsed = 4, DataTotal = 5, DataProcessed = 6, DataRemaining = 7,
  MemoryTotal = 8, MemoryProcessed = 9, MemoryRemaining = 10, DirtyRate = 11, Iteration = 12, ExpectedDowntime = 13,
  LastResult = 14, LastDirection = 15, LastEnded = 16, LastTotalTime = 17, LastDowntime = 18, LastSetupTime = 19,
  LastDataTransferred = 20,
}

export enum VmmNotification { MigrationStarted = 1, MigrationCompleted = 2, MigrationFailed = 3 }

/** vmmMigrationJobState; vmmMigrationLastResult uses the same numbers (none, completed, failed, cancelled). */
export enum MigrationJobState { None = 1, Active = 2, Completed = 3, Failed = 4, Cancelled = 5, Postcopy = 6 }
export enum MigrationDirectionValue { None = 1, Outgoing = 2, Incoming = 3 }
