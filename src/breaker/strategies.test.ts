import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../core/random.js';
import { consecutive, countWindow, failureCount, timeWindow } from './strategies.js';
import { parseSnapshot } from './snapshot.js';

test('consecutive: trips at the threshold, a success starts the count again', () => {
  const w = consecutive({ threshold: 3 }).create();
  w.record(false, 0, 0);
  w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), false);
  w.record(true, 0, 0);
  w.record(false, 0, 0);
  w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), false);
  w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), true);
  assert.equal(w.stats(0).consecutiveFailures, 3);
  w.reset();
  assert.equal(w.shouldTrip(0), false);
});

test('failure count: 5 failures within 29 s trip, 5 spread over 31 s do not; a failure leaves the window exactly windowMs later', () => {
  const factory = failureCount({ threshold: 5, windowMs: 30_000 });
  const within = factory.create();
  for (const at of [0, 7_250, 14_500, 21_750]) within.record(false, 0, at);
  assert.equal(within.shouldTrip(21_750), false, '4 failures are not 5');
  within.record(false, 0, 29_000);
  assert.equal(within.shouldTrip(29_000), true, '5 failures within 29 s');

  const spread = factory.create();
  for (const at of [0, 7_750, 15_500, 23_250, 31_000]) spread.record(false, 0, at);
  assert.equal(spread.shouldTrip(31_000), false, 'the first failure left the window at 30 s');
  assert.equal(spread.stats(31_000).failures, 4);
  spread.record(false, 0, 37_000); // the last five now span 7 750 .. 37 000: 29.25 s
  assert.equal(spread.shouldTrip(37_000), true);

  // The boundary: the window is the last windowMs, excluding the instant windowMs ago.
  const edge = (last: number) => {
    const w = factory.create();
    for (const at of [0, 1, 2, 3, last]) w.record(false, 0, at);
    return w.shouldTrip(last);
  };
  assert.equal(edge(29_999), true);
  assert.equal(edge(30_000), false);
});

test('failure count: successes in between neither reset nor dilute the count (an absolute count, not a rate)', () => {
  const w = failureCount({ threshold: 3, windowMs: 1_000 }).create();
  for (let i = 0; i < 300; i++) w.record(i % 100 !== 0, 0, i); // 3 failures among 300 calls, within 300 ms
  assert.equal(w.shouldTrip(299), true, '1% failures, but 3 of them within 1 s');
  const consecutive3 = consecutive({ threshold: 3 }).create();
  for (let i = 0; i < 300; i++) consecutive3.record(i % 100 !== 0, 0, i);
  assert.equal(consecutive3.shouldTrip(299), false, 'the consecutive strategy never sees them in a row');
  w.reset();
  assert.equal(w.shouldTrip(299), false);
  assert.deepEqual(w.stats(299), { calls: 0, failures: 0, slowCalls: 0, failureRate: 0, slowCallRate: 0 });
});

test('failure count: export keeps the failures in the window; import re-checks them against the clock and keeps the newest that fit', () => {
  const w = failureCount({ threshold: 4, windowMs: 10_000 }).create();
  for (const at of [1_000, 2_000, 5_000, 9_000, 12_000]) w.record(false, 0, at);
  const snap = w.exportWindow(12_500);
  assert.deepEqual(snap, { kind: 'failure-count', failures: [5_000, 9_000, 12_000] }, '2 000 fell out at 12 000; 1 000 was overwritten');
  const parsed = parseSnapshot(JSON.parse(JSON.stringify({ version: 1, name: 'x', at: 12_500, state: { kind: 'closed' }, window: snap })));
  const small = failureCount({ threshold: 2, windowMs: 10_000 }).create();
  small.importWindow(parsed.window, 14_000);
  assert.deepEqual(small.exportWindow(14_000), { kind: 'failure-count', failures: [9_000, 12_000] });
  assert.equal(small.shouldTrip(14_000), true);
  const late = failureCount({ threshold: 4, windowMs: 10_000 }).create();
  late.importWindow(parsed.window, 19_500);
  assert.equal(late.stats(19_500).failures, 1, 'only 12 000 is still within 10 s at 19 500');
  assert.throws(() => parseSnapshot({ version: 1, at: 0, state: { kind: 'closed' }, window: { kind: 'failure-count', failures: [5, 3] } }), { code: 'INVALID_INPUT' });
  assert.throws(() => parseSnapshot({ version: 1, at: 0, state: { kind: 'closed' }, window: { kind: 'failure-count', failures: ['5'] } }), { code: 'INVALID_INPUT' });
});

test('count window: a window of 32 000 matches a naive model of the last N calls at every step', () => {
  const size = 32_000;
  const w = countWindow({ size, minimumCalls: 1000, failureRateThreshold: 0.75, slowCallDurationMs: 50, slowCallRateThreshold: 0.9 }).create();
  const random = seededRandom(7);
  const history: Array<{ failed: boolean; slow: boolean }> = [];
  for (let i = 0; i < 100_000; i++) {
    // Drift the failure probability so the window sees both calm and bad stretches.
    const p = i < 40_000 ? 0.2 : i < 70_000 ? 0.8 : 0.5;
    const failed = random() < p;
    const duration = random() < 0.3 ? 80 : 10;
    w.record(!failed, duration, 0);
    history.push({ failed, slow: duration > 50 });
    if (i % 997 === 0 || i === 99_999) {
      const last = history.slice(-size);
      const failures = last.filter((h) => h.failed).length;
      const slow = last.filter((h) => h.slow).length;
      const stats = w.stats(0);
      assert.equal(stats.calls, last.length, `calls at ${i}`);
      assert.equal(stats.failures, failures, `failures at ${i}`);
      assert.equal(stats.slowCalls, slow, `slow at ${i}`);
      const expectTrip = last.length >= 1000 && (failures / last.length >= 0.75 || slow / last.length >= 0.9);
      assert.equal(w.shouldTrip(0), expectTrip, `trip decision at ${i}`);
    }
  }
});

test('count window: minimumCalls defaults to the size and is honoured', () => {
  const w = countWindow({ size: 10 }).create();
  for (let i = 0; i < 9; i++) w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), false, '9 failures of 9 calls: not enough calls yet');
  w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), true);
});

test('count window: minimumCalls 0 is legal (the || defect would turn it into the size): it behaves as 1', () => {
  const w = countWindow({ size: 100, minimumCalls: 0 }).create();
  assert.equal(w.shouldTrip(0), false, 'no calls, no verdict');
  w.record(true, 0, 0);
  assert.equal(w.shouldTrip(0), false);
  w.record(false, 0, 0);
  assert.equal(w.shouldTrip(0), true, '1 failure of 2 calls = 50% >= 50%');
});

test('count window: exact decimal thresholds compare exactly (3/10 >= 0.3)', () => {
  const w = countWindow({ size: 10, failureRateThreshold: 0.3 }).create();
  for (let i = 0; i < 10; i++) w.record(i >= 3, 0, 0);
  assert.equal(w.stats(0).failures, 3);
  assert.equal(w.shouldTrip(0), true);
});

test('time window: forgets calls as buckets roll, at the bucket boundary', () => {
  const w = timeWindow({ windowMs: 10_000, buckets: 10, minimumCalls: 1 }).create();
  w.record(false, 0, 500); // bucket [0, 1000)
  w.record(true, 0, 4_200); // bucket [4000, 5000)
  assert.deepEqual([w.stats(9_999).calls, w.stats(9_999).failures], [2, 1]);
  assert.deepEqual([w.stats(10_000).calls, w.stats(10_000).failures], [1, 0], 'the first bucket left the window');
  assert.equal(w.stats(13_999).calls, 1);
  assert.equal(w.stats(14_000).calls, 0, 'bucket [4000, 5000) left the window at 14 000');
});

test('time window: a long idle gap clears everything, and old failures no longer trip it', () => {
  const w = timeWindow({ windowMs: 10_000, buckets: 10, minimumCalls: 20 }).create();
  for (let i = 0; i < 19; i++) w.record(false, 0, i * 10);
  assert.equal(w.shouldTrip(200), false, '19 calls < minimumCalls');
  // An hour later, one failure: the 19 old ones are gone.
  w.record(false, 0, 3_600_000);
  assert.equal(w.stats(3_600_000).calls, 1);
  assert.equal(w.shouldTrip(3_600_000), false);
  // Without the gap the 20th failure would trip it.
  const fresh = timeWindow({ windowMs: 10_000, buckets: 10, minimumCalls: 20 }).create();
  for (let i = 0; i < 20; i++) fresh.record(false, 0, i * 10);
  assert.equal(fresh.shouldTrip(200), true);
});

test('time window: running totals stay exact under random traffic (model check)', () => {
  const windowMs = 1_000;
  const buckets = 8;
  const bucketMs = windowMs / buckets;
  const w = timeWindow({ windowMs, buckets, minimumCalls: 0 }).create();
  const random = seededRandom(11);
  const log: Array<{ at: number; failed: boolean }> = [];
  let now = 0;
  for (let i = 0; i < 5_000; i++) {
    now += Math.floor(random() * (random() < 0.05 ? 3_000 : 40));
    const failed = random() < 0.4;
    w.record(!failed, 0, now);
    log.push({ at: now, failed });
    const head = Math.floor(now / bucketMs);
    const inWindow = log.filter((c) => Math.floor(c.at / bucketMs) > head - buckets);
    const stats = w.stats(now);
    assert.equal(stats.calls, inWindow.length, `calls at ${now}`);
    assert.equal(stats.failures, inWindow.filter((c) => c.failed).length, `failures at ${now}`);
  }
});

test('slow calls: strictly slower than the threshold count, and trip at the slow-call rate', () => {
  const w = countWindow({ size: 4, slowCallDurationMs: 100, slowCallRateThreshold: 0.5, failureRateThreshold: 1 }).create();
  w.record(true, 100, 0); // not slower than 100
  w.record(true, 101, 0);
  w.record(true, 5, 0);
  w.record(true, 5, 0);
  assert.equal(w.stats(0).slowCalls, 1);
  assert.equal(w.shouldTrip(0), false);
  w.record(true, 500, 0); // evicts the first (not slow) call: 2 slow of 4
  assert.equal(w.shouldTrip(0), true);
});

test('strategies validate their options when built; zero is rejected where it is meaningless, not replaced', () => {
  assert.throws(() => consecutive({ threshold: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => consecutive({ threshold: 2.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => countWindow({ size: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => countWindow({ size: 10, minimumCalls: 11 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => countWindow({ failureRateThreshold: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => countWindow({ failureRateThreshold: 1.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => countWindow({ slowCallRateThreshold: 0.5 }), { code: 'INVALID_OPTIONS' }, 'slow rate without a duration');
  assert.throws(() => timeWindow({ windowMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => timeWindow({ buckets: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => timeWindow({ buckets: 5000 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => timeWindow({ minimumCalls: -1 }), { code: 'INVALID_OPTIONS' });
  for (const bad of [{ threshold: 0 }, { threshold: 1.5 }, { threshold: 2_000_000 }, { windowMs: 0 }, { windowMs: -1 }, { windowMs: Infinity }, { windowMs: NaN }]) {
    assert.throws(() => failureCount(bad), { code: 'INVALID_OPTIONS' }, JSON.stringify(bad));
  }
  assert.deepEqual(failureCount().options, { threshold: 5, windowMs: 30_000 });
  // Zero where it means something is kept as zero.
  assert.equal(timeWindow({ minimumCalls: 0 }).options.minimumCalls, 0);
  assert.equal(countWindow({ slowCallDurationMs: 0 }).options.slowCallDurationMs, 0);
  assert.deepEqual(timeWindow().options, { windowMs: 10_000, buckets: 10, minimumCalls: 20, failureRateThreshold: 0.5 });
  assert.deepEqual(countWindow().options, { size: 100, minimumCalls: 100, failureRateThreshold: 0.5 });
});

test('each create() is an independent window (one options object, many breakers)', () => {
  const factory = consecutive({ threshold: 2 });
  const a = factory.create();
  const b = factory.create();
  a.record(false, 0, 0);
  a.record(false, 0, 0);
  assert.equal(a.shouldTrip(0), true);
  assert.equal(b.shouldTrip(0), false);
});

test('window export/import: count keeps the newest that fit; time re-buckets by start time', () => {
  const big = countWindow({ size: 6, minimumCalls: 1 }).create();
  for (const ok of [true, false, true, true, false, false, true, false]) big.record(ok, 0, 0);
  const snap = big.exportWindow(0);
  assert.deepEqual(snap, { kind: 'count', outcomes: '001101' }, 'oldest first; 1 = failure');
  const small = countWindow({ size: 3, minimumCalls: 1 }).create();
  small.importWindow(JSON.parse(JSON.stringify(snap)), 0);
  assert.deepEqual(small.exportWindow(0), { kind: 'count', outcomes: '101' });
  assert.equal(small.stats(0).failures, 2);

  const fine = timeWindow({ windowMs: 10_000, buckets: 10, minimumCalls: 1 }).create();
  fine.record(false, 0, 1_500);
  fine.record(true, 0, 2_500);
  fine.record(false, 0, 8_100);
  const exported = fine.exportWindow(9_000);
  assert.deepEqual(exported, { kind: 'time', bucketMs: 1000, buckets: [[1000, 1, 1, 0], [2000, 1, 0, 0], [8000, 1, 1, 0]] });
  const coarse = timeWindow({ windowMs: 10_000, buckets: 2, minimumCalls: 1 }).create();
  coarse.importWindow(exported, 9_000);
  assert.deepEqual(coarse.exportWindow(9_000), { kind: 'time', bucketMs: 5000, buckets: [[0, 2, 1, 0], [5000, 1, 1, 0]] });
  // Imported later than exported: buckets that have left the window are dropped.
  const late = timeWindow({ windowMs: 10_000, buckets: 10, minimumCalls: 1 }).create();
  late.importWindow(exported, 12_000);
  assert.equal(late.stats(12_000).calls, 1);
  // Another kind of window is not translated.
  late.importWindow({ kind: 'count', outcomes: '111' }, 12_000);
  assert.equal(late.stats(12_000).calls, 0);
});
