/**
 * The sample of docs/guides/migrating.md that needs Redis, run as a user would write it
 * (docs-migrating.test.ts runs the others and checks that every line of the guide's samples is
 * in one of the two files).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { redisRateLimiter } from '../src/redis.js';
import { REDIS_URL, requireService } from '../src/clients/test/support.js';

test('rate-limiter-flexible: RateLimiterRedis with an insurance limiter is redisRateLimiter (fails open to a local limiter)', async (t) => {
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  t.after(() => redis.disconnect());
  await requireService('Redis', REDIS_URL, () => redis.connect());
  const userId = randomUUID();

  const perUser = redisRateLimiter({ client: redis, prefix: 'rl:user', algorithm: 'fixed-window', limit: 100, intervalMs: 60_000 });
  const decision = await perUser.consume(userId); // Redis down: judged by a local limiter (failMode 'open', fallback 'local')

  assert.equal(decision.allowed, true);
  assert.equal(decision.remaining, 99);
  assert.equal(decision.store, 'redis');
  assert.equal(decision.degraded, undefined);
  await redis.del(`rl:user:{${userId}}`);
});
