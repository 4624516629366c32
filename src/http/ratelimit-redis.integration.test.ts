import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisRateLimiter } from '../ratelimit/redis-limiter.js';
import { ADAPTERS, startApp, type AppRoute, type RunningApp } from './test/apps.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test:http-rl:${randomUUID()}`;
let redis: Redis;
const running: RunningApp[] = [];

before(async () => {
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 });
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    throw new Error(`Redis is required for this test and is unreachable at ${REDIS_URL} (set REDIS_URL): ${(error as Error).message}`, { cause: error });
  }
});

after(async () => {
  await Promise.all(running.map((app) => app.close()));
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
});

const routes: AppRoute[] = [
  { method: 'GET', path: '/a', config: { name: 'a' }, handler: () => ({ body: 'a' }) },
  { method: 'GET', path: '/b', config: { name: 'b' }, handler: () => ({ body: 'b' }) },
];

test('a Redis-backed per-user limit is shared by every server (node, express and fastify in front of one Redis)', async () => {
  // Three servers (one per adapter), each with its own limiter instance over the same Redis keys.
  const apps: RunningApp[] = [];
  for (const kind of ADAPTERS) {
    const limiter = new RedisRateLimiter({ client: redis, prefix, limit: 4, intervalMs: 60_000, timeoutMs: 500 });
    const app = await startApp(kind, routes, {
      rateLimit: { user: (r) => r.headers['x-user'] as string | undefined, limits: [{ name: 'per-user', key: 'user', limiter }] },
    });
    running.push(app);
    apps.push(app);
  }
  const get = (app: RunningApp, path: string, user: string) => fetch(`${app.url}${path}`, { headers: { 'x-user': user } });
  const statuses: number[] = [];
  const remaining: string[] = [];
  for (let i = 0; i < 5; i++) {
    const res = await get(apps[i % 3]!, '/a', 'carol');
    statuses.push(res.status);
    remaining.push(String(res.headers.get('ratelimit-remaining')));
    await res.arrayBuffer();
  }
  assert.deepEqual(statuses, [200, 200, 200, 200, 429], 'one budget of 4 across the three servers');
  assert.deepEqual(remaining, ['3', '2', '1', '0', '0']);
  const denied = await get(apps[0]!, '/a', 'carol');
  assert.equal(denied.status, 429);
  assert.ok(Number(denied.headers.get('retry-after')) >= 1);
  assert.equal(denied.headers.get('ratelimit-limit'), '4');
  assert.equal((await denied.json() as { code: string }).code, 'RATE_LIMITED');
  assert.equal((await get(apps[1]!, '/b', 'carol')).status, 200, 'route b has its own budget');
  assert.equal((await get(apps[2]!, '/a', 'dave')).status, 200, 'user dave has his own budget');
  const keys = await redis.keys(`${prefix}*`);
  assert.ok(keys.length >= 3, `keys live in Redis under the test prefix: ${keys.join(', ')}`);
});
