import type { Config } from 'jest';

// Tests import the package the way a user does (`credit-kit/server`, `credit-kit/client`); these map
// those names onto the sources so no build is needed before testing.
const moduleNameMapper = {
  '^credit-kit/server$': '<rootDir>/server/index.ts',
  '^credit-kit/fetch$': '<rootDir>/server/fetch/index.ts',
  '^credit-kit/client$': '<rootDir>/client/index.ts',
  '^credit-kit/testing$': '<rootDir>/server/testing/index.ts',
};
const transform = { '^.+\\.tsx?$': ['ts-jest', { tsconfig: '<rootDir>/tsconfig.json' }] };

const config: Config = {
  // The embedded database serialises commands and the machine may be busy: allow slow, not hung.
  testTimeout: 30_000,
  globalSetup: '<rootDir>/tools/jest/global-setup.ts',
  globalTeardown: '<rootDir>/tools/jest/global-teardown.ts',
  projects: [
    {
      displayName: 'server',
      testEnvironment: 'node',
      roots: ['<rootDir>/server', '<rootDir>/tools'],
      testMatch: ['**/*.test.ts'],
      // The reliability suite has its own command: npm run test:reliability.
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/server/reliability/'],
      moduleNameMapper,
      transform,
    },
    {
      displayName: 'client',
      testEnvironment: 'jsdom',
      roots: ['<rootDir>/client'],
      testMatch: ['**/*.test.tsx', '**/*.test.ts'],
      setupFilesAfterEnv: ['<rootDir>/client/test/setup.ts'],
      moduleNameMapper,
      transform,
    },
  ],
};

export default config;
