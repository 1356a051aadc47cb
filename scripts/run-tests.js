#!/usr/bin/env node
// The last step of `npm test` (scripts/test.sh): runs jest and makes sure the
// run leaves nothing behind, however it ends.
//
// - jest runs in a process group of its own; SIGINT, SIGTERM and SIGHUP sent
//   to us (Ctrl-C, `kill` of npm, which forwards to us) go to that whole group
//   (jest and its workers), SIGKILL if it is still there after 10 s or when a
//   second signal comes later.
// - When jest is gone — finished, crashed or interrupted — whatever is left of
//   its group is stopped, and then every daemon the harness recorded in the
//   run directory (test/harness/reaper.js: by recorded pid, start time and
//   process group, never by name).
// - Then one line: "tests: N passed, N failed, N skipped" (unless the caller
//   set VMM_TEST_SUMMARY: .ci/run prints the line itself), and the exit code
//   is jest's (128 + signal number when interrupted).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const reaper = require('../test/harness/reaper');

const root = path.resolve(__dirname, '..');
const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-test-run-'));
const env = { ...process.env, [reaper.RUN_DIR_ENV]: runDir };
const printSummary = !process.env.VMM_TEST_SUMMARY;
const summaryFile = process.env.VMM_TEST_SUMMARY || path.join(runDir, 'summary.json');
env.VMM_TEST_SUMMARY = summaryFile;

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

const { signal } = reaper;

function groupExists(pgid) {
  return signal(-pgid, 0);
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function waitForGroupGone(pgid, ms) {
  const deadline = Date.now() + ms;
  while (groupExists(pgid) && Date.now() < deadline) Atomics.wait(sleeper, 0, 0, 25);
  return !groupExists(pgid);
}

const jestBin = require.resolve('jest/bin/jest', { paths: [root] });
const jest = spawn(process.execPath, [jestBin, ...process.argv.slice(2)], {
  cwd: root,
  env,
  stdio: 'inherit',
  detached: true,
});

let interrupted = null;
let firstSignalAt = 0;
let killTimer;
function onSignal(sig) {
  if (interrupted === null) {
    interrupted = sig;
    firstSignalAt = Date.now();
    process.stderr.write(`\n${sig}: stopping jest, then every daemon the tests started…\n`);
    signal(-jest.pid, sig);
    killTimer = setTimeout(() => signal(-jest.pid, 'SIGKILL'), 10_000);
    killTimer.unref();
  } else if (Date.now() - firstSignalAt > 2000) {
    // A second request, not the same Ctrl-C arriving twice (from the terminal and from npm).
    signal(-jest.pid, 'SIGKILL');
  }
}
for (const sig of Object.keys(SIGNAL_NUMBERS)) process.on(sig, onSignal);

jest.on('error', (err) => {
  process.stderr.write(`cannot start jest: ${err.message}\n`);
  if (printSummary) console.log('tests: 0 passed, 1 failed');
  fs.rmSync(runDir, { recursive: true, force: true });
  process.exit(1);
});

jest.on('exit', (code, sig) => {
  clearTimeout(killTimer);
  // Workers (and tools they ran) may outlive jest's main process.
  if (groupExists(jest.pid)) {
    signal(-jest.pid, 'SIGTERM');
    if (!waitForGroupGone(jest.pid, 3000)) signal(-jest.pid, 'SIGKILL');
    waitForGroupGone(jest.pid, 5000);
  }
  const stopped = reaper.reap(runDir);
  if (stopped.length > 0) {
    process.stderr.write(`Stopped ${stopped.length} process(es) the tests left running:\n`);
    for (const p of stopped) process.stderr.write(`  ${reaper.describeLeftover(p)}\n`);
  }
  for (const name of reaper.reapNamespaces(runDir)) process.stderr.write(`Deleted network namespace ${name} the tests left\n`);
  const left = reaper.findLeftovers(runDir);
  for (const p of left) process.stderr.write(`STILL RUNNING after SIGKILL: ${reaper.describeLeftover(p)}\n`);

  let rc = code ?? 128 + (SIGNAL_NUMBERS[sig] ?? 9);
  if (interrupted !== null) rc = 128 + SIGNAL_NUMBERS[interrupted];
  if (left.length > 0 && rc === 0) rc = 1;

  if (printSummary) {
    let summary;
    try {
      summary = JSON.parse(fs.readFileSync(summaryFile, 'utf8'));
    } catch {
      summary = undefined;
    }
    if (summary === undefined) {
      // jest did not get to the end (interrupted, or failed before any test ran).
      console.log(`tests: 0 passed, 1 failed${interrupted ? ` (interrupted by ${interrupted})` : ''}`);
    } else {
      const failed = rc !== 0 && summary.failed === 0 ? 1 : summary.failed;
      console.log(`tests: ${summary.passed} passed, ${failed} failed, ${summary.skipped} skipped`);
    }
  }
  fs.rmSync(runDir, { recursive: true, force: true });
  process.exit(rc);
});
