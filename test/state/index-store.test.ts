import { promises as fs } from 'fs';
import * as v8 from 'v8';
import * as nodeVm from 'vm';
import * as os from 'os';
import * as path from 'path';
import { VmIndexStore, DeviceKeys, VmIndexes } from '../../src/state/index-store';

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

  test('memory per VM stays small: one entry object, device pairs in one exact-size array', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = nodeVm.runInNewContext('gc') as () => void;
    const count = 20_000;
    // The keys exist before assign() (they come from the domain records), so they are not counted.
    const keys = Array.from({ length: count }, (_, i) =>
      vm(`${i}`, { disks: ['vda', 'vdb'], nics: [`52:54:00:00:${i}:1`, `52:54:00:00:${i}:2`] }));
    const s = VmIndexStore.memory(log);
    gc();
    const before = v8.getHeapStatistics().used_heap_size;
    let assigned: Map<string, VmIndexes> | null = s.assign(keys);
    assigned = null;
    gc();
    const perVm = (v8.getHeapStatistics().used_heap_size - before) / count;
    // VmEntry ~90, VmIndexes ~60, two shared pair arrays ~110 each; a Map
    // per device list, or arrays grown by push(), cost 650+.
    expect(perVm).toBeGreaterThan(150);
    expect(perVm).toBeLessThan(450);
    expect(assigned).toBeNull();
    expect(s.assign([keys[7]]).get(keys[7].uuid)!.vmIndex).toBe(8);
  });

  test('runningSince is set when a VM starts, kept while it runs, reset by a new domain id', () => {
    const s = VmIndexStore.memory(log);
    expect(s.assign([vm('aaaa')], 1000).get('aaaa')!.runningSince).toBeNull();
    expect(s.assign([vm('aaaa', { running: true, domainId: 7 })], 2000).get('aaaa')!.runningSince).toBe(2000);
    expect(s.assign([vm('aaaa', { running: true, domainId: 7 })], 3000).get('aaaa')!.runningSince).toBe(2000);
    expect(s.assign([vm('aaaa', { running: true, domainId: 9 })], 4000).get('aaaa')!.runningSince).toBe(4000);
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

  test('a corrupt file is moved aside, reported once, and rebuilt', async () => {
    const file = path.join(dir, 'vm-indexes.json');
    await fs.writeFile(file, '{"version":1,"lastIndex":2,"vms":{"x":{"index":7');
    const s = await VmIndexStore.load(dir, log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: state file .*vm-indexes\.json is corrupt .* moved it to .*corrupt-\d+ and rebuilt/);
    const aside = (await fs.readdir(dir)).filter((f) => f.startsWith('vm-indexes.json.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(s.assign([vm('aaaa')]).get('aaaa')!.vmIndex).toBe(1);
    await s.save();
    expect(JSON.parse(await fs.readFile(file, 'utf8')).lastIndex).toBe(1);
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

  test('a read-only store (--dump) never writes', async () => {
    const s = await VmIndexStore.load(dir, log);
    s.readOnly = true;
    s.assign([vm('aaaa')]);
    await s.save();
    expect(await fs.readdir(dir)).toEqual([]);
  });
});
