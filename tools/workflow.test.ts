/**
 * The GitHub Actions workflows in .github/workflows/ pass actionlint (https://github.com/rhysd/actionlint):
 * YAML and workflow syntax, expressions and their types, matrix and service keys, the inputs of well-known
 * actions, and, when shellcheck is installed, the shell of every `run:` step. actionlint is a Go program,
 * built once from the Go module proxy into .cache/bin (like the embedded servers, tools/embedded.ts) and
 * reused afterwards. Without Go this test fails, saying so: it is never skipped.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './embedded';

/** v1.7.11 is the newest release whose go.mod asks for no more than Go 1.24, the kit's minimum. */
const ACTIONLINT = 'github.com/rhysd/actionlint/cmd/actionlint';
const ACTIONLINT_VERSION = 'v1.7.11';
const CACHE_DIR = process.env.CREDIT_KIT_CACHE_DIR ?? join(ROOT, '.cache', 'bin');
const WORKFLOWS = join(ROOT, '.github', 'workflows');

const log = (line: string) => process.stderr.write(`[credit-kit] ${line}\n`);

/** Builds actionlint once into .cache/bin (printing what it does) and returns its path. */
function ensureActionlint(): string {
  const target = join(CACHE_DIR, `actionlint-${ACTIONLINT_VERSION}`);
  if (existsSync(target)) return target;
  if (spawnSync('go', ['version'], { stdio: 'ignore' }).status !== 0) {
    throw new Error(
      'Go is needed to check the GitHub Actions workflows: this test builds actionlint ' +
        `(${ACTIONLINT}@${ACTIONLINT_VERSION}) from source with Go, and no \`go\` command was found. ` +
        'Install Go 1.24 or newer (https://go.dev/dl/, or `apt-get install golang`) and run again.',
    );
  }
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmpDir = join(CACHE_DIR, `actionlint.${process.pid}.tmp`);
  log(`Building actionlint ${ACTIONLINT_VERSION} into ${CACHE_DIR} with go install (first run only, under a minute)...`);
  const started = Date.now();
  const res = spawnSync('go', ['install', '-trimpath', `${ACTIONLINT}@${ACTIONLINT_VERSION}`], {
    cwd: CACHE_DIR, // outside any module: `go install pkg@version` uses only actionlint's own go.mod
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, CGO_ENABLED: '0', GOBIN: tmpDir, GOFLAGS: '', GOWORK: 'off' },
  });
  if (res.status !== 0) {
    rmSync(tmpDir, { recursive: true, force: true });
    throw new Error(`Building actionlint failed (go install exited ${res.status}); see the output above.`);
  }
  renameSync(join(tmpDir, 'actionlint'), target); // atomic: a concurrent run sees nothing or the whole binary
  rmSync(tmpDir, { recursive: true, force: true });
  log(`Built actionlint in ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  return target;
}

let actionlint: string;
beforeAll(() => {
  actionlint = ensureActionlint();
}, 600_000);

it('finds the workflows', () => {
  expect(readdirSync(WORKFLOWS).filter((f) => /\.ya?ml$/.test(f))).toContain('ci.yml');
});

it('passes actionlint with no findings', () => {
  const files = readdirSync(WORKFLOWS)
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => relative(ROOT, join(WORKFLOWS, f)));
  const shellcheck = spawnSync('shellcheck', ['--version'], { stdio: 'ignore' }).status === 0;
  log(`actionlint ${ACTIONLINT_VERSION} on ${files.join(', ')} (run: scripts ${shellcheck ? 'checked by shellcheck' : 'not checked: no shellcheck'})`);
  const res = spawnSync(actionlint, ['-no-color', ...files], { cwd: ROOT, encoding: 'utf8' });
  // The findings themselves are the message when this fails.
  expect({ status: res.status, findings: `${res.stdout}${res.stderr}`.trim() }).toEqual({ status: 0, findings: '' });
});
