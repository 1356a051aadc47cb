import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { KeyFileError, MessageKey, ReplayGuard, loadKeyFile, parseKey } from '../../src/mcastd/auth';

const HEX_KEY = 'a1'.repeat(32);

describe('parseKey', () => {
  it('reads hex', () => {
    expect(parseKey(`${HEX_KEY}\n`, 'k')).toEqual(Buffer.alloc(32, 0xa1));
  });

  it('reads base64 wrapped over lines, as openssl rand -base64 writes it', () => {
    const key = Buffer.alloc(48, 0xfe);
    const text = key.toString('base64');
    expect(parseKey(`${text.slice(0, 40)}\n${text.slice(40)}\n`, 'k')).toEqual(key);
  });

  it.each<[string, string, RegExp]>([
    ['an empty file', '\n', /k: no key/],
    ['a short key', 'a1'.repeat(31), /k: key is 31 bytes, at least 32/],
    ['odd hex', `${HEX_KEY}a`, /odd number of hex digits/],
    ['neither hex nor base64', 'correct horse battery staple!', /neither hex nor base64/],
  ])('refuses %s', (_what, text, message) => {
    expect(() => parseKey(text, 'k')).toThrow(KeyFileError);
    expect(() => parseKey(text, 'k')).toThrow(message);
  });
});

describe('loadKeyFile', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mcastd-key-'));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  const write = async (name: string, mode: number, text = HEX_KEY): Promise<string> => {
    const file = path.join(dir, name);
    await fs.writeFile(file, text, { mode });
    await fs.chmod(file, mode);
    return file;
  };

  it('loads a key only the owner can read', async () => {
    const file = await write('ok', 0o600);
    const key = await loadKeyFile(file);
    expect(key.tag(Buffer.from('x'))).toEqual(new MessageKey(Buffer.alloc(32, 0xa1)).tag(Buffer.from('x')));
  });

  it.each(['0644', '0640', '0604', '0620'])('refuses mode %s naming the file and the fix', async (octal) => {
    const mode = parseInt(octal, 8);
    const file = await write(`open-${octal}`, mode);
    const attempt = loadKeyFile(file);
    await expect(attempt).rejects.toThrow(KeyFileError);
    await expect(loadKeyFile(file)).rejects.toThrow(`key file ${file} is accessible to group or others (mode ${octal}); run: chmod 600 ${file}`);
  });

  it('refuses a symbolic link, a directory and a missing file', async () => {
    const target = await write('target', 0o600);
    const link = path.join(dir, 'link');
    await fs.symlink(target, link);
    await expect(loadKeyFile(link)).rejects.toThrow(/symbolic link/);
    await expect(loadKeyFile(dir)).rejects.toThrow(/not a regular file/);
    await expect(loadKeyFile(path.join(dir, 'absent'))).rejects.toThrow(/cannot open key file .*absent: ENOENT/);
  });

  it('refuses a short key, naming the file', async () => {
    const file = await write('short', 0o600, 'abcd');
    await expect(loadKeyFile(file)).rejects.toThrow(`key file ${file}: key is 2 bytes`);
  });
});

describe('MessageKey', () => {
  const key = new MessageKey(Buffer.alloc(32, 1));
  const data = Buffer.from('header and body');

  it('verifies its own tag and refuses another key, other data and a cut tag', () => {
    const tag = key.tag(data);
    expect(tag).toHaveLength(32);
    expect(key.verify(data, tag)).toBe(true);
    expect(new MessageKey(Buffer.alloc(32, 2)).verify(data, tag)).toBe(false);
    expect(key.verify(Buffer.from('header and bodY'), tag)).toBe(false);
    expect(key.verify(data, tag.subarray(0, 31))).toBe(false);
  });

  it('refuses a key under 32 bytes', () => {
    expect(() => new MessageKey(Buffer.alloc(31))).toThrow(/at least 32/);
  });
});

describe('ReplayGuard', () => {
  const alice = Buffer.alloc(16, 0xa);
  const bob = Buffer.alloc(16, 0xb);
  let now: number;
  const clock = (): number => now;
  beforeEach(() => {
    now = 1_700_000_000_000;
  });

  it('admits each sequence number once, in any order inside the window', () => {
    const guard = new ReplayGuard({ clock, windowSize: 64 });
    for (const sequence of [5, 3, 4, 70, 10, 69]) expect(guard.admit(alice, 1n, sequence, now, 'alice')).toBeUndefined();
    expect(guard.admit(alice, 1n, 10, now, 'alice')).toMatchObject({ reason: 'replay' });
    expect(guard.admit(alice, 1n, 5, now, 'alice')).toMatchObject({ reason: 'outside-window' });
  });

  it('refuses a repeated sequence number naming it and the peer', () => {
    const guard = new ReplayGuard({ clock });
    expect(guard.admit(alice, 1n, 17, now, 'alice at 192.0.2.1:4790')).toBeUndefined();
    expect(guard.admit(alice, 1n, 17, now, 'alice at 192.0.2.1:4790')).toEqual({
      reason: 'replay',
      detail: 'replayed sequence 17 from alice at 192.0.2.1:4790',
    });
  });

  it('refuses a sequence number that fell behind the window', () => {
    const guard = new ReplayGuard({ clock, windowSize: 64 });
    expect(guard.admit(alice, 1n, 100, now, 'alice')).toBeUndefined();
    expect(guard.admit(alice, 1n, 37, now, 'alice')).toBeUndefined();
    expect(guard.admit(alice, 1n, 36, now, 'alice')).toMatchObject({ reason: 'outside-window' });
    expect(guard.admit(alice, 1n, 37, now, 'alice')).toMatchObject({ reason: 'replay' });
  });

  it('clears the slots it skips when the window moves', () => {
    const guard = new ReplayGuard({ clock, windowSize: 32 });
    // A small step (34 after 32) clears the slots it passes; 33 shares its slot with 1 and must read as unseen.
    for (const sequence of [1, 32, 34, 33]) expect(guard.admit(alice, 1n, sequence, now, 'alice')).toBeUndefined();
    expect(guard.admit(alice, 1n, 33, now, 'alice')).toMatchObject({ reason: 'replay' });
    // A step of a whole window or more clears everything.
    for (const sequence of [100, 97]) expect(guard.admit(alice, 1n, sequence, now, 'alice')).toBeUndefined();
  });

  it('keeps one window per sender and boot', () => {
    const guard = new ReplayGuard({ clock });
    expect(guard.admit(alice, 1n, 1, now, 'alice')).toBeUndefined();
    expect(guard.admit(alice, 2n, 1, now, 'alice after a restart')).toBeUndefined();
    expect(guard.admit(bob, 1n, 1, now, 'bob')).toBeUndefined();
    expect(guard.tracked).toBe(3);
  });

  it.each<[number, string]>([
    [-30_001, 'stale timestamp (skew -30.0 s)'],
    [45_000, 'stale timestamp (skew +45.0 s)'],
  ])('refuses a timestamp %d ms off', (offset, detail) => {
    const guard = new ReplayGuard({ clock });
    expect(guard.checkFreshness(now + offset)).toEqual({ reason: 'stale', detail });
    expect(guard.admit(alice, 1n, 1, now + offset, 'alice')).toEqual({ reason: 'stale', detail: `${detail} from alice` });
    expect(guard.checkFreshness(now + Math.sign(offset) * 30_000)).toBeUndefined();
  });

  it('refuses new boots beyond its limit until old windows can go, then forgets them safely', () => {
    const guard = new ReplayGuard({ clock, maxTracked: 2 });
    const sent = now;
    expect(guard.admit(alice, 1n, 1, sent, 'alice')).toBeUndefined();
    expect(guard.admit(bob, 1n, 1, sent, 'bob')).toBeUndefined();
    expect(guard.admit(alice, 2n, 1, now, 'alice')).toMatchObject({ reason: 'peer-limit' });
    now += 30_001;
    expect(guard.admit(alice, 2n, 1, now, 'alice')).toBeUndefined();
    expect(guard.tracked).toBe(1);
    // Alice's first boot is forgotten, but a replay of its message is stale, not new.
    expect(guard.admit(alice, 1n, 1, sent, 'alice')).toMatchObject({ reason: 'stale' });
  });

  it('keeps a window whose sender is still fresh', () => {
    const guard = new ReplayGuard({ clock, maxTracked: 1 });
    expect(guard.admit(alice, 1n, 1, now, 'alice')).toBeUndefined();
    now += 20_000;
    expect(guard.admit(alice, 1n, 2, now, 'alice')).toBeUndefined();
    now += 20_000;
    guard.prune();
    expect(guard.tracked).toBe(1);
    expect(guard.admit(alice, 1n, 2, now, 'alice')).toMatchObject({ reason: 'replay' });
  });

  it('refuses a window size that is not a multiple of 32', () => {
    expect(() => new ReplayGuard({ windowSize: 100 })).toThrow(RangeError);
  });
});
