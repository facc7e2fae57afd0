/**
 * Waits for an instance process (server/reliability/checker-instance.ts) to print `ready <port>` on stdout,
 * within 30 s; rejects if it exits first. `detail()` adds what the process said on stderr, when kept.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export function readyPort(child: ChildProcess, what: string, detail: () => string = () => ''): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within 30 s${detail()}`)), 30_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^ready (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready${detail()}`));
    });
  });
}
