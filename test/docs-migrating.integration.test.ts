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
  const perUser = redisRateLimiter({ client: redis, prefix: 'rl:user', algorithm: 'fixed-window', limit: 100, intervalMs: 60_000 });
  const sample = async (userId: string) => {
    const decision = await perUser.consume(userId); // Redis down: judged by a local limiter (failMode 'open', fallback 'local')
    return decision;
  };

  // The limiter waits 20 ms for Redis and then judges locally, as the comment says: on a loaded
  // machine the first calls (the script's load included) can miss that. Each try takes a fresh
  // user, so the decision Redis makes is that user's first; the local ones are checked on the way.
  const users = [randomUUID()];
  let decision = await sample(users[0]!);
  for (let i = 0; i < 50 && decision.store !== 'redis'; i++) {
    assert.deepEqual([decision.store, decision.degraded, decision.allowed, decision.remaining], ['memory', 'fail-open', true, 99]);
    users.push(randomUUID());
    decision = await sample(users.at(-1)!);
  }
  assert.equal(decision.allowed, true);
  assert.equal(decision.remaining, 99);
  assert.equal(decision.store, 'redis');
  assert.equal(decision.degraded, undefined);
  await redis.del(...users.map((id) => `rl:user:{${id}}`));
});
