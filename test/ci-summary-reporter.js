// Jest reporter that writes the run's totals to $VMM_TEST_SUMMARY (when set),
// so .ci/run can print its one-line summary without parsing jest's output.
const fs = require('fs');

class CiSummaryReporter {
  onRunComplete(_contexts, results) {
    const file = process.env.VMM_TEST_SUMMARY;
    if (!file) return;
    // A suite that could not run at all (a load or transform error) has no
    // failed test in it; it counts as one failure.
    fs.writeFileSync(file, JSON.stringify({
      passed: results.numPassedTests,
      failed: results.numFailedTests + (results.numRuntimeErrorTestSuites || 0),
      skipped: results.numPendingTests + results.numTodoTests,
    }));
  }
}
module.exports = CiSummaryReporter;
