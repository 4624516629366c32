import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { seededRandom, type Random } from '../core/random.js';
import { adaptiveThrottle, type AdaptiveThrottlePolicy } from './throttle.js';
import { CountWindow } from './window.js';

interface Backend { healthy: boolean; calls: number }

/** One request: asks the throttle for its current probability, then calls through it. */
async function request(policy: AdaptiveThrottlePolicy, backend: Backend): Promise<{ p: number; shed: boolean }> {
  const p = policy.rejectionProbability();
  try {
    await policy.execute(() => {
      backend.calls++;
      if (!backend.healthy) throw Object.assign(new Error('overloaded'), { status: 503 });
      return 'ok';
    });
    return { p, shed: false };
  } catch (error) {
    return { p, shed: (error as { code?: string }).code === 'SHED' };
  }
}

/** `seconds` of traffic at 100 requests/s; per-second observed shed fraction and expected (sum of p). */
async function traffic(clock: VirtualClock, policy: AdaptiveThrottlePolicy, backend: Backend, seconds: number) {
  const perSecond: Array<{ shed: number; expected: number; variance: number; backendCalls: number }> = [];
  for (let s = 0; s < seconds; s++) {
    let shed = 0;
    let expected = 0;
    let variance = 0;
    const before = backend.calls;
    for (let i = 0; i < 100; i++) {
      clock.advanceSync(10);
      const r = await request(policy, backend);
      if (r.shed) shed++;
      expected += r.p;
      variance += r.p * (1 - r.p);
    }
    perSecond.push({ shed, expected, variance, backendCalls: backend.calls - before });
  }
  return perSecond;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test('a healthy backend is never throttled, and no random number is drawn', async () => {
  const clock = new VirtualClock();
  let draws = 0;
  const random: Random = () => { draws++; return 0; };
  const policy = adaptiveThrottle({ clock, random });
  const backend = { healthy: true, calls: 0 };
  const seconds = await traffic(clock, policy, backend, 30);
  assert.equal(sum(seconds.map((s) => s.shed)), 0);
  assert.equal(draws, 0);
  assert.equal(policy.snapshot().probability, 0);
  assert.deepEqual({ ...policy.snapshot(), probability: undefined }, { requests: 3000, accepts: 3000, probability: undefined, k: 2 });
});

test('with the backend rejecting everything, local rejections follow (requests - 2*accepts)/(requests + 1) and converge to ~1', async () => {
  const clock = new VirtualClock();
  const policy = adaptiveThrottle({ clock, random: seededRandom(11) });
  const backend = { healthy: true, calls: 0 };
  await traffic(clock, policy, backend, 60); // a minute of healthy history in the 2-minute window
  backend.healthy = false;
  const outage = await traffic(clock, policy, backend, 240);

  // The formula, by hand, against the counters.
  const snap = policy.snapshot();
  assert.ok(Math.abs(snap.probability - Math.max(0, (snap.requests - 2 * snap.accepts) / (snap.requests + 1))) < 1e-12);

  // Observed rejections match the probabilities the throttle reported, within 4 sigma, in each 20 s slice.
  for (let from = 0; from < 240; from += 20) {
    const slice = outage.slice(from, from + 20);
    const observed = sum(slice.map((s) => s.shed));
    const expected = sum(slice.map((s) => s.expected));
    const sigma = Math.sqrt(sum(slice.map((s) => s.variance)));
    assert.ok(Math.abs(observed - expected) <= 4 * sigma + 1, `slice ${from}s: observed ${observed}, expected ${expected.toFixed(1)} ± ${sigma.toFixed(1)}`);
  }
  // At first the healthy history lets traffic through (requests < 2 * accepts): no throttling.
  assert.equal(outage[0]!.shed, 0);
  // Once the healthy minute has slid out, accepts are 0 and p = requests / (requests + 1) ≈ 1.
  const late = outage.slice(200);
  const lateShedFraction = sum(late.map((s) => s.shed)) / (late.length * 100);
  assert.ok(lateShedFraction > 0.99, `late shed fraction ${lateShedFraction}`);
  assert.ok(policy.rejectionProbability() > 0.999);
  assert.ok(sum(late.map((s) => s.backendCalls)) < 40, 'the backend sees only a trickle');
});

test('when the backend recovers, throttling fades', async () => {
  // Recovery speed scales with the window (each accept lets ~K more requests through, and
  // the rejected requests must slide out of it); a 30 s window keeps this test short.
  const clock = new VirtualClock();
  const policy = adaptiveThrottle({ clock, windowMs: 30_000, buckets: 30, random: seededRandom(5) });
  const backend = { healthy: false, calls: 0 };
  await traffic(clock, policy, backend, 60);
  assert.ok(policy.rejectionProbability() > 0.99);
  backend.healthy = true;
  const recovery = await traffic(clock, policy, backend, 300);
  const perSlice = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((m) => sum(recovery.slice(m * 30, m * 30 + 30).map((s) => s.shed)) / 3000);
  const shown = perSlice.map((x) => x.toFixed(3)).join(', ');
  for (let i = 1; i < perSlice.length; i++) assert.ok(perSlice[i]! <= perSlice[i - 1]! + 0.002, `shed per 30 s: ${shown}`);
  assert.ok(perSlice[0]! > 0.5, `still throttling right after recovery: ${shown}`);
  assert.equal(perSlice[9], 0, `faded: ${shown}`);
  assert.equal(policy.rejectionProbability(), 0);

  // Capping the probability keeps a probe stream flowing, so recovery starts at once.
  const capped = adaptiveThrottle({ clock, windowMs: 30_000, buckets: 30, maxRejectionProbability: 0.9, random: seededRandom(5) });
  backend.healthy = false;
  await traffic(clock, capped, backend, 60);
  backend.healthy = true;
  const fast = await traffic(clock, capped, backend, 300);
  const fadedAfter = (seconds: Array<{ shed: number }>) => seconds.findLastIndex((s) => s.shed > 0) + 1;
  assert.ok(fadedAfter(fast) < fadedAfter(recovery) * 0.5, `capped faded after ${fadedAfter(fast)} s, uncapped after ${fadedAfter(recovery)} s`);
});

test('rejections are SHED, stack-less ShedErrors, and reported as events', async () => {
  const clock = new VirtualClock();
  const policy = adaptiveThrottle({ clock, random: () => 0 });
  const events: number[] = [];
  policy.onThrottled((e) => events.push(e.requests));
  await assert.rejects(policy.execute(() => { throw new Error('503'); }), /503/);
  const error = await policy.execute(() => 1).catch((e: unknown) => e) as Error & { code: string };
  assert.equal(error.code, 'SHED');
  assert.equal(error.name, 'ShedError');
  assert.ok(!error.stack?.includes('\n    at '), 'no stack captured');
  assert.deepEqual(events, [2]);
  assert.equal(policy.throttled, 1);
});

test('4xx answers (other than 408/429) count as accepts; 429 and 5xx do not; a custom classifier wins', async () => {
  const clock = new VirtualClock();
  const statusError = (status: number) => Object.assign(new Error(`HTTP ${status}`), { status });
  const notFound = adaptiveThrottle({ clock });
  for (let i = 0; i < 100; i++) await notFound.execute(() => { throw statusError(404); }).catch(() => undefined);
  assert.deepEqual([notFound.snapshot().requests, notFound.snapshot().accepts], [100, 100]);
  const limited = adaptiveThrottle({ clock, random: () => 0.999999 });
  for (let i = 0; i < 10; i++) await limited.execute(() => { throw Object.assign(new Error('429'), { statusCode: 429 }); }).catch(() => undefined);
  assert.equal(limited.snapshot().accepts, 0);
  const custom = adaptiveThrottle({ clock, isAccepted: (e) => (e as Error).message === 'fine' });
  await custom.execute(() => { throw new Error('fine'); }).catch(() => undefined);
  assert.equal(custom.snapshot().accepts, 1);
});

test('maxRejectionProbability caps the local rejection; the window forgets old counts', async () => {
  const clock = new VirtualClock();
  const policy = adaptiveThrottle({ clock, maxRejectionProbability: 0.9, windowMs: 10_000, buckets: 10, random: seededRandom(1) });
  const backend = { healthy: false, calls: 0 };
  await traffic(clock, policy, backend, 20);
  assert.equal(policy.rejectionProbability(), 0.9);
  assert.ok(policy.snapshot().requests <= 1000 + 100, 'only the last 10 s are counted');
  clock.advanceSync(10_000);
  assert.deepEqual(policy.snapshot(), { requests: 0, accepts: 0, probability: 0, k: 2 });
  policy.reset();
  assert.throws(() => adaptiveThrottle({ k: 0.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => adaptiveThrottle({ windowMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => adaptiveThrottle({ buckets: 1.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => adaptiveThrottle({ isAccepted: [404] as never }), { code: 'INVALID_OPTIONS', message: 'throttle.isAccepted must be a function, got an array' });
  assert.throws(() => adaptiveThrottle({ maxRejectionProbability: 2 }), { code: 'INVALID_OPTIONS' });
});

test('count window: buckets roll with time, totals stay exact', () => {
  const w = new CountWindow(1000, 4, 0); // 250 ms buckets
  w.addRequest(); w.addAccept();
  w.roll(250); w.addRequest();
  w.roll(500); w.addRequest(); w.addRequest();
  assert.deepEqual([w.requests, w.accepts], [4, 1]);
  w.roll(999);
  assert.deepEqual([w.requests, w.accepts], [4, 1]);
  w.roll(1000); // the first bucket [0, 250) slid out
  assert.deepEqual([w.requests, w.accepts], [3, 0]);
  w.roll(1250);
  assert.deepEqual([w.requests, w.accepts], [2, 0]);
  w.roll(10_000);
  assert.deepEqual([w.requests, w.accepts], [0, 0]);
});
