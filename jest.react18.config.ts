import type { Config } from 'jest';
import base from './jest.config';

/**
 * `npm run test:react18`: the client suite again, on React 18. React 18 is installed apart, in
 * .cache/react18 (by tools/react18.ts), because the repository's own React is 19; every import of react
 * and react-dom, the kit's, swr's and testing-library's alike, is mapped there.
 */
const react18 = '<rootDir>/.cache/react18/node_modules';
const client = (base.projects as Config[]).find((p) => p.displayName === 'client')!;

const config: Config = {
  ...base,
  projects: [
    {
      ...client,
      displayName: 'client-react18',
      globals: { CREDIT_KIT_REACT_MAJOR: '18' },
      moduleNameMapper: {
        ...client.moduleNameMapper,
        '^react$': `${react18}/react`,
        '^react/(.*)$': `${react18}/react/$1`,
        '^react-dom$': `${react18}/react-dom`,
        '^react-dom/(.*)$': `${react18}/react-dom/$1`,
      },
    },
  ],
};

export default config;
