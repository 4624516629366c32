// A dead Redis must not hang guarded calls. Each test starts its own redis-server on a free port,
// SIGKILLs it and restarts it on the same port; the shared Redis is never touched.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { consecutive } from '../breaker/strategies.js';
import { guardRedis, type GuardedRedis } from './guarded-redis.js';
import { eventually, freePort, PrivateRedis } from './test/support.js';

const servers: PrivateRedis[] = [];
after(async () => {
  for (const server of servers) await server.kill();
});

async function privateRedis(): Promise<PrivateRedis> {
  const server = new PrivateRedis(await freePort());
  servers.push(server);
  await server.start();
  return server;
}

/** Calls until the breaker opens; every call must fail within `boundMs`. Returns the failures' codes/messages. */
async function failUntilOpen(guarded: GuardedRedis<object>, call: () => Promise<unknown>, boundMs: number): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 10 && guarded.breaker.state.kind === 'closed'; i++) {
    const started = Date.now();
    const error: any = await call().then(() => undefined, (e) => e);
    const elapsed = Date.now() - started;
    assert.ok(error, 'a call to a dead Redis cannot succeed');
    assert.ok(elapsed < boundMs, `failed after ${elapsed} ms (bound ${boundMs} ms): ${error?.message}`);
    seen.push(error.code ?? error.message);
  }
  return seen;
}

test('ioredis with its default offline queue: calls to a killed server time out on time, the breaker opens, calls recover after restart', async () => {
  const server = await privateRedis();
  // The worst case: default ioredis options (offline queue on, no commandTimeout).
  const client = new Redis(server.url, { lazyConnect: true });
  client.on('error', () => {});
  try {
    await client.connect();
    const timeoutMs = 200;
    const cache = guardRedis(client, { name: 'cache', timeoutMs, breaker: { strategy: consecutive({ threshold: 3 }), openMs: 1000 } });
    assert.ok(cache.warnings.length >= 2, `risky defaults reported: ${cache.warnings.join('; ')}`);
    assert.equal(await cache.command('SET', ['k', 'v']), 'OK');

    await server.kill();
    const failures = await failUntilOpen(cache, () => cache.command('GET', ['k'], { safe: false }), timeoutMs + 400);
    assert.equal(cache.breaker.state.kind, 'open');
    assert.ok(failures.length >= 3 && failures.length <= 4, `opened after ${failures.length} failures: ${failures.join(', ')}`);
    assert.ok(failures.includes('TIMEOUT'), 'queued offline, the command is cut off by the timeout');

    // While open: rejected at once, the client is not called.
    const started = Date.now();
    await assert.rejects(cache.command('GET', ['k']), { code: 'CIRCUIT_OPEN' });
    const rejectedAfter = Date.now() - started;
    assert.ok(rejectedAfter < 100, `rejected without waiting (took ${rejectedAfter} ms)`);

    // A write issued while Redis is down is abandoned by Bulwark but still sits in ioredis's offline
    // queue, and runs after the reconnect: the hazard `warnings` tells you about.
    const bypass = guardRedis(client, { name: 'bypass', timeoutMs: 100 });
    await assert.rejects(bypass.command('INCR', ['late-write']), (e: any) => e.code === 'TIMEOUT' && e.abandoned === true);

    await server.start();
    await eventually('ioredis reconnects', () => client.status === 'ready', 8000);
    await eventually('the breaker lets a probe through and closes', async () => {
      const ok = await cache.command('PING').then(() => true, () => false);
      return ok && cache.breaker.state.kind === 'closed';
    }, 5000);
    assert.equal(await cache.command('SET', ['k', 'again']), 'OK');
    assert.equal(await cache.command('GET', ['k']), 'again');
    assert.equal(await client.get('late-write'), '1', 'the abandoned INCR ran after the reconnect');
  } finally {
    client.disconnect();
  }
});

test('node-redis with the offline queue disabled: calls to a killed server fail fast, the breaker opens, calls recover after restart', async () => {
  const server = await privateRedis();
  const client = createClient({ url: server.url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 50 } });
  client.on('error', () => {});
  try {
    await client.connect();
    const cache = guardRedis(client, { name: 'sessions', timeoutMs: 200, breaker: { strategy: consecutive({ threshold: 3 }), openMs: 500 } });
    assert.deepEqual(cache.warnings, []);
    assert.equal(await cache.command('SET', ['k', 'v']), 'OK');

    await server.kill();
    const failures = await failUntilOpen(cache, () => cache.run((redis) => redis.get('k'), { safe: false }), 200 + 400);
    assert.equal(cache.breaker.state.kind, 'open');
    assert.ok(failures.length >= 3 && failures.length <= 4, failures.join(', '));
    await assert.rejects(cache.command('GET', ['k']), { code: 'CIRCUIT_OPEN' });

    await server.start();
    await eventually('node-redis reconnects', () => client.isReady, 8000);
    await eventually('the breaker closes again', async () => {
      const ok = await cache.command('PING').then(() => true, () => false);
      return ok && cache.breaker.state.kind === 'closed';
    }, 5000);
    assert.equal(await cache.run((redis) => redis.set('k', 'w')), 'OK');
    assert.equal(await cache.command('GET', ['k']), 'w');
  } finally {
    await client.quit().catch(() => client.destroy());
  }
});
