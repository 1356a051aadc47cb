// What check_vmm concludes from what it read: pure functions from the MIB
// values to a status, a line of text and performance data, so that each rule
// can be tested without an agent.
import { rangeAlerts, ThresholdRange } from './range';
import { Direction, JobState, operStateName, OperState, OPER_STATE_NAMES } from './vm-mib';

export enum Status {
  OK = 0,
  WARNING = 1,
  CRITICAL = 2,
  UNKNOWN = 3,
}

/** How bad each status is when several apply: CRITICAL, then UNKNOWN, then WARNING. */
const SEVERITY: Readonly<Record<Status, number>> = {
  [Status.OK]: 0,
  [Status.WARNING]: 1,
  [Status.UNKNOWN]: 2,
  [Status.CRITICAL]: 3,
};

export function worst(...statuses: Status[]): Status {
  return statuses.reduce((a, b) => (SEVERITY[b] > SEVERITY[a] ? b : a), Status.OK);
}

export interface PerfDatum {
  label: string;
  value: number;
  uom?: string;
  warn?: ThresholdRange;
  crit?: ThresholdRange;
  min?: number;
  max?: number;
}

export interface CheckResult {
  status: Status;
  text: string;
  perfdata: PerfDatum[];
}

function formatNumber(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Number(n.toFixed(3)));
}

function formatLabel(label: string): string {
  return /[\s'=]/.test(label) ? `'${label.replace(/'/g, "''")}'` : label;
}

export function formatPerfDatum(p: PerfDatum): string {
  const fields = [
    `${formatLabel(p.label)}=${formatNumber(p.value)}${p.uom ?? ''}`,
    p.warn?.text ?? '',
    p.crit?.text ?? '',
    p.min === undefined ? '' : formatNumber(p.min),
    p.max === undefined ? '' : formatNumber(p.max),
  ];
  while (fields.length > 1 && fields[fields.length - 1] === '') fields.pop();
  return fields.join(';');
}

/** Text that cannot break the output: no "|" (it starts the perfdata), no line breaks or other control characters. */
export function sanitize(text: string): string {
  return text.replace(/\|/g, '\u00a6').replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

export function statusLine(result: CheckResult): string {
  const head = `VMM ${Status[result.status]} - ${sanitize(result.text)}`;
  return result.perfdata.length === 0 ? head : `${head} | ${result.perfdata.map(formatPerfDatum).join(' ')}`;
}

/** "a, b and c", at most `max` names, then "and N more". */
export function listNames(names: readonly string[], max = 10): string {
  const shown = names.slice(0, max);
  if (names.length > max) return `${shown.join(', ')} and ${names.length - max} more`;
  if (shown.length <= 1) return shown.join('');
  return `${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** The status a value earns against -w and -c (critical first), and a note saying which range it broke. */
export function applyThresholds(value: number, warn?: ThresholdRange, crit?: ThresholdRange): { status: Status; note: string } {
  if (crit !== undefined && rangeAlerts(crit, value)) return { status: Status.CRITICAL, note: `critical range ${crit.text}` };
  if (warn !== undefined && rangeAlerts(warn, value)) return { status: Status.WARNING, note: `warning range ${warn.text}` };
  return { status: Status.OK, note: '' };
}

export interface VmState {
  index: number;
  name: string;
  operState: number;
}

// ---------------------------------------------------------------- states

export function checkStates(vms: readonly VmState[], opts: { warnShutdown: boolean }): CheckResult {
  const byState = new Map<number, string[]>();
  for (const vm of vms) {
    const state = vm.operState >= 1 && vm.operState <= OPER_STATE_NAMES.length ? vm.operState : OperState.other;
    const names = byState.get(state) ?? [];
    names.push(vm.name);
    byState.set(state, names);
  }
  const problems: Array<{ state: number; status: Status }> = [
    { state: OperState.crashed, status: Status.CRITICAL },
    { state: OperState.unknown, status: Status.UNKNOWN },
    { state: OperState.paused, status: Status.WARNING },
  ];
  if (opts.warnShutdown) problems.push({ state: OperState.shutdown, status: Status.WARNING });
  let status = Status.OK;
  const parts: string[] = [];
  for (const p of problems) {
    const names = byState.get(p.state);
    if (!names) continue;
    status = worst(status, p.status);
    parts.push(`${names.length} ${operStateName(p.state)}: ${listNames(names)}`);
  }
  const summary = OPER_STATE_NAMES
    .map((name, i) => ({ name, n: byState.get(i + 1)?.length ?? 0 }))
    .filter((s) => s.n > 0)
    .map((s) => `${s.n} ${s.name}`);
  parts.push(vms.length === 0 ? 'no VMs' : `${plural(vms.length, 'VM')}: ${summary.join(', ')}`);
  return {
    status,
    text: parts.join('; '),
    perfdata: [
      { label: 'vms', value: vms.length, min: 0 },
      ...OPER_STATE_NAMES.map((label, i) => ({ label, value: byState.get(i + 1)?.length ?? 0, min: 0 })),
    ],
  };
}

// ---------------------------------------------------------------- count

export function checkCount(
  count: number,
  what: { label: string; noun: string },
  warn?: ThresholdRange,
  crit?: ThresholdRange,
): CheckResult {
  const { status, note } = applyThresholds(count, warn, crit);
  return {
    status,
    text: `${count} ${what.noun}${note ? ` (${note})` : ''}`,
    perfdata: [{ label: what.label, value: count, warn, crit, min: 0 }],
  };
}

// ---------------------------------------------------------------- vm

export interface VmDetails extends VmState {
  cpus?: number;
  memoryBytes?: number;
  upTimeTicks?: number;
}

const PHRASE: Readonly<Record<number, string>> = {
  [OperState.unknown]: 'is in an unknown state (the agent has lost libvirt?)',
  [OperState.other]: 'is in a state VM-MIB has no name for',
  [OperState.preparing]: 'is being prepared',
  [OperState.running]: 'is running',
  [OperState.suspending]: 'is being suspended',
  [OperState.suspended]: 'is suspended',
  [OperState.resuming]: 'is resuming',
  [OperState.paused]: 'is paused',
  [OperState.migrating]: 'is migrating',
  [OperState.shuttingdown]: 'is shutting down',
  [OperState.shutdown]: 'is shut down',
  [OperState.crashed]: 'has crashed',
};

export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number(v.toFixed(1))} ${units[u]}`;
}

export function checkVm(name: string, vm: VmDetails | undefined, vmCount: number): CheckResult {
  if (vm === undefined) {
    return { status: Status.CRITICAL, text: `no VM named "${name}" among the ${plural(vmCount, 'VM')} here`, perfdata: [] };
  }
  const status =
    vm.operState === OperState.running || vm.operState === OperState.migrating ? Status.OK
      : vm.operState === OperState.crashed ? Status.CRITICAL
        : vm.operState === OperState.unknown ? Status.UNKNOWN
          : Status.WARNING;
  const facts = [`vmIndex ${vm.index}`];
  if (vm.upTimeTicks !== undefined && vm.upTimeTicks > 0) facts.push(`up ${formatDuration(vm.upTimeTicks / 100)}`);
  if (vm.cpus !== undefined) facts.push(plural(vm.cpus, 'vCPU'));
  if (vm.memoryBytes !== undefined) facts.push(formatBytes(vm.memoryBytes));
  const perfdata: PerfDatum[] = [];
  if (vm.upTimeTicks !== undefined) perfdata.push({ label: 'uptime', value: vm.upTimeTicks / 100, uom: 's', min: 0 });
  if (vm.cpus !== undefined) perfdata.push({ label: 'vcpus', value: vm.cpus, min: 0 });
  if (vm.memoryBytes !== undefined) perfdata.push({ label: 'memory', value: vm.memoryBytes, uom: 'B', min: 0 });
  const phrase = PHRASE[vm.operState] ?? `is in vmOperState ${vm.operState}`;
  return { status, text: `${vm.name} ${phrase} (${facts.join(', ')})`, perfdata };
}

// ---------------------------------------------------------------- migration

export interface VmMigration {
  index: number;
  name: string;
  jobState: number;
  direction: number;
  elapsedMs: number;
  lastResult: number;
  lastDirection: number;
  /** vmHvUpTime when the last migration ended; 0 when none ended since the hypervisor started. */
  lastEndedTicks: number;
}

const DIRECTION_NAME: Readonly<Record<number, string>> = {
  [Direction.outgoing]: 'outgoing',
  [Direction.incoming]: 'incoming',
};

/** Seconds from `earlier` to `later`, both TimeTicks, which wrap at 2^32 (after 497 days). */
export function ticksBetween(earlier: number, later: number): number {
  return ((later - earlier) >>> 0) / 100;
}

export function checkMigrations(
  rows: readonly VmMigration[],
  hvUpTimeTicks: number,
  opts: { warn?: ThresholdRange; crit?: ThresholdRange; sinceSeconds: number },
): CheckResult {
  let status = Status.OK;
  const problems: string[] = [];
  const running: string[] = [];
  let active = 0;
  let longest = 0;
  let failed = 0;
  for (const m of rows) {
    if (m.jobState === JobState.active || m.jobState === JobState.postcopy) {
      active++;
      const dir = DIRECTION_NAME[m.direction] ?? 'direction unknown';
      const post = m.jobState === JobState.postcopy ? ', post-copy' : '';
      if (m.elapsedMs === 0 && m.direction === Direction.incoming) {
        running.push(`${m.name} (${dir}${post}, duration known only to the source)`);
      } else {
        const seconds = m.elapsedMs / 1000;
        longest = Math.max(longest, seconds);
        const verdict = applyThresholds(seconds, opts.warn, opts.crit);
        const what = `${m.name} migrating (${dir}${post}) for ${formatDuration(seconds)}`;
        if (verdict.status !== Status.OK) {
          status = worst(status, verdict.status);
          problems.push(`${what} (${verdict.note} s)`);
        } else {
          running.push(`${m.name} (${dir}${post}, ${formatDuration(seconds)})`);
        }
      }
    }
    if ((m.lastResult === JobState.failed || m.lastResult === JobState.cancelled) && m.lastEndedTicks !== 0 &&
        opts.sinceSeconds > 0) {
      const ago = ticksBetween(m.lastEndedTicks, hvUpTimeTicks);
      if (ago <= opts.sinceSeconds) {
        failed++;
        status = worst(status, Status.CRITICAL);
        const result = m.lastResult === JobState.failed ? 'failed' : 'was cancelled';
        const dir = DIRECTION_NAME[m.lastDirection];
        problems.push(`last migration of ${m.name}${dir ? ` (${dir})` : ''} ${result} ${formatDuration(ago)} ago`);
      }
    }
  }
  const parts = [...problems];
  if (running.length > 0) parts.push(`migrating: ${listNames(running)}`);
  if (active === 0) parts.push('no migration under way');
  if (failed === 0 && opts.sinceSeconds > 0) {
    parts.push(`none failed or was cancelled in the last ${opts.sinceSeconds} s`);
  }
  parts.push(plural(rows.length, 'VM'));
  return {
    status,
    text: parts.join('; '),
    perfdata: [
      { label: 'active', value: active, min: 0 },
      { label: 'longest', value: longest, uom: 's', warn: opts.warn, crit: opts.crit, min: 0 },
      { label: 'failed', value: failed, min: 0 },
    ],
  };
}
