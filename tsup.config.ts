import { defineConfig } from 'tsup';

// Two entries, each as CommonJS (.js) and ESM (.mjs) with types, peers left external.
const external = ['express', 'mongoose', 'mongodb', 'stripe', 'react', 'react-dom', 'swr', '@stripe/stripe-js'];

export default defineConfig([
  {
    entry: { 'server/index': 'server/index.ts' },
    format: ['cjs', 'esm'],
    dts: true,
    platform: 'node',
    target: 'node20',
    external,
    sourcemap: true,
  },
  {
    entry: { 'client/index': 'client/index.ts' },
    format: ['cjs', 'esm'],
    dts: true,
    platform: 'browser',
    target: 'es2020',
    external,
    sourcemap: true,
    // The optional stylesheet ships as is: `import 'credit-kit/client/styles.css'`.
    onSuccess: "node -e \"require('fs').copyFileSync('client/styles.css', 'dist/client/styles.css')\"",
  },
]);
