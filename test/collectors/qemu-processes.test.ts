// QEMU process start times from a /proc laid out in a temp dir, and from
// this machine's own /proc (a process started with a QEMU-like command line).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hostPaths } from '../../src/collectors/paths';
import { processStartTicks, qemuDomainUuid, qemuStartTimes } from '../../src/collectors/qemu-processes';

const UUID_A = '3b0da6f8-1558-4a67-aba7-390d59b406d2';
const UUID_B = 'cd255090-d68d-4042-bc0f-13c69795266b';

/** A /proc/<pid>/stat line with starttime (field 22) = ticks; the name holds ") " as real ones may. */
const statLine = (pid: number, name: string, ticks: number): string =>
  `${pid} (${name}) S 1 ${pid} ${pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 5 0 ${ticks} 1000000 100 18446744073709551615\n`;

describe('QEMU process start times', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-proc-'));
    fs.writeFileSync(path.join(root, 'uptime'), '1000.00 1500.00\n');
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  const addProcess = (pid: number, argv: string[], ticks: number): void => {
    fs.mkdirSync(path.join(root, String(pid)));
    fs.writeFileSync(path.join(root, String(pid), 'cmdline'), argv.join('\0') + '\0');
    fs.writeFileSync(path.join(root, String(pid), 'stat'), statLine(pid, 'qemu-system-x86) x', ticks));
  };

  test('parses the command line and field 22 of stat', () => {
    expect(qemuDomainUuid(['/usr/bin/qemu-system-x86_64', '-name', 'guest=web-01', '-uuid', UUID_A.toUpperCase(), '-m', '64', ''].join('\0'))).toBe(UUID_A);
    expect(qemuDomainUuid(['/usr/bin/virsh', 'dominfo', '-uuid', UUID_A].join('\0'))).toBeNull();
    expect(qemuDomainUuid(['/usr/bin/qemu-system-x86_64', '-m', '64'].join('\0'))).toBeNull();
    expect(processStartTicks(statLine(42, 'a) b', 12345))).toBe(12345);
    expect(processStartTicks('garbage')).toBeNull();
  });

  test('each asked-for domain gets its process start; others and non-QEMU processes are left out', async () => {
    const now = 1_800_000_000_000;
    addProcess(10, ['/usr/bin/qemu-system-x86_64', '-uuid', UUID_A], 40_000); // 400 s after boot: 600 s ago
    addProcess(11, ['/usr/bin/qemu-system-x86_64', '-uuid', UUID_B], 99_000); // 990 s after boot: 10 s ago
    addProcess(12, ['/bin/sleep', '-uuid', 'ffffffff-0000-0000-0000-000000000000'], 1);
    fs.mkdirSync(path.join(root, '13')); // vanished: no cmdline
    fs.mkdirSync(path.join(root, 'self'));
    const times = await qemuStartTimes(hostPaths({ procRoot: root }), new Set([UUID_A, UUID_B, 'ffffffff-0000-0000-0000-000000000000']), now);
    expect(times).toEqual(new Map([[UUID_A, now - 600_000], [UUID_B, now - 10_000]]));
    const onlyB = await qemuStartTimes(hostPaths({ procRoot: root }), new Set([UUID_B]), now);
    expect([...onlyB.keys()]).toEqual([UUID_B]);
  });

  test('no /proc/uptime, or nothing asked: no start times and no error', async () => {
    addProcess(10, ['/usr/bin/qemu-system-x86_64', '-uuid', UUID_A], 40_000);
    expect((await qemuStartTimes(hostPaths({ procRoot: root }), new Set())).size).toBe(0);
    fs.rmSync(path.join(root, 'uptime'));
    expect((await qemuStartTimes(hostPaths({ procRoot: root }), new Set([UUID_A]))).size).toBe(0);
    expect((await qemuStartTimes(hostPaths({ procRoot: '/nonexistent' }), new Set([UUID_A]))).size).toBe(0);
  });

  test('on the real /proc: a process named like QEMU, started 1.5 s ago, is found with that start', async () => {
    // exec -a gives the process a QEMU-like argv[0]; its bash (not exec'd away: "; true") waits on sleep.
    const child = spawn('bash', ['-c', `exec -a qemu-system-x86_64 bash -c 'sleep 30; true' bash -uuid ${UUID_A}`], { stdio: 'ignore', detached: true });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const now = Date.now();
      const times = await qemuStartTimes(hostPaths(), new Set([UUID_A]), now);
      const age = now - (times.get(UUID_A) ?? now);
      expect(age).toBeGreaterThan(1200);
      expect(age).toBeLessThan(2500);
    } finally {
      // Its own process group: the sleep goes with it.
      process.kill(-child.pid!, 'SIGKILL');
    }
  });
});
