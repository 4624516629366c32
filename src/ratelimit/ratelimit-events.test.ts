import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import type { RedisScriptClient } from '../redis-client/script-client.js';
import { HybridRateLimiter, memoryHybridRemote } from './hybrid.js';
import { MemoryRateLimiter } from './memory.js';
import { rateLimit } from './policy.js';
import { RedisRateLimiter } from './redis-limiter.js';

/** A Redis stand-in that answers "allowed" for every decision, or fails while `down`. */
function fakeRedis(): RedisScriptClient & { down: boolean } {
  const client = {
    flavour: 'custom' as const,
    down: false,
    run: async (_script: unknown, keys: readonly string[]) => {
      if (client.down) throw new Error('ECONNREFUSED');
      return keys.flatMap(() => [1, 9, 0, 0]);
    },
  };
  return client;
}

test('rateLimit: a rejection is a uniform reject event without its key; stats count allowed and rejected calls', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const limiter = new MemoryRateLimiter({ limit: 2, intervalMs: 1000, clock, name: 'partner-bucket', registry });
  const policy = rateLimit({ limiter, key: (context) => String(context.tags?.['user']), name: 'partner', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const call = () => policy.execute(() => 'ok', { tags: { user: 'alice' } });
  assert.equal(await call(), 'ok');
  assert.equal(await call(), 'ok');
  await assert.rejects(call(), { code: 'RATE_LIMITED' });
  assert.deepEqual(seen, [
    { kind: 'rate-limit', name: 'partner', event: 'reject', outcome: 'rejected', attributes: { store: 'memory', retryAfterMs: 500 } },
  ]);
  assert.deepEqual(policy.stats(), { allowed: 2, allowedDegraded: 0, rejected: 1, rejectedStoreDown: 0 });
  assert.equal(policy.describe().name, 'partner');
  // The limiter is discoverable too: its stats are per limiter, its keys never named.
  assert.deepEqual(registry.policies().map((p) => [p.kind, p.name]), [['memory-rate-limiter', 'partner-bucket'], ['rate-limit', 'partner']]);
  assert.deepEqual(limiter.stats(), { keys: 1, maxKeys: 100_000, evictedFresh: 0, evictedLive: 0 });
});

test('Redis limiter failing closed: store-error and store-recovered in the uniform stream; the policy counts store-down rejections', async () => {
  const clock = new VirtualClock();
  const client = fakeRedis();
  const limiter = new RedisRateLimiter({ client, limit: 10, clock, batch: 'none', failMode: 'closed', breaker: false, name: 'partner-redis', registry: null });
  const policy = rateLimit({ limiter, name: 'partner', registry: null });
  const seen: PolicyEvent[] = [];
  limiter.onEvent((e) => seen.push(e));
  policy.onEvent((e) => seen.push(e));

  await policy.execute(() => 'ok');
  client.down = true;
  await assert.rejects(policy.execute(() => 'ok'), { code: 'STORE_UNAVAILABLE', store: 'redis', retryAfterMs: 1000 });
  await assert.rejects(policy.execute(() => 'ok'), { code: 'STORE_UNAVAILABLE', store: 'redis', retryAfterMs: 1000 });
  await clock.advance(250);
  client.down = false;
  await policy.execute(() => 'ok');

  assert.deepEqual(seen, [
    { kind: 'redis-rate-limiter', name: 'partner-redis', event: 'store-error', outcome: 'failure', attributes: { code: 'Error', failMode: 'closed', affected: 1, breakerOpen: false } },
    { kind: 'rate-limit', name: 'partner', event: 'reject', outcome: 'rejected', attributes: { store: 'redis', degraded: 'fail-closed', retryAfterMs: 1000 } },
    { kind: 'rate-limit', name: 'partner', event: 'reject', outcome: 'rejected', attributes: { store: 'redis', degraded: 'fail-closed', retryAfterMs: 1000 } },
    { kind: 'redis-rate-limiter', name: 'partner-redis', event: 'store-recovered', outcome: 'success', durationMs: 250, attributes: { failedCalls: 2 } },
  ]);
  assert.deepEqual(policy.stats(), { allowed: 2, allowedDegraded: 0, rejected: 2, rejectedStoreDown: 2 });
  assert.deepEqual(limiter.stats(), { available: true, failures: 2, outages: 1, redisCalls: 4, decisions: 2, degraded: 2 });
});

test('hybrid limiter: each sync is a uniform sync event, an outage one store-error and one store-recovered; stats count syncs', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, capacity: 20, clock });
  const limiter = new HybridRateLimiter({ limit: 10, capacity: 20, remote, clock, breaker: false, name: 'global-quota', registry: null });
  const seen: PolicyEvent[] = [];
  limiter.onEvent((e) => seen.push(e));
  limiter.consume('a');
  limiter.consume('b');
  await clock.advance(100);
  remote.down = true;
  limiter.consume('a');
  await clock.advance(100);
  limiter.consume('a');
  await clock.advance(100);
  remote.down = false;
  await clock.advance(100);

  const fields = (e: PolicyEvent) => [e.kind, e.name];
  assert.ok(seen.every((e) => fields(e).join() === 'hybrid-rate-limiter,global-quota'));
  assert.deepEqual(seen.map((e) => ({ event: e.event, outcome: e.outcome, durationMs: e.durationMs, attributes: e.attributes })), [
    { event: 'sync', outcome: 'success', durationMs: undefined, attributes: { keys: 2, calls: 1 } },
    { event: 'store-error', outcome: 'failure', durationMs: undefined, attributes: { code: 'Error', keys: 1 } },
    { event: 'sync', outcome: 'failure', durationMs: undefined, attributes: { keys: 1, calls: 1, code: 'Error' } },
    { event: 'sync', outcome: 'failure', durationMs: undefined, attributes: { keys: 1, calls: 1, code: 'Error' } },
    { event: 'store-recovered', outcome: 'success', durationMs: 200, attributes: { failedCalls: 2 } },
    { event: 'sync', outcome: 'success', durationMs: undefined, attributes: { keys: 1, calls: 1 } },
  ]);
  assert.deepEqual(limiter.stats(), {
    available: true, failures: 2, outages: 1, keys: 2, dirty: 0, stale: false, redisCalls: 4, syncs: 4, failedSyncs: 2, evictedPending: 0,
  });
});
