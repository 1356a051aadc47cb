// Jest reporter that
// - collects why tests were skipped (jest only says "skipped"): a suite
//   skipped by test/harness/prereq.ts carries "[skipped: <reason>]" in its
//   title; the reasons are printed, per file, at the end of the run;
// - writes the run's totals to $VMM_TEST_SUMMARY (when set), so .ci/run and
//   scripts/run-tests.js can print their one-line summary without parsing
//   jest's output.
const fs = require('fs');
const path = require('path');

const SKIP_MARK = /\[skipped: (.+)\]$/;
const SKIP_STATUSES = new Set(['pending', 'skipped', 'todo', 'disabled']);

class CiSummaryReporter {
  constructor(globalConfig) {
    this.rootDir = (globalConfig && globalConfig.rootDir) || process.cwd();
    this.namePattern = globalConfig && globalConfig.testNamePattern;
    /** file → reason → number of tests */
    this.skips = new Map();
  }

  onTestResult(_test, testResult) {
    const file = path.relative(this.rootDir, testResult.testFilePath);
    for (const result of testResult.testResults) {
      if (!SKIP_STATUSES.has(result.status)) continue;
      let reason;
      for (const title of [...result.ancestorTitles, result.title]) {
        const m = SKIP_MARK.exec(title);
        if (m) reason = m[1];
      }
      if (reason === undefined && result.status === 'todo') reason = 'todo';
      if (reason === undefined && this.namePattern) reason = `not matching -t ${this.namePattern}`;
      if (reason === undefined) reason = 'no reason given (a describe.skip or it.skip without "[skipped: …]")';
      if (!this.skips.has(file)) this.skips.set(file, new Map());
      const reasons = this.skips.get(file);
      reasons.set(reason, (reasons.get(reason) || 0) + 1);
    }
  }

  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const lines = [];
    for (const [file, reasons] of [...this.skips].sort(([a], [b]) => a.localeCompare(b))) {
      for (const [reason, count] of reasons) lines.push(`  ${file}: ${count} skipped — ${reason}`);
    }
    if (lines.length > 0) process.stdout.write(`\nSkipped tests, and why:\n${lines.join('\n')}\n`);

    const file = process.env.VMM_TEST_SUMMARY;
    if (!file) return;
    // A suite that could not run at all (a load or transform error) has no
    // failed test in it; it counts as one failure.
    fs.writeFileSync(file, JSON.stringify({
      passed: results.numPassedTests,
      failed: results.numFailedTests + (results.numRuntimeErrorTestSuites || 0),
      skipped,
      skips: [...this.skips].map(([f, reasons]) => ({ file: f, reasons: Object.fromEntries(reasons) })),
    }));
  }
}
module.exports = CiSummaryReporter;
