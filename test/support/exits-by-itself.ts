import { spawn } from 'node:child_process';

/**
 * Runs a TypeScript script in a child Node process and tells whether it ended by itself once its
 * work was done: what a leaked timer, socket or interval would prevent.
 *
 * The script writes `marker` when it has closed everything. Only the time after the marker is
 * bounded: starting Node with tsx takes a second on an idle machine and far longer on a loaded
 * one, and says nothing about leaks (a child that never gets there is caught by the test's own
 * timeout). `graceMs` is shorter than undici's 4 s keep-alive, so a client whose sockets were
 * left open fails here instead of exiting a little late.
 */
export async function exitsByItself(script: string, marker: string, graceMs = 3000): Promise<{ code: number | null | 'leaked'; out: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let timer: NodeJS.Timeout | undefined;
  const code = new Promise<number | null | 'leaked'>((resolve) => {
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
    const watch = (data: Buffer): void => {
      out += data.toString();
      if (timer === undefined && out.includes(marker)) {
        timer = setTimeout(() => {
          child.kill('SIGKILL');
          resolve('leaked');
        }, graceMs);
      }
    };
    child.stdout.on('data', watch);
    child.stderr.on('data', watch);
  });
  return { code: await code, out };
}
