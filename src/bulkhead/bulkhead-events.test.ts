import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { bulkhead } from './bulkhead.js';

test('a bulkhead reports queued calls and rejections (with the time waited) as uniform events, and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const pool = bulkhead({ name: 'db', registry, clock, maxConcurrent: 1, maxQueue: 1, queueTimeoutMs: 50 });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const takes = (ms: number) => () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('done'), ms));

  const running = pool.execute(takes(100));
  const waiting = assert.rejects(pool.execute(takes(10)), { code: 'BULKHEAD_QUEUE_TIMEOUT' });
  await assert.rejects(pool.execute(takes(10), { priority: 'low' }), { code: 'BULKHEAD_FULL' }); // does not outrank the waiter
  await clock.advance(100);
  await waiting;
  assert.equal(await running, 'done');

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'bulkhead', name: 'db', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('queued', { attributes: { priority: 'normal', queued: 1 } }),
    event('reject', { outcome: 'rejected', durationMs: 0, attributes: { reason: 'full', priority: 'low' } }),
    event('reject', { outcome: 'rejected', durationMs: 50, attributes: { reason: 'queue-timeout', priority: 'normal' } }),
  ]);
  assert.deepEqual(pool.stats(), {
    active: 0, queued: 0, maxConcurrent: 1, maxQueue: 1, peakActive: 1, peakQueued: 1,
    admitted: 1, rejected: 2, queueTimeouts: 1, rejectionRate: 2 / 3, waitMs: { count: 1, mean: 50, max: 50 },
  });
  assert.equal(pool.describe().name, 'db');
});
