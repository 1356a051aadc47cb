// Jest reporter that writes the run's totals to $VMM_TEST_SUMMARY (when set),
// so .ci/run can print its one-line summary without parsing jest's output.
const fs = require('fs');

class CiSummaryReporter {
  onRunComplete(_contexts, results) {
    const file = process.env.VMM_TEST_SUMMARY;
    if (!file) return;
    const failedSuites = results.numFailedTestSuites + (results.numRuntimeErrorTestSuites || 0);
    fs.writeFileSync(file, JSON.stringify({
      passed: results.numPassedTests,
      failed: results.numFailedTests,
      skipped: results.numPendingTests + results.numTodoTests,
      failedSuites,
    }));
  }
}
module.exports = CiSummaryReporter;
