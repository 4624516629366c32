/**
 * A rate limit failing closed on a real ioredis client with its offline queue off: every decision
 * before the client is `ready` is denied, then Redis decides (the shared Redis, REDIS_URL).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { redisRateLimiter } from '../src/ratelimit/redis-limiter.js';
import { REDIS_URL, requireService } from '../src/clients/test/support.js';

const prefix = `test:fail-closed:${randomUUID()}`;
const clients: Redis[] = [];
after(async () => {
  for (const client of clients) {
    if (client.status === 'ready') {
      const keys = await client.keys(`${prefix}:*`);
      if (keys.length > 0) await client.del(...keys);
    }
    client.disconnect();
  }
});

test('with ioredis enableOfflineQueue: false, a limit failing closed denies until the client is ready, then decides in Redis', async () => {
  const redis = new Redis(REDIS_URL, { enableOfflineQueue: false });
  clients.push(redis);
  const limiter = redisRateLimiter({ client: redis, prefix, limit: 100, intervalMs: 60_000, failMode: 'closed' });
  const early = await limiter.consume('user-1');   // the connection is still being set up
  assert.equal(early.allowed, false);
  assert.equal(early.degraded, 'fail-closed');
  await requireService('Redis', REDIS_URL, () => once(redis, 'ready'));
  const ready = await limiter.consume('user-1');
  assert.equal(ready.allowed, true);
  assert.equal(ready.store, 'redis');
  assert.equal(ready.degraded, undefined);
});
