import type { Config } from 'jest';

// `npm run test:reliability`: faults, crashes, replays, forgeries and hostile input (server/reliability/).
const config: Config = {
  testTimeout: 120_000,
  globalSetup: '<rootDir>/tools/jest/global-setup.ts',
  globalTeardown: '<rootDir>/tools/jest/global-teardown.ts',
  displayName: 'reliability',
  testEnvironment: 'node',
  roots: ['<rootDir>/server/reliability'],
  testMatch: ['**/*.test.ts'],
  moduleNameMapper: { '^credit-kit/server$': '<rootDir>/server/index.ts', '^credit-kit/fetch$': '<rootDir>/server/fetch/index.ts' },
  transform: { '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }] },
  // Suites kill and restart their own database servers; one at a time keeps the 2-core machine honest.
  maxWorkers: 1,
};

export default config;
