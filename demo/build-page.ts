/**
 * Bundles the demo's React page with esbuild when the demo starts, in memory. The page imports
 * `credit-kit/client` as an app would; the alias points that name at the kit's source, as the published
 * package's `exports` would point it at dist/.
 */
import { join } from 'node:path';
import { build } from 'esbuild';

const ROOT = join(__dirname, '..');

export interface BuiltPage {
  /** Output file name (`app.js`, `app.css`) → contents. */
  files: Map<string, { contents: Uint8Array; type: string }>;
  /** The page's HTML, referencing the files under /assets/. */
  html: string;
  ms: number;
}

export async function buildPage(): Promise<BuiltPage> {
  const started = Date.now();
  const result = await build({
    entryPoints: { app: join(__dirname, 'web', 'main.tsx') },
    bundle: true,
    write: false,
    outdir: join(__dirname, 'dist'),
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    jsx: 'automatic',
    minify: true,
    sourcemap: 'linked',
    legalComments: 'none',
    define: { 'process.env.NODE_ENV': '"production"' },
    alias: {
      'credit-kit/client/styles.css': join(ROOT, 'client', 'styles.css'),
      'credit-kit/client': join(ROOT, 'client', 'index.ts'),
    },
    logLevel: 'silent',
  });
  const files = new Map<string, { contents: Uint8Array; type: string }>();
  for (const file of result.outputFiles) {
    const name = file.path.slice(file.path.lastIndexOf('/') + 1);
    const type = name.endsWith('.js') ? 'text/javascript' : name.endsWith('.css') ? 'text/css' : 'application/json';
    files.set(name, { contents: file.contents, type });
  }
  return { files, html: HTML, ms: Date.now() - started };
}

const HTML = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>credit-kit demo</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/assets/app.css">
  <script type="module" src="/assets/app.js"></script>
</head>
<body>
  <div id="root"><noscript>The credit-kit demo needs JavaScript.</noscript></div>
</body>
</html>
`;
