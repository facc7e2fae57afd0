/**
 * Installs React 18 apart from the repository's React 19, into .cache/react18, for `npm run test:react18`.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './embedded';

const dir = join(ROOT, '.cache', 'react18');
if (!existsSync(join(dir, 'node_modules', 'react-dom', 'package.json'))) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'credit-kit-react18', private: true }));
  process.stderr.write('[credit-kit] Installing React 18 into .cache/react18 for the React 18 client suite...\n');
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--save-exact', 'react@18.3.1', 'react-dom@18.3.1'], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}
