import type { Config } from 'jest';
import base from './jest.config';

/**
 * `npm run test:express4-mongoose8`: the server suite again, on Express 4 and mongoose 8, the oldest majors
 * the peer ranges allow. They are installed apart, in .cache/express4-mongoose8 (by
 * tools/express4-mongoose8.ts), because the repository's own are Express 5 and mongoose 9; every import of
 * express and mongoose, the kit's and the tests' alike, is mapped there (their own dependencies, such as
 * mongoose 8's MongoDB driver, resolve inside that directory).
 *
 * Only server/: the tests under tools/ are about the embedded servers, the workflow file and the package;
 * none uses Express, and the two that use mongoose (tools/embedded.test.ts, tools/mongo-index.test.ts) use
 * it only to reach the embedded server they test, so the main run covers them.
 */
const side = '<rootDir>/.cache/express4-mongoose8/node_modules';
const server = (base.projects as Config[]).find((p) => p.displayName === 'server')!;

const config: Config = {
  ...base,
  projects: [
    {
      ...server,
      displayName: 'server-express4-mongoose8',
      roots: ['<rootDir>/server'],
      globals: { CREDIT_KIT_EXPRESS_MAJOR: '4', CREDIT_KIT_MONGOOSE_MAJOR: '8' },
      moduleNameMapper: {
        ...server.moduleNameMapper,
        '^express$': `${side}/express`,
        '^express/(.*)$': `${side}/express/$1`,
        '^mongoose$': `${side}/mongoose`,
        '^mongoose/(.*)$': `${side}/mongoose/$1`,
      },
    },
  ],
};

export default config;
