import { defineConfig, type Options } from 'tsup';

// Four entries (server, its Fetch side, its testing helpers, client), each as CommonJS (.js) and ESM (.mjs)
// with types, peers left external. Source maps only when asked (CREDIT_KIT_SOURCEMAP=1 npm run build): they
// were most of the packed size.
const common: Options = {
  format: ['cjs', 'esm'],
  dts: true,
  external: ['express', 'mongoose', 'mongodb', 'stripe', 'react', 'react-dom', 'swr', '@stripe/stripe-js'],
  sourcemap: process.env.CREDIT_KIT_SOURCEMAP === '1',
};
const node: Options = { ...common, platform: 'node', target: 'node20' };

export default defineConfig([
  { ...node, entry: { 'server/index': 'server/index.ts', 'testing/index': 'server/testing/index.ts' } },
  // The Fetch side, built on its own so that nothing it loads or declares is shared with the server entry,
  // the only one that imports express.
  { ...node, entry: { 'fetch/index': 'server/fetch/index.ts' } },
  {
    ...common,
    entry: { 'client/index': 'client/index.ts' },
    platform: 'browser',
    target: 'es2020',
    // The optional stylesheet ships as is, with the types of `import 'credit-kit/client/styles.css'`.
    onSuccess:
      "node -e \"const fs = require('fs'); fs.copyFileSync('client/styles.css', 'dist/client/styles.css'); fs.copyFileSync('client/styles.css.d.ts', 'dist/client/styles.css.d.ts')\"",
  },
]);
