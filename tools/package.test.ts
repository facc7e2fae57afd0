/**
 * The package as a user installs it. `npm pack` (which runs the `prepare` build) makes the tarball; the
 * first tests read what it holds and load dist/ through the package's own name. Then the tarball is
 * installed with npm, from the registry like any app would, into fresh apps that install only what they use:
 *
 *   express4   express 4 + mongoose 8 (+ @types/express 4), server only
 *   express5   express 5 + mongoose 9 (+ @types/express 5), server only; later also stripe
 *   react19    react 19 + react-dom + swr (+ @types/react), client only; later also @stripe/stripe-js
 *   fetch      mongoose 9 only (no express), credit-kit/fetch as Next.js route handlers use it
 *
 * Each app's source (tools/consumers/) is copied once as an ES module and once as CommonJS and compiled with
 * `tsc --strict`, without skipLibCheck, for moduleResolution node16, nodenext and bundler on TypeScript 5.9
 * (the repository's) and 7 (installed into the temporary folder only), and node10 on TypeScript 5.9.
 * The React app is also bundled with esbuild and rendered on the server; the server apps are loaded by Node.
 *
 * npm's own cache serves repeated runs (`--prefer-offline`); nothing is kept between runs but that cache.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';

const root = join(__dirname, '..');
const fixtures = join(__dirname, 'consumers');
const TS5 = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; npm's variables from an enclosing `npm test` are left out, as in a new shell. */
function run(command: string, args: string[], cwd: string): Promise<Run> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function ok(command: string, args: string[], cwd: string): Promise<Run> {
  const r = await run(command, args, cwd);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** At most `n` of the queued jobs at a time (the machine has two cores). */
function limiter(n: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((go) => waiting.push(go));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

let work: string;
let tarball: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'credit-kit-consumers-'));
  await ok('npm', ['pack', '--pack-destination', work], root);
  const packed = readdirSync(work).filter((f) => f.endsWith('.tgz'));
  expect(packed).toHaveLength(1);
  tarball = join(work, packed[0]!);
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function node(args: string[], cwd = root): Promise<string> {
  return ok(process.execPath, args, cwd).then((r) => r.stdout.trim());
}

describe('the packed package', () => {
  it('holds dist (no source maps), README.md, LICENSE and package.json, nothing else', async () => {
    const files = (await ok('tar', ['-tzf', tarball], work)).stdout.trim().split('\n').sort();
    expect(files).toEqual([
      'package/LICENSE',
      'package/README.md',
      'package/dist/client/index.d.mts',
      'package/dist/client/index.d.ts',
      'package/dist/client/index.js',
      'package/dist/client/index.mjs',
      'package/dist/client/styles.css',
      'package/dist/client/styles.css.d.ts',
      'package/dist/fetch/index.d.mts',
      'package/dist/fetch/index.d.ts',
      'package/dist/fetch/index.js',
      'package/dist/fetch/index.mjs',
      'package/dist/server/index.d.mts',
      'package/dist/server/index.d.ts',
      'package/dist/server/index.js',
      'package/dist/server/index.mjs',
      'package/dist/testing/index.d.mts',
      'package/dist/testing/index.d.ts',
      'package/dist/testing/index.js',
      'package/dist/testing/index.mjs',
      'package/package.json',
    ]);
    expect(readFileSync(join(root, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) 2026 credit-kit contributors\n/);
  });

  it('has no runtime dependencies: express, mongoose, stripe, react and swr are (optional) peers', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies: Record<string, string>;
      peerDependenciesMeta: Record<string, { optional?: boolean }>;
    };
    expect(pkg.dependencies ?? {}).toEqual({});
    for (const [name, range] of Object.entries(pkg.peerDependencies)) {
      expect([name, pkg.peerDependenciesMeta[name]?.optional]).toEqual([name, true]);
      expect([name, /^\d+\.\d+\.\d+$/.test(range)]).toEqual([name, false]); // a range, not a pin
    }
  });

  it('declares no type from stripe or @stripe/stripe-js, and none of Node globals in the server types', () => {
    for (const file of ['server/index.d.ts', 'server/index.d.mts', 'client/index.d.ts', 'client/index.d.mts']) {
      const text = readFileSync(join(root, 'dist', file), 'utf8');
      const imported = [...text.matchAll(/from ['"]([^'"]+)['"]/g)].map((m) => m[1]);
      expect([file, imported.filter((m) => m === 'stripe' || m === '@stripe/stripe-js')]).toEqual([file, []]);
    }
    const declarations = readFileSync(join(root, 'dist/server/index.d.mts'), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    expect(declarations).toMatch(/declare function keepRawBody\(req: unknown, _res: unknown, buf: Uint8Array\): void;/);
    expect(declarations).not.toMatch(/\bBuffer\b|NodeJS\./);
  });

  it('exports createCredits from credit-kit/server to require() and import', async () => {
    expect(await node(['-e', "console.log(typeof require('credit-kit/server').createCredits)"])).toBe('function');
    expect(await node(['--input-type=module', '-e', "import { createCredits } from 'credit-kit/server'; console.log(typeof createCredits)"])).toBe(
      'function',
    );
  });

  it('loads credit-kit/fetch without express: nothing it loads or declares imports express', async () => {
    for (const file of ['fetch/index.js', 'fetch/index.mjs', 'fetch/index.d.ts', 'fetch/index.d.mts']) {
      const text = readFileSync(join(root, 'dist', file), 'utf8');
      expect([file, /require\(["']express["']\)|from ["']express["']|import ["']express["']|import\(["']express["']\)/.test(text)]).toEqual([file, false]);
    }
    // Node as if express were not installed: resolving it fails, as in an app that never installed it.
    const withoutExpress =
      "const M = require('module'); const resolve = M._resolveFilename; M._resolveFilename = function (request, ...rest) { " +
      "if (request === 'express' || request.startsWith('express/')) throw Object.assign(new Error('Cannot find module express'), { code: 'MODULE_NOT_FOUND' }); " +
      'return resolve.call(this, request, ...rest); };';
    expect(await node(['-e', `${withoutExpress} console.log(typeof require('credit-kit/fetch').createFetchCredits)`])).toBe('function');
    // The stand-in works: the Express entry does not load that way.
    expect((await run(process.execPath, ['-e', `${withoutExpress} require('credit-kit/server')`], root)).code).not.toBe(0);
    expect(await node(['--input-type=module', '-e', "import { createFetchCredits } from 'credit-kit/fetch'; console.log(typeof createFetchCredits)"])).toBe('function');
  });

  it('ships type declarations for both module systems and marks the client entry "use client"', () => {
    expect(readFileSync(join(root, 'dist/server/index.d.ts'), 'utf8')).toMatch(/declare function createCredits/);
    // Next.js App Router: the client entry is a client module, and its stylesheet ships beside it.
    expect(readFileSync(join(root, 'dist/client/index.mjs'), 'utf8')).toMatch(/^['"]use client['"];/);
    expect(readFileSync(join(root, 'dist/client/index.js'), 'utf8')).toMatch(/^("use strict";\s*)?['"]use client['"];/);
  });
});

type AppName = 'express4' | 'express5' | 'react19' | 'fetch';
type Setting = 'node16' | 'nodenext' | 'bundler' | 'node10';

const APPS: Record<AppName, { side: 'server' | 'client' | 'fetch'; source: string; install: string[] }> = {
  express4: { side: 'server', source: 'server-app.ts', install: ['express@^4.21.0', 'mongoose@^8.9.0', '@types/express@^4.17.21', '@types/node@^20.19.0'] },
  express5: { side: 'server', source: 'server-app.ts', install: ['express@^5.1.0', 'mongoose@^9.0.0', '@types/express@^5.0.0', '@types/node@^20.19.0'] },
  fetch: { side: 'fetch', source: 'fetch-app.ts', install: ['mongoose@^9.0.0', '@types/node@^20.19.0'] },
  react19: { side: 'client', source: 'client-app.tsx', install: ['react@^19.0.0', 'react-dom@^19.0.0', 'swr@^2.3.0', '@types/react@^19.0.0', '@types/react-dom@^19.0.0'] },
};

/** Where each setting compiles the app, and which of the kit's declaration files it must load. */
const SETTINGS: Record<Setting, { options: Record<string, string>; include: string[]; loads: string[] }> = {
  node16: { options: { module: 'node16' }, include: ['esm', 'cjs'], loads: ['index.d.mts', 'index.d.ts'] },
  nodenext: { options: { module: 'nodenext' }, include: ['esm', 'cjs'], loads: ['index.d.mts', 'index.d.ts'] },
  bundler: { options: { module: 'esnext', moduleResolution: 'bundler' }, include: ['esm'], loads: ['index.d.mts'] },
  node10: { options: { module: 'commonjs', moduleResolution: 'node' }, include: ['esm'], loads: ['index.d.ts'] },
};

const appDir = (app: AppName) => join(work, app);
const has = (app: AppName, pkg: string) => existsSync(join(appDir(app), 'node_modules', pkg, 'package.json'));
const versionOf = (app: AppName, pkg: string) =>
  (JSON.parse(readFileSync(join(appDir(app), 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;

function writeApp(app: AppName): void {
  const { side, source } = APPS[app];
  const dir = appDir(app);
  const ext = side === 'client' ? 'tsx' : 'ts';
  for (const [format, type] of [['esm', 'module'], ['cjs', 'commonjs']] as const) {
    mkdirSync(join(dir, format), { recursive: true });
    writeFileSync(join(dir, format, 'package.json'), JSON.stringify({ type }));
    copyFileSync(join(fixtures, source), join(dir, format, `index.${ext}`));
  }
  for (const [setting, { options, include }] of Object.entries(SETTINGS)) {
    const compilerOptions = {
      strict: true,
      noEmit: true,
      target: 'es2022',
      esModuleInterop: true,
      noUncheckedSideEffectImports: true,
      ...(side === 'client' ? { jsx: 'react-jsx', lib: ['es2022', 'dom', 'dom.iterable'] } : {}),
      ...options,
    };
    writeFileSync(join(dir, `tsconfig.${setting}.json`), JSON.stringify({ compilerOptions, include }, null, 2));
  }
}

const installs = limiter(2);
const compiles = limiter(2);
let ts7: string;
const compiled = new Map<string, Promise<Run>>();

/** `tsc -p tsconfig.<setting>.json --listFiles` with TypeScript 5.9 or 7, queued. */
function tsc(version: '5.9' | '7', app: AppName, config: string): Promise<Run> {
  const key = `${version} ${app} ${config}`;
  if (!compiled.has(key)) {
    const bin = version === '7' ? ts7 : TS5;
    compiled.set(key, compiles(() => run(process.execPath, [bin, '-p', config, '--listFiles'], appDir(app))));
  }
  return compiled.get(key)!;
}

function npmInstall(dir: string, packages: string[]): Promise<Run> {
  return installs(() => ok('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...packages], dir));
}

describe('fresh apps that install the tarball and only what they use', () => {
  beforeAll(async () => {
    const tools = join(work, 'typescript7');
    mkdirSync(tools);
    writeFileSync(join(tools, 'package.json'), JSON.stringify({ name: 'typescript7', private: true }));
    const apps = Object.keys(APPS) as AppName[];
    for (const app of apps) {
      writeApp(app);
      writeFileSync(join(appDir(app), 'package.json'), JSON.stringify({ name: `consumer-${app}`, private: true }));
    }
    await Promise.all([npmInstall(tools, ['typescript@7']), ...apps.map((app) => npmInstall(appDir(app), [tarball, ...APPS[app].install]))]);
    ts7 = join(tools, 'node_modules', 'typescript', 'bin', 'tsc');
    // Queue every compilation now, two at a time; each test below waits for its own.
    for (const app of apps) {
      for (const setting of Object.keys(SETTINGS) as Setting[]) {
        void tsc('5.9', app, `tsconfig.${setting}.json`);
        if (setting !== 'node10') void tsc('7', app, `tsconfig.${setting}.json`);
      }
    }
  }, 300_000);

  it('installs TypeScript 7 apart, for these apps only', async () => {
    expect((await node([ts7, '--version'], work)).replace(/^Version /, '')).toMatch(/^7\./);
    expect(existsSync(join(root, 'node_modules', 'typescript', 'package.json'))).toBe(true);
    expect(JSON.parse(readFileSync(join(root, 'node_modules', 'typescript', 'package.json'), 'utf8')).version).toBe('5.9.3');
  });

  it('server-only apps get express and mongoose, and nothing of React, swr, Stripe or a limiter package', () => {
    for (const [app, express, mongoose] of [['express4', '4', '8'], ['express5', '5', '9']] as const) {
      expect([app, versionOf(app, 'express').split('.')[0], versionOf(app, 'mongoose').split('.')[0]]).toEqual([app, express, mongoose]);
      for (const absent of ['react', 'react-dom', 'swr', 'stripe', '@stripe/stripe-js', 'express-rate-limit']) {
        expect([app, absent, has(app, absent)]).toEqual([app, absent, false]);
      }
      expect(has(app, 'credit-kit')).toBe(true);
    }
  });

  it('the React-only app gets react, react-dom and swr, and nothing of Express, mongoose or Stripe', () => {
    expect(versionOf('react19', 'react').split('.')[0]).toBe('19');
    expect(has('react19', 'swr')).toBe(true);
    for (const absent of ['express', 'mongoose', 'mongodb', 'stripe', '@stripe/stripe-js', '@types/express', 'express-rate-limit']) {
      expect([absent, has('react19', absent)]).toEqual([absent, false]);
    }
  });

  it('the Fetch app gets mongoose, and nothing of Express, React, swr or Stripe', () => {
    expect(versionOf('fetch', 'mongoose').split('.')[0]).toBe('9');
    for (const absent of ['express', '@types/express', 'react', 'react-dom', 'swr', 'stripe', '@stripe/stripe-js']) {
      expect([absent, has('fetch', absent)]).toEqual([absent, false]);
    }
  });

  const matrix: Array<[AppName, '5.9' | '7', Setting]> = [];
  for (const app of Object.keys(APPS) as AppName[]) {
    for (const setting of Object.keys(SETTINGS) as Setting[]) {
      matrix.push([app, '5.9', setting]);
      if (setting !== 'node10') matrix.push([app, '7', setting]);
    }
  }
  it.each(matrix)('%s compiles with TypeScript %s, moduleResolution %s, strict, without skipLibCheck', async (app, version, setting) => {
    const r = await tsc(version, app, `tsconfig.${setting}.json`);
    const errors = r.stdout.split('\n').filter((line) => /error TS\d+/.test(line));
    expect(errors).toEqual([]);
    expect(r.code).toBe(0);
    // The declarations each module format resolves to: ESM the .d.mts, CommonJS the .d.ts (node10 via typesVersions).
    const side = APPS[app].side;
    const kitFiles = r.stdout
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.includes('/node_modules/credit-kit/'))
      .map((line) => line.slice(line.indexOf('/node_modules/credit-kit/') + '/node_modules/credit-kit/'.length))
      .sort();
    const expected = SETTINGS[setting].loads.map((f) => `dist/${side}/${f}`);
    if (side === 'client') expected.push('dist/client/styles.css.d.ts');
    expect(kitFiles).toEqual(expected.sort());
  }, 300_000);

  it('TypeScript 7 refuses moduleResolution node10 itself (TS5108), as the README says', async () => {
    const r = await tsc('7', 'express5', 'tsconfig.node10.json');
    expect(r.code).not.toBe(0);
    expect(r.stdout).toMatch(/error TS5108: Option 'moduleResolution=node10' has been removed/);
  }, 300_000);

  it.each([
    ['express4', 'server-run.mjs', "typeof require('credit-kit/server').createCredits"],
    ['express5', 'server-run.mjs', "typeof require('credit-kit/server').createCredits"],
    // The Fetch app has no express installed at all.
    ['fetch', 'fetch-run.mjs', "typeof require('credit-kit/fetch').createFetchCredits"],
  ] as const)('%s runs the README guarded route and the balance route from the installed package (import), and require() loads it', async (app, script, loads) => {
    const dir = appDir(app);
    copyFileSync(join(fixtures, script), join(dir, 'run.mjs'));
    const env = { ...process.env, DB_NAME: `ck_consumer_${app}_${process.pid}` };
    const r = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['run.mjs'], { cwd: dir, env, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${String(err)}\n${stderr}`)) : resolve(stdout),
      ),
    );
    expect(JSON.parse(r)).toEqual({
      summarize: [200, { creditsLeft: 7 }],
      broke: [402, { error: expect.objectContaining({ code: 'insufficient_credits', required: 3, balance: 0 }) }],
      anonymous: [401, { error: expect.objectContaining({ code: 'unauthenticated' }) }],
      balance: [200, { balance: 7, creditName: 'credits' }],
    });
    expect(await node(['-e', `console.log(${loads})`], dir)).toBe('function');
  }, 120_000);

  it('the React app renders on the server from the installed ESM build', async () => {
    const script = [
      "import { createElement as h } from 'react';",
      "import { renderToString } from 'react-dom/server';",
      "import { CreditsProvider, BalanceBadge, BuyCreditsButton } from 'credit-kit/client';",
      "console.log(renderToString(h(CreditsProvider, { apiBase: '/api' }, h(BalanceBadge), h(BuyCreditsButton, { quantity: 100 }))));",
    ].join('\n');
    const html = await node(['--input-type=module', '-e', script], appDir('react19'));
    expect(html).toMatch(/class="ck-badge[^"]*"/);
    expect(html).toMatch(/<button[^>]*>/);
  });

  it('the React app bundles with esbuild: the kit ESM build, swr and the stylesheet, and no server code', async () => {
    const dir = appDir('react19');
    const result = await build({
      entryPoints: [join(dir, 'esm', 'index.tsx')],
      bundle: true,
      minify: true,
      format: 'esm',
      platform: 'browser',
      jsx: 'automatic',
      outdir: join(dir, 'out'),
      metafile: true,
      absWorkingDir: dir,
      logLevel: 'silent',
    });
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs).toContain('node_modules/credit-kit/dist/client/index.mjs');
    expect(inputs).toContain('node_modules/credit-kit/dist/client/styles.css');
    expect(inputs.some((i) => i.startsWith('node_modules/swr/'))).toBe(true);
    expect(inputs.filter((i) => /node_modules\/(express|mongoose|mongodb|stripe|@stripe)\//.test(i))).toEqual([]);
    expect(readFileSync(join(dir, 'out', 'index.css'), 'utf8')).toMatch(/\.ck-badge/);
  });

  it('with stripe installed too, a stripe-node client, event and session fit the kit types (TypeScript 5.9 and 7)', async () => {
    const dir = appDir('express5');
    await npmInstall(dir, ['stripe']);
    copyFileSync(join(fixtures, 'server-stripe.ts'), join(dir, 'esm', 'with-stripe.ts'));
    copyFileSync(join(fixtures, 'server-stripe.ts'), join(dir, 'cjs', 'with-stripe.ts'));
    for (const version of ['5.9', '7'] as const) {
      const r = await run(process.execPath, [version === '7' ? ts7 : TS5, '-p', 'tsconfig.nodenext.json'], dir);
      expect([version, r.stdout.trim(), r.code]).toEqual([version, '', 0]);
    }
  }, 300_000);

  it('with @stripe/stripe-js installed too, what loadStripe() resolves to fits EmbeddedCheckout (TypeScript 5.9 and 7)', async () => {
    const dir = appDir('react19');
    await npmInstall(dir, ['@stripe/stripe-js']);
    copyFileSync(join(fixtures, 'client-stripe-js.tsx'), join(dir, 'esm', 'with-stripe-js.tsx'));
    for (const version of ['5.9', '7'] as const) {
      const r = await run(process.execPath, [version === '7' ? ts7 : TS5, '-p', 'tsconfig.bundler.json'], dir);
      expect([version, r.stdout.trim(), r.code]).toEqual([version, '', 0]);
    }
  }, 300_000);
});
