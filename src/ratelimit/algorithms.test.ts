import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock } from '../core/clock.js';
import { ALGORITHMS, createAlgorithm, decide, TokenBucket } from './algorithms/registry.js';
import { refillTokens } from './algorithms/token-bucket.js';
import { MemoryRateLimiter } from './memory.js';
import type { AlgorithmKind } from './types.js';

test('token bucket capacity 10 at 2 tokens/s: exact fractional refill, a denial says wait 700 ms, acquire waits exactly that', async () => {
  const clock = new VirtualClock();
  const limiter = new MemoryRateLimiter({ algorithm: 'token-bucket', capacity: 10, limit: 2, intervalMs: 1000, clock });
  const algo = limiter.algorithm as TokenBucket;
  const tokens = () => algo.tokensAt(Float64Array.from(limiter.inspect('k')!), 0, clock.now());

  let d = limiter.consume('k', 3);
  assert.deepEqual([d.allowed, d.remaining, d.retryAfterMs], [true, 7, 0]);
  clock.advanceSync(100);
  d = limiter.consume('k', 3);
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 4); // 7.2 − 3 = 4.2 tokens
  clock.advanceSync(100);
  d = limiter.consume('k', 3);
  assert.equal(d.allowed, true);
  assert.equal(d.remaining, 1); // 1.4 tokens
  clock.advanceSync(100);
  assert.ok(Math.abs(tokens() - 1.6) < 1e-9, `1.6 tokens at 0.3 s, got ${tokens()}`);

  // Non-blocking: denied at once, as a value, with the exact wait: not "1 s for 2 more", as a table
  // that ignores the refill would say; 0.6 tokens have refilled by 0.3 s, so 1.4 more take 0.7 s.
  d = limiter.consume('k', 3);
  assert.equal(d.allowed, false);
  assert.equal(d.retryAfterMs, 700);
  assert.equal(d.remaining, 1);
  assert.ok(Math.abs(tokens() - 1.6) < 1e-9, 'a denial takes nothing');

  // Blocking: waits exactly 0.7 s on the injected clock, then passes with the bucket at 0.
  let resolvedAt = -1;
  const p = limiter.acquire('k', { cost: 3, maxWaitMs: 5000 }).then((x) => { resolvedAt = clock.now(); return x; });
  await clock.advance(699);
  assert.equal(resolvedAt, -1);
  await clock.advance(1);
  const acquired = await p;
  assert.equal(acquired.allowed, true);
  assert.equal(resolvedAt, 1000);
  assert.equal(acquired.remaining, 0);
  assert.ok(tokens() >= 0 && tokens() < 1e-9);

  // A blocking acquire whose wait exceeds maxWaitMs resolves denied immediately.
  const q = await limiter.acquire('k', { cost: 1, maxWaitMs: 100 });
  assert.equal(q.allowed, false);
  assert.equal(q.retryAfterMs, 500);
  assert.equal(clock.now(), 1000);
});

test('burst of C passes, C+1 is denied; tokens never exceed capacity', () => {
  const clock = new VirtualClock();
  for (const algorithm of ['token-bucket', 'gcra'] as const) {
    const limiter = new MemoryRateLimiter({ algorithm, limit: 5, intervalMs: 1000, capacity: 20, clock });
    for (let i = 0; i < 20; i++) assert.equal(limiter.consume(`${algorithm}`).allowed, true, `${algorithm} request ${i + 1}`);
    const d = limiter.consume(`${algorithm}`);
    assert.equal(d.allowed, false);
    assert.equal(d.retryAfterMs, 200);
    clock.advanceSync(3_600_000); // an hour idle
    const after = limiter.consume(`${algorithm}`, 0);
    assert.equal(after.remaining, 20, 'refill stops at capacity');
    for (let i = 0; i < 20; i++) assert.equal(limiter.consume(`${algorithm}`).allowed, true);
    assert.equal(limiter.consume(`${algorithm}`).allowed, false);
  }
});

test('every algorithm: burst of limit passes, the next is denied with a positive wait; cost above the limit never passes', () => {
  for (const algorithm of ALGORITHMS) {
    const clock = new VirtualClock(10_000);
    const limiter = new MemoryRateLimiter({ algorithm, limit: 4, intervalMs: 1000, clock });
    for (let i = 0; i < 4; i++) assert.equal(limiter.consume('a').allowed, true, `${algorithm} #${i}`);
    const denied = limiter.consume('a');
    assert.equal(denied.allowed, false, algorithm);
    assert.ok(denied.retryAfterMs > 0 && denied.retryAfterMs <= 2000, `${algorithm} retryAfter ${denied.retryAfterMs}`);
    assert.equal(denied.limit, 4);
    assert.ok(denied.resetAt > clock.now());
    clock.advanceSync(denied.retryAfterMs);
    assert.equal(limiter.consume('a').allowed, true, `${algorithm} passes after retryAfterMs`);
    const tooBig = limiter.consume('b', 5);
    assert.equal(tooBig.allowed, false);
    assert.equal(tooBig.retryAfterMs, Infinity);
  }
});

test('fixed window shows its edge artifact; the sliding log does not', () => {
  const clock = new VirtualClock(0);
  const fixed = new MemoryRateLimiter({ algorithm: 'fixed-window', limit: 10, intervalMs: 1000, clock });
  const log = new MemoryRateLimiter({ algorithm: 'sliding-window-log', limit: 10, intervalMs: 1000, clock });
  const counter = new MemoryRateLimiter({ algorithm: 'sliding-window-counter', limit: 10, intervalMs: 1000, clock });
  clock.advanceSync(990);
  let f = 0, l = 0, c = 0;
  for (let i = 0; i < 10; i++) { f += +fixed.consume('k').allowed; l += +log.consume('k').allowed; c += +counter.consume('k').allowed; }
  clock.advanceSync(20); // t = 1010: a new fixed window
  for (let i = 0; i < 10; i++) { f += +fixed.consume('k').allowed; l += +log.consume('k').allowed; c += +counter.consume('k').allowed; }
  assert.equal(f, 20, 'fixed window: 20 within 20 ms');
  assert.equal(l, 10, 'sliding log: exactly 10 in any second');
  assert.equal(c, 10, 'sliding counter: previous window still weighs 99%');
});

test('the functional form is pure and matches the in-place kernel', () => {
  const tb = createAlgorithm({ algorithm: 'token-bucket', limit: 2, intervalMs: 1000, capacity: 10 });
  const first = decide(tb, undefined, 0, 3);
  assert.deepEqual(first.decision, { allowed: true, remaining: 7, resetAfterMs: 1500, retryAfterMs: 0 });
  assert.deepEqual(first.state, [7, 0]);
  const frozen = Object.freeze([...first.state]);
  const second = decide(tb, frozen, 500, 8);
  assert.equal(second.decision.allowed, true);
  assert.deepEqual(second.state, [0, 500]);
  assert.deepEqual(frozen, [7, 0], 'input state untouched');
  const gcra = createAlgorithm({ algorithm: 'gcra', limit: 2, intervalMs: 1000, capacity: 10 });
  assert.deepEqual(decide(gcra, undefined, 0, 3).state, [1500]);
});

test('bad options fail at build time; bad input at call time gets INVALID_INPUT', () => {
  assert.throws(() => new MemoryRateLimiter({ limit: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new MemoryRateLimiter({ limit: 5, intervalMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new MemoryRateLimiter({ limit: 5, algorithm: 'leaky' as AlgorithmKind }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new MemoryRateLimiter({ limit: 5, algorithm: 'fixed-window', capacity: 10 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new MemoryRateLimiter({ limit: 5, maxKeys: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new MemoryRateLimiter({ limit: 5, maxKeys: 2 ** 24 + 1 }), { code: 'INVALID_OPTIONS', message: /maxKeys must be <= 16777216/ });
  assert.throws(() => new MemoryRateLimiter({ limit: 2.5, algorithm: 'sliding-window-log' }), { code: 'INVALID_OPTIONS' });
  const limiter = new MemoryRateLimiter({ limit: 5, maxKeys: 1 });
  assert.throws(() => limiter.consume('k', -1), { code: 'INVALID_INPUT' });
  assert.throws(() => limiter.consume('k', NaN), { code: 'INVALID_INPUT' });
  assert.throws(() => limiter.consume('k', '3' as unknown as number), { code: 'INVALID_INPUT' });
  assert.throws(() => limiter.consume(42 as unknown as string), { code: 'INVALID_INPUT' });
  const log = new MemoryRateLimiter({ limit: 5, algorithm: 'sliding-window-log' });
  assert.throws(() => log.consume('k', 1.5), { code: 'INVALID_INPUT' });
});

// ---- property tests: no algorithm ever allows more than it promises ----

interface Step { dt: number; cost: number }
const stepArb = fc.record({
  dt: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 50 }), fc.integer({ min: 0, max: 3000 })),
  cost: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 6 })),
});

function run(algorithm: AlgorithmKind, limit: number, intervalMs: number, capacity: number | undefined, steps: Step[], start: number) {
  const clock = new VirtualClock(start);
  const limiter = new MemoryRateLimiter({ algorithm, limit, intervalMs, capacity, clock });
  const allowed: { t: number; cost: number }[] = [];
  for (const s of steps) {
    clock.advanceSync(s.dt);
    const d = limiter.consume('k', s.cost);
    if (d.allowed) allowed.push({ t: clock.now(), cost: s.cost });
    assert.ok(d.remaining >= 0 && d.remaining <= limiter.limit, `remaining ${d.remaining}`);
    assert.ok(d.allowed ? d.retryAfterMs === 0 : d.retryAfterMs > 0);
    if (!d.allowed && d.retryAfterMs !== Infinity) {
      // retryAfterMs is exact: the same request passes then, and not 1 ms earlier.
      const state = limiter.inspect('k')!;
      const at = clock.now() + d.retryAfterMs;
      assert.equal(decide(limiter.algorithm, state, at, s.cost).decision.allowed, true, `${algorithm} passes after retryAfterMs`);
      if (d.retryAfterMs > 1) assert.equal(decide(limiter.algorithm, state, at - 1, s.cost).decision.allowed, false, `${algorithm} not earlier`);
    }
    if (algorithm === 'token-bucket') {
      const tokens = limiter.inspect('k')![0]!;
      assert.ok(tokens >= 0 && tokens <= limiter.limit + 1e-9, `tokens ${tokens} within [0, capacity]`);
    }
  }
  return allowed;
}

/** Sum of costs allowed in [from, to] (closed) or (from, to] (half-open). */
function sumIn(allowed: { t: number; cost: number }[], from: number, to: number, openStart: boolean): number {
  let s = 0;
  for (const a of allowed) if ((openStart ? a.t > from : a.t >= from) && a.t <= to) s += a.cost;
  return s;
}

for (const algorithm of ['token-bucket', 'gcra'] as const) {
  test(`property: ${algorithm} admits at most capacity + rate × Δ over any interval`, () => {
    fc.assert(fc.property(
      fc.array(stepArb, { maxLength: 120 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 10_000 }),
      (steps, limit, capacity, start) => {
        const allowed = run(algorithm, limit, 1000, capacity, steps, start);
        for (let i = 0; i < allowed.length; i++) {
          for (let j = i; j < allowed.length; j++) {
            const span = allowed[j]!.t - allowed[i]!.t;
            const admitted = sumIn(allowed, allowed[i]!.t, allowed[j]!.t, false);
            assert.ok(admitted <= capacity + (limit * span) / 1000 + 1e-6, `${admitted} in ${span} ms`);
          }
        }
      },
    ), { numRuns: 300 });
  });
}

test('property: sliding-window-log admits at most limit in any window of intervalMs', () => {
  fc.assert(fc.property(fc.array(stepArb, { maxLength: 120 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 10_000 }), (steps, limit, start) => {
    const allowed = run('sliding-window-log', limit, 1000, undefined, steps, start);
    for (const a of allowed) assert.ok(sumIn(allowed, a.t - 1000, a.t, true) <= limit);
  }), { numRuns: 300 });
});

for (const algorithm of ['fixed-window', 'sliding-window-counter'] as const) {
  test(`property: ${algorithm} admits at most limit per aligned window and 2 × limit in any window`, () => {
    fc.assert(fc.property(fc.array(stepArb, { maxLength: 120 }), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 10_000 }), (steps, limit, start) => {
      const allowed = run(algorithm, limit, 1000, undefined, steps, start);
      const perWindow = new Map<number, number>();
      for (const a of allowed) perWindow.set(Math.floor(a.t / 1000), (perWindow.get(Math.floor(a.t / 1000)) ?? 0) + a.cost);
      for (const [, n] of perWindow) assert.ok(n <= limit);
      for (const a of allowed) assert.ok(sumIn(allowed, a.t - 1000, a.t, true) <= 2 * limit);
    }), { numRuns: 300 });
  });
}

test('property: refunds never lift a key above its limit and penalties never below empty', () => {
  fc.assert(fc.property(
    fc.constantFrom(...ALGORITHMS),
    fc.array(fc.record({ op: fc.constantFrom('consume', 'refund', 'penalty'), dt: fc.integer({ min: 0, max: 700 }), cost: fc.integer({ min: 0, max: 5 }) }), { maxLength: 80 }),
    (algorithm, ops) => {
      const clock = new VirtualClock(123);
      const limiter = new MemoryRateLimiter({ algorithm, limit: 5, intervalMs: 1000, clock });
      for (const op of ops) {
        clock.advanceSync(op.dt);
        if (op.op === 'refund') limiter.refund('k', op.cost);
        else if (op.op === 'penalty') limiter.penalty('k', op.cost);
        else limiter.consume('k', op.cost);
        const peek = limiter.peek('k', 0);
        assert.ok(peek.remaining >= 0 && peek.remaining <= 5, `${algorithm} remaining ${peek.remaining}`);
      }
    },
  ), { numRuns: 300 });
});

test('refillTokens: the one token-bucket refill: rate × elapsed up to the capacity, nothing when time stood still or stepped back, a 1/share slice of rate and capacity', () => {
  assert.equal(refillTokens(0, 500, 10, 1000, 20), 5);
  assert.equal(refillTokens(18, 500, 10, 1000, 20), 20, 'never above the capacity');
  assert.equal(refillTokens(-3, 500, 10, 1000, 20), 2, 'a debt is repaid by the refill');
  assert.equal(refillTokens(4, 0, 10, 1000, 20), 4);
  assert.equal(refillTokens(4, -100, 10, 1000, 20), 4, 'a clock stepping back refills nothing');
  assert.equal(refillTokens(0, 49, 1, 49, 20), 1, '(elapsed × limit) / interval: exact where elapsed × (limit / interval) gives 0.9999999999999999');
  assert.equal(refillTokens(0, 1000, 10, 1000, 20, 4), 2.5, 'a quarter share refills at a quarter of the rate');
  assert.equal(refillTokens(4, 1000, 10, 1000, 20, 4), 5, 'and holds a quarter of the capacity');
});
