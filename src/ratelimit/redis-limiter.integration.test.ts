import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { VirtualClock } from '../core/clock.js';
import { MemoryRateLimiter } from './memory.js';
import { RedisRateLimiter, runRateLimitScript } from './redis-limiter.js';
import { ALGORITHMS } from './algorithms/registry.js';
import { REDIS_URL, connectShared, freePort, PrivateRedis } from './test/redis-server.js';
import type { AlgorithmKind, Decision } from './types.js';

const prefix = `test:rl:${randomUUID()}`;
let redis: Redis;
const extra: { quit(): Promise<unknown> }[] = [];

before(async () => {
  redis = await connectShared();
});

after(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  for (const c of extra) await c.quit().catch(() => {});
  await redis.quit();
});

test('differential: the Lua scripts decide exactly like the TypeScript kernels', async () => {
  const opArb = fc.record({
    op: fc.constantFrom('consume', 'consume', 'consume', 'peek', 'refund', 'penalty'),
    dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 0, max: 120_000 })),
    cost: fc.integer({ min: 0, max: 7 }),
  });
  for (const algorithm of ALGORITHMS) {
    let run = 0;
    await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), fc.integer({ min: 1, max: 6 }), async (ops, limit) => {
      const options = { algorithm, limit, intervalMs: 60_000, ...(algorithm === 'token-bucket' || algorithm === 'gcra' ? { capacity: limit + 2 } : {}) };
      const clock = new VirtualClock(1_700_000_000_000);
      const local = new MemoryRateLimiter({ ...options, clock });
      const base = `${prefix}:diff:${algorithm}:${run++}`;
      const keys = algorithm === 'sliding-window-log' ? [`${base}:{k}`, `${base}:{k}:seq`] : [`${base}:{k}`];
      for (const step of ops) {
        clock.advanceSync(step.dt);
        const now = clock.now();
        if (step.op === 'refund' || step.op === 'penalty') {
          const amount = step.op === 'refund' ? step.cost : -step.cost;
          if (step.op === 'refund') local.refund('k', step.cost); else local.penalty('k', step.cost);
          await runRateLimitScript(redis, options, [{ keys, op: 'a', amount }], now);
          continue;
        }
        const mine: Decision = step.op === 'peek' ? local.peek('k', step.cost) : local.consume('k', step.cost);
        const [theirs] = await runRateLimitScript(redis, options, [{ keys, op: step.op === 'peek' ? 'p' : 'c', amount: step.cost }], now);
        const label = `${algorithm} ${step.op}(${step.cost}) at +${now - 1_700_000_000_000}`;
        assert.equal(theirs!.allowed, mine.allowed, label);
        assert.equal(theirs!.remaining, mine.remaining, label);
        assert.equal(theirs!.retryAfterMs, mine.retryAfterMs, label);
        assert.ok(Math.abs(theirs!.resetAfterMs - (mine.resetAt - now)) < 0.002, `${label} reset ${theirs!.resetAfterMs} vs ${mine.resetAt - now}`);
      }
    }), { numRuns: 25 });
  }
});

test('concurrent clients against one key enforce one global limit: zero overshoot (token bucket and GCRA)', async () => {
  for (const algorithm of ['token-bucket', 'gcra'] as const) {
    const clients = Array.from({ length: 8 }, () => new Redis(REDIS_URL, { maxRetriesPerRequest: 1 }));
    const nodeRedis = createClient({ url: REDIS_URL });
    await nodeRedis.connect();
    const all: unknown[] = [...clients, nodeRedis];
    // A near-zero refill (1 per hour) so that exactly `capacity` may pass during the test.
    const limiters = all.map((client) => new RedisRateLimiter({
      client, prefix: `${prefix}:multi`, algorithm, limit: 1, intervalMs: 3_600_000, capacity: 100,
      timeoutMs: 10_000, failMode: 'closed', breaker: false,
    }));
    const results = await Promise.all(limiters.map(async (limiter) => {
      const decisions: Decision[] = [];
      for (let round = 0; round < 5; round++) {
        decisions.push(...await Promise.all(Array.from({ length: 20 }, () => limiter.consume(`global-${algorithm}`))));
      }
      return decisions;
    }));
    const decisions = results.flat();
    assert.equal(decisions.length, 900);
    assert.equal(decisions.filter((d) => d.degraded).length, 0, 'no degraded answers');
    assert.equal(decisions.filter((d) => d.allowed).length, 100, `${algorithm}: exactly the limit`);
    for (const c of clients) await c.quit();
    await nodeRedis.quit();
  }
});

test('separate processes against one key: zero overshoot', { timeout: 120_000 }, async () => {
  const hammer = fileURLToPath(new URL('./test/hammer.ts', import.meta.url));
  type Out = Record<string, { allowed: number; degraded: number }>;
  const outputs = await Promise.all(Array.from({ length: 3 }, () => new Promise<Out>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', hammer, REDIS_URL, `${prefix}:proc`, 'shared', 'token-bucket,gcra', '100'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Out) : reject(new Error(`hammer exited ${code}: ${err}`))));
  })));
  for (const algorithm of ['token-bucket', 'gcra']) {
    assert.equal(outputs.reduce((s, o) => s + o[algorithm]!.degraded, 0), 0);
    assert.equal(outputs.reduce((s, o) => s + o[algorithm]!.allowed, 0), 50, `${algorithm}: 3 processes × 100 attempts, capacity 50`);
  }
});

test('decisions of one tick share one script call; batch: "none" makes one per decision; cluster mode groups by slot', async () => {
  const batched = new RedisRateLimiter({ client: redis, prefix: `${prefix}:batch`, limit: 1000, intervalMs: 3_600_000, timeoutMs: 5000 });
  const decisions = await Promise.all(Array.from({ length: 100 }, (_, i) => batched.consume(`k${i % 10}`)));
  assert.ok(decisions.every((d) => d.allowed && d.store === 'redis'));
  assert.equal(batched.redisCalls, 1);
  assert.equal((await batched.peek('k3', 0)).remaining, 990);

  const single = new RedisRateLimiter({ client: redis, prefix: `${prefix}:single`, limit: 1000, timeoutMs: 5000, batch: 'none' });
  await Promise.all(Array.from({ length: 20 }, () => single.consume('k')));
  assert.equal(single.redisCalls, 20);

  const cluster = new RedisRateLimiter({ client: redis, prefix: `${prefix}:cluster`, limit: 1000, timeoutMs: 5000, cluster: true });
  await Promise.all(Array.from({ length: 30 }, (_, i) => cluster.consume(`k${i % 3}`)));
  assert.equal(cluster.redisCalls, 3, 'one call per hash slot');
});

test('keys carry hash tags, expire lazily, and server time is used (client clock irrelevant)', async () => {
  const skewed = new VirtualClock(0); // a client clock 55 years off
  const limiter = new RedisRateLimiter({ client: redis, prefix: `${prefix}:keys`, limit: 2, intervalMs: 1000, clock: skewed, timeoutMs: 5000 });
  assert.deepEqual(limiter.redisKeysOf('user:{42}'), [`${prefix}:keys:{user:_42_}`]);
  const d = await limiter.consume('user:{42}', 2);
  assert.equal(d.allowed, true);
  assert.ok(d.resetAt > 0 && d.resetAt <= 1000.001, 'resetAt is relative to the client clock');
  const pttl = await redis.pttl(`${prefix}:keys:{user:_42_}`);
  assert.ok(pttl > 0 && pttl <= 1001, `PTTL ${pttl}`);
  const denied = await limiter.consume('user:{42}');
  assert.equal(denied.allowed, false);
  // Server time has moved on by however long the machine took between the two calls; the
  // bucket's answers agree with each other: one token (500 ms) sooner than a full bucket.
  assert.ok(denied.retryAfterMs > 0 && denied.retryAfterMs <= 500, `retryAfter ${denied.retryAfterMs}`);
  assert.ok(Math.abs(denied.resetAt - denied.retryAfterMs - 500) < 0.01, `resetAt ${denied.resetAt}, retryAfter ${denied.retryAfterMs}`);
  await limiter.refund('user:{42}', 2);
  assert.equal(await redis.exists(`${prefix}:keys:{user:_42_}`), 0, 'a full bucket is deleted, not stored');
  await limiter.penalty('user:{42}', 5);
  assert.equal((await limiter.peek('user:{42}', 0)).remaining, 0);
  await limiter.reset('user:{42}');
  assert.equal((await limiter.consume('user:{42}')).remaining, 1);
});

test('works the same through node-redis', async () => {
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  extra.push(client);
  for (const algorithm of ALGORITHMS) {
    const limiter = new RedisRateLimiter({ client, prefix: `${prefix}:node-redis:${algorithm}`, algorithm, limit: 3, intervalMs: 60_000, timeoutMs: 5000 });
    const d = await Promise.all([limiter.consume('a'), limiter.consume('a'), limiter.consume('a'), limiter.consume('a')]);
    assert.deepEqual(d.map((x) => x.allowed), [true, true, true, false], algorithm);
    assert.equal(limiter.client.flavour, 'node-redis');
  }
});

test('Redis killed: answers arrive within the timeout, fail open/closed as configured, recover when Redis returns', { timeout: 60_000 }, async () => {
  const server = new PrivateRedis(await freePort());
  await server.start();
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  client.on('error', () => {}); // connection errors are expected while the server is down
  const make = (failMode: 'open' | 'closed', algorithm: AlgorithmKind) => new RedisRateLimiter({
    client, prefix: 'crash', algorithm, limit: 3, intervalMs: 60_000, timeoutMs: 20, failMode, name: failMode,
  });
  const open = make('open', 'token-bucket');
  const closed = make('closed', 'gcra');
  const events: { failMode: string; breakerOpen: boolean }[] = [];
  open.onStoreError((e) => events.push({ failMode: e.failMode, breakerOpen: e.breakerOpen }));
  closed.onStoreError((e) => events.push({ failMode: e.failMode, breakerOpen: e.breakerOpen }));
  const recoveries: string[] = [];
  open.onStoreRecovered(() => recoveries.push('open'));
  closed.onStoreRecovered(() => recoveries.push('closed'));
  try {
    // Warm up (script load, connection) so the 20 ms timeout measures Redis, not start-up.
    await runRateLimitScript(client, { algorithm: 'token-bucket', limit: 3, intervalMs: 60_000 }, [{ keys: ['crash:{warm}'], op: 'p', amount: 0 }]);
    await runRateLimitScript(client, { algorithm: 'gcra', limit: 3, intervalMs: 60_000 }, [{ keys: ['crash:{warm}'], op: 'p', amount: 0 }]);
    const fromRedis = async (limiter: RedisRateLimiter, key: string) => {
      for (let i = 0; i < 100; i++) {
        const d = await limiter.consume(key, 0);
        // A fail-closed answer also says store 'redis' (with `degraded`): only an undegraded one came from Redis.
        if (d.store === 'redis' && d.degraded === undefined) return d;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('Redis never answered within the timeout');
    };
    await fromRedis(open, 'u');
    await fromRedis(closed, 'u');
    // On a busy machine a warm-up call can miss its 20 ms: count only from the outage on.
    events.length = 0;
    recoveries.length = 0;
    const failuresBefore = open.storeHealth.failures;

    await server.kill();
    const callsBefore = open.redisCalls;
    // How long a decision waits for a dead Redis (the 20 ms timeout, then at once behind the
    // open breaker) is asserted exactly on a virtual clock in redis-limiter.test.ts.
    for (let i = 0; i < 8; i++) {
      const [a, b] = await Promise.all([open.consume('u'), closed.consume('u')]);
      assert.equal(a.degraded, 'fail-open');
      assert.equal(a.allowed, i < 3, 'fail-open judges with the local limiter (3 per minute)');
      assert.equal(b.degraded, 'fail-closed');
      assert.equal(b.allowed, false);
      // failClosedRetryAfterMs (1 s) after a failed call, what is left of the breaker's 1 s once it is open.
      assert.ok(b.retryAfterMs > 0 && b.retryAfterMs <= 1000, `retryAfterMs ${b.retryAfterMs}`);
    }
    assert.deepEqual(events.map((e) => e.failMode).sort(), ['closed', 'open'], 'one event per limiter for the outage, not one per call');
    assert.ok(open.redisCalls - callsBefore < 8, 'after repeated failures the breaker answers without trying Redis');
    assert.equal(open.storeHealth.failures - failuresBefore, 8, 'every failed call is counted');
    assert.equal(open.storeHealth.available, false);

    await server.start();
    // Each limiter has its own breaker, so each recovers when its own half-open probe succeeds.
    const recovery = async (limiter: RedisRateLimiter, key: string): Promise<Decision | undefined> => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const d = await limiter.consume(key);
        if (d.store === 'redis' && d.degraded === undefined) return d;
        await new Promise((r) => setTimeout(r, 100));
      }
      return undefined;
    };
    const recovered = await recovery(closed, 'v');
    assert.ok(recovered, 'fail-closed decisions come from Redis again');
    assert.equal(recovered.allowed, true);
    const back = await recovery(open, 'w');
    assert.ok(back, 'fail-open decisions come from Redis again');
    assert.equal(back.allowed, true);
    assert.deepEqual(recoveries, ['closed', 'open'], 'one recovery event per limiter');
    assert.equal(open.storeHealth.available, true);
  } finally {
    client.disconnect();
    await server.kill();
  }
});
