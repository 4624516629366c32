/**
 * What a rate limit configured to fail closed does when its Redis store cannot answer, as the
 * rate-limit docs describe it: over HTTP a 503 STORE_UNAVAILABLE (the client did nothing wrong),
 * not a 429. With a real ioredis client: rate-limit-fail-closed.integration.test.ts.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { redisRateLimiter } from '../src/ratelimit/redis-limiter.js';
import type { RedisScriptClient } from '../src/redis-client/script-client.js';
import { ADAPTERS, startApp, type RunningApp } from '../src/http/test/apps.js';

const prefix = `test:fail-closed:${randomUUID()}`;
const running: RunningApp[] = [];
after(() => Promise.all(running.map((app) => app.close())));

/** A store that is down: every script call fails the way a lost connection does. */
const unreachable: RedisScriptClient = {
  flavour: 'custom',
  run: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })),
};

for (const kind of ADAPTERS) {
  test(`${kind}: a limit failing closed answers 503 STORE_UNAVAILABLE with Retry-After, not 429`, async () => {
    const limiter = redisRateLimiter({ client: unreachable, prefix, limit: 100, intervalMs: 60_000, failMode: 'closed', breaker: false, failClosedRetryAfterMs: 2000 });
    const app = await startApp(kind, [{ method: 'GET', path: '/a', config: { name: 'a' }, handler: () => ({ body: 'a' }) }], {
      rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limiter }] },
    });
    running.push(app);
    const res = await fetch(`${app.url}/a`);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(res.headers.get('retry-after'), '2');
    assert.equal(((await res.json()) as { code: string }).code, 'STORE_UNAVAILABLE');
  });
}
