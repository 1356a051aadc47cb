// jest globalSetup (runs in jest's main process, before the workers fork):
// - gives the run a directory where the harness records every daemon it
//   starts (test/harness/reaper.js). scripts/run-tests.js (npm test) makes one
//   and passes it down; a bare `npx jest` gets its own here. Set in
//   process.env, so every worker inherits it.
// - makes SIGINT/SIGTERM/SIGHUP to jest's main process (Ctrl-C on a bare
//   `npx jest`, or scripts/run-tests.js forwarding an interrupt) stop the
//   workers and then every recorded daemon before jest exits; jest itself
//   would just die and leave them running.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { RUN_DIR_ENV, childrenOf, describeLeftover, findLeftovers, reap, reapNamespaces } = require('./reaper');

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

function onSignal(sig) {
  const dir = process.env[RUN_DIR_ENV];
  process.stderr.write(`\njest got ${sig}: stopping its workers and every daemon the tests started…\n`);
  // Workers first, so none starts another daemon meanwhile. (Run in band,
  // the daemons are our own children: those are left to the reaper.)
  const daemons = new Set(dir ? findLeftovers(dir).map((p) => p.pid) : []);
  const workers = childrenOf(process.pid).filter((pid) => !daemons.has(pid));
  for (const pid of workers) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
  }
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + 2000;
  while (workers.some((pid) => childrenOf(process.pid).includes(pid)) && Date.now() < deadline) {
    Atomics.wait(sleeper, 0, 0, 25);
  }
  const stopped = dir ? reap(dir) : [];
  for (const p of stopped) process.stderr.write(`  stopped ${describeLeftover(p)}\n`);
  for (const name of dir ? reapNamespaces(dir) : []) process.stderr.write(`  deleted network namespace ${name}\n`);
  if (globalThis.__vmmOwnRunDir === dir && dir) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(128 + SIGNAL_NUMBERS[sig]);
}

module.exports = async function globalSetup() {
  if (!process.env[RUN_DIR_ENV]) {
    process.env[RUN_DIR_ENV] = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-test-run-'));
    globalThis.__vmmOwnRunDir = process.env[RUN_DIR_ENV];
  }
  if (!globalThis.__vmmSignalHooks) {
    globalThis.__vmmSignalHooks = true;
    for (const sig of Object.keys(SIGNAL_NUMBERS)) process.once(sig, onSignal);
  }
};
