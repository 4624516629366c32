import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { InvalidOptionsError, TimeoutError } from '../core/errors.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { clusterKey } from '../redis-client/script-client.js';
import { hashSlot } from './crc16.js';
import { HybridRateLimiter, memoryHybridRemote } from './hybrid.js';
import { RedisRateLimiter } from './redis-limiter.js';
import { admitStoreCall, isClusterClient, isStorePermit, storeBatches, storeBreaker, withinStoreTimeout } from './store-calls.js';

test('storeBreaker: false is none, a caller breaker is kept, a breaker without tryAcquire is a configuration error, the default opens after 5 failures for 1 s', () => {
  const clock = new VirtualClock();
  assert.equal(storeBreaker(false, 'x', 'n', clock), undefined);
  const own = circuitBreaker({ clock });
  assert.equal(storeBreaker(own, 'x', 'n', clock), own);
  assert.throws(() => storeBreaker({} as never, 'hybridRateLimiter', 'n', clock), (e: unknown) => e instanceof InvalidOptionsError && /hybridRateLimiter\.breaker must have tryAcquire/.test(e.message));

  const breaker = storeBreaker(undefined, 'x', 'n', clock)!;
  for (let i = 0; i < 5; i++) {
    const permit = admitStoreCall(breaker);
    assert.ok(isStorePermit(permit), `call ${i + 1} is let through`);
    permit.failure(new Error('down'));
  }
  const rejected = admitStoreCall(breaker);
  assert.ok(!isStorePermit(rejected), 'open after 5 consecutive failures');
  assert.equal(rejected.retryAfterMs, 1000);
  clock.advanceSync(1000);
  assert.ok(isStorePermit(admitStoreCall(breaker)), 'half-open after 1 s: a probe is let through');
});

test('admitStoreCall: without a breaker every call gets a permit that settles quietly', () => {
  const permit = admitStoreCall(undefined);
  assert.ok(isStorePermit(permit));
  permit.success();
  permit.failure(new Error('ignored'));
  assert.ok(isStorePermit(admitStoreCall(undefined)));
});

test('withinStoreTimeout: the answer when it comes in time, TIMEOUT at `ms` on the clock otherwise, and no timer left behind', async () => {
  const clock = new VirtualClock();
  assert.equal(await withinStoreTimeout(Promise.resolve(7), clock, 20), 7);
  assert.equal(clock.pendingTimers, 0, 'the timer is cleared once the call answered');

  const late = withinStoreTimeout(new Promise<number>(() => {}), clock, 20);
  const outcome = late.then(() => 'answered', (e: unknown) => e);
  await clock.advance(19);
  assert.equal(clock.pendingTimers, 1, 'still waiting at 19 ms');
  await clock.advance(1);
  const error = await outcome;
  assert.ok(error instanceof TimeoutError, 'TIMEOUT at 20 ms');
  await assert.rejects(withinStoreTimeout(Promise.reject(new Error('boom')), clock, 20), /boom/);
  assert.equal(clock.pendingTimers, 0);
});

test('isClusterClient: ioredis Cluster (isCluster) and node-redis cluster (masters) are clusters; a standalone client and nothing are not', () => {
  assert.equal(isClusterClient({ isCluster: true }), true);
  assert.equal(isClusterClient({ masters: [] }), true);
  assert.equal(isClusterClient({ evalsha() {} }), false);
  assert.equal(isClusterClient(undefined), false);
  assert.equal(isClusterClient(null), false);
});

test('storeBatches: at most maxBatch per call; on a cluster each call holds one hash slot, in arrival order', () => {
  const items = Array.from({ length: 7 }, (_, i) => `k${i}`);
  const key = (item: string): string => clusterKey('p', item);
  assert.deepEqual(storeBatches(items, 3, false, key), [['k0', 'k1', 'k2'], ['k3', 'k4', 'k5'], ['k6']]);
  assert.equal(storeBatches(items, 10, false, key)[0], items, 'a small enough queue is handed over as the one batch');

  const batches = storeBatches(items, 2, true, key);
  assert.deepEqual(batches.flat().sort(), items, 'every item is sent once');
  for (const batch of batches) {
    assert.ok(batch.length <= 2);
    assert.equal(new Set(batch.map((item) => hashSlot(key(item)))).size, 1, 'one slot per call');
    assert.deepEqual(batch, [...batch].sort(), 'arrival order within a slot');
  }
  const tagged = ['{a}x', '{a}y', 'a'];
  // clusterKey replaces the braces of a key, so the key itself, not a tag inside it, is the hash tag.
  assert.deepEqual(tagged.map((k) => clusterKey('p', k)), ['p:{_a_x}', 'p:{_a_y}', 'p:{a}']);
});

test('both Redis-backed limiters build their keys with clusterKey: the key is the hash tag, braces in it replaced', async () => {
  const clock = new VirtualClock();
  const seen: string[][] = [];
  const client = { flavour: 'custom' as const, run: async (_s: unknown, keys: readonly string[]) => { seen.push([...keys]); return keys.flatMap(() => [1, 9, 0, 0]); } };
  const log = new RedisRateLimiter({ client, limit: 10, clock, prefix: 'rl', algorithm: 'sliding-window-log' });
  assert.deepEqual(log.redisKeysOf('user{1}'), ['rl:{user_1_}', 'rl:{user_1_}:seq']);
  const redis = new RedisRateLimiter({ client, limit: 10, clock, batch: 'none', prefix: 'rl' });
  assert.equal((await redis.consume('user{1}')).store, 'redis');
  assert.deepEqual(seen, [['rl:{user_1_}']]);

  const remote = memoryHybridRemote({ limit: 10, clock });
  const hybrid = new HybridRateLimiter({ limit: 10, remote, clock, breaker: false, prefix: 'rlh' });
  hybrid.consume('user{1}');
  await hybrid.syncNow();
  assert.deepEqual([...remote.balances.keys()], ['rlh:{user_1_}']);
});

test('both Redis-backed limiters stop calling a failing store once their default breaker opens', async () => {
  const clock = new VirtualClock();
  let calls = 0;
  const client = { flavour: 'custom' as const, run: async () => { calls++; throw new Error('ECONNREFUSED'); } };
  const redis = new RedisRateLimiter({ client, limit: 10, clock, batch: 'none' });
  for (let i = 0; i < 8; i++) assert.equal((await redis.consume('k')).degraded, 'fail-open');
  assert.equal(calls, 5, 'five failed calls open the breaker; the other three are answered without Redis');

  const remote = memoryHybridRemote({ limit: 10, clock });
  remote.down = true;
  const hybrid = new HybridRateLimiter({ limit: 10, remote, clock });
  for (let i = 0; i < 8; i++) {
    hybrid.consume('k');
    await hybrid.syncNow();
  }
  assert.equal(hybrid.redisCalls, 5, 'the hybrid limiter counts five sync calls, then its breaker answers');
  assert.equal(hybrid.storeHealth.failures, 8, 'every sync failed, breaker rejections included');
});
