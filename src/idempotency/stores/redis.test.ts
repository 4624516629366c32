import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { systemClock } from '../../core/clock.js';
import { idempotencyStoreContract } from '../contract.js';
import { IdempotencyEngine } from '../engine.js';
import { RedisIdempotencyStore } from './redis.js';
import type { RedisScriptClient } from '../../redis-client/index.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test:idem:${randomUUID().slice(0, 8)}`;
const ioredis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
const nodeRedis = createClient({ url });

async function connect(): Promise<void> {
  try {
    if (ioredis.status === 'wait') await ioredis.connect();
    if (!nodeRedis.isOpen) await nodeRedis.connect();
  } catch (error) {
    throw new Error(`Redis is required at ${url} (set REDIS_URL): ${(error as Error).message}`, { cause: error });
  }
}

after(async () => {
  const keys = await ioredis.keys(`${prefix}*`).catch(() => [] as string[]);
  if (keys.length > 0) await ioredis.del(...keys);
  await ioredis.quit().catch(() => {});
  await nodeRedis.quit().catch(() => {});
});

idempotencyStoreContract('redis (ioredis)', async () => {
  await connect();
  return { store: new RedisIdempotencyStore({ client: ioredis, prefix: `${prefix}:io` }), clock: systemClock, leaseMs: 300, elapse: (ms) => sleep(ms), close: async () => {} };
});

idempotencyStoreContract('redis (node-redis)', async () => {
  await connect();
  return { store: new RedisIdempotencyStore({ client: nodeRedis, prefix: `${prefix}:nr` }), clock: systemClock, leaseMs: 300, elapse: (ms) => sleep(ms), close: async () => {} };
});

/** Counts script round trips. */
function counting(inner: Redis): { client: RedisScriptClient; calls: () => number } {
  let n = 0;
  const wrapped: RedisScriptClient = {
    flavour: 'custom',
    run: async (script, keys, args) => {
      n++;
      try {
        return await inner.evalsha(script.sha, keys.length, ...keys, ...args);
      } catch (error) {
        if (!/NOSCRIPT/.test(String(error))) throw error;
        return inner.eval(script.source, keys.length, ...keys, ...args);
      }
    },
  };
  return { client: wrapped, calls: () => n };
}

test('redis: a first request costs 2 round trips, a replay 1; keys are cluster-safe', async () => {
  await connect();
  const { client, calls } = counting(ioredis);
  const store = new RedisIdempotencyStore({ client, prefix: `${prefix}:rt` });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const scope = { principal: 'ten{ant}:1', method: 'POST', route: '/orders', key: 'abc' };
  const first = await engine.claim(scope, 'fp');
  assert.equal(first.kind, 'new');
  if (first.kind === 'new') await first.lease.complete({ status: 201, body: { id: 1 } });
  assert.equal(calls(), 2);
  const replay = await engine.claim(scope, 'fp');
  assert.equal(replay.kind, 'completed');
  assert.equal(calls(), 3);
  const key = store.keyOf('ten%7Bant%7D%3A1:POST:%2Forders:abc');
  assert.equal(key, `${prefix}:rt:{ten%7Bant%7D%3A1:POST:%2Forders:abc}`);
  assert.equal(await ioredis.exists(key), 1, 'one key per record, the record id as the hash tag');
  const ttl = await ioredis.pttl(key);
  assert.ok(ttl > 86_000_000 && ttl <= 86_400_000, `record TTL is the 24 h default, got ${ttl}`);
  const value = await ioredis.get(key);
  assert.match(value!, /^c\n1\n\d{13}\n0\n[0-9a-f-]{36}\nfp\n\{"s":201,/, 'header fields, then the response');
});

test('redis: steps live in a second key of the same slot, expiring with the record', async () => {
  await connect();
  const store = new RedisIdempotencyStore({ client: ioredis, prefix: `${prefix}:steps` });
  const id = 'p:POST:%2Fx:k';
  await store.claim({ id, fingerprint: 'fp', owner: 'o1', leaseMs: 60_000, ttlMs: 120_000 });
  assert.equal(await store.saveStep({ id, owner: 'o1', name: 'a', value: '{"v":1}' }), true);
  const key = store.keyOf(id);
  assert.deepEqual(await ioredis.hgetall(`${key}:steps`), { a: '{"v":1}' });
  const [main, steps] = [await ioredis.pttl(key), await ioredis.pttl(`${key}:steps`)];
  assert.ok(Math.abs(main - steps) < 50, `same TTL (${main} vs ${steps})`);
  assert.equal(await store.complete({ id, owner: 'o1', response: 'r', ttlMs: 5_000 }), true);
  assert.ok((await ioredis.pttl(`${key}:steps`)) <= 5_000);
});

test('redis: fingerprints and owner tokens with newlines are stored safely (hashed)', async () => {
  await connect();
  const store = new RedisIdempotencyStore({ client: ioredis, prefix: `${prefix}:nl` });
  const id = 'p:POST:%2Fx:nl';
  assert.equal((await store.claim({ id, fingerprint: 'a\nb', owner: 'o\n1', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'acquired');
  assert.equal((await store.claim({ id, fingerprint: 'a\nc', owner: 'o2', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'mismatch');
  assert.equal((await store.claim({ id, fingerprint: 'a\nb', owner: 'o2', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'busy');
  assert.equal(await store.complete({ id, owner: 'o\n1', response: 'line1\nline2', ttlMs: 60_000 }), true);
  const replay = await store.claim({ id, fingerprint: 'a\nb', owner: 'o3', leaseMs: 60_000, ttlMs: 60_000 });
  assert.deepEqual(replay.kind === 'completed' && replay.response, 'line1\nline2');
});

test('redis: lease expiry is judged by the Redis server clock, not the worker clock', async () => {
  await connect();
  // A worker whose clock runs an hour fast must not see a live lease as expired.
  const skewed = { ...systemClock, now: () => systemClock.now() + 3_600_000 };
  const store = new RedisIdempotencyStore({ client: ioredis, prefix: `${prefix}:skew` });
  const honest = new IdempotencyEngine({ store, renewEveryMs: false, leaseMs: 5_000 });
  const fast = new IdempotencyEngine({ store, renewEveryMs: false, leaseMs: 5_000, clock: skewed });
  const scope = { principal: 'p', method: 'POST', route: '/r', key: randomUUID() };
  assert.equal((await honest.claim(scope, 'fp')).kind, 'new');
  assert.equal((await fast.claim(scope, 'fp')).kind, 'in-progress');
});
