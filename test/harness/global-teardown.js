// jest globalTeardown: after the last suite, stop whatever the tests left
// running (a suite that crashed before its afterAll, a worker that died) by
// the records in the run directory, and say what that was. An interrupted
// jest never gets here: scripts/run-tests.js (npm test) reaps after it.
'use strict';
const fs = require('fs');
const { RUN_DIR_ENV, describeLeftover, reap, reapNamespaces } = require('./reaper');

module.exports = async function globalTeardown() {
  const dir = process.env[RUN_DIR_ENV];
  if (!dir) return;
  const stopped = reap(dir);
  if (stopped.length > 0) {
    process.stderr.write(`\nStopped ${stopped.length} process(es) the tests left running:\n`);
    for (const p of stopped) process.stderr.write(`  ${describeLeftover(p)}\n`);
  }
  const namespaces = reapNamespaces(dir);
  if (namespaces.length > 0) process.stderr.write(`\nDeleted ${namespaces.length} network namespace(s) the tests left: ${namespaces.join(' ')}\n`);
  if (globalThis.__vmmOwnRunDir === dir) {
    fs.rmSync(dir, { recursive: true, force: true });
    delete process.env[RUN_DIR_ENV];
  }
};
