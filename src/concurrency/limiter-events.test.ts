import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { aimd } from './limits/aimd.js';
import { adaptiveLimiter, type LimiterPermit } from './limiter.js';

test('an adaptive limiter reports refusals and limit changes as uniform events, and counts acquisitions, refusals and drops', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const limiter = adaptiveLimiter({ limit: aimd({ initialLimit: 2 }), window: false, clock, name: 'db', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));

  const [first, second] = [limiter.tryAcquire(), limiter.tryAcquire()] as LimiterPermit[];
  assert.equal(limiter.tryAcquire().acquired, false);
  await clock.advance(10);
  first!.dropped(); // halves the limit
  second!.success(); // fast, with the limit in use: grows it by one

  assert.deepEqual(seen, [
    { kind: 'adaptive-concurrency', name: 'db', event: 'reject', outcome: 'rejected', attributes: { limit: 2, inflight: 2 } },
    { kind: 'adaptive-concurrency', name: 'db', event: 'limit-change', attributes: { previous: 2, limit: 1 } },
    { kind: 'adaptive-concurrency', name: 'db', event: 'limit-change', attributes: { previous: 1, limit: 2 } },
  ]);
  assert.deepEqual(limiter.stats(), { limit: 2, inflight: 0, acquired: 2, rejected: 1, dropped: 1 });
  assert.equal(limiter.describe().name, 'db');
});
