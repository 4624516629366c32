// The Redis rate limiter without a server: a stand-in client on a VirtualClock, so the time a
// decision takes when Redis does not answer is exact. Against a real Redis: redis-limiter.integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { RedisScriptClient } from '../redis-client/script-client.js';
import { RedisRateLimiter } from './redis-limiter.js';
import type { Decision } from './types.js';

/** A Redis that takes every script call and never answers (a hung server or a dead link). */
function silentRedis(): RedisScriptClient & { calls: number } {
  const client = {
    flavour: 'custom' as const,
    calls: 0,
    run: () => {
      client.calls++;
      return new Promise<never>(() => {});
    },
  };
  return client;
}

/** A client the limiter must not call. */
const unreachable: RedisScriptClient = { flavour: 'custom', run: () => assert.fail('no Redis call expected') };

test('bad options fail at build time, bad input at call time', async () => {
  assert.throws(() => new RedisRateLimiter({ client: undefined, limit: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new RedisRateLimiter({ client: {}, limit: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new RedisRateLimiter({ client: unreachable, limit: 1, timeoutMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new RedisRateLimiter({ client: unreachable, limit: 1, failMode: 'maybe' as 'open' }), { code: 'INVALID_OPTIONS' });
  const limiter = new RedisRateLimiter({ client: unreachable, limit: 1 });
  await assert.rejects(limiter.consume('k', -2), { code: 'INVALID_INPUT' });
  await assert.rejects(limiter.consume(undefined as unknown as string), { code: 'INVALID_INPUT' });
});

test('Redis not answering: decisions fail open (local limiter) or closed at the 20 ms default timeout, and at once when the breaker is open', async () => {
  const clock = new VirtualClock(1_000_000);
  const client = silentRedis();
  const open = new RedisRateLimiter({ client, clock, limit: 3, intervalMs: 60_000, name: 'open' });
  const closed = new RedisRateLimiter({ client, clock, algorithm: 'gcra', limit: 3, intervalMs: 60_000, failMode: 'closed', name: 'closed' });
  assert.equal(open.timeoutMs, 20);
  const both = () => Promise.all([open.consume('u'), closed.consume('u')]);

  // The default breaker opens after 5 failed calls: until then each decision waits exactly 20 ms.
  for (let i = 0; i < 5; i++) {
    let answered: [Decision, Decision] | undefined;
    const decisions = both().then((d) => { answered = d; });
    await clock.advance(19);
    assert.equal(answered, undefined, `call ${i}: still waiting for Redis at 19 ms`);
    await clock.advance(1);
    await decisions;
    const [a, b] = answered!;
    assert.equal(a.degraded, 'fail-open');
    assert.equal(a.allowed, i < 3, 'fail-open judges with the local limiter (3 per minute)');
    assert.deepEqual(b, {
      allowed: false, remaining: 0, limit: 3, resetAt: clock.now() + 1000, retryAfterMs: 1000, store: 'redis', degraded: 'fail-closed',
    }, 'fail-closed: Retry-After is failClosedRetryAfterMs (default 1 s)');
  }
  assert.equal(client.calls, 10);

  // Breaker open: answered with no Redis call and no time passing; fail-closed says when the breaker may let a call through.
  const at = clock.now();
  const [a, b] = await both();
  assert.equal(clock.now(), at);
  assert.equal(client.calls, 10, 'the open breaker answers without trying Redis');
  assert.equal(a.degraded, 'fail-open');
  assert.equal(a.allowed, false);
  assert.equal(b.degraded, 'fail-closed');
  assert.equal(b.retryAfterMs, 1000, 'the breaker stays open for 1 s');
  assert.deepEqual(open.storeHealth, { available: false, failures: 6, outages: 1 });
});
