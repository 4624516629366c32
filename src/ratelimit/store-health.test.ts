import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { RedisScriptClient } from '../redis-client/script-client.js';
import { HybridRateLimiter, memoryHybridRemote } from './hybrid.js';
import { RedisRateLimiter } from './redis-limiter.js';

/** A Redis stand-in that answers "allowed" for every decision, or fails while `down`. */
function fakeRedis(): RedisScriptClient & { down: boolean; calls: number } {
  const client = {
    flavour: 'custom' as const,
    down: false,
    calls: 0,
    run: async (_script: unknown, keys: readonly string[]) => {
      client.calls++;
      if (client.down) throw new Error('ECONNREFUSED');
      return keys.flatMap(() => [1, 9, 0, 0]);
    },
  };
  return client;
}

test('Redis limiter: the store-error event fires once when the store goes down and once when it recovers, not on every call; counters keep the rest', async () => {
  const clock = new VirtualClock();
  const client = fakeRedis();
  const limiter = new RedisRateLimiter({ client, limit: 10, clock, batch: 'none' });
  const seen: string[] = [];
  limiter.onStoreError((e) => seen.push(`error breakerOpen=${e.breakerOpen} affected=${e.affected}`));
  limiter.onStoreRecovered((e) => seen.push(`recovered failedCalls=${e.failedCalls} downMs=${e.downMs}`));

  assert.equal((await limiter.consume('k')).degraded, undefined);
  client.down = true;
  for (let i = 0; i < 20; i++) assert.equal((await limiter.consume('k')).degraded, 'fail-open');
  assert.equal(client.calls, 1 + 5, 'the breaker opened after 5 failed calls: 15 answered without trying Redis');
  assert.deepEqual(seen, ['error breakerOpen=false affected=1'], 'one event for the outage, not one per call');
  assert.deepEqual(limiter.storeHealth, { available: false, failures: 20, outages: 1 });

  client.down = false;
  await clock.advance(1000); // the breaker's open period
  assert.equal((await limiter.consume('k')).degraded, undefined, 'the probe reaches Redis');
  for (let i = 0; i < 5; i++) await limiter.consume('k');
  assert.deepEqual(seen, ['error breakerOpen=false affected=1', 'recovered failedCalls=20 downMs=1000']);
  assert.deepEqual(limiter.storeHealth, { available: true, failures: 20, outages: 1 });

  client.down = true;
  await limiter.consume('k');
  await limiter.consume('k');
  assert.equal(seen.length, 3, 'a new outage is a new event');
  assert.deepEqual(limiter.storeHealth, { available: false, failures: 22, outages: 2 });
});

test('hybrid limiter: one store-error event per outage and one on recovery, however many syncs fail', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, capacity: 20, clock });
  const limiter = new HybridRateLimiter({ limit: 10, capacity: 20, remote, clock, breaker: false });
  const seen: string[] = [];
  limiter.onStoreError((e) => seen.push(`error keys=${e.keys}`));
  limiter.onStoreRecovered((e) => seen.push(`recovered failedCalls=${e.failedCalls} downMs=${e.downMs}`));
  limiter.consume('k');
  await clock.advance(100);
  remote.down = true;
  for (let i = 0; i < 5; i++) {
    limiter.consume('k');
    await clock.advance(100);
  }
  assert.deepEqual(seen, ['error keys=1']);
  assert.deepEqual(limiter.storeHealth, { available: false, failures: 5, outages: 1 });
  remote.down = false;
  limiter.consume('k');
  await clock.advance(100);
  assert.deepEqual(seen, ['error keys=1', 'recovered failedCalls=5 downMs=500']);
  assert.deepEqual(limiter.storeHealth, { available: true, failures: 5, outages: 1 });
});

test('Redis limiter: failing open with a window algorithm judges locally with the same limit (the local limiter takes no bucket capacity)', async () => {
  const clock = new VirtualClock();
  const client = fakeRedis();
  client.down = true;
  for (const algorithm of ['fixed-window', 'sliding-window-log', 'sliding-window-counter'] as const) {
    const limiter = new RedisRateLimiter({ client, algorithm, limit: 2, clock, batch: 'none', breaker: false });
    const decisions = [await limiter.consume('k'), await limiter.consume('k'), await limiter.consume('k')];
    assert.deepEqual(decisions.map((d) => [d.allowed, d.degraded]), [[true, 'fail-open'], [true, 'fail-open'], [false, 'fail-open']], algorithm);
  }
});
