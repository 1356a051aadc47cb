// check_vmm's rules without an agent: what it concludes from given MIB
// values (checks.ts) and how it reads its command line (options.ts). The
// live plugin against the fixture: test/integration/check-vmm.test.ts.
import {
  checkCount, checkMigrations, checkStates, checkVm, formatPerfDatum, listNames, Status, statusLine, ticksBetween,
  VmMigration, worst,
} from '../../src/plugin/checks';
import { parseCommandLine, PluginOptions, UsageError } from '../../src/plugin/options';
import { parseRange } from '../../src/plugin/range';

function options(argv: string[]): PluginOptions {
  const parsed = parseCommandLine(argv);
  if (parsed.kind !== 'check') throw new Error(`expected a check, got ${parsed.kind}`);
  return parsed.options;
}

describe('output', () => {
  test('perfdata: label=value[UOM];warn;crit;min;max, trailing empty fields dropped, odd labels quoted', () => {
    expect(formatPerfDatum({ label: 'vms', value: 9, min: 0 })).toBe('vms=9;;;0');
    expect(formatPerfDatum({ label: 'vms', value: 9 })).toBe('vms=9');
    expect(formatPerfDatum({ label: 'longest', value: 12.5, uom: 's', warn: parseRange('600'), crit: parseRange('@~:1'), min: 0, max: 99 }))
      .toBe('longest=12.5s;600;@~:1;0;99');
    expect(formatPerfDatum({ label: "it's a vm", value: 1 })).toBe("'it''s a vm'=1");
    expect(formatPerfDatum({ label: 'a=b', value: 1 })).toBe("'a=b'=1");
  });

  test('the status line keeps "|" and line breaks out of the text', () => {
    const line = statusLine({ status: Status.WARNING, text: 'vm|evil\nsecond line', perfdata: [{ label: 'x', value: 1 }] });
    expect(line).toBe('VMM WARNING - vm\u00a6evil second line | x=1');
    expect(statusLine({ status: Status.UNKNOWN, text: 'no answer', perfdata: [] })).toBe('VMM UNKNOWN - no answer');
  });

  test('worst: CRITICAL over UNKNOWN over WARNING over OK', () => {
    expect(worst()).toBe(Status.OK);
    expect(worst(Status.WARNING, Status.OK)).toBe(Status.WARNING);
    expect(worst(Status.WARNING, Status.UNKNOWN)).toBe(Status.UNKNOWN);
    expect(worst(Status.UNKNOWN, Status.CRITICAL, Status.WARNING)).toBe(Status.CRITICAL);
  });

  test('listNames shows ten names at most', () => {
    expect(listNames([])).toBe('');
    expect(listNames(['a'])).toBe('a');
    expect(listNames(['a', 'b', 'c'])).toBe('a, b and c');
    const many = Array.from({ length: 13 }, (_, i) => `vm${i}`);
    expect(listNames(many)).toBe('vm0, vm1, vm2, vm3, vm4, vm5, vm6, vm7, vm8, vm9 and 3 more');
  });
});

describe('states', () => {
  const vm = (index: number, operState: number) => ({ index, name: `vm${index}`, operState });

  test('all running is OK, with a count for each of the 12 states', () => {
    const r = checkStates([vm(1, 4), vm(2, 4)], { warnShutdown: false });
    expect(r.status).toBe(Status.OK);
    expect(r.text).toBe('2 VMs: 2 running');
    expect(r.perfdata.map((p) => p.label)).toEqual([
      'vms', 'unknown', 'other', 'preparing', 'running', 'suspending', 'suspended', 'resuming', 'paused', 'migrating',
      'shuttingdown', 'shutdown', 'crashed',
    ]);
  });

  test('shutdown is OK unless asked; paused is WARNING; crashed is CRITICAL; unknown is UNKNOWN', () => {
    expect(checkStates([vm(1, 11)], { warnShutdown: false }).status).toBe(Status.OK);
    expect(checkStates([vm(1, 11)], { warnShutdown: true }).status).toBe(Status.WARNING);
    expect(checkStates([vm(1, 8), vm(2, 6), vm(3, 9)], { warnShutdown: false }).status).toBe(Status.WARNING);
    expect(checkStates([vm(1, 1), vm(2, 8)], { warnShutdown: false }).status).toBe(Status.UNKNOWN);
    const r = checkStates([vm(1, 1), vm(2, 12), vm(3, 8)], { warnShutdown: false });
    expect(r.status).toBe(Status.CRITICAL);
    expect(r.text).toBe('1 crashed: vm2; 1 unknown: vm1; 1 paused: vm3; 3 VMs: 1 unknown, 1 paused, 1 crashed');
  });

  test('no VMs is OK; a state outside the MIB counts as other', () => {
    expect(checkStates([], { warnShutdown: true })).toMatchObject({ status: Status.OK, text: 'no VMs' });
    expect(checkStates([vm(1, 77)], { warnShutdown: false }).text).toBe('1 VM: 1 other');
  });
});

describe('count', () => {
  test('thresholds: critical wins, the range broken is named, perfdata carries both', () => {
    const w = parseRange('2:');
    const c = parseRange('1:');
    expect(checkCount(3, { label: 'vms', noun: 'VMs' }, w, c)).toEqual({
      status: Status.OK, text: '3 VMs', perfdata: [{ label: 'vms', value: 3, warn: w, crit: c, min: 0 }],
    });
    expect(checkCount(1, { label: 'vms', noun: 'VM' }, w, c)).toMatchObject({ status: Status.WARNING, text: '1 VM (warning range 2:)' });
    expect(checkCount(0, { label: 'vms', noun: 'VMs' }, w, c)).toMatchObject({ status: Status.CRITICAL, text: '0 VMs (critical range 1:)' });
    expect(checkCount(0, { label: 'vms', noun: 'VMs' })).toMatchObject({ status: Status.OK });
  });
});

describe('vm', () => {
  test('each state of a named VM', () => {
    const at = (operState: number) => checkVm('x', { index: 3, name: 'x', operState }, 5).status;
    expect(at(4)).toBe(Status.OK);
    expect(at(9)).toBe(Status.OK);
    expect(at(12)).toBe(Status.CRITICAL);
    expect(at(1)).toBe(Status.UNKNOWN);
    for (const s of [2, 3, 5, 6, 7, 8, 10, 11]) expect(at(s)).toBe(Status.WARNING);
  });

  test('absent is CRITICAL; details become text and perfdata', () => {
    expect(checkVm('gone', undefined, 1)).toEqual({ status: Status.CRITICAL, text: 'no VM named "gone" among the 1 VM here', perfdata: [] });
    const r = checkVm('web', { index: 4, name: 'web', operState: 4, cpus: 2, memoryBytes: 3 * 2 ** 29, upTimeTicks: 9000050 }, 9);
    expect(r.text).toBe('web is running (vmIndex 4, up 1d 1h, 2 vCPUs, 1.5 GiB)');
    expect(r.perfdata.map(formatPerfDatum)).toEqual(['uptime=90000.5s;;;0', 'vcpus=2;;;0', 'memory=1610612736B;;;0']);
  });
});

describe('migration', () => {
  const idle: VmMigration = {
    index: 1, name: 'a', jobState: 1, direction: 1, elapsedMs: 0, lastResult: 1, lastDirection: 1, lastEndedTicks: 0,
  };
  const opts = { warn: parseRange('600'), crit: parseRange('1800'), sinceSeconds: 3600 };

  test('TimeTicks differences survive the 2^32 wrap', () => {
    expect(ticksBetween(100, 350)).toBe(2.5);
    expect(ticksBetween(2 ** 32 - 100, 50)).toBe(1.5);
  });

  test('nothing under way, nothing failed: OK', () => {
    const r = checkMigrations([idle, { ...idle, index: 2, name: 'b', lastResult: 3, lastEndedTicks: 1000 }], 2000, opts);
    expect(r.status).toBe(Status.OK);
    expect(r.text).toBe('no migration under way; none failed or was cancelled in the last 3600 s; 2 VMs');
    expect(r.perfdata.map(formatPerfDatum)).toEqual(['active=0;;;0', 'longest=0s;600;1800;0', 'failed=0;;;0']);
  });

  test('an active migration against -w and -c, in seconds', () => {
    const running = (elapsedMs: number, jobState = 2): VmMigration => ({ ...idle, jobState, direction: 2, elapsedMs });
    expect(checkMigrations([running(42_000)], 0, opts)).toMatchObject({
      status: Status.OK, text: 'migrating: a (outgoing, 42s); none failed or was cancelled in the last 3600 s; 1 VM',
    });
    expect(checkMigrations([running(600_000)], 0, opts).status).toBe(Status.OK);
    expect(checkMigrations([running(600_001)], 0, opts)).toMatchObject({
      status: Status.WARNING, text: expect.stringMatching(/^a migrating \(outgoing\) for 10m 0s \(warning range 600 s\);/),
    });
    const post = checkMigrations([running(1_900_000, 6)], 0, opts);
    expect(post.status).toBe(Status.CRITICAL);
    expect(post.text).toMatch(/^a migrating \(outgoing, post-copy\) for 31m 40s \(critical range 1800 s\);/);
    expect(post.perfdata.map(formatPerfDatum)).toEqual(['active=1;;;0', 'longest=1900s;600;1800;0', 'failed=0;;;0']);
  });

  test('an incoming job on the destination has no duration, and is not judged by it', () => {
    const r = checkMigrations([{ ...idle, jobState: 2, direction: 3, elapsedMs: 0 }], 0, opts);
    expect(r.status).toBe(Status.OK);
    expect(r.text).toMatch(/^migrating: a \(incoming, duration known only to the source\);/);
  });

  test('a failed or cancelled last migration is CRITICAL within --since, measured on vmHvUpTime', () => {
    const failed: VmMigration = { ...idle, lastResult: 4, lastDirection: 2, lastEndedTicks: 100_000 };
    const at = (hvUpTime: number, m: VmMigration = failed, sinceSeconds = 3600) =>
      checkMigrations([m], hvUpTime, { ...opts, sinceSeconds });
    expect(at(100_000 + 360_000)).toMatchObject({
      status: Status.CRITICAL, text: 'last migration of a (outgoing) failed 1h 0m ago; no migration under way; 1 VM',
    });
    expect(at(100_000 + 360_001).status).toBe(Status.OK);
    expect(at(100_500, { ...failed, lastResult: 5, lastDirection: 3 }).text).toMatch(/^last migration of a \(incoming\) was cancelled 5s ago;/);
    expect(at(100_500, failed, 0)).toMatchObject({ status: Status.OK, text: 'no migration under way; 1 VM' });
    // 0: ended before the hypervisor last started.
    expect(at(100, { ...failed, lastEndedTicks: 0 }).status).toBe(Status.OK);
    // Across the TimeTicks wrap.
    expect(at(50, { ...failed, lastEndedTicks: 2 ** 32 - 50 }).status).toBe(Status.CRITICAL);
  });
});

describe('command line', () => {
  test('defaults', () => {
    expect(options(['-H', 'hv1'])).toMatchObject({
      host: 'hv1', port: 161, community: 'public', version: '2c', timeoutSeconds: 10, mode: 'states',
      warning: undefined, critical: undefined, warnShutdown: false, sinceSeconds: 3600,
    });
    const m = options(['-H', 'hv1', '-m', 'migration']);
    expect([m.warning?.text, m.critical?.text]).toEqual(['600', '1800']);
  });

  test('short options with attached values, long ones with "="', () => {
    expect(options(['-Hhv1', '-p1161', '-mcount', '-w~:10', '-c', '@5:6', '--timeout=2.5'])).toMatchObject({
      host: 'hv1', port: 1161, mode: 'count', warning: { text: '~:10' }, critical: { text: '@5:6' }, timeoutSeconds: 2.5,
    });
    expect(options(['--hostname=hv1', '--mode', 'vm', '--name', 'fileserver-größe'])).toMatchObject({ mode: 'vm', name: 'fileserver-größe' });
    expect(options(['-H', 'hv1', '-m', 'count', '--state', 'Crashed']).state).toBe(12);
    expect(options(['-H', 'hv1', '-m', 'count', '--state', '8']).state).toBe(8);
  });

  test('SNMPv3: protocols by their usual names, the level from the pass phrases given', () => {
    expect(options(['-H', 'h', '-v', '3', '-u', 'mon', '-a', 'sha-256', '-A', 'authpass1', '-x', 'AES', '-X', 'privpass1']))
      .toMatchObject({ version: '3', user: 'mon', level: 'authPriv', authProtocol: 'sha256', privProtocol: 'aes' });
    expect(options(['-H', 'h', '-v', '3', '-u', 'mon', '-A', 'authpass1']).level).toBe('authNoPriv');
    expect(options(['-H', 'h', '-v', '3', '-u', 'mon']).level).toBe('noAuthNoPriv');
    expect(options(['-H', 'h', '-v', '3', '-u', 'mon', '-l', 'authnopriv', '-A', 'authpass1', '-x', 'des']))
      .toMatchObject({ level: 'authNoPriv', authProtocol: 'sha', privProtocol: 'des' });
  });

  test('--help and --version win over everything else', () => {
    expect(parseCommandLine(['-m', 'bogus', '--help']).kind).toBe('help');
    expect(parseCommandLine(['-V']).kind).toBe('version');
  });

  test.each([
    [[], /-H HOST is required/],
    [['-H'], /-H needs a value/],
    [['-H', 'h', '-p', '0'], /not a port number/],
    [['-H', 'h', '-p', '70000'], /not a port number/],
    [['-H', 'h', '-v', '1'], /"1" is not 2c or 3/],
    [['-H', 'h', '-t', '0'], /-t: "0" is not a positive number/],
    [['-H', 'h', '-t', 'soon'], /-t: "soon" is not a positive number/],
    [['-H', 'h', '-m', 'disks'], /-m: "disks" is not one of states, count, vm, migration/],
    [['-H', 'h', '-m', 'count', '-w', '20:10'], /--warning: "20:10" is not a threshold range: its start 20 is above its end 10/],
    [['-H', 'h', '-m', 'count', '-c', ''], /--critical: "" is not a threshold range/],
    [['-H', 'h', '-w', '5'], /-w and -c have no meaning in mode states/],
    [['-H', 'h', '-m', 'vm'], /-m vm needs -n NAME/],
    [['-H', 'h', '-n', 'x'], /-n NAME is for -m vm/],
    [['-H', 'h', '--state', 'running'], /--state is for -m count/],
    [['-H', 'h', '-m', 'count', '--state', 'asleep'], /--state: "asleep" is not a vmOperState/],
    [['-H', 'h', '-m', 'count', '--state', '13'], /is not a vmOperState/],
    [['-H', 'h', '-m', 'count', '--warn-shutdown'], /--warn-shutdown is for -m states/],
    [['-H', 'h', '--warn-shutdown=yes'], /--warn-shutdown takes no value/],
    [['-H', 'h', '-m', 'migration', '--since', '1h'], /--since: "1h" is not a whole number of seconds/],
    [['-H', 'h', '-u', 'mon'], /-u is for SNMPv3: add -v 3/],
    [['-H', 'h', '-v', '3'], /-v 3 needs -u USER/],
    [['-H', 'h', '-v', '3', '-u', 'm', '-l', 'authPriv', '-A', 'authpass1'], /-l authPriv needs -X PRIVPASS/],
    [['-H', 'h', '-v', '3', '-u', 'm', '-A', 'short'], /-A: an SNMPv3 pass phrase has at least 8 characters/],
    [['-H', 'h', '-v', '3', '-u', 'm', '-l', 'secret'], /-l: "secret" is not noAuthNoPriv, authNoPriv or authPriv/],
    [['-H', 'h', '-a', 'SHA3'], /-a: "SHA3" is not one of/],
    [['-H', 'h', '-x', '3DES'], /-x: "3DES" is not one of/],
    [['-H', 'h', '--frobnicate'], /unknown option --frobnicate/],
    [['-H', 'h', '-Z'], /unknown option -Z/],
    [['-H', 'h', 'states'], /unexpected argument "states"/],
  ])('%j is refused', (argv, why) => {
    expect(() => parseCommandLine(argv)).toThrow(UsageError);
    expect(() => parseCommandLine(argv)).toThrow(why);
  });
});
