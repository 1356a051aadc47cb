// The objects check_vmm reads: VM-MIB (RFC 7666, mib-2.236) and the
// project's VMM-AGENTX-MIB (netSnmpPlaypen.7666), numeric as on the wire.

const VM_MIB = '1.3.6.1.2.1.236.1';
export const VM_HV_UPTIME = `${VM_MIB}.1.4.0`;
export const VM_NUMBER = `${VM_MIB}.2.0`;
const VM_ENTRY = `${VM_MIB}.4.1`;
export const VM_NAME = `${VM_ENTRY}.2`;
export const VM_OPER_STATE = `${VM_ENTRY}.6`;
export const VM_CUR_CPU_NUMBER = `${VM_ENTRY}.9`;
export const VM_MEM_UNIT = `${VM_ENTRY}.12`;
export const VM_CUR_MEM = `${VM_ENTRY}.13`;
export const VM_UP_TIME = `${VM_ENTRY}.16`;

const VMM_MIGRATION_ENTRY = '1.3.6.1.4.1.8072.9999.9999.7666.1.1.1';
export const VMM_MIGRATION_JOB_STATE = `${VMM_MIGRATION_ENTRY}.1`;
export const VMM_MIGRATION_DIRECTION = `${VMM_MIGRATION_ENTRY}.2`;
export const VMM_MIGRATION_ELAPSED = `${VMM_MIGRATION_ENTRY}.4`;
export const VMM_MIGRATION_LAST_RESULT = `${VMM_MIGRATION_ENTRY}.14`;
export const VMM_MIGRATION_LAST_DIRECTION = `${VMM_MIGRATION_ENTRY}.15`;
export const VMM_MIGRATION_LAST_ENDED = `${VMM_MIGRATION_ENTRY}.16`;

/** VirtualMachineOperState, value n at index n - 1. */
export const OPER_STATE_NAMES: readonly string[] = [
  'unknown', 'other', 'preparing', 'running', 'suspending', 'suspended',
  'resuming', 'paused', 'migrating', 'shuttingdown', 'shutdown', 'crashed',
];

export const OperState = {
  unknown: 1, other: 2, preparing: 3, running: 4, suspending: 5, suspended: 6,
  resuming: 7, paused: 8, migrating: 9, shuttingdown: 10, shutdown: 11, crashed: 12,
} as const;

export const JobState = { none: 1, active: 2, completed: 3, failed: 4, cancelled: 5, postcopy: 6 } as const;
export const Direction = { none: 1, outgoing: 2, incoming: 3 } as const;

export function operStateName(n: number): string {
  return OPER_STATE_NAMES[n - 1] ?? `state ${n}`;
}
