// The hybrid limiter against real Redis: a fleet sharing the shared server, and a private
// redis-server killed under it. The fleet's arithmetic, on a virtual clock: hybrid.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { HybridRateLimiter } from './hybrid.js';
import { REDIS_URL, connectShared, freePort, PrivateRedis } from './test/redis-server.js';

const prefix = `test:rlh:${randomUUID()}`;
const cleanups: (() => Promise<unknown>)[] = [];
after(async () => { for (const c of cleanups) await c().catch(() => {}); });

test('real Redis: 4 instances share one limit; overshoot within bound and 20x fewer Redis calls than decisions', { timeout: 60_000 }, async () => {
  await (await connectShared()).quit();
  const clients = Array.from({ length: 4 }, () => new Redis(REDIS_URL, { maxRetriesPerRequest: 1 }));
  cleanups.push(async () => { for (const c of clients) await c.quit(); });
  const capacity = 200;
  const rate = 400; // per second
  const fleet = clients.map((client) => new HybridRateLimiter({ client, prefix, limit: rate, capacity, instances: 4, timeoutMs: 1000 }));
  const started = performance.now();
  let admitted = 0;
  let decisions = 0;
  while (performance.now() - started < 2000) {
    for (let i = 0; i < 200; i++) {
      decisions++;
      if (fleet[i % 4]!.consume('shared').allowed) admitted++;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(fleet.map((l) => l.close()));
  const max = capacity + rate * elapsed;
  const calls = fleet.reduce((s, l) => s + l.redisCalls, 0);
  assert.ok(admitted <= 3 * capacity + rate * elapsed, `admitted ${admitted}, bound ${3 * capacity + rate * elapsed}`);
  assert.ok(admitted <= max * 1.05, `admitted ${admitted} of ${max.toFixed(0)} (within 5%)`);
  assert.ok((calls / decisions) * 1000 <= 50, `${calls} calls for ${decisions} decisions`);
});

test('real Redis killed: the hybrid keeps answering at once on last-known state, then recovers', { timeout: 60_000 }, async () => {
  const server = new PrivateRedis(await freePort());
  await server.start();
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  const limiter = new HybridRateLimiter({ client, limit: 100, capacity: 100, syncIntervalMs: 50, timeoutMs: 1000 });
  try {
    for (let i = 0; i < 10; i++) limiter.consume('k');
    await limiter.syncNow();
    assert.equal(limiter.stale, false);
    await server.kill();
    for (let i = 0; i < 10; i++) limiter.consume('k');
    await limiter.syncNow();
    assert.equal(limiter.stale, true);
    const d = limiter.consume('k');
    assert.ok(!((d as unknown) instanceof Promise), 'answered synchronously: nothing waits on Redis');
    assert.equal(d.degraded, 'stale');
    assert.equal(d.allowed, true);
    await server.start();
    const deadline = Date.now() + 20_000;
    while (limiter.stale && Date.now() < deadline) {
      limiter.consume('k', 0.001);
      await new Promise((r) => setTimeout(r, 100));
      await limiter.syncNow();
    }
    assert.equal(limiter.stale, false, 'recovered');
  } finally {
    await limiter.close().catch(() => {});
    client.disconnect();
    await server.kill();
  }
});
