import * as path from 'path';
import { runCommand } from './harness/process';

/** Compiled by `npm test` before jest runs. */
const DIST = path.join(__dirname, '../dist/src');

/** A node process with libvirt's event loop running on the pool, which throws after a second. */
function throwingProcess(withHandler: boolean, timeoutMs: number): Promise<{ exitCode: number | null; stderr: string; ms: number }> {
  const script = `
    const { eventLoop } = require(${JSON.stringify(path.join(DIST, 'libvirt/event-loop.js'))});
    ${withHandler ? `require(${JSON.stringify(path.join(DIST, 'exit-now.js'))}).exitOnUncaughtError((m) => process.stderr.write(m + '\\n'));` : ''}
    eventLoop.acquire();
    setTimeout(() => { throw new Error('thrown by the test'); }, 1200);
  `;
  const t0 = Date.now();
  return runCommand(process.execPath, ['-e', script], { env: process.env, timeoutMs })
    .then((r) => ({ exitCode: r.exitCode, stderr: r.stderr, ms: Date.now() - t0 }));
}

describe('exitOnUncaughtError', () => {
  test('an uncaught error with the libvirt event loop running ends the process with 70 and one report', async () => {
    const r = await throwingProcess(true, 8000);
    expect(r.exitCode).toBe(70);
    expect(r.stderr).toMatch(/^uncaught error, exiting \(a bug: please report it with this line\): Error: thrown by the test\n/);
    expect(r.ms).toBeLessThan(6000);
  });

  test('without it, node would never exit: its own exit waits for the pool thread running the loop', async () => {
    // The reason the handler exists; if node or libvirt change so that this
    // exits by itself, the handler is still right but this test says so.
    const r = await throwingProcess(false, 5000);
    expect(r.exitCode).toBeNull();
    expect(r.stderr).toMatch(/Error: thrown by the test/);
  }, 15_000);
});
