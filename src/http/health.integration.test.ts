import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { healthChecks } from './core/health.js';
import { ADAPTERS, sleep, startApp, type RunningApp } from './test/apps.js';
import { freePort, PrivateRedis } from '../../test/support/private-redis.js';

/**
 * Readiness follows a real dependency while liveness does not: a private redis-server is
 * killed under three running servers (one per adapter); ready flips to 503 with the check's
 * detail, live stays 200, and ready recovers when Redis comes back.
 */

let redisServer: PrivateRedis;
let redis: Redis;
const apps: RunningApp[] = [];

before(async () => {
  redisServer = new PrivateRedis(await freePort());
  await redisServer.start();
  // Default ioredis settings on purpose: while disconnected, commands queue (they do not fail
  // fast), which is exactly why a readiness check needs its own time limit.
  redis = new Redis(redisServer.url, { lazyConnect: true });
  redis.on('error', () => {}); // reconnect noise while the server is down
  await redis.connect();
});

after(async () => {
  await Promise.all(apps.map((app) => app.close()));
  redis?.disconnect();
  await redisServer?.kill();
});

test('ready flips to 503 when Redis is unreachable while live stays 200, on every adapter; then recovers', async () => {
  const health = healthChecks({
    cacheMs: 0,
    checks: { redis: { check: () => redis.ping(), timeoutMs: 300 } },
  });
  for (const kind of ADAPTERS) apps.push(await startApp(kind, [], { health }));

  for (const app of apps) {
    const ready = await fetch(`${app.url}/health/ready`);
    assert.equal(ready.status, 200, `${app.kind} ready while Redis is up`);
    assert.equal((await ready.json() as any).checks.redis.status, 'pass');
  }

  await redisServer.kill();

  for (const app of apps) {
    const started = performance.now();
    const ready = await fetch(`${app.url}/health/ready`);
    const elapsed = performance.now() - started;
    assert.equal(ready.status, 503, `${app.kind} not ready without Redis`);
    const report = await ready.json() as any;
    assert.equal(report.status, 'fail');
    assert.equal(report.checks.redis.status, 'fail');
    assert.equal(report.checks.redis.critical, true);
    assert.ok(typeof report.checks.redis.output === 'string' && report.checks.redis.output.length > 0);
    assert.ok(elapsed < 2000, `${app.kind} ready answered in ${elapsed} ms (bounded by the check timeout)`);
    const live = await fetch(`${app.url}/health/live`);
    assert.equal(live.status, 200, `${app.kind} live stays 200: a dependency never fails liveness`);
  }

  await redisServer.start(); // same port: the client reconnects on its own
  const recoveredBy = Date.now() + 10_000;
  for (const app of apps) {
    let status = 0;
    while (Date.now() < recoveredBy) {
      status = (await fetch(`${app.url}/health/ready`)).status;
      if (status === 200) break;
      await sleep(100);
    }
    assert.equal(status, 200, `${app.kind} ready again after Redis came back`);
  }
});
