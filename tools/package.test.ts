/**
 * The package as a user installs it: built to dist/ as CommonJS and ESM with types, reachable through
 * its subpath exports `credit-kit/server` and `credit-kit/client` (Node resolves a package's own name).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '..');

beforeAll(() => {
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'pipe' });
}, 120_000);

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
}

it('exports createCredits from credit-kit/server to require() and import', () => {
  expect(node(['-e', "console.log(typeof require('credit-kit/server').createCredits)"])).toBe('function');
  expect(node(['--input-type=module', '-e', "import { createCredits } from 'credit-kit/server'; console.log(typeof createCredits)"])).toBe(
    'function',
  );
});

it('ships type declarations for both module systems and marks the client entry "use client"', () => {
  for (const file of ['server/index.d.ts', 'server/index.d.mts', 'client/index.d.ts', 'client/index.d.mts']) {
    expect(existsSync(join(root, 'dist', file))).toBe(true);
  }
  expect(readFileSync(join(root, 'dist/server/index.d.ts'), 'utf8')).toMatch(/declare function createCredits/);
  // Next.js App Router: the client entry is a client module, and its stylesheet ships beside it.
  expect(readFileSync(join(root, 'dist/client/index.mjs'), 'utf8')).toMatch(/^['"]use client['"];/);
  expect(readFileSync(join(root, 'dist/client/index.js'), 'utf8')).toMatch(/^("use strict";\s*)?['"]use client['"];/);
  expect(existsSync(join(root, 'dist/client/styles.css'))).toBe(true);
});
