// The project's extension module, VMM-AGENTX-MIB: facts → rows. Like
// vm-mib.ts it is pure; its table has a row for every vmTable row (AUGMENTS
// vmEntry), and a VM that never migrated reads none/0 throughout.
import type { MibViewBuilder, Value, VarBind } from '../../agentx';
import type { FinishedMigration, MigrationDirection, MigrationState } from '../snapshot';
import { adminString, gauge32, gauge64, integer, timeTicks } from './values';
import type { VmRow } from './vm-mib';
import * as X from './vmm-agentx-oids';

const DIRECTION: Record<MigrationDirection, X.MigrationDirectionValue> = {
  outgoing: X.MigrationDirectionValue.Outgoing,
  incoming: X.MigrationDirectionValue.Incoming,
};
const RESULT: Record<FinishedMigration['result'], X.MigrationJobState> = {
  completed: X.MigrationJobState.Completed,
  failed: X.MigrationJobState.Failed,
  cancelled: X.MigrationJobState.Cancelled,
};

const NONE = integer(X.MigrationJobState.None);
const ZERO32 = gauge32(0);
const ZERO64 = gauge64(0n);
const EMPTY = adminString('');
const ZERO_TICKS = timeTicks(0);

const COLUMNS = Object.values(X.MigrationColumn).filter((v): v is number => typeof v === 'number');

/** The row of a VM that has never migrated (shared by all of them). */
const IDLE_ROW: readonly Value[] = COLUMNS.map((c) => {
  switch (c) {
    case X.MigrationColumn.JobState:
    case X.MigrationColumn.Direction:
    case X.MigrationColumn.LastResult:
    case X.MigrationColumn.LastDirection:
      return NONE;
    case X.MigrationColumn.Peer:
      return EMPTY;
    case X.MigrationColumn.LastEnded:
      return ZERO_TICKS;
    case X.MigrationColumn.DataTotal:
    case X.MigrationColumn.DataProcessed:
    case X.MigrationColumn.DataRemaining:
    case X.MigrationColumn.MemoryTotal:
    case X.MigrationColumn.MemoryProcessed:
    case X.MigrationColumn.MemoryRemaining:
    case X.MigrationColumn.LastDataTransferred:
      return ZERO64;
    default:
      return ZERO32;
  }
});

/**
 * The values of one VM's vmmMigrationEntry, in column order. `uptimeTicks`
 * (vmHvUpTime now) bounds vmmMigrationLastEnded: a migration that ended
 * before the host last booted ended at no vmHvUpTime of this boot.
 */
export function migrationRow(m: MigrationState | undefined, uptimeTicks: number, now: number): readonly Value[] {
  if (m === undefined) return IDLE_ROW;
  const a = m.active;
  const f = a?.figures ?? null;
  const last = m.last;
  const big = (v: bigint | null | undefined): Value => (v === null || v === undefined ? ZERO64 : gauge64(v));
  const small = (v: number | null | undefined): Value => (v === null || v === undefined ? ZERO32 : gauge32(v));
  const jobState = a !== null
    ? a.postcopy ? X.MigrationJobState.Postcopy : X.MigrationJobState.Active
    : last !== null ? RESULT[last.result] : X.MigrationJobState.None;
  const bootedAt = now - uptimeTicks * 10;
  const ended = last === null || last.endedAt < bootedAt ? 0 : last.endedUptimeTicks;
  return [
    integer(jobState),
    integer(a !== null ? DIRECTION[a.direction] : X.MigrationDirectionValue.None),
    EMPTY,
    small(f?.elapsedMs),
    big(f?.dataTotal),
    big(f?.dataProcessed),
    big(f?.dataRemaining),
    big(f?.memoryTotal),
    big(f?.memoryProcessed),
    big(f?.memoryRemaining),
    small(f?.dirtyRate),
    small(f?.iteration),
    small(f?.expectedDowntimeMs),
    integer(last !== null ? RESULT[last.result] : X.MigrationJobState.None),
    integer(last !== null ? DIRECTION[last.direction] : X.MigrationDirectionValue.None),
    timeTicks(ended),
    small(last?.totalTimeMs),
    small(last?.downtimeMs),
    small(last?.setupTimeMs),
    big(last?.dataTransferred),
  ];
}

/** vmmMigrationTable, for the VMs in vmIndex order. */
export function addMigrationTable(
  b: MibViewBuilder,
  rows: readonly VmRow[],
  migrations: ReadonlyMap<string, MigrationState>,
  uptimeTicks: number,
  now: number,
): void {
  const table = b.table(X.vmmMigrationEntry, COLUMNS, rows.length);
  const index = [0];
  for (const { domain, indexes } of rows) {
    index[0] = indexes.vmIndex;
    // Most hosts have no migration at all: no lookup then.
    table.row(index, migrations.size === 0 ? IDLE_ROW : migrationRow(migrations.get(domain.uuid), uptimeTicks, now));
  }
  table.end();
}

/** The instances of some VMs' rows, to patch a served view with (MibView.withValues) between refreshes. */
export function migrationVarbinds(vmIndex: number, m: MigrationState | undefined, uptimeTicks: number, now: number): VarBind[] {
  const row = migrationRow(m, uptimeTicks, now);
  return COLUMNS.map((c, k) => ({ oid: [...X.vmmMigrationEntry, c, vmIndex], ...row[k] }));
}
