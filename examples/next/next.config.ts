import type { NextConfig } from 'next';

// This folder is the app's root, though the repository's own lockfile sits above it.
const root = __dirname;

const config: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  turbopack: { root },
  outputFileTracingRoot: root,
  // mongoose and the MongoDB driver load optional native modules at run time: required from
  // node_modules, not bundled.
  serverExternalPackages: ['mongoose', 'mongodb'],
};

export default config;
