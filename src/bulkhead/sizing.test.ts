import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { bulkhead } from './bulkhead.js';
import { BULKHEAD_PRESETS, bulkheadSize } from './sizing.js';

test("bulkheadSize: 500 req/s × 200 ms = 100 in flight (Little's law), rounded to 10, × 1.1 headroom = 110", () => {
  assert.equal(bulkheadSize({ ratePerSecond: 500, latencyMs: 200, headroom: 1.1, roundTo: 10 }), 110);
  assert.equal(bulkheadSize({ ratePerSecond: 500, latencyMs: 200 }), 110, 'the defaults are headroom 1.1, roundTo 10');
  assert.equal(bulkheadSize({ ratePerSecond: 500, latencyMs: 200, headroom: 1, roundTo: 1 }), 100, "Little's law alone");
});

test('bulkheadSize: rounds to the multiple first, then applies the headroom, then rounds up to a whole slot', () => {
  assert.equal(bulkheadSize({ ratePerSecond: 510, latencyMs: 200 }), 121, '102 → 110 → 121 (headroom first would give 112.2 → 120)');
  assert.equal(bulkheadSize({ ratePerSecond: 3, latencyMs: 50 }), 11, '0.15 in flight still needs a slot: 10 → 11');
  assert.equal(bulkheadSize({ ratePerSecond: 333, latencyMs: 300, headroom: 1, roundTo: 1 }), 100, '99.9 → 100');
  assert.equal(bulkheadSize({ ratePerSecond: 100, latencyMs: 1_000, headroom: 1.5, roundTo: 25 }), 150, '100 → 100 → 150');
  // Floating-point noise never costs a slot: 30 × 1.1 is 33.000000000000004 in binary, 100 × 1.1 is 110.00000000000001.
  assert.equal(bulkheadSize({ ratePerSecond: 150, latencyMs: 200 }), 33);
  assert.equal(bulkheadSize({ ratePerSecond: 1_000, latencyMs: 100, roundTo: 1 }), 110);
});

test('bulkheadSize validates its options (INVALID_OPTIONS)', () => {
  const bad: object[] = [
    {}, { ratePerSecond: 500 }, { latencyMs: 200 }, { ratePerSecond: 0, latencyMs: 200 }, { ratePerSecond: -1, latencyMs: 200 },
    { ratePerSecond: Infinity, latencyMs: 200 }, { ratePerSecond: 500, latencyMs: NaN }, { ratePerSecond: 500, latencyMs: 200, headroom: 0.9 },
    { ratePerSecond: 500, latencyMs: 200, headroom: Infinity }, { ratePerSecond: 500, latencyMs: 200, roundTo: 0 },
    { ratePerSecond: 500, latencyMs: 200, roundTo: 2.5 }, { ratePerSecond: 1e9, latencyMs: 10_000 },
  ];
  for (const options of bad) assert.throws(() => bulkheadSize(options as any), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
  assert.throws(() => bulkheadSize(undefined as any), { code: 'INVALID_OPTIONS' });
});

test('presets: database 50 with a 100 ms wait, recommendations 20 with 50 ms, notifications 10 with 50 ms; frozen', () => {
  assert.deepEqual(BULKHEAD_PRESETS, {
    database: { name: 'database', maxConcurrent: 50, maxQueue: 50, queueTimeoutMs: 100 },
    recommendations: { name: 'recommendations', maxConcurrent: 20, maxQueue: 20, queueTimeoutMs: 50 },
    notifications: { name: 'notifications', maxConcurrent: 10, maxQueue: 10, queueTimeoutMs: 50 },
  });
  assert.ok(Object.isFrozen(BULKHEAD_PRESETS) && Object.values(BULKHEAD_PRESETS).every(Object.isFrozen));
});

test('a preset builds a bulkhead that behaves as it says: 50 run, 50 wait up to 100 ms, the 101st is refused at once', async () => {
  const clock = new VirtualClock();
  const db = bulkhead({ ...BULKHEAD_PRESETS.database, clock });
  assert.deepEqual(db.describe().options, { maxConcurrent: 50, maxQueue: 50, queueTimeoutMs: 100 });
  const hold = () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('ok'), 1_000));
  const settled: Array<{ code?: string; at: number }> = [];
  for (let i = 0; i < 101; i++) db.execute(hold).then(() => settled.push({ at: clock.now() }), (e) => settled.push({ code: e.code, at: clock.now() }));
  await flushPromises();
  assert.deepEqual([db.active, db.queued], [50, 50]);
  assert.deepEqual(settled, [{ code: 'BULKHEAD_FULL', at: 0 }]);
  await clock.advance(99);
  assert.equal(settled.length, 1, 'still waiting at 99 ms');
  await clock.advance(1);
  assert.equal(settled.filter((s) => s.code === 'BULKHEAD_QUEUE_TIMEOUT' && s.at === 100).length, 50, 'all 50 waiters give up at exactly 100 ms');
  await clock.advance(900);
  assert.equal(settled.filter((s) => s.code === undefined && s.at === 1_000).length, 50);
});
