// LibvirtCollector over libvirt's RPC path: a private session libvirtd (as
// nobody when we are root) serves the test driver on a unix socket in a temp
// dir, so the test can undefine a domain from another client mid-refresh,
// kill the daemon to kill the connection, and restart it to watch the
// reconnect. Needs the libvirt-daemon package (libvirtd); skipped without it.

import { execFileSync } from 'child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import * as path from 'path';
import { LibvirtCollector } from '../../src/collectors/libvirt';
import { ErrorCode, LibvirtError } from '../../src/libvirt/errors';
import { sleep, spawnManaged, stopProcess, toolEnv, type ManagedProcess } from '../harness/process';
import { describeUnless, findTool, missingTools } from '../harness/prereq';
import { pollUntil } from '../harness/poll';

const LIBVIRTD = findTool('libvirtd');
// virsh is the other client that changes the domains under the collector.
const describeWithDaemon = describeUnless(missingTools('libvirtd', 'virsh'));

const NOBODY = 65534;

/** ms until `condition` holds, polled every 10 ms. */
async function waitFor(what: string, condition: () => boolean, timeoutMs: number): Promise<number> {
  return (await pollUntil(what, condition, (ok) => ok, timeoutMs, 10)).ms;
}

describeWithDaemon('LibvirtCollector over RPC (session libvirtd serving test:///default)', () => {
  let lab: string;
  let socket: string;
  let uri: string;
  let env: NodeJS.ProcessEnv;
  let daemon: ManagedProcess | null = null;

  async function startDaemon(): Promise<void> {
    const asRoot = process.getuid?.() === 0;
    const args = ['--timeout=120'];
    daemon = asRoot
      ? await spawnManaged('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', LIBVIRTD!, ...args], { env })
      : await spawnManaged(LIBVIRTD!, args, { env });
    await waitFor(`libvirtd socket ${socket}`, () => existsSync(socket) || daemon!.hasExited(), 10000);
    if (daemon.hasExited()) throw new Error(`libvirtd exited at once:\n${daemon.output()}`);
  }

  async function stopDaemon(): Promise<void> {
    if (daemon !== null) await stopProcess(daemon);
    daemon = null;
    rmSync(socket, { force: true });
  }

  const virsh = (...args: string[]): string =>
    execFileSync('virsh', ['-q', '-c', uri, ...args], { encoding: 'utf8', env: toolEnv() });

  beforeAll(async () => {
    lab = mkdtempSync(path.join(tmpdir(), 'vmm-libvirtd-'));
    const home = path.join(lab, 'home');
    for (const d of ['run', 'config', 'cache', 'data']) mkdirSync(path.join(home, d), { recursive: true });
    if (process.getuid?.() === 0) {
      // mkdtemp makes the lab 0700; nobody must be able to reach its home in it.
      chmodSync(lab, 0o755);
      execFileSync('chown', ['-R', `${NOBODY}:${NOBODY}`, home]);
    }
    env = {
      PATH: process.env.PATH,
      HOME: home,
      XDG_RUNTIME_DIR: path.join(home, 'run'),
      XDG_CONFIG_HOME: path.join(home, 'config'),
      XDG_CACHE_HOME: path.join(home, 'cache'),
      XDG_DATA_HOME: path.join(home, 'data'),
    };
    socket = path.join(home, 'run', 'libvirt', 'libvirt-sock');
    uri = `test+unix:///default?socket=${socket}`;
    await startDaemon();
  });

  afterAll(async () => {
    await stopDaemon();
    rmSync(lab, { recursive: true, force: true });
  });

  it('drops a domain undefined by another client between list and query', async () => {
    const logs: Array<[string, string]> = [];
    let undefineNow = false;
    const collector = new LibvirtCollector({
      log: (level, message) => logs.push([level, message]),
      afterListing: () => {
        if (!undefineNow) return;
        virsh('destroy', 'test');
        virsh('undefine', 'test');
      },
    });
    const events: number[] = [];
    collector.onLifecycle((_uuid, event) => events.push(event));
    await collector.open(uri, { readOnly: true });
    try {
      expect(collector.hypervisorInfo()).toMatchObject({ type: 'TEST', uri });
      expect((await collector.collect()).map((r) => r.name)).toEqual(['test']);
      undefineNow = true;
      await expect(collector.collect()).resolves.toEqual([]);
      expect(logs.filter(([level]) => level === 'warn' || level === 'error')).toEqual([]);
      // Stopped, then undefined, delivered over RPC through the event loop.
      await waitFor('lifecycle events', () => events.length >= 2, 5000);
      expect(events).toEqual([5, 1]);
    } finally {
      await collector.close();
    }
    // The daemon keeps test:///default alive while it runs: put the domain back.
    await stopDaemon();
    await startDaemon();
  });

  it('notices the daemon going away, rejects collect() meanwhile, and reconnects when it is back', async () => {
    const logs: Array<[string, string]> = [];
    const collector = new LibvirtCollector({ log: (level, message) => logs.push([level, message]) });
    await collector.open(uri, { readOnly: true });
    try {
      const before = await collector.collect();
      expect(before.map((r) => r.name)).toEqual(['test']);

      await stopDaemon();
      // The close callback (EOF on the socket) arrives through the event loop.
      await waitFor('connection loss', () => !collector.isConnected(), 5000);
      expect(logs).toContainEqual(['warn', expect.stringMatching(/^connection to test\+unix:.* lost \(.+\); reconnecting$/)]);
      const err = await collector.collect().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LibvirtError);
      expect((err as LibvirtError).code).toBe(ErrorCode.NO_CONNECT);
      // What the agent serves meanwhile: the last records. (Below 1,000
      // domains they are kept as they were; last-good.test.ts reads packed
      // ones back.)
      expect(collector.lastKnown()).toEqual(before);

      // Let a few reconnect attempts fail, then bring the daemon back.
      await sleep(600);
      expect(collector.isConnected()).toBe(false);
      await startDaemon();
      // Attempts run every ≤ 1 s at this point (250, 500, 1000 ms, ...).
      const ms = await waitFor('reconnect', () => collector.isConnected(), 5000);
      expect(ms).toBeLessThan(2500);
      expect(logs).toContainEqual(['info', expect.stringMatching(/^connection to test\+unix:.* restored$/)]);
      expect((await collector.collect()).map((r) => r.name)).toEqual(['test']);
      // One warning for the loss and at most one for the failing retries, not one per attempt.
      expect(logs.filter(([level]) => level === 'warn').length).toBeLessThanOrEqual(2);
    } finally {
      await collector.close();
    }
  });
});
