/**
 * Installs Express 4 and mongoose 8 apart from the repository's Express 5 and mongoose 9, into
 * .cache/express4-mongoose8, for `npm run test:express4-mongoose8` (jest.express4-mongoose8.config.ts),
 * the server suite again on the oldest majors the peer ranges allow. The newest release of each major at
 * the time of writing, pinned so that a run is reproducible; raise them here when new ones come out.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './embedded';

export const VERSIONS = { express: '4.22.3', mongoose: '8.24.10' } as const;

const dir = join(ROOT, '.cache', 'express4-mongoose8');

function installed(name: keyof typeof VERSIONS): string | undefined {
  const file = join(dir, 'node_modules', name, 'package.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version : undefined;
}

if (installed('express') !== VERSIONS.express || installed('mongoose') !== VERSIONS.mongoose) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'credit-kit-express4-mongoose8', private: true }));
  process.stderr.write('[credit-kit] Installing Express 4 and mongoose 8 into .cache/express4-mongoose8 for the server suite on them...\n');
  const specs = Object.entries(VERSIONS).map(([name, version]) => `${name}@${version}`);
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--save-exact', ...specs], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
