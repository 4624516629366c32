/**
 * Run as a child process by adapters.test.ts: serves a few requests with deadlines on every
 * adapter, closes the servers, and must then exit on its own. A leaked timer, listener or socket
 * would keep it alive and fail the test.
 */
import { request } from 'node:http';
import { healthChecks } from '../core/health.js';
import { ADAPTERS, sleep, startApp } from './apps.js';

function get(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

const health = healthChecks({ checks: { ok: { check: () => sleep(5), timeoutMs: 200 } } });
for (const kind of ADAPTERS) {
  const app = await startApp(kind, [
    { method: 'GET', path: '/fast', handler: () => ({ body: 1 }) },
    { method: 'GET', path: '/slow', handler: async (r) => { await sleep(5000, r!.signal); return { body: 2 }; } },
  ], { health, defaults: { deadlineMs: 60_000 } });
  const statuses = await Promise.all([
    get(`${app.url}/fast`, { 'x-request-timeout-ms': '30000' }),
    get(`${app.url}/slow`, { 'x-request-timeout-ms': '50' }),
    get(`${app.url}/health/ready`, {}),
  ]);
  if (statuses.join() !== '200,504,200') throw new Error(`${kind}: unexpected statuses ${statuses.join()}`);
  await app.close();
}
process.stdout.write('served\n');
// No process.exit(): the process must end by itself.
