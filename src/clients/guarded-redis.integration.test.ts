// Guarded Redis clients against the shared Redis (REDIS_URL), every key under a random prefix.
// Crash behaviour (a killed server) is in redis-crash.integration.test.ts, on a private
// redis-server; what needs no server (retry rules, error classes) is in guarded-redis.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { TimeoutError } from '../core/errors.js';
import { seededRandom } from '../core/random.js';
import { guardRedis, redisFlavourOf } from './guarded-redis.js';
import { REDIS_URL, requireService } from './test/support.js';

const prefix = `test:clients:${randomUUID()}`;
const io = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, commandTimeout: 1000, maxRetriesPerRequest: 1 });
const nodeRedis = createClient({ url: REDIS_URL, disableOfflineQueue: true });
nodeRedis.on('error', () => {});
const key = (name: string): string => `${prefix}:${name}`;

before(async () => {
  await requireService('Redis', REDIS_URL, async () => {
    await io.connect();
    await nodeRedis.connect();
  });
});

after(async () => {
  const keys = await io.keys(`${prefix}:*`);
  if (keys.length > 0) await io.del(...keys);
  await io.quit().catch(() => {});
  await nodeRedis.quit().catch(() => {});
});

test('ioredis: run() and command() go through the guard; read-only commands are safe by default', async () => {
  const cache = guardRedis(io, { name: 'cache', timeoutMs: 500 });
  assert.equal(cache.flavour, 'ioredis');
  assert.deepEqual(cache.warnings, [], 'offline queue off and commandTimeout set: nothing to warn about');
  await cache.run((redis) => redis.set(key('a'), '1'));
  assert.equal(await cache.run((redis) => redis.get(key('a')), { safe: true }), '1');
  assert.equal(await cache.command('INCRBY', [key('a'), 4]), 5);
  assert.equal(await cache.command<string>('GET', [key('a')]), '5');
  const stats = cache.stats();
  assert.equal(stats.breaker.successes, 4);
  assert.equal(stats.bulkhead.admitted, 4);
  assert.equal(stats.connection, 'ready');
  assert.deepEqual(cache.describe().policies!.map((p) => p.kind), ['retry', 'circuit-breaker', 'bulkhead', 'timeout']);
});

test('node-redis: the same guard, detected by shape', async () => {
  const cache = guardRedis(nodeRedis, { name: 'sessions', timeoutMs: 500 });
  assert.equal(cache.flavour, 'node-redis');
  assert.deepEqual(cache.warnings, []);
  await cache.run((redis) => redis.set(key('n'), 'x'));
  assert.equal(await cache.run((redis) => redis.get(key('n')), { safe: true }), 'x');
  assert.equal(await cache.command('GET', [key('n')]), 'x');
  assert.equal(await cache.command('HSET', [key('h'), 'f', 'v']), 1);
  assert.equal(cache.stats().connection, 'ready');
  assert.equal(redisFlavourOf({ get: () => 1 }), 'custom');
  assert.ok(guardRedis(new Redis({ lazyConnect: true })).warnings.some((w) => /enableOfflineQueue/.test(w)), 'risky ioredis defaults are reported');
});

test('node-redis: command() skips the client\'s own per-command timer when the guard\'s timeout is shorter, keeps it when it is not', async () => {
  const timeoutSignal = AbortSignal.timeout;
  let timers = 0;
  AbortSignal.timeout = (ms: number) => { timers++; return timeoutSignal.call(AbortSignal, ms); };
  try {
    // The client's default (5 s in node-redis v6) can never fire before a 500 ms guard.
    assert.equal(await guardRedis(nodeRedis, { timeoutMs: 500 }).command('PING'), 'PONG');
    assert.equal(timers, 0);
    // A guard of 10 s would leave the 5 s client timeout as the tighter bound: it stays.
    assert.equal(await guardRedis(nodeRedis, { timeoutMs: 10_000 }).command('PING'), 'PONG');
    assert.equal(timers, 1);
  } finally {
    AbortSignal.timeout = timeoutSignal;
  }
});

test('a reply error (WRONGTYPE) is the caller\'s fault: not a breaker failure, not retried even when safe', async () => {
  const cache = guardRedis(io, { name: 'typed', timeoutMs: 500, random: seededRandom(2) });
  let retries = 0;
  cache.retry!.onRetry(() => retries++);
  await io.set(key('str'), 'v');
  for (let i = 0; i < 6; i++) {
    await assert.rejects(cache.command('LPUSH', [key('str'), 'x'], { safe: true }), /WRONGTYPE/);
    await assert.rejects(cache.command('HGET', [key('str'), 'f']), /WRONGTYPE/);
  }
  assert.equal(retries, 0);
  assert.equal(cache.breaker.stats().state, 'closed');
  assert.equal(cache.breaker.stats().failures, 0);
  await assert.rejects(cache.run(() => { throw new Error('my own bug'); }), /my own bug/);
  assert.equal(cache.breaker.stats().failures, 0, 'your own exceptions are not Redis failures');
});

test('a command that outlives the timeout fails on time with TIMEOUT, marked abandoned', async () => {
  // A blocking command on its own connection: BLPOP holds only that connection, never the shared server.
  const blocking = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, commandTimeout: 20_000 });
  try {
    await blocking.connect();
    const guarded = guardRedis(blocking, { name: 'queue', timeoutMs: 150 });
    const started = Date.now();
    await assert.rejects(guarded.command('BLPOP', [key('empty-list'), 10]), (error: any) => {
      assert.ok(error instanceof TimeoutError);
      assert.equal(error.abandoned, true, 'a sent Redis command cannot be cancelled: the error says so');
      return true;
    });
    const elapsed = Date.now() - started;
    // Never before the 150 ms timeout; the upper bound only tells it from the 10 s BLPOP ending.
    assert.ok(elapsed >= 140 && elapsed < 5000, `failed after ${elapsed} ms`);
    const stats = guarded.stats();
    assert.equal(stats.abandoned, 1);
    assert.equal(stats.breaker.failures, 1, 'a timeout counts against Redis');
    assert.equal(stats.bulkhead.active, 0);
  } finally {
    blocking.disconnect();
  }
});
