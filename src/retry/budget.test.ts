import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { seededRandom } from '../core/random.js';
import { constantBackoff } from './backoff.js';
import { concurrencyBudget, ratioBudget, tokenBudget } from './budget.js';
import { hedge } from '../hedge/hedge.js';
import type { CallContext } from '../core/context.js';
import { retry } from './retry.js';

test('ratio budget: retries < ratio × requests + minRetriesPerSecond × window seconds', () => {
  const clock = new VirtualClock();
  const budget = ratioBudget({ ratio: 0.1, windowMs: 10_000, minRetriesPerSecond: 1, clock });
  let granted = 0;
  while (budget.tryAcquire()) granted++;
  assert.equal(granted, 10, 'the minimum alone: 1/s × 10 s');
  for (let i = 0; i < 100; i++) budget.recordRequest();
  while (budget.tryAcquire()) granted++;
  assert.equal(granted, 20, '+10% of 100 requests');
  assert.deepEqual(budget.snapshot(), { kind: 'ratio', requests: 100, retries: 20, allowance: 20, available: false });
  budget.recordOutcome(false); // ratio budgets ignore outcomes
  assert.equal(budget.tryAcquire(), false);
});

test('ratio budget: the window slides bucket by bucket and forgets old traffic', async () => {
  const clock = new VirtualClock();
  const budget = ratioBudget({ ratio: 0.5, minRetriesPerSecond: 0, windowMs: 10_000, clock });
  for (let i = 0; i < 10; i++) budget.recordRequest(); // bucket 0
  await clock.advance(5000);
  for (let i = 0; i < 10; i++) budget.recordRequest(); // bucket 5
  assert.equal(budget.snapshot().allowance, 10);
  for (let i = 0; i < 4; i++) assert.equal(budget.tryAcquire(), true); // bucket 5
  await clock.advance(4999); // t = 9999: still inside bucket 9, bucket 0 still counts
  assert.equal(budget.snapshot().requests, 20);
  await clock.advance(1); // t = 10 000: bucket 0 falls out
  assert.deepEqual(budget.snapshot(), { kind: 'ratio', requests: 10, retries: 4, allowance: 5, available: true });
  await clock.advance(5000); // bucket 5 falls out too
  assert.deepEqual(budget.snapshot(), { kind: 'ratio', requests: 0, retries: 0, allowance: 0, available: false });
  // a jump of many windows resets everything without scanning more than the ring
  for (let i = 0; i < 10; i++) budget.recordRequest();
  await clock.advance(10_000_000);
  assert.equal(budget.snapshot().requests, 0);
});

test('ratio budget: 0 is legal for ratio and minimum (no retries at all)', () => {
  const budget = ratioBudget({ ratio: 0, minRetriesPerSecond: 0, clock: new VirtualClock() });
  for (let i = 0; i < 1000; i++) budget.recordRequest();
  assert.equal(budget.tryAcquire(), false);
});

test('token budget follows gRPC retry throttling: -1 per failure, +ratio per success, retries while tokens > max/2', () => {
  const budget = tokenBudget({ maxTokens: 10, tokenRatio: 0.1 });
  assert.equal(budget.tokens, 10);
  assert.equal(budget.tryAcquire(), true);
  for (let i = 0; i < 4; i++) budget.recordOutcome(false);
  assert.equal(budget.tokens, 6);
  assert.equal(budget.tryAcquire(), true);
  budget.recordOutcome(false);
  assert.equal(budget.tokens, 5);
  assert.equal(budget.tryAcquire(), false, '5 is not > 10/2');
  assert.equal(budget.tryAcquire(), false, 'asking spends nothing and does not change the answer');
  budget.recordOutcome(true);
  assert.equal(budget.tokens, 5.1);
  assert.equal(budget.tryAcquire(), true);
  for (let i = 0; i < 20; i++) budget.recordOutcome(false);
  assert.equal(budget.tokens, 0, 'floor 0');
  for (let i = 0; i < 50; i++) budget.recordOutcome(true);
  assert.equal(budget.tokens, 5, 'exact after 50 × 0.1 (counted in thousandths)');
  assert.equal(budget.tryAcquire(), false);
  budget.recordOutcome(true);
  assert.equal(budget.tryAcquire(), true);
  for (let i = 0; i < 1000; i++) budget.recordOutcome(true);
  assert.equal(budget.tokens, 10, 'cap maxTokens');
  budget.recordRequest(); // token budgets ignore requests
  assert.deepEqual(budget.snapshot(), { kind: 'token', tokens: 10, maxTokens: 10, available: true });
});

test('bad budget options fail when built', () => {
  for (const options of [{ ratio: -0.1 }, { ratio: NaN }, { ratio: Infinity }, { windowMs: 0 }, { minRetriesPerSecond: -1 }, { buckets: 0 }, { buckets: 2.5 }]) {
    assert.throws(() => ratioBudget(options), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
  }
  for (const options of [{ maxTokens: 0 }, { maxTokens: -1 }, { tokenRatio: 0 }, { tokenRatio: 0.0001 }, { maxTokens: Infinity }]) {
    assert.throws(() => tokenBudget(options), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
  }
});

test('a 10% budget at a 50% failure rate keeps retries <= 10% of requests + the minimum (10 000 requests)', async () => {
  const clock = new VirtualClock();
  const random = seededRandom(2024);
  const budget = ratioBudget({ clock }); // defaults: 10% over 10 s, 1 retry/s minimum
  const policy = retry({ maxAttempts: 3, backoff: constantBackoff(10, { jitter: 'none' }), budget, clock });
  const requestTimes: number[] = [];
  const retryTimes: number[] = [];
  policy.onRetry(() => retryTimes.push(clock.now()));
  let calls = 0;
  const failingHalf = () => {
    calls++;
    if (random() < 0.5) throw Object.assign(new Error('HTTP 503'), { status: 503 });
    return 'ok';
  };
  const REQUESTS = 10_000;
  const pending: Promise<unknown>[] = [];
  // 100 requests per second for 100 s, ten every 100 ms
  for (let i = 0; i < REQUESTS; i += 10) {
    for (let j = 0; j < 10; j++) {
      requestTimes.push(clock.now());
      pending.push(policy.execute(failingHalf).catch((e) => e));
    }
    await clock.advance(100);
  }
  await clock.advance(1000);
  const outcomes = await Promise.all(pending);
  const seconds = 100;

  const retries = retryTimes.length;
  assert.equal(calls, REQUESTS + retries);
  assert.ok(retries <= 0.1 * REQUESTS + 1 * seconds, `${retries} retries for ${REQUESTS} requests`);
  assert.ok(retries >= 0.1 * REQUESTS, `the budget is used, not starved: ${retries}`);
  const amplification = calls / REQUESTS;
  assert.ok(amplification <= 1.11, `load amplification ${amplification}`); // unbudgeted: ~1.75
  const exhausted = outcomes.filter((e: any) => e?.code === 'RETRY_BUDGET_EXHAUSTED').length;
  assert.ok(exhausted > 2000, `failures beyond the budget surface as RETRY_BUDGET_EXHAUSTED (${exhausted})`);

  // and in every 10 s window, not only on average
  for (let start = 0; start + 10_000 <= seconds * 1000; start += 1000) {
    const inWindow = (t: number) => t >= start && t < start + 10_000;
    const windowRequests = requestTimes.filter(inWindow).length;
    const windowRetries = retryTimes.filter(inWindow).length;
    assert.ok(windowRetries <= 0.1 * windowRequests + 10, `window at ${start} ms: ${windowRetries} retries for ${windowRequests} requests`);
  }
});

test('without a budget the same traffic would retry about 75% of requests (what the budget prevents)', async () => {
  const clock = new VirtualClock();
  const random = seededRandom(2024);
  const policy = retry({ maxAttempts: 3, backoff: constantBackoff(10, { jitter: 'none' }), clock });
  let calls = 0;
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < 1000; i++) {
    pending.push(policy.execute(() => {
      calls++;
      if (random() < 0.5) throw Object.assign(new Error('HTTP 503'), { status: 503 });
      return 'ok';
    }).catch((e) => e));
  }
  await clock.advance(100);
  await Promise.all(pending);
  assert.ok(calls / 1000 > 1.6 && calls / 1000 < 1.9, `amplification ${calls / 1000}`);
});

/**
 * 100 requests per second (ten every 100 ms) for `seconds` against a dependency that fails
 * every call; returns the calls it received, the retry times and each request's outcome.
 */
async function totalOutage(budget: 'none' | 'ratio', seconds: number) {
  const clock = new VirtualClock();
  const policy = retry({
    maxAttempts: 4, backoff: constantBackoff(10, { jitter: 'none' }), clock,
    ...(budget === 'ratio' ? { budget: ratioBudget({ clock, ratio: 0.1 }) } : {}),
  });
  const retryTimes: number[] = [];
  policy.onRetry(() => retryTimes.push(clock.now()));
  let calls = 0;
  const down = () => {
    calls++;
    throw Object.assign(new Error('HTTP 503'), { status: 503 });
  };
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < seconds * 10; i++) {
    for (let j = 0; j < 10; j++) pending.push(policy.execute(down).catch((e) => e));
    await clock.advance(100);
  }
  await clock.advance(1_000);
  const outcomes = await Promise.all(pending);
  return { calls, retryTimes, outcomes };
}

test('at 100% failure, maxAttempts 4 without a budget sends exactly 4 calls per request (4× the load)', async () => {
  const { calls, outcomes } = await totalOutage('none', 10);
  assert.equal(calls, 4_000, '1 000 requests');
  assert.ok(outcomes.every((e: any) => e.code === 'RETRIES_EXHAUSTED' && e.attempts === 4));
});

test('at 100% failure, a 10% budget keeps the load <= 1.1× plus the floor of 1 retry/s (10 000 requests)', async () => {
  const { calls, retryTimes, outcomes } = await totalOutage('ratio', 100);
  const REQUESTS = 10_000;
  const retries = retryTimes.length;
  assert.equal(calls, REQUESTS + retries);
  assert.ok(retries <= 0.1 * REQUESTS + 100, `${retries} retries: at most 10% of 10 000 plus 1/s × 100 s`);
  assert.ok(retries >= 0.1 * REQUESTS, `the budget is used, not starved: ${retries}`);
  assert.ok(calls / REQUESTS <= 1.11, `load amplification ${calls / REQUESTS}`);
  assert.equal(calls, 11_100, 'each 10 s window grants exactly its allowance: 10% of 1 000 requests + 10');
  assert.ok(outcomes.filter((e: any) => e.code === 'RETRY_BUDGET_EXHAUSTED').length > 8_000);
  // In every 10 s window too (1 000 requests each): at most 100 + 10 retries.
  for (let start = 0; start + 10_000 <= 100_000; start += 1_000) {
    const inWindow = retryTimes.filter((t) => t >= start && t < start + 10_000).length;
    assert.ok(inWindow <= 110, `window at ${start} ms: ${inWindow} retries`);
  }
});

test('concurrency budget (Envoy): retries in flight <= max(minConcurrency, percent % of the calls in flight)', () => {
  const budget = concurrencyBudget({ percent: 20, minConcurrency: 3 });
  let granted = 0;
  while (budget.tryAcquire()) granted++;
  assert.equal(granted, 3, 'nothing in flight: the minimum');
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 0, retries: 3, allowance: 3, available: false });
  budget.retryEnded();
  assert.equal(budget.tryAcquire(), true, 'a retry that ended frees its place');
  for (let i = 0; i < 50; i++) budget.recordRequest();
  while (budget.tryAcquire()) granted++;
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 50, retries: 10, allowance: 10, available: false }, '20 % of 50 in flight');
  budget.recordOutcome(false); // outcomes do not matter
  for (let i = 0; i < 40; i++) budget.requestEnded();
  assert.equal(budget.snapshot().allowance, 3, 'the load fell: back to the minimum');
  for (let i = 0; i < 7; i++) budget.retryEnded();
  assert.equal(budget.tryAcquire(), false, '3 retries still in flight');
  budget.retryEnded();
  assert.equal(budget.tryAcquire(), true);
  // Unbalanced end signals never drive the counts negative.
  for (let i = 0; i < 100; i++) { budget.requestEnded(); budget.retryEnded(); }
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 0, retries: 0, allowance: 3, available: true });
  assert.throws(() => concurrencyBudget({ percent: 101 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => concurrencyBudget({ percent: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => concurrencyBudget({ minConcurrency: 1.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => concurrencyBudget({ minConcurrency: Infinity }), { code: 'INVALID_OPTIONS' });
});

/** An attempt that fails with a 503 after `ms` of virtual time, or ends early when aborted. */
function failsAfter(clock: VirtualClock, ms: number) {
  return (ctx: CallContext) => new Promise<never>((_, reject) => {
    const timer = clock.setTimeout(() => reject(Object.assign(new Error('unavailable'), { status: 503 })), ms);
    ctx.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(ctx.signal.reason); }, { once: true });
  });
}

test('concurrency budget with retry: of 10 failing calls in flight, 20 % retry at once; every call and retry is released', async () => {
  const clock = new VirtualClock();
  const budget = concurrencyBudget({ percent: 20, minConcurrency: 1 });
  const policy = retry({ clock, budget, maxAttempts: 3, backoff: constantBackoff(10, { jitter: 'none' }) });
  const outcomes = Array.from({ length: 10 }, () => policy.execute(failsAfter(clock, 100)).then(() => 'ok', (e) => e.code as string));
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 10, retries: 0, allowance: 2, available: true });
  await clock.advance(100);
  // 2 granted while 10 were in flight; each of the other 8 ended with the budget spent, and with
  // 2 calls left in flight the allowance is back to the minimum.
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 2, retries: 2, allowance: 1, available: false });
  await clock.advance(110);
  // The second attempts failed: the first to fail found the other retry still in flight (1 of 1)
  // and stopped; the second found the place free and made a third attempt.
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 1, retries: 1, allowance: 1, available: false });
  await clock.runAll();
  const codes = await Promise.all(outcomes);
  assert.equal(codes.filter((c) => c === 'RETRY_BUDGET_EXHAUSTED').length, 9);
  assert.equal(codes.filter((c) => c === 'RETRIES_EXHAUSTED').length, 1);
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 0, retries: 0, allowance: 1, available: true });
  // A call that succeeds at once (the fast path) releases its place too.
  assert.equal(await policy.execute(() => 'ok'), 'ok');
  assert.equal(budget.snapshot().active, 0);
});

test('concurrency budget with hedging: hedges count as retries in flight until they end, cancelled ones included', async () => {
  const clock = new VirtualClock();
  const budget = concurrencyBudget({ percent: 0, minConcurrency: 1 });
  const policy = hedge({ clock, delayMs: 10, maxOutstanding: 3, idempotent: true, budget });
  const slow = (ctx: CallContext) => new Promise<string>((resolve, reject) => {
    const timer = clock.setTimeout(() => resolve(`attempt ${ctx.attempt}`), 100);
    ctx.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(ctx.signal.reason); }, { once: true });
  });
  const a = policy.execute(slow);
  const b = policy.execute(slow);
  await clock.advance(10);
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 2, retries: 1, allowance: 1, available: false }, 'one hedge in flight, the other denied');
  assert.equal(policy.stats().denied, 1);
  await clock.runAll();
  assert.deepEqual(await Promise.all([a, b]), ['attempt 1', 'attempt 1']);
  assert.deepEqual(budget.snapshot(), { kind: 'concurrency', active: 0, retries: 0, allowance: 1, available: true });
});
