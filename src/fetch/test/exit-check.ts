/**
 * Run as a child process by client.test.ts: uses every part of the client on the real clock
 * (timeouts, retries, hedges, cache, coalescing, deadlines), closes the client and the server,
 * and must then exit by itself. A leaked timer, listener or socket would keep it alive.
 */
import { createFetch } from '../../fetch.js';
import { reply, startServer } from './server.js';

const server = await startServer((req, res) => {
  if (req.path === '/flaky' && req.n % 2 === 1) return reply(res, 503, 'busy', { 'retry-after': '0' });
  if (req.path === '/slow') return void setTimeout(() => reply(res, 200, 'slow'), 200);
  reply(res, 200, 'ok');
});
const fetch = createFetch({
  defaults: {
    timeoutMs: 2000,
    hedge: { delayMs: 20 },
    coalesce: true,
    cache: { ttlMs: 50, staleWhileRevalidateMs: 1000, staleIfErrorMs: 1000 },
  },
});
const results = await Promise.all([
  fetch(`${server.url}/flaky`, { method: 'PUT', body: 'x', bulwark: { timeoutMs: 5000 } }),
  fetch(`${server.url}/slow`),
  fetch(`${server.url}/cached`),
  fetch(`${server.url}/cached`),
  fetch(`${server.url}/post`, { method: 'POST', body: 'y' }),
]);
for (const r of results) {
  if (r.status !== 200) throw new Error(`unexpected status ${r.status}`);
  await r.text();
}
await fetch.close();
await server.close();
process.stdout.write('done\n');
// No process.exit(): the process must end by itself.
