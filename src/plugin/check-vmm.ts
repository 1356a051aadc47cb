// check_vmm: a Nagios/Icinga plugin (Monitoring Plugins development
// guidelines) that asks a hypervisor's snmpd, through vmm-agentx, about its
// VMs: their states, how many there are, one VM by name, live migrations.
// One line on stdout, "VMM <STATUS> - text | perfdata", and exit code
// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. bin/check_vmm starts it.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  checkCount, checkMigrations, checkStates, checkVm, CheckResult, Status, statusLine, VmDetails, VmMigration, VmState,
} from './checks';
import { helpText, parseCommandLine, PluginOptions, UsageError } from './options';
import { SnmpClient, SnmpError, SnmpValue } from './snmp';
import {
  operStateName, VM_CUR_CPU_NUMBER, VM_CUR_MEM, VM_HV_UPTIME, VM_MEM_UNIT, VM_NAME, VM_NUMBER, VM_OPER_STATE, VM_UP_TIME,
  VMM_MIGRATION_DIRECTION, VMM_MIGRATION_ELAPSED, VMM_MIGRATION_JOB_STATE, VMM_MIGRATION_LAST_DIRECTION,
  VMM_MIGRATION_LAST_ENDED, VMM_MIGRATION_LAST_RESULT,
} from './vm-mib';

const SHORT_USAGE = 'usage: check_vmm -H HOST [-m MODE] [options], see check_vmm --help';

/** A reason to stop with UNKNOWN. */
class Unknown extends Error {}

function packageVersion(): string {
  let dir = __dirname;
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        return (JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? '?';
      } catch {
        return '?';
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return '?';
    dir = up;
  }
}

function num(v: SnmpValue | undefined): number | undefined {
  return v?.kind === 'number' ? v.value : undefined;
}

function text(v: SnmpValue | undefined): string | undefined {
  return v?.kind === 'bytes' ? v.value.toString('utf8') : undefined;
}

function describe(v: SnmpValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v.kind === 'absent') return v.why;
  if (v.kind === 'other') return `a value of ASN.1 type ${v.type}`;
  return v.kind === 'number' ? 'a number' : 'an octet string';
}

/** vmHvUpTime.0 and vmNumber.0; UNKNOWN when the host serves no VM-MIB. */
async function readScalars(client: SnmpClient): Promise<{ hvUpTime: number | undefined; vmNumber: number }> {
  const [uptime, count] = await client.get([VM_HV_UPTIME, VM_NUMBER]);
  const vmNumber = num(count);
  if (vmNumber === undefined) {
    throw new Unknown(`${client.address} serves no VM-MIB (vmNumber.0: ${describe(count)}): ` +
      'is vmm-agentx running and connected to that snmpd, and does its view include mib-2.236?');
  }
  return { hvUpTime: num(uptime), vmNumber };
}

function rowIndex(index: string): number {
  return /^\d+$/.test(index) ? Number(index) : NaN;
}

async function readStates(client: SnmpClient, vmNumber: number): Promise<VmState[]> {
  const rows = await client.walkColumns([VM_NAME, VM_OPER_STATE]);
  const vms: VmState[] = [];
  for (const [index, [name, state]] of rows) {
    const operState = num(state);
    if (operState === undefined) continue;
    vms.push({ index: rowIndex(index), name: text(name) ?? `vmIndex ${index}`, operState });
  }
  if (vms.length === 0 && vmNumber > 0) {
    throw new Unknown(`vmNumber.0 is ${vmNumber} but ${client.address} shows no vmTable row (is vmTable outside the view?)`);
  }
  return vms;
}

async function checkOneVm(client: SnmpClient, name: string, vmNumber: number): Promise<CheckResult> {
  const names = await client.walkColumns([VM_NAME]);
  let found: string | undefined;
  for (const [index, [value]] of names) {
    if (text(value) === name) {
      found = index;
      break;
    }
  }
  if (found === undefined) return checkVm(name, undefined, Math.max(vmNumber, names.size));
  const [state, cpus, memUnit, curMem, upTime] = await client.get(
    [VM_OPER_STATE, VM_CUR_CPU_NUMBER, VM_MEM_UNIT, VM_CUR_MEM, VM_UP_TIME].map((column) => `${column}.${found}`),
  );
  const operState = num(state);
  // The row went away between the walk and the GET: the VM was undefined or migrated away.
  if (operState === undefined) return checkVm(name, undefined, vmNumber);
  const unit = num(memUnit);
  const mem = num(curMem);
  const vm: VmDetails = {
    index: rowIndex(found),
    name,
    operState,
    cpus: num(cpus),
    memoryBytes: unit !== undefined && mem !== undefined ? unit * mem : undefined,
    upTimeTicks: num(upTime),
  };
  return checkVm(name, vm, vmNumber);
}

async function checkMigrationTable(client: SnmpClient, opts: PluginOptions, hvUpTime: number | undefined, vmNumber: number): Promise<CheckResult> {
  if (hvUpTime === undefined) throw new Unknown(`${client.address} serves no vmHvUpTime.0`);
  const rows = await client.walkColumns([
    VM_NAME, VMM_MIGRATION_JOB_STATE, VMM_MIGRATION_DIRECTION, VMM_MIGRATION_ELAPSED,
    VMM_MIGRATION_LAST_RESULT, VMM_MIGRATION_LAST_DIRECTION, VMM_MIGRATION_LAST_ENDED,
  ]);
  const migrations: VmMigration[] = [];
  for (const [index, [name, jobState, direction, elapsed, lastResult, lastDirection, lastEnded]] of rows) {
    const state = num(jobState);
    if (state === undefined) continue;
    migrations.push({
      index: rowIndex(index),
      name: text(name) ?? `vmIndex ${index}`,
      jobState: state,
      direction: num(direction) ?? 1,
      elapsedMs: num(elapsed) ?? 0,
      lastResult: num(lastResult) ?? 1,
      lastDirection: num(lastDirection) ?? 1,
      lastEndedTicks: num(lastEnded) ?? 0,
    });
  }
  if (migrations.length === 0 && vmNumber > 0) {
    throw new Unknown(`${client.address} serves VM-MIB but no VMM-AGENTX-MIB vmmMigrationTable ` +
      '(a vmm-agentx without it, or a view that leaves out netSnmpPlaypen.7666?)');
  }
  return checkMigrations(migrations, hvUpTime, { warn: opts.warning, crit: opts.critical, sinceSeconds: opts.sinceSeconds });
}

async function runCheck(client: SnmpClient, opts: PluginOptions): Promise<CheckResult> {
  const { hvUpTime, vmNumber } = await readScalars(client);
  switch (opts.mode) {
    case 'states':
      return checkStates(await readStates(client, vmNumber), { warnShutdown: opts.warnShutdown });
    case 'count':
      if (opts.state === undefined) {
        return checkCount(vmNumber, { label: 'vms', noun: vmNumber === 1 ? 'VM' : 'VMs' }, opts.warning, opts.critical);
      } else {
        const name = operStateName(opts.state);
        const n = (await readStates(client, vmNumber)).filter((vm) => vm.operState === opts.state).length;
        return checkCount(n, { label: name, noun: `${n === 1 ? 'VM' : 'VMs'} ${name}` }, opts.warning, opts.critical);
      }
    case 'vm':
      return checkOneVm(client, opts.name ?? '', vmNumber);
    case 'migration':
      return checkMigrationTable(client, opts, hvUpTime, vmNumber);
  }
}

function finish(line: string, status: Status): never {
  process.stdout.write(`${line}\n`);
  process.exit(status);
}

async function main(argv: readonly string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof UsageError) finish(statusLine({ status: Status.UNKNOWN, text: `${err.message}; ${SHORT_USAGE}`, perfdata: [] }), Status.UNKNOWN);
    throw err;
  }
  // The guidelines ask for UNKNOWN (3) after --help and --version: neither checked anything.
  if (parsed.kind === 'help') finish(helpText(packageVersion()).trimEnd(), Status.UNKNOWN);
  if (parsed.kind === 'version') finish(`check_vmm ${packageVersion()} (vmm-agentx)`, Status.UNKNOWN);
  const opts = parsed.options;

  const timeoutMs = opts.timeoutSeconds * 1000;
  const client = new SnmpClient({
    host: opts.host,
    port: opts.port,
    version: opts.version,
    community: opts.community,
    user: opts.version === '3'
      ? {
        name: opts.user ?? '',
        level: opts.level ?? 'noAuthNoPriv',
        authProtocol: opts.authProtocol,
        authKey: opts.authPass,
        privProtocol: opts.privProtocol,
        privKey: opts.privPass,
      }
      : undefined,
    // Two tries that together end just inside -t; the timer below is the backstop.
    requestTimeoutMs: Math.max(100, Math.floor(timeoutMs * 0.45)),
    retries: 1,
    patienceSeconds: opts.timeoutSeconds,
  });
  const timer = setTimeout(() => {
    const why = client.answered === 0
      ? `no answer from ${client.address} within ${opts.timeoutSeconds} s`
      : `timed out after ${opts.timeoutSeconds} s: ${client.address} answered ${client.answered} requests, then no more`;
    finish(statusLine({ status: Status.UNKNOWN, text: why, perfdata: [] }), Status.UNKNOWN);
  }, timeoutMs);
  let result: CheckResult;
  try {
    result = await runCheck(client, opts);
  } catch (err) {
    if (!(err instanceof Unknown) && !(err instanceof SnmpError)) throw err;
    result = { status: Status.UNKNOWN, text: err.message, perfdata: [] };
  }
  clearTimeout(timer);
  client.close();
  finish(statusLine(result), result.status);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  finish(statusLine({ status: Status.UNKNOWN, text: `check_vmm failed: ${message}`, perfdata: [] }), Status.UNKNOWN);
});
