/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', isolatedModules: true }],
  },
  reporters: ['default', '<rootDir>/test/ci-summary-reporter.js'],
  // Integration tests start real daemons; keep them from fighting over 2 cores.
  maxWorkers: 2,
  testTimeout: 60000,
};
