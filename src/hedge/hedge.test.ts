import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock } from '../core/clock.js';
import { CountingClock } from '../../test/support/counting-clock.js';
import { seededRandom, type Random } from '../core/random.js';
import { CallContext } from '../core/context.js';
import type { RetryBudget, RetryBudgetSnapshot } from '../core/budget.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { ratioBudget } from '../retry/budget.js';
import { hedge, HedgeLostError } from '../index.js';
import { LatencyTracker, bucketOf, bucketUpperMs, BUCKET_COUNT } from './latency-tracker.js';

/** An abortable sleep on the virtual clock that resolves with `value`. */
function sleep<T>(clock: VirtualClock, ms: number, ctx: CallContext, value: T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const signal = ctx.signal;
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => { clock.clearTimeout(timer); reject(signal.reason); };
    const timer = clock.setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(value); }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** A small RetryBudget for tests: a fixed number of tokens. */
class FakeBudget implements RetryBudget {
  requests = 0;
  outcomes: boolean[] = [];
  acquired = 0;
  constructor(public tokens: number) {}
  recordRequest(): void { this.requests++; }
  recordOutcome(success: boolean): void { this.outcomes.push(success); }
  tryAcquire(): boolean {
    if (this.tokens <= 0) return false;
    this.tokens--;
    this.acquired++;
    return true;
  }
  snapshot(): RetryBudgetSnapshot { return { kind: 'fake', tokens: this.tokens, available: this.tokens > 0 }; }
}

function percentileOf(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * Runs `requests` calls, one per virtual ms, against a dependency where each attempt takes
 * 1 s with probability 5% and 10 ms otherwise.
 */
async function heavyTail(options: { hedged: boolean; requests: number; random: Random }) {
  const clock = new VirtualClock();
  const policy = hedge({ delayMs: 50, idempotent: true, clock });
  let backendCalls = 0;
  let abortedLosers = 0;
  const latencies: number[] = [];
  const operation = (ctx: CallContext) => {
    backendCalls++;
    const ms = options.random() < 0.05 ? 1000 : 10;
    return sleep(clock, ms, ctx, 'ok').catch((error) => {
      if (error instanceof HedgeLostError) abortedLosers++;
      throw error;
    });
  };
  const calls: Promise<void>[] = [];
  for (let i = 0; i < options.requests; i++) {
    const start = clock.now();
    const p = options.hedged ? policy.execute(operation) : operation(CallContext.root(clock, operation, new AbortController().signal));
    calls.push(p.then(() => { latencies.push(clock.now() - start); }));
    await clock.advance(1);
  }
  await clock.advance(2000);
  await Promise.all(calls);
  return { latencies, backendCalls, abortedLosers, clock, policy };
}

test('hedging cuts p99 of a 5%-at-1s dependency below 100 ms for about 5% extra load, and cancels the losers', async () => {
  const requests = 2000;
  const plain = await heavyTail({ hedged: false, requests, random: seededRandom(7) });
  assert.equal(percentileOf(plain.latencies, 99), 1000, 'without hedging the tail is the slow mode');

  const run = await heavyTail({ hedged: true, requests, random: seededRandom(7) });
  assert.equal(run.latencies.length, requests);
  const p99 = percentileOf(run.latencies, 99);
  assert.ok(p99 < 100, `p99 ${p99} ms`);
  const extraLoad = run.backendCalls / requests - 1;
  assert.ok(extraLoad > 0.03 && extraLoad < 0.07, `extra load ${extraLoad}`);
  const stats = run.policy.stats();
  assert.equal(stats.hedges, run.backendCalls - requests);
  // Every hedged call had exactly one loser still running when the winner returned, except
  // calls where both attempts were slow and the primary (started first) won.
  assert.ok(run.abortedLosers >= stats.hedges * 0.9 && run.abortedLosers <= stats.hedges, `${run.abortedLosers} losers for ${stats.hedges} hedges`);
  assert.equal(stats.scheduled, 0);
  assert.equal(run.clock.pendingTimers, 0, 'no hedge timer or loser sleep left behind');
});

test('the winner resolves the call; losers see their signal aborted with HedgeLostError, the winner does not', async () => {
  const clock = new VirtualClock();
  const policy = hedge({ delayMs: 50, maxOutstanding: 3, idempotent: true, clock });
  const signals: AbortSignal[] = [];
  const durations = [1000, 1000, 20];
  const won: number[] = [];
  policy.onHedgeWon((e) => won.push(e.attempt, e.latencyMs, e.cancelled));
  const started: number[] = [];
  policy.onHedge((e) => started.push(e.attempt, clock.now()));
  const p = policy.execute((ctx) => {
    signals.push(ctx.signal);
    return sleep(clock, durations[signals.length - 1]!, ctx, `attempt ${ctx.attempt}`);
  });
  await clock.advance(120);
  assert.equal(await p, 'attempt 3');
  assert.deepEqual(started, [2, 50, 3, 100]);
  assert.deepEqual(won, [3, 120, 2]);
  assert.equal(signals[0]!.aborted, true);
  assert.equal(signals[1]!.aborted, true);
  assert.equal(signals[2]!.aborted, false);
  const reason = signals[0]!.reason as HedgeLostError;
  assert.ok(reason instanceof HedgeLostError);
  assert.equal(reason.code, 'ABORTED');
  assert.deepEqual([reason.attempt, reason.winner], [1, 3]);
  assert.equal(clock.pendingTimers, 0);
});

test('fast primaries never start a hedge and share one timer that ends by itself', async () => {
  const clock = new CountingClock();
  const policy = hedge({ delayMs: 50, idempotent: true, clock });
  let calls = 0;
  for (let i = 0; i < 100; i++) {
    const p = policy.execute((ctx) => { calls++; return sleep(clock, 1, ctx, 'fast'); });
    await clock.advance(1);
    assert.equal(await p, 'fast');
  }
  assert.equal(calls, 100);
  assert.equal(policy.stats().hedges, 0);
  // One shared timer; an idle one no longer reaches the policy (deadline-queue.test.ts).
  assert.ok(clock.armed - 100 <= 3, `hedge timer armed ${clock.armed - 100} times for 100 sequential calls`);
  assert.equal(policy.stats().scheduled, 0, 'no settled call is left on the timer');
  await clock.advance(50);
  assert.equal(clock.pendingTimers, 0, 'nothing left once the last delay has passed');
  assert.equal(calls, 100);
});

test('with the budget exhausted no hedge starts, and the denial is reported', async () => {
  const clock = new VirtualClock();
  const budget = new FakeBudget(1);
  const policy = hedge({ delayMs: 50, idempotent: true, budget, clock });
  const denied: number[] = [];
  policy.onHedgeDenied((e) => denied.push(e.attempt));
  let calls = 0;
  const op = (ctx: CallContext) => { calls++; return sleep(clock, calls === 2 ? 10 : 1000, ctx, calls); };

  const first = policy.execute(op); // the one token pays for this call's hedge
  await clock.advance(60);
  assert.equal(await first, 2);
  assert.equal(calls, 2);

  const second = policy.execute(op); // budget spent: the slow primary runs alone
  let done = false;
  void second.then(() => { done = true; });
  await clock.advance(999);
  assert.equal(calls, 3);
  assert.equal(done, false);
  await clock.advance(1);
  assert.equal(await second, 3);
  assert.deepEqual(denied, [2]);
  assert.equal(budget.requests, 2, 'each call is recorded as one request');
  assert.equal(budget.acquired, 1);
  assert.deepEqual(policy.stats(), { calls: 2, hedges: 1, hedgeWins: 1, denied: 1, scheduled: 0 });
  assert.equal(clock.pendingTimers, 0);
});

test('under an outage (every call slow) hedging adds no more load than the shared retry budget allows', async () => {
  const run = async (withBudget: boolean) => {
    const clock = new VirtualClock();
    const budget = withBudget ? ratioBudget({ ratio: 0.1, minRetriesPerSecond: 0, clock }) : undefined;
    const policy = hedge({ delayMs: 50, idempotent: true, clock, ...(budget ? { budget } : {}) });
    let calls = 0;
    const done: Promise<unknown>[] = [];
    for (let i = 0; i < 1000; i++) {
      done.push(policy.execute((ctx) => { calls++; return sleep(clock, 1000, ctx, 1); }));
      await clock.advance(5);
    }
    await clock.runAll();
    await Promise.all(done);
    return calls / 1000 - 1;
  };
  assert.ok((await run(false)) > 0.99, 'unbudgeted hedging doubles the load of a slow dependency');
  const extra = await run(true);
  assert.ok(extra > 0.05 && extra <= 0.1 + 1e-9, `extra load with a 10% budget: ${extra}`);
});

test('a primary failing before the hedge delay fails the call at once and no hedge starts later', async () => {
  const clock = new VirtualClock();
  const policy = hedge({ delayMs: 50, maxOutstanding: 3, idempotent: true, clock });
  let calls = 0;
  const p = policy.execute(async (ctx) => {
    calls++;
    await sleep(clock, 5, ctx, null);
    throw new Error('503');
  });
  let rejectedAt = -1;
  p.catch(() => { rejectedAt = clock.now(); });
  await clock.advance(5);
  await assert.rejects(p, /503/);
  assert.equal(rejectedAt, 5);
  await clock.advance(1000);
  assert.equal(calls, 1, 'no hedge started after the failure');
  assert.equal(policy.stats().hedges, 0);
  assert.equal(policy.stats().scheduled, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer left');
});

test('a primary failing after a hedge started lets the hedge win; all failing rejects with the last error', async () => {
  const clock = new VirtualClock();
  const policy = hedge({ delayMs: 50, maxOutstanding: 3, idempotent: true, clock });
  const plan: Array<[number, string | Error]> = [[70, new Error('primary broke')], [30, 'hedge value']];
  let i = 0;
  const op = async (ctx: CallContext) => {
    const [ms, outcome] = plan[i++]!;
    const value = await sleep(clock, ms, ctx, outcome);
    if (value instanceof Error) throw value;
    return value;
  };
  const p = policy.execute(op);
  await clock.advance(80);
  assert.equal(await p, 'hedge value');

  const budget = new FakeBudget(10);
  const failing = hedge({ delayMs: 50, maxOutstanding: 3, idempotent: true, clock, budget });
  plan.splice(0, plan.length, [60, new Error('first')], [15, new Error('second')], [10, 'never started']);
  i = 0;
  const t0 = clock.now();
  const q = failing.execute(op);
  let settledAt = -1;
  q.catch(() => { settledAt = clock.now() - t0; });
  await clock.advance(500);
  await assert.rejects(q, /second/);
  assert.equal(settledAt, 65, 'fails when the last running attempt fails');
  assert.equal(i, 2, 'no third attempt starts after every attempt failed');
  assert.deepEqual(budget.outcomes, [false, false]);
  assert.equal(clock.pendingTimers, 0);
});

test('refuses operations not declared idempotent (NOT_IDEMPOTENT) unless the call is tagged safe', async () => {
  const clock = new VirtualClock();
  const strict = hedge({ delayMs: 10, clock });
  let called = 0;
  await assert.rejects(strict.execute(() => { called++; return 1; }), { code: 'NOT_IDEMPOTENT', name: 'NotIdempotentError' });
  assert.equal(called, 0);
  assert.equal(await strict.execute(() => { called++; return 2; }, { tags: { idempotent: true } }), 2);
  const lenient = hedge({ delayMs: 10, idempotent: true, clock });
  await assert.rejects(lenient.execute(() => { called++; return 3; }, { tags: { idempotent: false } }), { code: 'NOT_IDEMPOTENT' });
  assert.equal(called, 1);
});

test('the caller aborting while a hedge is pending starts no hedge', async () => {
  const clock = new VirtualClock();
  const policy = hedge({ delayMs: 50, idempotent: true, clock });
  const caller = new AbortController();
  let calls = 0;
  const p = policy.execute((ctx) => { calls++; return sleep(clock, 1000, ctx, 1); }, { signal: caller.signal });
  await clock.advance(20);
  caller.abort(new Error('client gone'));
  await assert.rejects(p, /client gone/);
  await clock.advance(100);
  assert.equal(calls, 1);
  assert.equal(clock.pendingTimers, 0);
});

test('percentile delay: fixed delay until minSamples, then max(minDelayMs, pXX) of observed latency', async () => {
  const clock = new VirtualClock();
  const policy = hedge({ percentile: 90, minSamples: 40, minDelayMs: 5, idempotent: true, clock });
  assert.equal(policy.currentDelayMs(), Infinity, 'no hedging before the distribution is known');
  const random = seededRandom(3);
  for (let i = 0; i < 40; i++) {
    const ms = 20 + Math.floor(random() * 20); // 20..39 ms
    const p = policy.execute((ctx) => sleep(clock, ms, ctx, ms));
    await clock.advance(ms);
    await p;
  }
  const delay = policy.currentDelayMs();
  assert.ok(delay >= 36 && delay <= 41, `p90 of U(20,40) is ~38, got ${delay}`);
  assert.equal(policy.stats().hedges, 0);

  const fixedFirst = hedge({ percentile: 90, delayMs: 7, minSamples: 1000, idempotent: true, clock });
  assert.equal(fixedFirst.currentDelayMs(), 7);
  const floor = hedge({ percentile: 50, minSamples: 1, minDelayMs: 25, idempotent: true, clock });
  const p = floor.execute((ctx) => sleep(clock, 1, ctx, 1));
  await clock.advance(1);
  await p;
  assert.equal(floor.currentDelayMs(), 25);
});

test('composes with a per-attempt timeout inside: a hung primary is cut off while the hedge wins', async () => {
  const clock = new VirtualClock();
  const policy = pipeline(hedge({ delayMs: 50, idempotent: true, clock }), timeout({ ms: 200, clock }));
  let n = 0;
  const p = policy.execute((ctx) => sleep(clock, ++n === 1 ? 10_000 : 10, ctx, n));
  await clock.advance(60);
  assert.equal(await p, 2);
  assert.ok((await clock.runAll()) <= 1, 'the primary was aborted, its timeout entry removed: only the idle shared timer is left');
});

test('bad options fail when the policy is built', () => {
  assert.throws(() => hedge({}), { code: 'INVALID_OPTIONS' });
  assert.throws(() => hedge({ delayMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => hedge({ percentile: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => hedge({ percentile: 101 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => hedge({ delayMs: 10, maxOutstanding: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => hedge({ delayMs: 10, minDelayMs: 10, maxDelayMs: 5 }), { code: 'INVALID_OPTIONS' });
  assert.ok(hedge({ delayMs: 0, idempotent: true }), 'a zero delay is legal (send all attempts at once)');
  assert.deepEqual(hedge({ delayMs: 10, name: 'db' }).describe().name, 'db');
});

test('latency histogram: buckets are monotonic, contiguous, and at most 6.25% wide', () => {
  assert.equal(bucketOf(0), 0);
  assert.equal(bucketOf(0x7fffffff), BUCKET_COUNT - 1);
  fc.assert(fc.property(fc.integer({ min: 0, max: 0x7ffffffe }), (units) => {
    const b = bucketOf(units);
    assert.ok(bucketOf(units + 1) - b <= 1, 'contiguous');
    assert.ok(bucketOf(units + 1) >= b, 'monotonic');
    const upper = bucketUpperMs(b) * 10;
    assert.ok(upper > units, `upper ${upper} > ${units}`);
    assert.ok(upper <= Math.max(units + 1, units * 1.0625 + 1), `upper ${upper} for ${units}`);
  }));
});

test('latency tracker: percentiles within bucket error, window rotation forgets old samples', () => {
  const tracker = new LatencyTracker({ windowSize: 1000, refreshEvery: 1 });
  assert.ok(Number.isNaN(tracker.percentile(50)));
  for (let i = 1; i <= 1000; i++) tracker.record(i); // 1..1000 ms
  const p50 = tracker.percentile(50);
  const p99 = tracker.percentile(99);
  assert.ok(p50 >= 500 && p50 <= 500 * 1.0625, `p50 ${p50}`);
  assert.ok(p99 >= 990 && p99 <= 990 * 1.0625, `p99 ${p99}`);
  for (let i = 0; i < 1000; i++) tracker.record(3); // a half-window later, only the new regime
  assert.equal(tracker.count, 1000);
  assert.ok(tracker.percentile(99) <= 3.1);
  tracker.record(-1);
  tracker.record(NaN);
  assert.equal(tracker.count, 1000, 'negative and NaN samples are ignored');
  assert.throws(() => tracker.percentile(0), { code: 'INVALID_INPUT' });
});

test('a call aborted before it arrives is refused with ABORTED: no attempt, no hedge timer, nothing recorded in the budget', async () => {
  const clock = new VirtualClock();
  const budget = ratioBudget({ clock, ratio: 0.5, minRetriesPerSecond: 10 });
  const policy = hedge({ clock, delayMs: 10, idempotent: true, budget });
  const before = budget.snapshot();
  let ran = 0;
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, AbortSignal.abort(new Error('client gone'))), { code: 'ABORTED', message: /client gone/ });
  assert.equal(ran, 0, 'the operation never ran');
  assert.equal(clock.pendingTimers, 0, 'no hedge timer');
  assert.deepEqual({ calls: policy.stats().calls, scheduled: policy.stats().scheduled }, { calls: 0, scheduled: 0 });
  assert.deepEqual(budget.snapshot(), before, 'the budget saw no request');
});
