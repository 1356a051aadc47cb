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
    await fs.writeFile(file, '# comment\nrefresh = 10\nstate-dir /tmp/s  # trailing\nnotifications-bulk yes\nlibvirt-grace=3\n');
    const c = parseArgs(['--config', file, '--refresh', '7'], {}).config;
    expect([c.refreshSeconds, c.stateDir, c.bulkNotifications, c.libvirtGraceSeconds]).toEqual([7, '/tmp/s', true, 3]);
    await fs.rm(dir, { recursive: true, force: true });
  });

  test.each([
    [['--nope'], /unknown option --nope/],
    [['--refresh'], /--refresh needs a value/],
    [['--refresh', '0'], /--refresh: "0" is not a number from 0.2 to 3600/],
    [['--log-level', 'loud'], /log level "loud"/],
    [['stray'], /unexpected argument "stray"/],
    [['--config', '/nonexistent/vmm.conf'], /cannot read config file \/nonexistent\/vmm.conf/],
  ])('%j is refused with a clear message', (args, message) => {
    expect(() => parseArgs(args as string[], {})).toThrow(ConfigError);
    expect(() => parseArgs(args as string[], {})).toThrow(message as RegExp);
  });
});
