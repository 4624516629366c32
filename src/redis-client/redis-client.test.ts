import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { RedisScript, clusterKey, toRedisScriptClient } from './redis-client.js';

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `test:${randomUUID()}`;
const ioredis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
const nodeRedis = createClient({ url });

after(async () => {
  await ioredis.quit().catch(() => {});
  await nodeRedis.quit().catch(() => {});
});

async function connect(): Promise<void> {
  try {
    await ioredis.connect();
    await nodeRedis.connect();
  } catch (error) {
    throw new Error(`Redis is required at ${url} (set REDIS_URL): ${(error as Error).message}`, { cause: error });
  }
}

test('runs a script with EVALSHA, loading it on NOSCRIPT, with both client libraries', async () => {
  await connect();
  const script = new RedisScript(`return redis.call('INCRBY', KEYS[1], ARGV[1]) .. ':${randomUUID()}'`);
  for (const client of [toRedisScriptClient(ioredis), toRedisScriptClient(nodeRedis)]) {
    const key = `${prefix}:${client.flavour}`;
    const first = await client.run(script, [key], [5]);
    const second = await client.run(script, [key], ['2']);
    assert.match(String(first), /^5:/);
    assert.match(String(second), /^7:/);
    await ioredis.del(key);
  }
  assert.equal(toRedisScriptClient(ioredis).flavour, 'ioredis');
  assert.equal(toRedisScriptClient(nodeRedis).flavour, 'node-redis');
  assert.throws(() => toRedisScriptClient({}), /ioredis or node-redis/);
});

test('cluster keys put everything of one entity in one hash slot', () => {
  assert.equal(clusterKey('bw:rl', 'user:42', 'tokens'), 'bw:rl:{user:42}:tokens');
  assert.equal(clusterKey('bw', 'a{b}c'), 'bw:{a_b_c}');
});
