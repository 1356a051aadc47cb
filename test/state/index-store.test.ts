import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VmIndexStore, DeviceKeys } from '../../src/state/index-store';
import { writeFileAtomic } from '../../src/state/atomic-file';
import { runCommand } from '../harness/process';

const vm = (uuid: string, extra: Partial<DeviceKeys> = {}): DeviceKeys =>
  ({ uuid, name: uuid.slice(0, 4), running: false, domainId: -1, disks: ['vda'], nics: ['52:54:00:00:00:01'], ...extra });

describe('VmIndexStore', () => {
  let dir: string;
  const lines: string[] = [];
  const log = (level: string, msg: string) => { lines.push(`${level}: ${msg}`); };
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-store-'));
    lines.length = 0;
  });
  afterEach(async () => { await fs.rm(dir, { recursive: true, force: true }); });

  test('same VM, same index across restarts; new VMs get the next never-used index', async () => {
    const a = await VmIndexStore.load(dir, log);
    const first = a.assign([vm('aaaa'), vm('bbbb'), vm('cccc')]);
    expect([...first.values()].map((i) => i.vmIndex)).toEqual([1, 2, 3]);
    await a.save();
    const b = await VmIndexStore.load(dir, log);
    // bbbb is gone, a new VM appears: it must not take index 2.
    const second = b.assign([vm('cccc'), vm('dddd'), vm('aaaa')]);
    expect(second.get('aaaa')!.vmIndex).toBe(1);
    expect(second.get('cccc')!.vmIndex).toBe(3);
    expect(second.get('dddd')!.vmIndex).toBe(4);
    await b.save();
    const c = await VmIndexStore.load(dir, log);
    expect(c.assign([vm('bbbb')]).get('bbbb')!.vmIndex).toBe(2);
    expect(lines).toEqual([]);
  });

  test('new VMs are numbered in UUID order whatever order they come in; known ones keep theirs', () => {
    const s = VmIndexStore.memory(log);
    const first = s.assign([vm('cccc'), vm('aaaa'), vm('bbbb')]);
    expect(['aaaa', 'bbbb', 'cccc'].map((u) => first.get(u)!.vmIndex)).toEqual([1, 2, 3]);
    const second = s.assign([vm('ffff'), vm('bbbb'), vm('dddd'), vm('eeee'), vm('aaaa')]);
    expect(['aaaa', 'bbbb', 'dddd', 'eeee', 'ffff'].map((u) => second.get(u)!.vmIndex)).toEqual([1, 2, 4, 5, 6]);
  });

  test('disk and NIC indexes are stable per target and MAC', () => {
    const s = VmIndexStore.memory(log);
    const one = s.assign([vm('aaaa', { disks: ['vda', 'vdb'], nics: ['m1', 'm2'] })]).get('aaaa')!;
    expect([...one.disks]).toEqual([['vda', 1], ['vdb', 2]]);
    // vda detached, sdc attached: vdb keeps 2, sdc gets 3.
    const two = s.assign([vm('aaaa', { disks: ['vdb', 'sdc'], nics: ['m2'] })]).get('aaaa')!;
    expect([...two.disks]).toEqual([['vdb', 2], ['sdc', 3]]);
    expect([...two.nics]).toEqual([['m2', 2]]);
  });

  test('unchanged indexes come back as the same object; any change gives a new one', () => {
    const s = VmIndexStore.memory(log);
    const keys = { disks: ['vda', 'vdb'], nics: ['m1'] };
    const one = s.assign([vm('aaaa', keys), vm('bbbb')]).get('aaaa')!;
    expect(s.assign([vm('aaaa', keys), vm('bbbb')]).get('aaaa')).toBe(one);
    // Same number of disks, other targets: new indexes, not the old object.
    const swapped = s.assign([vm('aaaa', { ...keys, disks: ['vda', 'sdc'] })]).get('aaaa')!;
    expect(swapped).not.toBe(one);
    expect([...swapped.disks]).toEqual([['vda', 1], ['sdc', 3]]);
    const started = s.assign([vm('aaaa', { ...keys, disks: ['vda', 'sdc'], running: true, domainId: 4 })], 5000).get('aaaa')!;
    expect(started).not.toBe(swapped);
    expect(started.runningSince).toBe(5000);
    // Left out of one assign() and back unchanged: the same indexes, still right.
    s.assign([vm('bbbb')]);
    expect(s.assign([vm('aaaa', { ...keys, disks: ['vda', 'sdc'], running: true, domainId: 4 })], 6000).get('aaaa')).toBe(started);
    // Back after a restart meanwhile: a new object with the new start.
    const restarted = s.assign([vm('aaaa', { ...keys, disks: ['vda', 'sdc'], running: true, domainId: 5 })], 7000).get('aaaa')!;
    expect(restarted).not.toBe(started);
    expect(restarted.runningSince).toBe(7000);
  });

  test('a detached device keeps its index for when it comes back, in memory and across restarts', async () => {
    const a = await VmIndexStore.load(dir, log);
    a.assign([vm('aaaa', { disks: ['vda', 'vdb', 'vdc'], nics: ['m1', 'm2'] })]);
    expect([...a.assign([vm('aaaa', { disks: ['vdc'], nics: [] })]).get('aaaa')!.disks]).toEqual([['vdc', 3]]);
    await a.save();
    const b = await VmIndexStore.load(dir, log);
    const back = b.assign([vm('aaaa', { disks: ['vdb', 'vdd', 'vda'], nics: ['m3', 'm1'] })]).get('aaaa')!;
    expect([...back.disks]).toEqual([['vdb', 2], ['vdd', 4], ['vda', 1]]);
    expect([...back.nics]).toEqual([['m3', 3], ['m1', 1]]);
    expect(back.disks.get('vdd')).toBe(4);
    expect(back.disks.get('vdc')).toBeUndefined();
    expect(lines).toEqual([]);
  });

  test('a key listed twice gets one index and one pair', () => {
    const s = VmIndexStore.memory(log);
    const one = s.assign([vm('aaaa', { disks: ['vda', 'vda', 'vdb'], nics: [] })]).get('aaaa')!;
    expect([...one.disks]).toEqual([['vda', 1], ['vdb', 2]]);
  });

  test('runningSince is set when a VM starts, kept while it runs, reset by a new domain id', () => {
    const s = VmIndexStore.memory(log);
    expect(s.assign([vm('aaaa')], 1000).get('aaaa')!.runningSince).toBeNull();
    expect(s.assign([vm('aaaa', { running: true, domainId: 7 })], 2000).get('aaaa')!.runningSince).toBe(2000);
    expect(s.assign([vm('aaaa', { running: true, domainId: 7 })], 3000).get('aaaa')!.runningSince).toBe(2000);
    expect(s.assign([vm('aaaa', { running: true, domainId: 9 })], 4000).get('aaaa')!.runningSince).toBe(4000);
  });

  test('a new run starts when the host says it did (startedAt), else at first sighting; a known run keeps its start', () => {
    const s = VmIndexStore.memory(log);
    expect(s.isNewRun('aaaa', 7)).toBe(true);
    expect(s.assign([vm('aaaa', { running: true, domainId: 7, startedAt: 1500 })], 9000).get('aaaa')!.runningSince).toBe(1500);
    expect(s.isNewRun('aaaa', 7)).toBe(false);
    expect(s.assign([vm('aaaa', { running: true, domainId: 7, startedAt: 8000 })], 9500).get('aaaa')!.runningSince).toBe(1500);
    expect(s.isNewRun('aaaa', 8)).toBe(true);
    expect(s.assign([vm('aaaa', { running: true, domainId: 8, startedAt: null })], 10000).get('aaaa')!.runningSince).toBe(10000);
  });

  test('the file is written atomically and only when something changed', async () => {
    const s = await VmIndexStore.load(dir, log);
    s.assign([vm('aaaa')]);
    await s.save();
    const file = path.join(dir, 'vm-indexes.json');
    const before = (await fs.stat(file)).mtimeMs;
    s.assign([vm('aaaa')], Date.now());
    await new Promise((r) => setTimeout(r, 20));
    // lastSeen changes are not worth a write.
    await s.save();
    expect((await fs.stat(file)).mtimeMs).toBe(before);
    expect((await fs.readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(((await fs.stat(file)).mode & 0o777)).toBe(0o600);
  });

  test('a corrupt file is moved aside, reported once, and rebuilt, numbering after what it still shows', async () => {
    const file = path.join(dir, 'vm-indexes.json');
    await fs.writeFile(file, '{"version":1,"lastIndex":2,"vms":{"x":{"index":7');
    const s = await VmIndexStore.load(dir, log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: state file .*vm-indexes\.json is corrupt .* moved it to .*corrupt-\d+, rebuilt/);
    const aside = (await fs.readdir(dir)).filter((f) => f.startsWith('vm-indexes.json.corrupt-'));
    expect(aside).toHaveLength(1);
    // Index 7 may still be in some manager's records: never hand it out again.
    expect(s.assign([vm('aaaa')]).get('aaaa')!.vmIndex).toBe(8);
    await s.save();
    expect(JSON.parse(await fs.readFile(file, 'utf8')).lastIndex).toBe(8);
  });

  test('a file whose entries contradict each other counts as corrupt', async () => {
    const file = path.join(dir, 'vm-indexes.json');
    const entry = { index: 1, name: 'a', runningSince: null, runId: -1, disks: {}, nics: {}, lastSeen: 1 };
    await fs.writeFile(file, JSON.stringify({ version: 1, lastIndex: 1, vms: { a: entry, b: entry } }));
    await VmIndexStore.load(dir, log);
    expect(lines[0]).toMatch(/index 1 is used twice/);
    await fs.writeFile(file, JSON.stringify({ version: 1, lastIndex: 1, vms: { a: { ...entry, disks: { vda: 'one' } } } }));
    await VmIndexStore.load(dir, log);
    expect(lines[1]).toMatch(/entry a has an invalid device index "one"/);
  });

  test('an unwritable state dir is logged, not thrown, and serving goes on', async () => {
    const blocker = path.join(dir, 'file');
    await fs.writeFile(blocker, '');
    const s = await VmIndexStore.load(path.join(blocker, 'sub'), log);
    s.assign([vm('aaaa')]);
    await expect(s.save()).resolves.toBeUndefined();
    expect(lines.some((l) => l.startsWith('error: cannot write state file'))).toBe(true);
  });

  test('a read-only store (--dump, --check) never writes, moves or cleans anything', async () => {
    const s = await VmIndexStore.load(dir, log, { readOnly: true });
    s.assign([vm('aaaa')]);
    await s.save();
    expect(await fs.readdir(dir)).toEqual([]);
    const file = path.join(dir, 'vm-indexes.json');
    await fs.writeFile(file, '{"version":1,"lastIndex":9,');
    await fs.writeFile(path.join(dir, `.vm-indexes.json.${DEAD_PID}.1.tmp`), 'x');
    const r = await VmIndexStore.load(dir, log, { readOnly: true });
    expect(r.assign([vm('aaaa')]).get('aaaa')!.vmIndex).toBe(10);
    await r.save();
    expect((await fs.readdir(dir)).sort()).toEqual([`.vm-indexes.json.${DEAD_PID}.1.tmp`, 'vm-indexes.json']);
    expect(await fs.readFile(file, 'utf8')).toBe('{"version":1,"lastIndex":9,');
    expect(lines.at(-1)).toMatch(/corrupt .* left as it is/);
  });

  test('a corrupt file: numbering goes on after the highest index it still shows', async () => {
    const file = path.join(dir, 'vm-indexes.json');
    await fs.writeFile(file, '{"version":1,"lastIndex":200,"vms":{"web-01":{"index":150,"name":"web-01"');
    const s = await VmIndexStore.load(dir, log);
    expect(s.assign([vm('aaaa')]).get('aaaa')!.vmIndex).toBe(201);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/new VMs are numbered from 201/);
  });

  test('a corrupt file is rebuilt from the version the last save replaced: known VMs keep their indexes', async () => {
    const a = await VmIndexStore.load(dir, log);
    a.assign([vm('aaaa'), vm('bbbb')]);
    await a.save();
    a.assign([vm('aaaa'), vm('bbbb'), vm('cccc')]);
    await a.save();
    const file = path.join(dir, 'vm-indexes.json');
    // Torn by something outside the agent: the index of cccc (3) is still legible.
    await fs.writeFile(file, (await fs.readFile(file, 'utf8')).slice(0, -40));
    const b = await VmIndexStore.load(dir, log);
    expect(lines[0]).toMatch(/rebuilt the VM index map from .*vm-indexes\.json\.previous \(2 VMs keep their indexes\); new VMs are numbered from 4/);
    const got = b.assign([vm('aaaa'), vm('bbbb'), vm('dddd')]);
    expect([got.get('aaaa')!.vmIndex, got.get('bbbb')!.vmIndex, got.get('dddd')!.vmIndex]).toEqual([1, 2, 4]);
  });

  test.each([
    ['a lastIndex past 2147483647', { lastIndex: 2147483648 }, /lastIndex 2147483648 is not an integer from 0 to 2147483647/],
    ['a vmIndex of 3000000000', { lastIndex: 3000000000, index: 3000000000 }, /lastIndex 3000000000/],
    ['a disk index of 2^53', { disks: { vda: 2 ** 53 } }, /invalid device index 9007199254740992/],
    ['a NIC index of 0', { nics: { m: 0 } }, /invalid device index 0/],
    ['a fractional index', { index: 1.5 }, /invalid index/],
  ])('%s makes the file corrupt, never a refresh that throws', async (_name, patch, message) => {
    const { lastIndex = 5, ...entryPatch } = patch as { lastIndex?: number };
    const entry = { index: 1, name: 'a', runningSince: null, runId: -1, disks: {}, nics: {}, lastSeen: 1, ...entryPatch };
    await fs.writeFile(path.join(dir, 'vm-indexes.json'), JSON.stringify({ version: 1, lastIndex, vms: { a: entry } }));
    const s = await VmIndexStore.load(dir, log);
    expect(lines[0]).toMatch(message);
    const got = s.assign([vm('a'), vm('b')]);
    for (const i of got.values()) {
      expect(i.vmIndex).toBeGreaterThanOrEqual(1);
      expect(i.vmIndex).toBeLessThanOrEqual(2147483647);
      for (const [, d] of [...i.disks, ...i.nics]) expect(d).toBeLessThanOrEqual(2147483647);
    }
  });

  test('when every vmIndex is used, a new VM has no row (logged once) and the others are served', async () => {
    const entry = { index: 2147483647, name: 'last', runningSince: null, runId: -1, disks: { vda: 2147483647 }, nics: {}, lastSeen: Date.now() };
    await fs.writeFile(path.join(dir, 'vm-indexes.json'), JSON.stringify({ version: 1, lastIndex: 2147483647, vms: { last: entry } }));
    const s = await VmIndexStore.load(dir, log);
    for (let i = 0; i < 3; i++) {
      const got = s.assign([vm('last', { disks: ['vda', 'vdb'] }), vm('new')]);
      expect([...got.keys()]).toEqual(['last']);
      expect([...got.get('last')!.disks]).toEqual([['vda', 2147483647]]);
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^error: disk vdb of VM last \(last\) has no index/);
    expect(lines[1]).toMatch(/^error: VM new \(new\) has no vmIndex: all 2147483647 have been handed out/);
  });

  test('a file that exists but cannot be read is never replaced; it is read again at each save', async () => {
    const file = path.join(dir, 'vm-indexes.json');
    // EISDIR: unreadable for root too (a mode of 0 is not, and the tests run as root in CI).
    await fs.mkdir(file);
    const s = await VmIndexStore.load(dir, log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: cannot read state file .*vm-indexes\.json: .*leaving the file untouched until it can be read/);
    expect(s.assign([vm('aaaa')]).get('aaaa')!.vmIndex).toBe(1);
    await s.save();
    await s.save();
    expect((await fs.stat(file)).isDirectory()).toBe(true);
    expect(lines).toHaveLength(1);
    // Fixed by the operator: the file's indexes win over the ones handed out from memory.
    await fs.rmdir(file);
    const entry = { index: 7, name: 'aaaa', runningSince: null, runId: -1, disks: { vda: 1 }, nics: {}, lastSeen: Date.now() };
    await fs.writeFile(file, JSON.stringify({ version: 1, lastIndex: 9, vms: { aaaa: entry } }));
    await s.save();
    expect(lines[1]).toMatch(/^info: state file .* can be read again/);
    const got = s.assign([vm('aaaa'), vm('bbbb')]);
    expect([got.get('aaaa')!.vmIndex, got.get('bbbb')!.vmIndex]).toEqual([7, 10]);
    await s.save();
    expect(JSON.parse(await fs.readFile(file, 'utf8')).lastIndex).toBe(10);
  });

  test('the daemon\'s unreadable file (root 0600, read by the agent\'s user) keeps its indexes', async () => {
    // The reported case: the agent runs as a plain user, the file belongs to root.
    const file = path.join(dir, 'vm-indexes.json');
    const entry = { index: 150, name: 'web-01', runningSince: null, runId: -1, disks: {}, nics: {}, lastSeen: Date.now() };
    const original = JSON.stringify({ version: 1, lastIndex: 200, vms: { 'web-01': entry } });
    await fs.writeFile(file, original, { mode: 0o600 });
    const asUser: string[] = [];
    if (process.getuid?.() === 0) {
      await fs.chmod(dir, 0o755);
      await fs.chown(dir, 65534, 65534);
      asUser.push('setpriv', '--reuid=65534', '--regid=65534', '--clear-groups');
    } else {
      await fs.chmod(file, 0o000);
    }
    const r = await runStoreScript(dir, asUser, `
      const s = await VmIndexStore.load(dir, log);
      for (let i = 0; i < 3; i++) { s.assign(['web-01', 'db-01', 'x'].map(vm)); await s.save(); }`);
    expect(r.lines.filter((l) => l.startsWith('error'))).toHaveLength(1);
    expect(r.lines[0]).toMatch(/cannot read state file .*EACCES/);
    await fs.chmod(file, 0o600);
    expect(await fs.readFile(file, 'utf8')).toBe(original);
    expect(await fs.readdir(dir)).toEqual(['vm-indexes.json']);
  });

  test('a failing write leaves no temp file, is logged when it starts failing and when it works again', async () => {
    const blocker = path.join(dir, 'state');
    await fs.writeFile(blocker, '');
    const s = await VmIndexStore.load(blocker, log);
    for (let i = 0; i < 5; i++) {
      s.assign([vm(`v${i}`)]);
      await s.save();
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: cannot write state file .*retrying at each refresh, logged again when it works/);
    await fs.rm(blocker);
    await s.save();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^info: state file .* written again/);
    expect(Object.keys(JSON.parse(await fs.readFile(path.join(blocker, 'vm-indexes.json'), 'utf8')).vms)).toHaveLength(5);
  });

  test('a write cut short (file size limit, as on a full disk) leaves no temp file', async () => {
    // Past RLIMIT_FSIZE a write fails with EFBIG, the way ENOSPC fails it on a full disk.
    const r = await runStoreScript(dir, ['prlimit', '--fsize=200'], `
      const s = await VmIndexStore.load(dir, log);
      for (let i = 0; i < 4; i++) { s.assign(Array.from({ length: 20 }, (_, k) => vm('vm-' + i + '-' + k))); await s.save(); }`);
    expect(r.lines).toHaveLength(1);
    expect(r.lines[0]).toMatch(/cannot write state file .*(EFBIG|too large)/);
    expect(await fs.readdir(dir)).toEqual([]);
  });

  test('temp files left by a writer that died are removed at start; a live writer\'s are not', async () => {
    const dead = `.vm-indexes.json.${DEAD_PID}.17.tmp`;
    const deadPrevious = `.vm-indexes.json.previous.${DEAD_PID}.18.tmp`;
    const live = `.vm-indexes.json.${process.ppid}.3.tmp`;
    const other = '.other.json.1.1.tmp';
    for (const f of [dead, deadPrevious, live, other]) await fs.writeFile(path.join(dir, f), 'partial');
    await VmIndexStore.load(dir, log);
    expect((await fs.readdir(dir)).sort()).toEqual([other, live].sort());
    expect(lines).toEqual([expect.stringMatching(/^info: removed 2 temp file\(s\) left in .* by an interrupted write/)]);
  });
});

describe('writeFileAtomic', () => {
  test('a rename that fails leaves the target as it was and no temp file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-atomic-'));
    try {
      const target = path.join(dir, 'f');
      await fs.mkdir(target);
      await fs.writeFile(path.join(target, 'inside'), 'x');
      await expect(writeFileAtomic(target, 'data')).rejects.toThrow();
      expect((await fs.readdir(dir)).sort()).toEqual(['f']);
      expect(await fs.readdir(target)).toEqual(['inside']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test('keepPreviousAs holds the version replaced', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-atomic-'));
    try {
      const target = path.join(dir, 'f');
      await writeFileAtomic(target, 'one', { keepPreviousAs: `${target}.previous` });
      expect((await fs.readdir(dir)).sort()).toEqual(['f']);
      await writeFileAtomic(target, 'two', { keepPreviousAs: `${target}.previous` });
      expect(await fs.readFile(`${target}.previous`, 'utf8')).toBe('one');
      expect(await fs.readFile(target, 'utf8')).toBe('two');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

/** A pid no process has: above the kernel's pid_max. */
const DEAD_PID = 4194305;

/**
 * Runs `body` in a node child (the built store, dist/), optionally under a
 * command prefix (setpriv as another user, prlimit); returns its log lines.
 */
async function runStoreScript(dir: string, prefix: string[], body: string): Promise<{ lines: string[] }> {
  const built = path.resolve(__dirname, '../../dist/src/state/index-store.js');
  const script = `
    const { VmIndexStore } = require(${JSON.stringify(built)});
    const dir = ${JSON.stringify(dir)};
    const log = (level, msg) => console.log(level + ': ' + msg);
    const vm = (uuid) => ({ uuid, name: uuid, running: false, domainId: -1, disks: ['vda'], nics: [] });
    (async () => { ${body} })().catch((e) => { console.log('thrown: ' + e.stack); process.exitCode = 1; });`;
  const [cmd, ...args] = [...prefix, process.execPath, '-e', script];
  const r = await runCommand(cmd, args, { env: process.env, timeoutMs: 30_000 });
  if (r.exitCode !== 0) throw new Error(`store script exited ${r.exitCode}: ${r.stdout}${r.stderr}`);
  return { lines: r.stdout.split('\n').filter((l) => l !== '') };
}
