/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', isolatedModules: true }],
  },
  reporters: ['default', '<rootDir>/test/ci-summary-reporter.js'],
  // A run directory where the harness records every daemon it starts, and a
  // reaper at the end for whatever a crashed suite left (test/harness/reaper.js).
  globalSetup: '<rootDir>/test/harness/global-setup.js',
  globalTeardown: '<rootDir>/test/harness/global-teardown.js',
  // Integration tests start real daemons; keep them from fighting over 2 cores.
  maxWorkers: 2,
  testTimeout: 60000,
};
