import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ConfigError, DEFAULTS, parseArgs } from '../../src/config';

describe('configuration', () => {
  test('defaults, then the environment URI, then flags', () => {
    expect(parseArgs([], {}).config).toEqual(DEFAULTS);
    expect(parseArgs([], { LIBVIRT_DEFAULT_URI: 'qemu:///system' }).config.libvirtUri).toBe('qemu:///system');
    const c = parseArgs(['--libvirt-uri', 'test:///default', '--refresh=2.5', '--dump', '--log-level', 'debug'], { LIBVIRT_DEFAULT_URI: 'x' }).config;
    expect([c.libvirtUri, c.refreshSeconds, c.dump, c.logLevel]).toEqual(['test:///default', 2.5, true, 'debug']);
  });

  test('the config file uses the flag names; flags override it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-conf-'));
    const file = path.join(dir, 'c.conf');
    await fs.writeFile(file, '# comment\nrefresh = 10\nstate-dir /tmp/s  # trailing\nnotifications-bulk yes\nlibvirt-grace=3\nlibvirt-job-poll 0\n');
    const c = parseArgs(['--config', file, '--refresh', '7'], {}).config;
    expect([c.refreshSeconds, c.stateDir, c.bulkNotifications, c.libvirtGraceSeconds, c.libvirtJobPollSeconds])
      .toEqual([7, '/tmp/s', true, 3, 0]);
    expect(DEFAULTS.libvirtJobPollSeconds).toBe(30);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test.each([
    [['--nope'], /unknown option --nope/],
    [['--refresh'], /--refresh needs a value/],
    [['--refresh', '0'], /--refresh: "0" is not a decimal number from 0.2 to 3600/],
    [['--refresh', '0x10'], /--refresh: "0x10" is not a decimal number/],
    [['--refresh', '1e1'], /--refresh: "1e1" is not a decimal number/],
    [['--refresh', '-5'], /option --refresh needs a value|"-5" is not a decimal number/],
    [['--state-dir='], /--state-dir: needs a value/],
    [['--log-level', 'loud'], /log level "loud"/],
    [['stray'], /unexpected argument "stray"/],
    [['--config', '/nonexistent/vmm.conf'], /cannot read config file \/nonexistent\/vmm.conf/],
  ])('%j is refused with a clear message', (args, message) => {
    expect(() => parseArgs(args as string[], {})).toThrow(ConfigError);
    expect(() => parseArgs(args as string[], {})).toThrow(message as RegExp);
  });

  test.each([
    ['refresh = 0x10\n', /c\.conf:1: refresh: "0x10" is not a decimal number from 0.2 to 3600/],
    ['refresh = 5\nlog-level info\nrefresh = 10\n', /c\.conf:3: "refresh" is already set on line 1; keep one of the two/],
    ['state-dir =\n', /c\.conf:1: state-dir: needs a value; remove the line to keep the default/],
    ['state-dir\n', /c\.conf:1: state-dir: needs a value/],
    ['libvirt-grace = 3 s\n', /c\.conf:1: libvirt-grace: "3 s" is not a decimal number/],
  ])('config file %j is refused with one line naming file, line and key', async (text, message) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'vmm-conf-'));
    const file = path.join(dir, 'c.conf');
    await fs.writeFile(file, text);
    try {
      expect(() => parseArgs(['--config', file], {})).toThrow(message);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
