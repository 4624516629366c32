import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seededRandom } from '../core/random.js';
import { aimd, aimdUpdate, type AimdState } from './limits/aimd.js';
import { vegas, type VegasState } from './limits/vegas.js';
import { gradient2, type Gradient2State } from './limits/gradient2.js';
import { log10Root, type LimitAlgorithm, type LimitSample, type LimitState } from './limits/types.js';

const ok = (rttMs: number, inflight: number): LimitSample => ({ rttMs, inflight, dropped: false });
const drop = (rttMs: number, inflight: number): LimitSample => ({ rttMs, inflight, dropped: true });

function run<S extends LimitState>(algorithm: LimitAlgorithm<S>, samples: (state: S, i: number) => LimitSample, n: number, start = algorithm.initial()): S[] {
  const states: S[] = [];
  let state = start;
  for (let i = 0; i < n; i++) {
    state = algorithm.update(state, samples(state, i));
    states.push(state);
  }
  return states;
}

test('AIMD defaults: min 1, max 1000, initial 10, target 100 ms, backoff x0.5 on a drop, x0.9 on latency', () => {
  const limit = aimd();
  assert.deepEqual(limit.initial(), { limit: 10 });
  assert.equal(limit.minLimit, 1);
  assert.equal(limit.maxLimit, 1000);
  assert.equal(limit.settings.targetMs, 100);
  assert.equal(limit.settings.backoffRatio, 0.5);
  assert.equal(limit.settings.latencyBackoffRatio, 0.9);
});

test('AIMD rules: +1 below target, unchanged between target and 2x, x0.9 above 2x target, x0.5 on a drop', () => {
  const limit = aimd();
  const s10: AimdState = { limit: 10 };
  assert.equal(limit.update(s10, ok(50, 10)).limit, 11, '+1 when faster than the target');
  assert.equal(limit.update(s10, ok(99.9, 10)).limit, 11);
  assert.equal(limit.update(s10, ok(100, 10)).limit, 10, 'at the target: unchanged');
  assert.equal(limit.update(s10, ok(150, 10)).limit, 10, 'between target and 2x: unchanged');
  assert.equal(limit.update(s10, ok(200, 10)).limit, 10, 'exactly 2x is not above 2x');
  assert.equal(limit.update(s10, ok(201, 10)).limit, 9, 'x0.9 above 2x the target');
  assert.equal(limit.update({ limit: 100 }, ok(250, 100)).limit, 90);
  assert.equal(limit.update(s10, drop(10, 10)).limit, 5, 'x0.5 on a drop, however fast');
  assert.equal(limit.update({ limit: 1000 }, drop(10, 1000)).limit, 500);
  assert.equal(limit.update({ limit: 11 }, ok(300, 11)).limit, 9, 'floor(11 x 0.9) = 9');
  // unchanged returns the same state object (cheap, and lets callers detect no-ops)
  assert.equal(limit.update(s10, ok(150, 10)), s10);
});

test('AIMD clamps to [1, 1000] and a decrease always removes at least one slot', () => {
  const limit = aimd();
  assert.equal(limit.update({ limit: 1000 }, ok(10, 1000)).limit, 1000, 'never above max');
  assert.equal(limit.update({ limit: 1 }, drop(10, 1)).limit, 1, 'never below min');
  assert.equal(limit.update({ limit: 1 }, ok(500, 1)).limit, 1);
  assert.equal(limit.update({ limit: 2 }, ok(500, 2)).limit, 1, '2 x 0.9 = 1.8 → 1');
  assert.equal(limit.update({ limit: 5 }, ok(500, 5)).limit, 4, '5 x 0.9 = 4.5 → 4');
  // ×0.9 of a small limit must still shrink it: 9 → 8 (not floor-stuck)
  assert.equal(limit.update({ limit: 9 }, ok(500, 9)).limit, 8);
  const bounded = aimd({ minLimit: 4, maxLimit: 12, initialLimit: 12 });
  assert.equal(bounded.update({ limit: 5 }, drop(1, 5)).limit, 4);
  assert.equal(bounded.update({ limit: 12 }, ok(1, 12)).limit, 12);
});

test('AIMD deterministic sawtooth: grows by one per fast sample, halves on a drop, recovers', () => {
  const limit = aimd();
  const limits = run(limit, (s, i) => (i === 15 ? drop(50, s.limit) : i === 20 ? ok(300, s.limit) : ok(50, s.limit)), 25).map((s) => s.limit);
  assert.deepEqual(limits, [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 12, 13, 14, 15, 16, 14, 15, 16, 17, 18]);
});

test('AIMD grows only while the limit is used (inflight x 2 >= limit); growOnlyWhenUsed: false grows on every fast sample', () => {
  const limit = aimd();
  assert.equal(limit.update({ limit: 10 }, ok(10, 4)).limit, 10, 'idle: no drift upwards');
  assert.equal(limit.update({ limit: 10 }, ok(10, 5)).limit, 11);
  const plain = aimd({ growOnlyWhenUsed: false });
  assert.equal(plain.update({ limit: 10 }, ok(10, 1)).limit, 11);
  // decreases apply whatever the in-flight count
  assert.equal(limit.update({ limit: 10 }, drop(10, 1)).limit, 5);
});

test('aimdUpdate is a pure function of (state, sample, settings)', () => {
  const settings = aimd({ targetMs: 20 }).settings;
  const state: AimdState = Object.freeze({ limit: 10 });
  assert.equal(aimdUpdate(state, ok(10, 10), settings).limit, 11);
  assert.equal(aimdUpdate(state, ok(10, 10), settings).limit, 11, 'same input, same output');
  assert.equal(state.limit, 10, 'input untouched');
  assert.equal(aimdUpdate(state, ok(41, 10), settings).limit, 9);
});

test('Vegas grows while RTT stays at its no-load baseline, shrinks when RTT rises (queueing) and on drops', () => {
  const limit = vegas({ random: seededRandom(1) });
  let state: VegasState = limit.initial();
  assert.equal(state.limit, 20);
  state = limit.update(state, ok(10, 20));
  assert.equal(state.rttNoLoadMs, 10, 'the first sample sets the baseline');
  assert.equal(state.limit, 20);

  // At baseline: queue = 0 <= threshold → + beta = 6·log10(20)→6
  state = limit.update(state, ok(10, 20));
  assert.equal(state.limit, 26);
  const grown = run(limit, (s) => ok(10, s.limit), 10, state);
  const grownLimits = grown.map((s) => s.limit);
  for (let i = 1; i < grownLimits.length; i++) assert.ok(grownLimits[i]! > grownLimits[i - 1]!, `grows: ${grownLimits.join(',')}`);
  assert.deepEqual(grownLimits, [32, 38, 44, 50, 56, 62, 68, 74, 80, 86]);

  // RTT doubles: queue = ⌈86 × (1 − 10/20)⌉ = 43 > beta (6) → limit − log10(86)→1
  let high = grown.at(-1)!;
  const shrinking = run(limit, (s) => ok(20, s.limit), 5, high).map((s) => s.limit);
  assert.deepEqual(shrinking, [85, 84, 83, 82, 81]);

  // A drop shrinks even when the limit is not fully used
  high = limit.update(high, drop(10, 1));
  assert.equal(high.limit, 85);

  // App-limited (inflight × 2 < limit): no growth
  const idle = limit.update(high, ok(10, 10));
  assert.equal(idle.limit, high.limit);
});

test('Vegas alpha/beta scale with log10(limit); the sweet spot leaves the limit alone', () => {
  const limit = vegas({ random: seededRandom(2) });
  // limit 200: f = 2, threshold 2, alpha 6, beta 12
  const base: VegasState = { limit: 200, estimate: 200, rttNoLoadMs: 10, probeCount: 0, probeJitter: 1 };
  // queue = ⌈200 × (1 − 10/10.1)⌉ = 2 ≤ threshold → +beta (12)
  assert.equal(limit.update(base, ok(10.1, 200)).limit, 212);
  // queue = ⌈200 × (1 − 10/10.2)⌉ = 4 < alpha (6) → + f (2)
  assert.equal(limit.update(base, ok(10.2, 200)).limit, 202);
  // queue = ⌈200 × (1 − 10/10.5)⌉ = 10 within [alpha, beta] → unchanged
  assert.equal(limit.update(base, ok(10.5, 200)).limit, 200);
  // queue = ⌈200 × (1 − 10/11)⌉ = 19 > beta → − f
  assert.equal(limit.update(base, ok(11, 200)).limit, 198);
});

test('Vegas re-probes its baseline after ~probeMultiplier x limit samples, deterministically with a seeded random', () => {
  const a = vegas({ random: seededRandom(7), probeMultiplier: 2, maxLimit: 10, initialLimit: 10 });
  const b = vegas({ random: seededRandom(7), probeMultiplier: 2, maxLimit: 10, initialLimit: 10 });
  const seq = (alg: typeof a) => run(alg, (s, i) => ok(i < 3 ? 5 : 50, s.limit), 40);
  const sa = seq(a);
  assert.deepEqual(sa, seq(b), 'same seed, same sequence');
  // The baseline started at 5 ms; once the latency shift to 50 ms persists, a probe adopts it.
  assert.equal(sa[2]!.rttNoLoadMs, 5);
  assert.equal(sa.at(-1)!.rttNoLoadMs, 50);
  assert.ok(sa.some((s) => s.probeCount === 0 && s.rttNoLoadMs === 50));
});

test('Vegas smoothing blends the new estimate; zero or negative RTTs are ignored', () => {
  const limit = vegas({ smoothing: 0.5, random: seededRandom(3) });
  const base: VegasState = { limit: 20, estimate: 20, rttNoLoadMs: 10, probeCount: 0, probeJitter: 1 };
  const next = limit.update(base, ok(10, 20));
  assert.equal(next.estimate, 23, '(1 − 0.5)·20 + 0.5·26');
  assert.equal(limit.update(base, ok(0, 20)), base);
});

/*
 * The scenarios and expected numbers of Netflix concurrency-limits' VegasLimitTest and
 * Log10RootIntFunctionTest (https://github.com/Netflix/concurrency-limits), in our words: the
 * reference implementation's own answers, so a drift from it shows up here.
 */
test('Vegas step function: max(1, floor(log10(limit))) at every size, 1 at 0, 2 at 100, 4 at 10 000', () => {
  assert.equal(log10Root(0), 1);
  assert.equal(log10Root(9), 1);
  assert.equal(log10Root(100), 2);
  assert.equal(log10Root(999), 2);
  assert.equal(log10Root(1000), 3);
  assert.equal(log10Root(10_000), 4, 'log10, not the square root (which would be 100)');
  assert.equal(log10Root(1_000_000), 6);
});

test('Vegas (reference scenario): a 10 000 limit with no queueing grows by 6·log10 = 24, not by 6·√limit', () => {
  const limit = vegas({ initialLimit: 10_000, maxLimit: 20_000, random: seededRandom(4) });
  let state = limit.update(limit.initial(), ok(10_000, 5000));
  assert.equal(state.limit, 10_000, 'the first sample only sets the baseline');
  state = limit.update(state, ok(10_000, 6000));
  assert.equal(state.limit, 10_024);
});

test('Vegas (reference scenarios): constant alpha 3 / beta 6 from a limit of 10: grow, shrink, hold', () => {
  const make = () => vegas({ alpha: () => 3, beta: () => 6, smoothing: 1, initialLimit: 10, maxLimit: 20, random: seededRandom(5) });
  const after = (samples: LimitSample[]) => {
    const alg = make();
    return samples.reduce((state, sample) => alg.update(state, sample), alg.initial()).limit;
  };
  assert.equal(after([ok(10, 10)]), 10, 'baseline only');
  assert.equal(after([ok(10, 10), ok(10, 11)]), 16, 'no queueing: + beta');
  assert.equal(after([ok(10, 10), ok(50, 11)]), 9, 'queue ⌈10 × (1 − 10/50)⌉ = 8 > beta: − log10(10)');
  assert.equal(after([ok(10, 10), ok(14, 14)]), 10, 'queue ⌈10 × (1 − 10/14)⌉ = 3, between alpha and beta: unchanged');
});

test('Vegas (reference scenarios): a halving decrease from 100, with and without smoothing 0.5', () => {
  const halving = (smoothing?: number) => vegas({ decrease: (l) => l / 2, initialLimit: 100, maxLimit: 200, random: seededRandom(6), ...(smoothing === undefined ? {} : { smoothing }) });
  const limits = (alg: ReturnType<typeof halving>) => run(alg, () => ok(20, 100), 2, alg.update(alg.initial(), ok(10, 100))).map((s) => s.limit);
  assert.deepEqual(limits(halving(0.5)), [75, 56], '(100 + 50) / 2, then (75 + 37.5) / 2');
  assert.deepEqual(limits(halving()), [50, 25]);
});

test('Gradient2 grows while RTT stays at baseline, shrinks when RTT rises, never below min or by more than half', () => {
  const limit = gradient2({ minLimit: 5, initialLimit: 20, maxLimit: 200 });
  const steady = run(limit, (s) => ok(10, s.limit), 30);
  const limits = steady.map((s) => s.limit);
  for (let i = 1; i < limits.length; i++) assert.ok(limits[i]! >= limits[i - 1]!, `non-decreasing: ${limits.join(',')}`);
  assert.ok(limits.at(-1)! > 30, `grew from 20 to ${limits.at(-1)}`);
  // first step: gradient 1 → 20 + 4 (queue); smoothed 0.8·20 + 0.2·24 = 20.8
  assert.equal(steady[0]!.estimate, 20.8);
  assert.equal(steady[0]!.longRttMs, 10);

  // RTT triples: gradient = max(0.5, 1.5 × 10/30) = 0.5 → shrink toward half
  const before = steady.at(-1)!;
  const loaded = run(limit, (s) => ok(30, s.limit), 10, before);
  const first = loaded[0]!;
  const q = Math.max(4, Math.floor(Math.sqrt(Math.floor(before.estimate))));
  const long = before.longRttMs * (1 - 2 / 601) + 30 * (2 / 601); // the 30 ms sample enters the EWMA first
  const gradient = Math.max(0.5, Math.min(1, (1.5 * long) / 30));
  assert.ok(gradient < 0.51);
  assert.ok(Math.abs(first.estimate - (before.estimate * 0.8 + (before.estimate * gradient + q) * 0.2)) < 1e-9);
  for (let i = 1; i < loaded.length; i++) assert.ok(loaded[i]!.estimate < loaded[i - 1]!.estimate);
  assert.ok(loaded.every((s) => s.limit >= 5));

  // A mild rise within the 1.5 tolerance does not shrink the limit
  const mild = limit.update(before, ok(14, before.limit));
  assert.ok(mild.estimate >= before.estimate);
});

test('Gradient2 clamps to [minLimit, maxLimit], holds when app-limited, and pulls a stale baseline down', () => {
  const limit = gradient2();
  assert.deepEqual([limit.minLimit, limit.maxLimit, limit.settings.smoothing, limit.settings.rttTolerance, limit.settings.longWindow], [20, 200, 0.2, 1.5, 600]);
  const floor = run(limit, (s) => ok(1000, s.limit), 50, { limit: 25, estimate: 25, longRttMs: 10, longCount: 10, shortRttMs: 10 });
  assert.equal(floor.at(-1)!.limit, 20, 'never below minLimit');
  const ceiling = run(limit, (s) => ok(10, s.limit), 500);
  assert.equal(ceiling.at(-1)!.limit, 200, 'never above maxLimit');

  const busy: Gradient2State = { limit: 100, estimate: 100, longRttMs: 10, longCount: 10, shortRttMs: 10 };
  const idle = limit.update(busy, ok(100, 10));
  assert.equal(idle.limit, 100, 'inflight < limit/2: the limit holds');
  assert.ok(idle.longRttMs > 10, 'but the baseline still learns');

  // After a long overload the baseline (100) is far above the current RTT (10): decayed by 0.95
  const stale: Gradient2State = { limit: 50, estimate: 50, longRttMs: 100, longCount: 10, shortRttMs: 100 };
  const next = limit.update(stale, ok(10, 50));
  const ewma = 100 * (1 - 2 / 601) + 10 * (2 / 601);
  assert.ok(Math.abs(next.longRttMs - ewma * 0.95) < 1e-9);
});

test('limit options are validated when built', () => {
  assert.throws(() => aimd({ minLimit: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => aimd({ minLimit: 10, maxLimit: 5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => aimd({ initialLimit: 2000 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => aimd({ targetMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => aimd({ backoffRatio: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => aimd({ latencyTolerance: 0.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => vegas({ smoothing: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => vegas({ initialLimit: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => vegas({ alpha: 3 as never }), { code: 'INVALID_OPTIONS', message: 'vegas.alpha must be a function, got 3' });
  assert.throws(() => gradient2({ queueSize: 4 as never }), { code: 'INVALID_OPTIONS', message: 'gradient2.queueSize must be a function, got 4' });
  assert.throws(() => gradient2({ rttTolerance: 0.9 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => gradient2({ minLimit: 30, initialLimit: 20 }), { code: 'INVALID_OPTIONS' });
  assert.equal(aimd({ minLimit: 20 }).initial().limit, 20, 'default initial follows a raised minimum');
});
