import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { seededRandom } from '../core/random.js';
import { VirtualClock } from '../core/clock.js';
import {
  BACKOFF_KINDS, JITTER_KINDS, MAX_TIMER_MS, backoff, constantBackoff, decorrelatedBackoff, exponentialBackoff,
  fibonacciBackoff, linearBackoff, reconnectBackoff, toBackoff, type BackoffKind, type JitterKind, type ScheduleBackoff,
} from './backoff.js';
import { retry } from './retry.js';

/** The first `n` delays of one call, threading the previous delay as the retry policy does. */
function sequence(b: ScheduleBackoff, n: number, random = seededRandom(1)): number[] {
  const out: number[] = [];
  let previous = 0;
  for (let retry = 1; retry <= n; retry++) {
    previous = b.delay(retry, previous, random);
    out.push(previous);
  }
  return out;
}

test('each backoff kind produces its schedule (jitter none)', () => {
  assert.deepEqual(sequence(constantBackoff(250, { jitter: 'none' }), 4), [250, 250, 250, 250]);
  assert.deepEqual(sequence(linearBackoff({ baseDelayMs: 100, jitter: 'none' }), 4), [100, 200, 300, 400]);
  assert.deepEqual(sequence(exponentialBackoff({ baseDelayMs: 100, jitter: 'none' }), 5), [100, 200, 400, 800, 1600]);
  assert.deepEqual(sequence(exponentialBackoff({ baseDelayMs: 10, factor: 3, jitter: 'none' }), 4), [10, 30, 90, 270]);
  assert.deepEqual(sequence(fibonacciBackoff({ baseDelayMs: 100, jitter: 'none' }), 7), [100, 200, 300, 500, 800, 1300, 2100]);
  // string shorthand and options shorthand build the same thing
  assert.deepEqual(toBackoff('linear').describe(), linearBackoff().describe());
});

test('the cap holds for every kind, however many retries', () => {
  for (const kind of ['constant', 'linear', 'exponential', 'fibonacci'] as const) {
    const b = backoff({ kind, baseDelayMs: 1000, maxDelayMs: 5000, jitter: 'none' });
    assert.equal(b.delay(1_000_000, 0, Math.random), kind === 'constant' ? 1000 : 5000, kind);
  }
  // exponential overflow (2^5000 = Infinity) must not become NaN
  assert.equal(exponentialBackoff({ jitter: 'none' }).delay(5000, 0, Math.random), 30_000);
});

test('defaults: exponential from 100 ms, factor 2, full jitter, 30 s cap', () => {
  assert.deepEqual(backoff().describe(), { kind: 'exponential', baseDelayMs: 100, maxDelayMs: 30_000, factor: 2, jitter: 'full' });
  assert.deepEqual(backoff({ jitter: 'decorrelated' }).describe(), { kind: 'decorrelated', baseDelayMs: 100, maxDelayMs: 30_000, jitter: 'decorrelated' });
});

const SAMPLES = 20_000;

test('every jitter kind stays within its band over many samples and never exceeds the cap', () => {
  const random = seededRandom(42);
  const bands: Record<Exclude<JitterKind, 'decorrelated'>, (d: number) => [number, number]> = {
    none: (d) => [d, d],
    full: (d) => [0, d],
    equal: (d) => [d / 2, d],
    proportional: (d) => [d * 0.7, d * 1.3],
    // jitterMs defaults to the base (100): the schedule stops at 1000 − 100 so the noise fits under the cap
    additive: (d) => [Math.min(d, 900), Math.min(d, 900) + 100],
  };
  for (const [jitter, band] of Object.entries(bands) as [Exclude<JitterKind, 'decorrelated'>, (d: number) => [number, number]][]) {
    const b = exponentialBackoff({ baseDelayMs: 100, maxDelayMs: 1000, jitter, jitterRatio: 0.3 });
    for (let retry = 1; retry <= 8; retry++) {
      const d = Math.min(1000, 100 * 2 ** (retry - 1));
      const [lo, hi] = band(d);
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < SAMPLES / 8; i++) {
        const delay = b.delay(retry, 0, random);
        min = Math.min(min, delay);
        max = Math.max(max, delay);
      }
      assert.ok(min >= lo && max <= Math.min(hi, 1000), `${jitter} retry ${retry}: [${min}, ${max}] outside [${lo}, ${hi}] or above the cap`);
      if (jitter !== 'none') {
        // the band is actually used (not a constant hiding inside it)
        const span = Math.min(hi, 1000) - lo;
        if (span > 0) assert.ok(max - min > span * 0.9, `${jitter} retry ${retry} uses its band: [${min}, ${max}]`);
      }
    }
  }
});

test('regression: jitter is applied before the cap, so a delay never exceeds maxDelayMs', () => {
  // Computing min(delay, max) and then multiplying by (0.5 + random) would give up to 1.5 × max.
  const random = seededRandom(7);
  const b = exponentialBackoff({ baseDelayMs: 100, maxDelayMs: 1000, jitter: 'proportional', jitterRatio: 0.5 });
  let atCap = 0;
  for (let i = 0; i < SAMPLES; i++) {
    const delay = b.delay(20, 0, random); // schedule far above the cap
    assert.ok(delay <= 1000, `delay ${delay} above the cap`);
    assert.ok(delay >= 500);
    if (delay === 1000) atCap++;
  }
  assert.ok(atCap > SAMPLES / 3, 'upward jitter is clipped at the cap');
});

test("decorrelated jitter stays within Brooker's bounds: base <= d <= min(cap, 3 × previous)", () => {
  const random = seededRandom(3);
  const b = decorrelatedBackoff({ baseDelayMs: 100, maxDelayMs: 5000 });
  let reachedCap = false;
  for (let run = 0; run < 500; run++) {
    let previous = 0;
    for (let retry = 1; retry <= 15; retry++) {
      const d = b.delay(retry, previous, random);
      const upper = Math.min(5000, 3 * (previous || 100));
      assert.ok(d >= 100 && d <= upper, `retry ${retry}: ${d} outside [100, ${upper}]`);
      if (d === 5000 || d > 4900) reachedCap = true;
      previous = d;
    }
  }
  assert.ok(reachedCap, 'the sequence grows up to the cap');
  // the first retry is random(base, 3 × base)
  assert.equal(b.delay(1, 0, () => 0), 100);
  assert.equal(b.delay(1, 0, () => 0.999999), 100 + 0.999999 * 200);
});

test('additive jitter: the delay before retry k+1 is base·2^k + U(0, jitterMs), bounds exact', async () => {
  const b = exponentialBackoff({ baseDelayMs: 100, jitter: 'additive', jitterMs: 50 });
  assert.deepEqual(b.describe(), { kind: 'exponential', baseDelayMs: 100, maxDelayMs: 30_000, factor: 2, jitter: 'additive', jitterMs: 50 });
  for (let retry = 1; retry <= 8; retry++) {
    const scheduled = 100 * 2 ** (retry - 1);
    assert.equal(b.delay(retry, 0, () => 0), scheduled, 'U = 0: the schedule itself');
    assert.equal(b.delay(retry, 0, () => 0.5), scheduled + 25);
  }
  const random = seededRandom(6);
  for (let retry = 1; retry <= 8; retry++) {
    const scheduled = 100 * 2 ** (retry - 1);
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < 2_500; i++) {
      const d = b.delay(retry, 0, random);
      min = Math.min(min, d);
      max = Math.max(max, d);
    }
    assert.ok(min >= scheduled && max < scheduled + 50, `retry ${retry}: [${min}, ${max}] outside [${scheduled}, ${scheduled + 50})`);
    assert.ok(max - min > 49, `retry ${retry} uses the whole 50 ms: [${min}, ${max}]`);
  }
  // The retry policy waits exactly these delays.
  const clock = new VirtualClock();
  const waits: number[] = [];
  const policy = retry({ maxAttempts: 5, backoff: b, random: seededRandom(8), clock });
  policy.onRetry((e) => waits.push(e.delayMs));
  const call = policy.execute(() => { throw Object.assign(new Error('HTTP 503'), { status: 503 }); }).catch((e) => e);
  await clock.advance(10_000);
  assert.equal((await call).code, 'RETRIES_EXHAUSTED');
  const replay = seededRandom(8);
  assert.deepEqual(waits, [100, 200, 400, 800].map((s) => s + replay() * 50));
});

test('additive jitter at the cap: the schedule stops at max − jitterMs, so delays stay spread over [max − jitterMs, max)', () => {
  const b = exponentialBackoff({ baseDelayMs: 100, maxDelayMs: 1_000, jitter: 'additive', jitterMs: 200 });
  const random = seededRandom(9);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < 5_000; i++) {
    const d = b.delay(30, 0, random);
    min = Math.min(min, d);
    max = Math.max(max, d);
  }
  assert.ok(min >= 800 && max < 1_000, `[${min}, ${max}]`);
  assert.ok(max - min > 199, 'spread over the whole 200 ms, not piled up at the cap');
  assert.equal(b.delay(30, 0, () => 0), 800);
  assert.equal(exponentialBackoff({ jitter: 'additive' }).jitterMs, 100, 'default: the base delay');
  assert.equal(exponentialBackoff({ jitter: 'additive', baseDelayMs: 500, maxDelayMs: 300 }).jitterMs, 300, 'default never above the cap');
  assert.equal(exponentialBackoff({ jitter: 'additive', jitterMs: 0 }).delay(3, 0, () => 0.9), 400, '0 is honoured: no jitter');
});

test('reconnect preset: 100 ms doubling to a 30 s cap, each delay within ±20 % and never above 30 s', () => {
  const b = reconnectBackoff();
  assert.deepEqual(b.describe(), { kind: 'exponential', baseDelayMs: 100, maxDelayMs: 30_000, factor: 2, jitter: 'proportional', jitterRatio: 0.2 });
  const nominal = Array.from({ length: 14 }, (_, k) => Math.min(30_000, 100 * 2 ** k));
  assert.deepEqual(nominal.slice(8), [25_600, 30_000, 30_000, 30_000, 30_000, 30_000]);
  nominal.forEach((d, k) => {
    assert.equal(b.delay(k + 1, 0, () => 0), d * 0.8, `retry ${k + 1}: lowest`);
    assert.equal(b.delay(k + 1, 0, () => 0.5), d, `retry ${k + 1}: middle`);
  });
  const random = seededRandom(22);
  nominal.forEach((d, k) => {
    for (let i = 0; i < 1_000; i++) {
      const delay = b.delay(k + 1, 0, random);
      assert.ok(delay >= d * 0.8 && delay <= Math.min(d * 1.2, 30_000), `retry ${k + 1}: ${delay} outside [${d * 0.8}, ${Math.min(d * 1.2, 30_000)}]`);
    }
  });
  assert.equal(reconnectBackoff({ maxDelayMs: 60_000 }).maxDelayMs, 60_000, 'options override the preset');
});

test('regression: 0 is a legal value, never replaced by a default (the `||` defect)', () => {
  for (const kind of BACKOFF_KINDS) {
    const b = backoff({ kind, baseDelayMs: 0 });
    assert.equal(b.baseDelayMs, 0);
    assert.deepEqual(sequence(b, 5), [0, 0, 0, 0, 0], kind);
  }
  const capped = exponentialBackoff({ baseDelayMs: 100, maxDelayMs: 0 });
  assert.equal(capped.maxDelayMs, 0);
  assert.deepEqual(sequence(capped, 3), [0, 0, 0]);
  assert.equal(exponentialBackoff({ jitter: 'proportional', jitterRatio: 0 }).jitterRatio, 0);
  assert.deepEqual(sequence(exponentialBackoff({ jitter: 'proportional', jitterRatio: 0 }), 3), [100, 200, 400]);
});

test('backoffs are immutable values: one instance serves concurrent calls without sharing state', () => {
  const b = decorrelatedBackoff({ baseDelayMs: 100 });
  assert.ok(Object.isFrozen(b));
  assert.throws(() => { (b as any).baseDelayMs = 5; });
  // interleaving two calls gives each the sequence it would get alone
  const alone = sequence(b, 4, seededRandom(9));
  const random = seededRandom(9);
  const interleaved: number[] = [];
  let prevA = 0;
  let prevB = 0;
  for (let retry = 1; retry <= 4; retry++) {
    prevA = b.delay(retry, prevA, random);
    interleaved.push(prevA);
    prevB = b.delay(retry, prevB, () => 0);
    assert.equal(prevB, 100, 'call B keeps its own previous delay');
  }
  assert.deepEqual(interleaved, alone);
});

test('bad backoff options fail when built', () => {
  const bad: object[] = [
    { baseDelayMs: -1 }, { baseDelayMs: NaN }, { maxDelayMs: -5 }, { maxDelayMs: MAX_TIMER_MS + 1 }, { factor: 0.5 },
    { factor: Infinity }, { jitterRatio: 1.5 }, { kind: 'quadratic' }, { jitter: 'some' },
    { kind: 'exponential', jitter: 'decorrelated' }, { kind: 'decorrelated', jitter: 'full' },
    { jitterMs: 10 }, { jitter: 'full', jitterMs: 10 }, { jitter: 'additive', jitterMs: -1 }, { jitter: 'additive', jitterMs: NaN },
    { jitter: 'additive', maxDelayMs: 100, jitterMs: 200 },
  ];
  for (const options of bad) assert.throws(() => backoff(options as any), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
  assert.throws(() => toBackoff(42 as any), { code: 'INVALID_OPTIONS' });
});

test('property: for any backoff/jitter config and retry number, 0 <= delay <= maxDelayMs', () => {
  const kinds = BACKOFF_KINDS.filter((k) => k !== 'decorrelated');
  const jitters = JITTER_KINDS.filter((j) => j !== 'decorrelated');
  const config = fc.oneof(
    fc.record({ kind: fc.constantFrom<BackoffKind>(...kinds), jitter: fc.constantFrom<JitterKind>(...jitters) }),
    fc.constant({ kind: 'decorrelated' as BackoffKind, jitter: 'decorrelated' as JitterKind }),
  );
  fc.assert(fc.property(
    config,
    fc.double({ min: 0, max: 1e7, noNaN: true }),
    fc.double({ min: 0, max: 1e7, noNaN: true }),
    fc.double({ min: 1, max: 10, noNaN: true }),
    fc.double({ min: 0, max: 1, noNaN: true }),
    fc.integer({ min: 1, max: 100_000 }),
    fc.double({ min: 0, max: 1e9, noNaN: true }),
    fc.integer(),
    ({ kind, jitter }, baseDelayMs, maxDelayMs, factor, jitterRatio, retry, previous, seed) => {
      const b = backoff({ kind, jitter, baseDelayMs, maxDelayMs, factor, jitterRatio });
      const random = seededRandom(seed);
      for (let i = 0; i < 5; i++) {
        const d = b.delay(retry + i, previous, random);
        if (!(d >= 0 && d <= maxDelayMs)) return false;
        previous = d;
      }
      return true;
    },
  ), { numRuns: 2000, seed: 20240501 });
});

test('a misspelt backoff option is an error, not a silent default', () => {
  assert.throws(() => toBackoff({ baseMs: 10 } as never), (e: any) => e.code === 'INVALID_OPTIONS' && /baseMs/.test(e.message));
});
