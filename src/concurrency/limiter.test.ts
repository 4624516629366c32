import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock } from '../core/clock.js';
import { AbortedError, ShedError, TimeoutError } from '../core/errors.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { aimd } from './limits/aimd.js';
import { vegas } from './limits/vegas.js';
import { gradient2 } from './limits/gradient2.js';
import { adaptiveLimiter, LimiterPermit, type LimitChangeEvent } from './limiter.js';
import { SampleWindow } from './sample-window.js';
import { seededRandom } from '../core/random.js';

function permits(limiter: ReturnType<typeof adaptiveLimiter>, n: number): LimiterPermit[] {
  const out: LimiterPermit[] = [];
  for (let i = 0; i < n; i++) {
    const d = limiter.tryAcquire();
    assert.ok(d.acquired, `permit ${i + 1} of ${n}`);
    out.push(d as LimiterPermit);
  }
  return out;
}

test('the limiter admits up to its limit, then returns a rejection value (never throws)', () => {
  const clock = new VirtualClock();
  const limiter = adaptiveLimiter({ limit: aimd(), window: false, clock });
  assert.equal(limiter.limit, 10);
  const held = permits(limiter, 10);
  const rejected = limiter.tryAcquire();
  assert.equal(rejected.acquired, false);
  if (!rejected.acquired) {
    assert.equal(rejected.reason, 'limit');
    assert.equal(rejected.limit, 10);
    assert.equal(rejected.inflight, 10);
    assert.ok(rejected.retryAfterMs >= 1);
  }
  held[0]!.ignore();
  assert.equal(limiter.inflight, 9);
  assert.equal(limiter.tryAcquire().acquired, true);
  assert.deepEqual(limiter.stats(), { limit: 10, inflight: 10, acquired: 11, rejected: 1, dropped: 0 });
  assert.equal(clock.pendingTimers, 0, 'the limiter uses no timers');
});

test('AIMD through the limiter, per request (window: false): RTTs come from the injected clock', async () => {
  const clock = new VirtualClock();
  const limiter = adaptiveLimiter({ limit: aimd(), window: false, clock });
  const changes: LimitChangeEvent[] = [];
  limiter.onLimitChange((e) => changes.push(e));

  const held = permits(limiter, 10);
  await clock.advance(50);
  held[0]!.success(); // 50 ms < 100 ms target, started with 1 in flight → 1·2 < 10: app-limited, no growth
  assert.equal(limiter.limit, 10);
  held[9]!.success(); // started with 10 in flight → +1
  assert.equal(limiter.limit, 11);
  held[1]!.success();
  held[1]!.success(); // second call is a no-op
  assert.equal(limiter.inflight, 7);

  await clock.advance(200); // now 250 ms for the rest: > 2 × target → ×0.9
  held[8]!.success();
  assert.equal(limiter.limit, 9, 'floor(11 × 0.9)');
  held[7]!.dropped();
  assert.equal(limiter.limit, 4, 'floor(9 × 0.5)');
  assert.equal(limiter.inflight, 5);
  assert.equal(limiter.tryAcquire().acquired, false, 'in-flight (5) above the new limit (4): refused, nobody preempted');
  for (const p of held.slice(2, 7)) p.ignore();
  const refilled = permits(limiter, 4);
  assert.equal(limiter.tryAcquire().acquired, false);
  for (const p of refilled) p.ignore();
  assert.equal(limiter.inflight, 0);
  assert.deepEqual(changes.map((c) => [c.previous, c.limit]), [[10, 11], [11, 9], [9, 4]]);
  assert.equal(changes[2]!.sample.dropped, true);
});

test('with a window, samples aggregate: a burst of drops halves the limit once per window', async () => {
  const clock = new VirtualClock();
  const limiter = adaptiveLimiter({ limit: aimd({ initialLimit: 40 }), window: { minSamples: 10, windowMs: 1000 }, clock });
  const held = permits(limiter, 30);
  await clock.advance(20);
  for (const p of held.slice(0, 29)) p.dropped();
  assert.equal(limiter.limit, 40, 'the window has not lasted 1000 ms yet');
  await clock.advance(1000);
  held[29]!.dropped();
  assert.equal(limiter.limit, 20, 'thirty drops in one window: halved once');

  // A window that lasted long enough but has too few samples stays open (not discarded)
  const few = permits(limiter, 3);
  await clock.advance(300);
  for (const p of few) p.success(); // the window opens with its first sample
  await clock.advance(2000);
  assert.equal(limiter.limit, 20);
  const more = permits(limiter, 7);
  await clock.advance(300);
  for (const p of more.slice(0, 6)) p.success();
  assert.equal(limiter.limit, 20, '9 samples over 2300 ms: still open, not discarded');
  more[6]!.success(); // the 10th sample closes it: average RTT 300 ms > 2 × 100 → ×0.9
  assert.equal(limiter.limit, 18);
});

test('sample windows: average, min and percentile RTT, max in-flight, any drop', () => {
  const avg = new SampleWindow({ minSamples: 4, windowMs: 0 });
  assert.equal(avg.add(0, 10, 1, false), undefined);
  avg.add(0, 20, 5, false);
  avg.add(0, 30, 2, true);
  assert.deepEqual(avg.add(0, 40, 3, false), { rttMs: 25, inflight: 5, dropped: true });
  assert.equal(avg.count, 0, 'a closed window starts afresh');
  assert.deepEqual([1, 2, 3, 4].map((r) => avg.add(0, r, 1, false)).at(-1), { rttMs: 2.5, inflight: 1, dropped: false });

  const min = new SampleWindow({ minSamples: 3, windowMs: 0, aggregate: 'min' });
  min.add(0, 9, 1, false);
  min.add(0, 3, 1, false);
  assert.equal(min.add(0, 7, 1, false)!.rttMs, 3);

  const p90 = new SampleWindow({ minSamples: 100, windowMs: 0, aggregate: { percentile: 0.9 } });
  const rng = seededRandom(5);
  const values = Array.from({ length: 100 }, (_, i) => i + 1).sort(() => rng() - 0.5);
  let out;
  for (const v of values) out = p90.add(0, v, 1, false);
  assert.equal(out!.rttMs, 90, 'nearest-rank p90 of 1..100');

  const noisy = new SampleWindow({ minSamples: 2, windowMs: 0, minRttMs: 1 });
  assert.equal(noisy.add(0, 0.5, 1, false), undefined);
  assert.equal(noisy.count, 0, 'too-fast successes are skipped');
  noisy.add(0, 0.5, 1, true);
  assert.equal(noisy.count, 1, 'but a fast drop still counts');

  assert.throws(() => new SampleWindow({ aggregate: { percentile: 0 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new SampleWindow({ aggregate: 'median' as any }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new SampleWindow({ minSamples: 0 }), { code: 'INVALID_OPTIONS' });
});

test('property: the limiter never admits more than its current limit (any algorithm, any outcome sequence)', () => {
  const algorithms = [
    () => aimd({ initialLimit: 5, maxLimit: 50 }),
    () => vegas({ initialLimit: 5, maxLimit: 50, random: seededRandom(9) }),
    () => gradient2({ initialLimit: 5, minLimit: 1, maxLimit: 50 }),
  ];
  const op = fc.oneof(
    fc.record({ kind: fc.constant('acquire' as const) }),
    fc.record({ kind: fc.constant('release' as const), index: fc.nat(), outcome: fc.constantFrom('success', 'dropped', 'ignore') as fc.Arbitrary<'success' | 'dropped' | 'ignore'>, advance: fc.integer({ min: 0, max: 400 }) }),
  );
  fc.assert(
    fc.property(fc.nat({ max: 2 }), fc.boolean(), fc.array(op, { maxLength: 300 }), (algo, windowed, ops) => {
      const clock = new VirtualClock();
      const limiter = adaptiveLimiter({ limit: algorithms[algo]!() as any, window: windowed ? { minSamples: 3, windowMs: 50 } : false, clock });
      const held: LimiterPermit[] = [];
      for (const o of ops) {
        if (o.kind === 'acquire') {
          const before = limiter.inflight;
          const d = limiter.tryAcquire();
          if (d.acquired) {
            held.push(d);
            if (limiter.inflight > limiter.limit) return false;
            if (before >= limiter.limit) return false;
          } else if (before < limiter.limit) {
            return false; // refused below the limit
          }
        } else if (held.length > 0) {
          clock.advanceSync(o.advance);
          const [p] = held.splice(o.index % held.length, 1);
          p!.release(o.outcome);
        }
        if (limiter.inflight !== held.length) return false;
        if (limiter.limit < limiter.algorithm.minLimit || limiter.limit > limiter.algorithm.maxLimit) return false;
      }
      return true;
    }),
    { numRuns: 300, seed: 42 },
  );
});

test('policy form: over the limit it throws a stack-less ShedError (SHED) with a retry-after hint', async () => {
  const clock = new VirtualClock();
  const limiter = adaptiveLimiter({ limit: aimd({ initialLimit: 2 }), window: false, clock });
  const slow = () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('ok'), 40));
  const a = limiter.execute(slow);
  const b = limiter.execute(slow);
  let called = false;
  const c = limiter.execute(() => { called = true; return 'never'; });
  await assert.rejects(c, (e: unknown) => {
    assert.ok(e instanceof ShedError);
    assert.equal(e.code, 'SHED');
    assert.equal(e.reason, 'concurrency-limit');
    assert.ok(e.retryAfterMs >= 1);
    assert.equal(e.stack?.split('\n').length, 1, 'no stack frames captured');
    return true;
  });
  assert.equal(called, false);
  await clock.advance(40);
  assert.deepEqual(await Promise.all([a, b]), ['ok', 'ok']);
  assert.equal(limiter.inflight, 0);
  assert.equal(limiter.limit, 4, 'two fast successes with the limit in use: +1 each');
  // the retry-after hint follows the observed RTT
  const running = [1, 2, 3, 4].map(() => limiter.execute(slow));
  await assert.rejects(limiter.execute(slow), (err: any) => err.retryAfterMs === 40);
  await clock.advance(40);
  await Promise.all(running);
});

test('policy form classifies timeouts and failures as drops, caller aborts as ignored', async () => {
  const clock = new VirtualClock();
  const limiter = adaptiveLimiter({ limit: aimd({ initialLimit: 20 }), window: false, clock });
  const guarded = pipeline(limiter, timeout({ ms: 50, clock }));
  const hang = guarded.execute((ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))));
  const check = assert.rejects(hang, (e) => e instanceof TimeoutError);
  await clock.advance(50);
  await check;
  assert.equal(limiter.limit, 10, 'a timeout is a drop: ×0.5');

  await assert.rejects(limiter.execute(() => { throw new Error('boom'); }), /boom/);
  assert.equal(limiter.limit, 5, 'a synchronous failure is a drop');
  await assert.rejects(limiter.execute(() => Promise.reject(new AbortedError())), { code: 'ABORTED' });
  assert.equal(limiter.limit, 5, 'an abort says nothing about capacity');
  assert.equal(limiter.inflight, 0);

  const lenient = adaptiveLimiter({ limit: aimd(), window: false, clock, classify: () => 'ignore' });
  await assert.rejects(lenient.execute(() => Promise.reject(new Error('404'))));
  assert.equal(lenient.limit, 10);
  assert.equal(clock.pendingTimers, 0);
});

test('describe() and option validation', () => {
  const limiter = adaptiveLimiter({ limit: vegas({ random: seededRandom(1) }), name: 'inbound' });
  const d = limiter.describe();
  assert.equal(d.kind, 'adaptive-concurrency');
  assert.equal(d.name, 'inbound');
  assert.equal((d.options.limit as any).kind, 'vegas');
  assert.equal((d.options.window as any).minSamples, 10);
  assert.throws(() => adaptiveLimiter({} as any), { code: 'INVALID_OPTIONS' });
  assert.throws(() => adaptiveLimiter({ limit: aimd(), window: { windowMs: -1 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => adaptiveLimiter({ limit: aimd(), retryAfterMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.equal(adaptiveLimiter({ limit: aimd(), retryAfterMs: 0 }).describe().kind, 'adaptive-concurrency', '0 is a legal value');
});
