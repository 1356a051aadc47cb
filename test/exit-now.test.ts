import { existsSync } from 'fs';
import * as path from 'path';
import { runCommand } from './harness/process';

/** Compiled by `npm test` before jest runs. */
const DIST = path.join(__dirname, '../dist/src');

/**
 * A node process with libvirt's event loop running on the pool, which
 * throws `thrown` (an expression) after a second; with the handler, it
 * reports through the agent's logger.
 */
function throwingProcess(withHandler: boolean, thrown: string, timeoutMs: number): Promise<{ exitCode: number | null; stderr: string; ms: number }> {
  const js = (file: string): string => JSON.stringify(path.join(DIST, file));
  const script = `
    const { eventLoop } = require(${js('libvirt/event-loop.js')});
    if (${withHandler}) {
      const logger = require(${js('logger.js')}).createLogger('info');
      require(${js('exit-now.js')}).exitOnUncaughtError((m) => logger.error(m));
    }
    eventLoop.acquire();
    setTimeout(() => { throw ${thrown}; }, 1200);
  `;
  const t0 = Date.now();
  return runCommand(process.execPath, ['-e', script], { env: process.env, timeoutMs })
    .then((r) => ({ exitCode: r.exitCode, stderr: r.stderr, ms: Date.now() - t0 }));
}

beforeAll(() => {
  if (!existsSync(path.join(DIST, 'exit-now.js'))) throw new Error(`${DIST} is not built: run "npm run build" first (npm test does)`);
});

describe('exitOnUncaughtError', () => {
  test('an uncaught error with the libvirt event loop running ends the process with 70 and one report line', async () => {
    const r = await throwingProcess(true, "new Error('thrown by the test')", 8000);
    expect(r.exitCode).toBe(70);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    // The stack, joined on the line.
    expect(lines[0]).toMatch(/error: uncaught error, exiting \(a bug: please report it with this line\): Error: thrown by the test \| at /);
    expect(r.ms).toBeLessThan(6000);
  });

  test('whatever is thrown is reported', async () => {
    const r = await throwingProcess(true, 'undefined', 8000);
    expect(r.exitCode).toBe(70);
    expect(r.stderr.trim()).toMatch(/^\S+ error: uncaught error, exiting \(a bug: please report it with this line\): undefined$/);
  });

  test('without it, node would never exit: its own exit waits for the pool thread running the loop', async () => {
    // The reason the handler exists; if node or libvirt change so that this
    // exits by itself, the handler is still right but this test says so.
    const r = await throwingProcess(false, "new Error('thrown by the test')", 5000);
    expect(r.exitCode).toBeNull();
    expect(r.stderr).toMatch(/Error: thrown by the test/);
  }, 15_000);
});
