// Script calls through both client libraries against a real Redis (the shared one, and a private
// redis-server frozen to test timeouts). Without a server: script-client.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { RedisScript, toRedisScriptClient } from './script-client.js';
import { PrivateRedis, freePort } from '../../test/support/private-redis.js';

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

test('node-redis: Bulwark keeps the client\'s command timeout on one shared timer, without the per-command AbortSignal', async () => {
  const server = new PrivateRedis(await freePort());
  await server.start();
  const client = createClient({ url: server.url, commandOptions: { timeout: 150 } });
  try {
    await client.connect();
    const scripts = toRedisScriptClient(client);
    const script = new RedisScript('return ARGV[1]');
    assert.equal(await scripts.run(script, ['k'], ['ok']), 'ok');
    assert.equal(await scripts.setIfAbsentGet!('k', 'v', 60_000), null);
    // Our commands create no AbortSignal.timeout (the client's own commands do: the control).
    const timeoutSignal = AbortSignal.timeout;
    let signals = 0;
    AbortSignal.timeout = (ms: number) => { signals++; return timeoutSignal.call(AbortSignal, ms); };
    try {
      await scripts.run(script, ['k'], ['again']);
      await scripts.setIfAbsentGet!('k', 'v', 60_000);
      assert.equal(signals, 0);
      await client.get('k');
      assert.equal(signals, 1);
    } finally {
      AbortSignal.timeout = timeoutSignal;
    }
    server.freeze();
    const started = Date.now();
    // A hung server still fails the call after the client's 150 ms, with a stable code.
    const results = await Promise.allSettled([scripts.run(script, ['k'], ['late']), scripts.setIfAbsentGet!('k2', 'v', 60_000)]);
    const elapsed = Date.now() - started;
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      assert.equal((result as PromiseRejectedResult).reason.code, 'TIMEOUT');
    }
    assert.ok(elapsed >= 140 && elapsed < 2000, `timed out after ${elapsed} ms`);
  } finally {
    server.thaw();
    await client.quit().catch(() => {});
    await server.stop();
  }
});
