import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { systemClock } from '../../core/clock.js';
import { idempotencyStoreContract } from '../contract.js';
import { IdempotencyEngine } from '../engine.js';
import { RedisIdempotencyStore } from './redis-store.js';
import type { RedisScriptClient } from '../../redis-client/script-client.js';

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

/** Counts round trips (scripts and, unless `scriptsOnly`, the plain SET ... NX GET of a claim). */
function counting(inner: Redis, scriptsOnly = false): { client: RedisScriptClient; calls: () => number; plain: () => number } {
  let n = 0;
  let plain = 0;
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
    ...(scriptsOnly ? {} : {
      setIfAbsentGet: async (key: string, value: string, pxMs: number) => {
        n++;
        plain++;
        return (await inner.call('SET', key, value, 'PX', pxMs, 'NX', 'GET')) as string | null;
      },
    }),
  };
  return { client: wrapped, calls: () => n, plain: () => plain };
}

test('redis: a first request costs 2 round trips, a replay 1; keys are cluster-safe', async () => {
  await connect();
  const { client, calls, plain } = counting(ioredis);
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
  assert.equal(plain(), 2, 'the claim and the replay are each one plain SET ... NX GET, no script');
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

test('redis: non-ASCII fingerprints and owners keep the response intact, with and without steps', async () => {
  await connect();
  const store = new RedisIdempotencyStore({ client: ioredis, prefix: `${prefix}:utf8` });
  for (const steps of [false, true]) {
    const id = `p:POST:%2Fx:utf8-${steps}`;
    const claim = { id, fingerprint: 'fp-ü-€', owner: 'owner-ø', leaseMs: 60_000, ttlMs: 60_000 };
    assert.equal((await store.claim(claim)).kind, 'acquired');
    if (steps) assert.equal(await store.saveStep({ id, owner: 'owner-ø', name: 'a', value: '{}' }), true);
    assert.equal(await store.complete({ id, owner: 'owner-ø', response: 'réponse ✓', ttlMs: 60_000 }), true);
    const replay = await store.claim({ ...claim, owner: 'other' });
    assert.deepEqual(replay.kind === 'completed' && replay.response, 'réponse ✓');
  }
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

test('redis: without SET ... NX GET (a custom client, or Redis < 7.0) claims run the CLAIM script, same round trips', async () => {
  await connect();
  const { client, calls } = counting(ioredis, true);
  const store = new RedisIdempotencyStore({ client, prefix: `${prefix}:scripts` });
  const id = 'p:POST:%2Fx:scripts';
  const first = await store.claim({ id, fingerprint: 'fp', owner: 'o1', leaseMs: 60_000, ttlMs: 60_000 });
  assert.equal(first.kind, 'acquired');
  assert.equal(await store.complete({ id, owner: 'o1', response: 'r', ttlMs: 60_000 }), true);
  assert.equal((await store.claim({ id, fingerprint: 'fp', owner: 'o2', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'completed');
  assert.equal(calls(), 3);
  assert.match((await ioredis.get(store.keyOf(id)))!, /^c\n1\n\d{13}\n/);
});

test('redis: a plain-SET claim keeps its lease relative to the key expiry (server time); busy and takeover go through the script', async () => {
  await connect();
  const { client, calls, plain } = counting(ioredis);
  const store = new RedisIdempotencyStore({ client, prefix: `${prefix}:rel` });
  const id = 'p:POST:%2Fx:rel';
  const [seconds, micros] = (await ioredis.time()).map(Number) as [number, number];
  const serverNow = seconds * 1000 + Math.floor(micros / 1000);
  const first = await store.claim({ id, fingerprint: 'fp', owner: 'o1', leaseMs: 400, ttlMs: 60_000 });
  assert.equal(first.kind, 'acquired');
  assert.match((await ioredis.get(store.keyOf(id)))!, /^p\n1\n~59600\n0\no1\nfp\n$/);
  const pttl = await ioredis.pttl(store.keyOf(id));
  assert.ok(pttl > 59_000 && pttl <= 60_000, `the key carries the record TTL, got ${pttl}`);
  const record = await store.inspect(id);
  assert.equal(record?.state, 'in_progress');
  const leaseEnd = record?.state === 'in_progress' ? record.leaseExpiresAt : 0;
  assert.ok(leaseEnd >= serverNow + 300 && leaseEnd <= serverNow + 500, `lease ends ~400 ms after the claim on the server clock (${leaseEnd - serverNow})`);
  assert.ok(first.kind === 'acquired' && Math.abs(first.leaseExpiresAt - leaseEnd) < 1000, 'the reported lease expiry is close to the stored one');
  // A step keeps the TTL, so the relative lease stays valid.
  assert.equal(await store.saveStep({ id, owner: 'o1', name: 'a', value: '{"v":1}' }), true);
  const before = calls();
  const busy = await store.claim({ id, fingerprint: 'fp', owner: 'o2', leaseMs: 400, ttlMs: 60_000 });
  assert.ok(busy.kind === 'busy' && busy.retryAfterMs > 0 && busy.retryAfterMs <= 400, JSON.stringify(busy));
  assert.equal(calls() - before, 2, 'busy: the plain SET, then the script decides on the server clock');
  assert.deepEqual(await store.claim({ id, fingerprint: 'other', owner: 'o2', leaseMs: 400, ttlMs: 60_000 }), { kind: 'mismatch' });
  await sleep(500);
  const takeover = await store.claim({ id, fingerprint: 'fp', owner: 'o3', leaseMs: 400, ttlMs: 60_000 });
  assert.deepEqual(takeover.kind === 'acquired' && [takeover.fence, takeover.takeover, takeover.steps], [2, true, { a: '{"v":1}' }]);
  assert.equal(await store.complete({ id, owner: 'o1', response: 'late', ttlMs: 60_000 }), false, 'the old owner is fenced off');
  assert.equal(await store.complete({ id, owner: 'o3', response: 'done', ttlMs: 60_000 }), true);
  assert.ok(plain() >= 4);
});

test('redis: a server that rejects SET ... NX GET (Redis < 7.0) switches the store to the CLAIM script for good', async () => {
  await connect();
  const { client: inner, calls } = counting(ioredis, true);
  let rejected = 0;
  const client: RedisScriptClient = {
    ...inner,
    setIfAbsentGet: async () => { rejected++; throw new Error('ERR syntax error'); },
  };
  const store = new RedisIdempotencyStore({ client, prefix: `${prefix}:old` });
  const id = 'p:POST:%2Fx:old';
  assert.equal((await store.claim({ id, fingerprint: 'fp', owner: 'o1', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'acquired');
  assert.equal((await store.claim({ id, fingerprint: 'fp', owner: 'o2', leaseMs: 60_000, ttlMs: 60_000 })).kind, 'busy');
  assert.equal(rejected, 1);
  assert.equal(calls(), 2);
  assert.match((await ioredis.get(store.keyOf(id)))!, /^p\n1\n\d{13}\n/, 'the script writes an absolute lease expiry');
});

test('redis: a completion given the claim\'s version is one GET and one SET; a stale version falls back to COMPLETE', async () => {
  await connect();
  const mask = (record: string | null) => record?.replace(/^c\n(\d+)\n\d+\n/, 'c\n$1\n<time>\n');
  for (const plainClaim of [true, false]) {
    const { client, calls } = counting(ioredis, !plainClaim);
    const store = new RedisIdempotencyStore({ client, prefix: `${prefix}:version-${plainClaim}` });
    const claim = (id: string) => store.claim({ id, fingerprint: 'fp', owner: 'o1', leaseMs: 60_000, ttlMs: 60_000 });
    const versionOf = (result: Awaited<ReturnType<typeof claim>>) => (result.kind === 'acquired' ? result.version : undefined);

    const version = versionOf(await claim('fast'));
    assert.ok(version !== undefined, 'a new record has a version, whichever way it was claimed');
    let before = calls();
    assert.equal(await store.complete({ id: 'fast', owner: 'o1', response: 'r', ttlMs: 30_000, version }), true);
    assert.equal(calls() - before, 1, 'one script');
    await claim('reference');
    assert.equal(await store.complete({ id: 'reference', owner: 'o1', response: 'r', ttlMs: 30_000 }), true);
    const fast = await ioredis.get(store.keyOf('fast'));
    assert.match(fast!, /^c\n1\n\d{13}\n0\no1\nfp\nr$/);
    assert.equal(mask(fast), mask(await ioredis.get(store.keyOf('reference'))), 'the same record COMPLETE writes');
    const pttl = await ioredis.pttl(store.keyOf('fast'));
    assert.ok(pttl > 29_000 && pttl <= 30_000, `the completion's TTL, got ${pttl}`);

    const stale = versionOf(await claim('renewed'));
    assert.equal(await store.renew({ id: 'renewed', owner: 'o1', leaseMs: 45_000 }), true); // a new lease expiry, even within the same ms
    before = calls();
    assert.equal(await store.complete({ id: 'renewed', owner: 'o1', response: 'r', ttlMs: 30_000, version: stale }), true);
    assert.equal(calls() - before, 2, 'the record changed: COMPLETE decides, one round trip more');
    assert.match((await ioredis.get(store.keyOf('renewed')))!, /^c\n1\n\d{13}\n0\no1\nfp\nr$/);
  }
});
