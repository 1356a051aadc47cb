// A private session libvirtd, run as nobody in its own directory, that serves
// the test driver over RPC (platform-notes §7: test+unix:///file.xml?socket=…).
// With test:/// the fixture's domains live inside the agent's own process
// (~50 kB each); behind a daemon they do not, so the agent's memory is what
// it would be against qemu:///system.
import { chmodSync, chownSync, existsSync, mkdirSync } from 'fs';
import * as path from 'path';
import { ManagedProcess, sleep, spawnManaged, stopProcess } from '../test/harness/process';

export const LIBVIRTD_BINARY = '/usr/sbin/libvirtd';
const NOBODY = 65534;

export interface LibvirtdLab {
  readonly socketPath: string;
  readonly proc: ManagedProcess;
  /** URI of a node file through this daemon; the file must be readable by nobody. */
  uriFor(fixture: string): string;
  stop(): Promise<void>;
}

export function libvirtdAvailable(): boolean {
  return existsSync(LIBVIRTD_BINARY) && process.getuid?.() === 0;
}

/** Starts libvirtd in session mode as nobody, with HOME and XDG dirs under `dir`. */
export async function startLibvirtd(dir: string): Promise<LibvirtdLab> {
  const home = path.join(dir, 'home');
  const xdg = {
    XDG_RUNTIME_DIR: path.join(home, 'run'),
    XDG_CONFIG_HOME: path.join(home, 'config'),
    XDG_CACHE_HOME: path.join(home, 'cache'),
    XDG_DATA_HOME: path.join(home, 'data'),
  };
  for (const d of [home, ...Object.values(xdg)]) {
    mkdirSync(d, { recursive: true });
    chownSync(d, NOBODY, NOBODY);
  }
  chmodSync(dir, 0o755);
  const socketPath = path.join(xdg.XDG_RUNTIME_DIR, 'libvirt', 'libvirt-sock');
  const proc = await spawnManaged(
    'setpriv',
    [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', LIBVIRTD_BINARY],
    { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, ...xdg }, cwd: dir },
  );
  const until = Date.now() + 20_000;
  while (!existsSync(socketPath)) {
    if (proc.hasExited() || Date.now() > until) {
      await stopProcess(proc);
      throw new Error(`libvirtd did not create ${socketPath}; output:\n${proc.output().slice(-2000)}`);
    }
    await sleep(50);
  }
  return {
    socketPath,
    proc,
    uriFor: (fixture) => `test+unix://${fixture}?socket=${socketPath}`,
    stop: () => stopProcess(proc, 10_000),
  };
}
