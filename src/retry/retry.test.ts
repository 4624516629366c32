import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock, flushPromises } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { CircuitOpenError, RetryBudgetExhaustedError, TimeoutError } from '../core/errors.js';
import { BasePolicy, pipeline, type Next, type PolicyDescription } from '../core/policy.js';
import { seededRandom } from '../core/random.js';
import { timeout } from '../timeout/timeout.js';
import { constantBackoff, exponentialBackoff, type Backoff } from './backoff.js';
import { concurrencyBudget, ratioBudget, tokenBudget } from './budget.js';
import { retry, type GiveUpEvent, type RetryEvent } from './retry.js';

function httpError(status: number, headers?: unknown): Error {
  return Object.assign(new Error(`HTTP ${status}`), { status, headers });
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: any };

/** Fires virtual timers until the call has ended, then returns how it ended. */
async function settle<T>(clock: VirtualClock, promise: Promise<T>): Promise<Settled<T>> {
  let outcome: Settled<T> | undefined;
  promise.then((value) => { outcome = { ok: true, value }; }, (error) => { outcome = { ok: false, error }; });
  await flushPromises();
  while (outcome === undefined) {
    const at = clock.nextTimerAt();
    if (at === undefined) throw new Error('the call is stuck: pending with no timer left');
    await clock.advanceTo(at);
  }
  return outcome;
}

/** An operation that fails with the given errors in turn, then returns 'ok'; records call times. */
function scripted(clock: VirtualClock, failures: unknown[]) {
  const calls: number[] = [];
  const attempts: number[] = [];
  const op = (ctx: CallContext) => {
    calls.push(clock.now());
    attempts.push(ctx.attempt);
    const failure = failures[calls.length - 1];
    if (failure !== undefined) throw failure;
    return 'ok';
  };
  return { op, calls, attempts };
}

const gaps = (times: number[]) => times.slice(1).map((t, i) => t - times[i]!);

test('exponential delays are 100/200/400 ms without jitter, and within the band with jitter', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 4, backoff: { kind: 'exponential', baseDelayMs: 100, jitter: 'none' }, clock });
  const { op, calls, attempts } = scripted(clock, [httpError(503), httpError(503), httpError(503)]);
  const outcome = await settle(clock, policy.execute(op));
  assert.deepEqual(outcome, { ok: true, value: 'ok' });
  assert.deepEqual(calls, [0, 100, 300, 700]);
  assert.deepEqual(attempts, [1, 2, 3, 4], 'each attempt sees its number in the context');

  for (const [jitter, low] of [['full', 0], ['equal', 0.5]] as const) {
    for (let seed = 0; seed < 50; seed++) {
      const c = new VirtualClock();
      const p = retry({ maxAttempts: 4, backoff: { baseDelayMs: 100, jitter }, clock: c, random: seededRandom(seed) });
      const s = scripted(c, [httpError(503), httpError(503), httpError(503)]);
      await settle(c, p.execute(s.op));
      gaps(s.calls).forEach((gap, i) => {
        const d = 100 * 2 ** i;
        assert.ok(gap >= d * low && gap <= d, `${jitter} seed ${seed}: gap ${gap} outside [${d * low}, ${d}]`);
      });
    }
  }
});

test('the default policy: 3 total calls, jittered exponential backoff from 100 ms', async () => {
  const clock = new VirtualClock();
  const policy = retry({ clock, random: seededRandom(5) });
  const { op, calls } = scripted(clock, [httpError(503), httpError(503), httpError(503), httpError(503)]);
  const outcome = await settle(clock, policy.execute(op));
  assert.equal(calls.length, 3);
  assert.ok(!outcome.ok && outcome.error.code === 'RETRIES_EXHAUSTED');
  const [g1, g2] = gaps(calls);
  assert.ok(g1! <= 100 && g2! <= 200);
});

test('regression: maxAttempts counts total calls ("max_retries" meaning attempts): 3 → exactly 3 calls', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 3, backoff: constantBackoff(10), clock });
  const last = httpError(503);
  const { op, calls } = scripted(clock, [httpError(503), httpError(503), last, httpError(503), httpError(503)]);
  const outcome = await settle(clock, policy.execute(op));
  assert.equal(calls.length, 3);
  assert.ok(!outcome.ok);
  assert.equal(outcome.error.code, 'RETRIES_EXHAUSTED');
  assert.equal(outcome.error.attempts, 3);
  assert.equal(outcome.error.reason, 'max-attempts');
  assert.equal(outcome.error.cause, last, 'the last error is the cause');
});

test('maxAttempts 1 means no retry', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 1, clock });
  const first = httpError(503);
  const { op, calls } = scripted(clock, [first, httpError(503)]);
  const outcome = await settle(clock, policy.execute(op));
  assert.equal(calls.length, 1);
  assert.ok(!outcome.ok && outcome.error.code === 'RETRIES_EXHAUSTED' && outcome.error.attempts === 1 && outcome.error.cause === first);
});

test('a 400 makes exactly one call and surfaces the original error unchanged', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 5, clock });
  const badRequest = httpError(400);
  const { op, calls } = scripted(clock, [badRequest, badRequest]);
  const outcome = await settle(clock, policy.execute(op));
  assert.equal(calls.length, 1);
  assert.ok(!outcome.ok && outcome.error === badRequest);
  for (const status of [401, 403, 404, 409, 422]) {
    const s = scripted(clock, [httpError(status), httpError(status)]);
    await settle(clock, policy.execute(s.op));
    assert.equal(s.calls.length, 1, String(status));
  }
});

/** Stands in for the breaker (another helper's folder): always open. */
class OpenBreaker extends BasePolicy {
  readonly kind = 'fake-breaker';
  calls = 0;
  run<T>(_context: CallContext, _next: Next<T>): Promise<T> {
    this.calls++;
    return Promise.reject(new CircuitOpenError('payments', 30_000, 'open'));
  }
  stats(): object {
    return {};
  }
  describe(): PolicyDescription {
    return { kind: this.kind, options: {} };
  }
}

test('regression: a breaker-open rejection is never retried, even with shouldRetry: () => true', async () => {
  const clock = new VirtualClock();
  const breaker = new OpenBreaker(clock);
  const events: RetryEvent[] = [];
  const policy = retry({ maxAttempts: 5, clock, shouldRetry: () => true });
  policy.onRetry((e) => events.push(e));
  let operationCalls = 0;
  const outcome = await settle(clock, pipeline(policy, breaker).execute(() => ++operationCalls));
  assert.equal(breaker.calls, 1);
  assert.equal(operationCalls, 0);
  assert.equal(events.length, 0);
  assert.ok(!outcome.ok && outcome.error instanceof CircuitOpenError, 'the rejection surfaces as is');
});

test('Retry-After (60 s) is honoured over the computed delay (and over maxDelayMs)', async () => {
  const clock = new VirtualClock();
  const events: RetryEvent[] = [];
  const policy = retry({ backoff: { baseDelayMs: 100, maxDelayMs: 1000, jitter: 'none' }, clock });
  policy.onRetry((e) => events.push(e));
  const { op, calls } = scripted(clock, [httpError(429, { 'Retry-After': '60' })]);
  const outcome = await settle(clock, policy.execute(op));
  assert.deepEqual(outcome, { ok: true, value: 'ok' });
  assert.deepEqual(calls, [0, 60_000]);
  assert.equal(events[0]?.delayMs, 60_000);
  assert.equal(events[0]?.retryAfterMs, 60_000);
  assert.equal(events[0]?.attempt, 1);

  const s = scripted(clock, [httpError(503, new Headers({ 'retry-after': '3' }))]);
  const start = clock.now();
  await settle(clock, policy.execute(s.op));
  assert.deepEqual(s.calls, [start, start + 3000]);
});

test('Retry-After as an HTTP date, relative to the epoch-aligned clock', async () => {
  const clock = new VirtualClock(Date.parse('2024-05-01T12:00:00Z'));
  const policy = retry({ clock });
  const { op, calls } = scripted(clock, [httpError(503, { 'retry-after': 'Wed, 01 May 2024 12:00:30 GMT' })]);
  await settle(clock, policy.execute(op));
  assert.equal(calls[1]! - calls[0]!, 30_000);
});

test('Retry-After above the cap waits the cap (default 60 s, configurable); garbage falls back to the backoff', async () => {
  const clock = new VirtualClock();
  const s1 = scripted(clock, [httpError(503, { 'retry-after': '3600' })]);
  await settle(clock, retry({ clock }).execute(s1.op));
  assert.equal(s1.calls[1]! - s1.calls[0]!, 60_000);

  const s2 = scripted(clock, [httpError(503, { 'retry-after': '3600' })]);
  await settle(clock, retry({ clock, maxRetryAfterMs: 5000 }).execute(s2.op));
  assert.equal(s2.calls[1]! - s2.calls[0]!, 5000);

  const s3 = scripted(clock, [httpError(503, { 'retry-after': '-30' })]);
  await settle(clock, retry({ clock, backoff: { baseDelayMs: 250, jitter: 'none' } }).execute(s3.op));
  assert.equal(s3.calls[1]! - s3.calls[0]!, 250);
});

test('regression: baseDelayMs 0 is honoured (no `||` default): retries at once, no timer', async () => {
  const clock = new VirtualClock();
  const policy = retry({ backoff: { baseDelayMs: 0 }, clock });
  const { op, calls } = scripted(clock, [httpError(503), httpError(503)]);
  const result = await policy.execute(op); // no clock advance needed
  assert.equal(result, 'ok');
  assert.deepEqual(calls, [0, 0, 0]);
  assert.equal(clock.pendingTimers, 0);
  assert.equal(retry({ maxElapsedMs: 0, clock }).maxElapsedMs, 0);
  assert.equal(retry({ maxRetryAfterMs: 0, clock }).maxRetryAfterMs, 0);
});

test('result-based retry reads Retry-After from a Response-like result; running out returns the last result', async () => {
  const clock = new VirtualClock();
  const policy = retry({ clock, handleResult: (r: Response) => r.status === 503 || r.status === 429 });
  const responses = [
    new Response('busy', { status: 503, headers: { 'Retry-After': '2' } }),
    new Response('fine', { status: 200 }),
  ];
  const calls: number[] = [];
  const outcome = await settle(clock, policy.execute(() => { calls.push(clock.now()); return responses[calls.length - 1]!; }));
  assert.ok(outcome.ok && outcome.value.status === 200);
  assert.deepEqual(calls, [0, 2000]);

  const giveUps: GiveUpEvent[] = [];
  policy.onGiveUp((e) => giveUps.push(e));
  let n = 0;
  const last = await settle(clock, policy.execute(() => new Response(`busy ${++n}`, { status: 429 })));
  assert.ok(last.ok, 'a result that exhausts retries is returned, not thrown');
  assert.equal(await last.value.text(), 'busy 3');
  assert.equal(giveUps[0]?.reason, 'max-attempts');
  assert.equal(giveUps[0]?.attempts, 3);
});

test('abort during the delay rejects promptly and leaves no timer', async () => {
  const clock = new VirtualClock();
  const policy = retry({ backoff: constantBackoff(10_000, { jitter: 'none' }), clock });
  const giveUps: GiveUpEvent[] = [];
  policy.onGiveUp((e) => giveUps.push(e));
  const caller = new AbortController();
  const { op, calls } = scripted(clock, [httpError(503), httpError(503)]);
  let rejectedAt = -1;
  const p = policy.execute(op, { signal: caller.signal });
  p.catch(() => { rejectedAt = clock.now(); });
  await clock.advance(1000);
  assert.equal(clock.pendingTimers, 1, 'waiting on the delay');
  caller.abort(new Error('client went away'));
  await assert.rejects(p, /client went away/);
  assert.equal(rejectedAt, 1000, 'rejected at once, not when the delay would have ended');
  assert.equal(clock.pendingTimers, 0, 'the delay timer was cleared');
  assert.equal(calls.length, 1);
  assert.equal(giveUps[0]?.reason, 'aborted');
  await clock.advance(20_000);
  assert.equal(calls.length, 1, 'no attempt after the abort');

  // Every abort ends as ABORTED, the reason (here the DOMException an abort without one gives) as cause.
  const c2 = new AbortController();
  const q = policy.execute(scripted(clock, [httpError(503)]).op, { signal: c2.signal });
  await clock.advance(10);
  c2.abort();
  await assert.rejects(q, (e: any) => e.code === 'ABORTED' && e.cause?.name === 'AbortError');
  assert.equal(clock.pendingTimers, 0);
});

test('an already aborted call makes no attempt', async () => {
  const clock = new VirtualClock();
  const { op, calls } = scripted(clock, []);
  await assert.rejects(retry({ clock }).execute(op, { signal: AbortSignal.abort(new Error('gone')) }), /gone/);
  assert.equal(calls.length, 0);
});

test('maxElapsedMs stops retries whose wait would end past it', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 10, maxElapsedMs: 250, backoff: constantBackoff(100, { jitter: 'none' }), clock });
  const { op, calls } = scripted(clock, Array.from({ length: 10 }, () => httpError(503)));
  const outcome = await settle(clock, policy.execute(op));
  assert.deepEqual(calls, [0, 100, 200]);
  assert.ok(!outcome.ok && outcome.error.code === 'RETRIES_EXHAUSTED' && outcome.error.reason === 'max-elapsed' && outcome.error.attempts === 3);
});

test('maxAttempts Infinity is allowed with maxElapsedMs and bounded by it', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: Infinity, maxElapsedMs: 1000, backoff: constantBackoff(100, { jitter: 'none' }), clock });
  let n = 0;
  const outcome = await settle(clock, policy.execute(() => { n++; throw httpError(503); }));
  assert.equal(n, 11);
  assert.ok(!outcome.ok && outcome.error.reason === 'max-elapsed');
});

test('the context deadline stops retries that could not start in time', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 10, backoff: constantBackoff(100, { jitter: 'none' }), clock });
  const { op, calls } = scripted(clock, Array.from({ length: 10 }, () => httpError(503)));
  const outcome = await settle(clock, policy.execute(op, { timeoutMs: 250 }));
  assert.deepEqual(calls, [0, 100, 200]);
  assert.ok(!outcome.ok && outcome.error.code === 'RETRIES_EXHAUSTED' && outcome.error.reason === 'deadline');
});

test('per-attempt timeouts inside the retry are retried; the last TimeoutError is the cause', async () => {
  const clock = new VirtualClock();
  const policy = pipeline(
    retry({ maxAttempts: 3, backoff: constantBackoff(50, { jitter: 'none' }), clock }),
    timeout({ ms: 100, clock }),
  );
  const starts: number[] = [];
  const hang = (ctx: CallContext) => new Promise((_, reject) => {
    starts.push(clock.now());
    ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
  });
  const outcome = await settle(clock, policy.execute(hang));
  assert.deepEqual(starts, [0, 150, 300]);
  assert.ok(!outcome.ok && outcome.error.code === 'RETRIES_EXHAUSTED' && outcome.error.cause instanceof TimeoutError);
  assert.equal(clock.pendingTimers, 0);
});

test('events: onRetry per retry, onSuccess with the attempt count, onGiveUp with the reason', async () => {
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 3, backoff: constantBackoff(10, { jitter: 'none' }), clock });
  const log: string[] = [];
  policy.onRetry((e) => log.push(`retry ${e.attempt} after ${e.delayMs} (${(e.error as Error).message})`));
  policy.onSuccess((e) => log.push(`success after ${e.attempts}`));
  policy.onGiveUp((e) => log.push(`give up after ${e.attempts}: ${e.reason}`));
  await settle(clock, policy.execute(scripted(clock, [httpError(502)]).op));
  await settle(clock, policy.execute(scripted(clock, [httpError(503), httpError(504), httpError(500)]).op));
  await settle(clock, policy.execute(scripted(clock, [httpError(404)]).op));
  assert.deepEqual(log, [
    'retry 1 after 10 (HTTP 502)', 'success after 2',
    'retry 1 after 10 (HTTP 503)', 'retry 2 after 10 (HTTP 504)', 'give up after 3: max-attempts',
  ]);
});

test('a budget shared by two retry policies: one spends it, the other gets RETRY_BUDGET_EXHAUSTED with the cause', async () => {
  const clock = new VirtualClock();
  // no ratio, 0.1 retries/s over 10 s: exactly one retry per window, for everyone sharing it
  const budget = ratioBudget({ ratio: 0, minRetriesPerSecond: 0.1, clock });
  const a = retry({ budget, backoff: constantBackoff(10), clock, name: 'a' });
  const b = retry({ budget, backoff: constantBackoff(10), clock, name: 'b' });
  const giveUps: GiveUpEvent[] = [];
  b.onGiveUp((e) => giveUps.push(e));

  const sa = scripted(clock, [httpError(503)]);
  assert.deepEqual(await settle(clock, a.execute(sa.op)), { ok: true, value: 'ok' });
  assert.equal(sa.calls.length, 2);

  const failure = httpError(503);
  const sb = scripted(clock, [failure, httpError(503)]);
  const outcome = await settle(clock, b.execute(sb.op));
  assert.equal(sb.calls.length, 1, 'no retry without budget');
  assert.ok(!outcome.ok);
  assert.equal(outcome.error.code, 'RETRY_BUDGET_EXHAUSTED');
  assert.ok(outcome.error instanceof RetryBudgetExhaustedError);
  assert.equal(outcome.error.cause, failure);
  assert.equal(outcome.error.attempts, 1);
  assert.equal(giveUps[0]?.reason, 'budget');
  assert.equal(budget.snapshot().requests, 2);
  assert.equal(budget.snapshot().retries, 1);

  await clock.advance(10_000); // the window slides past the spent retry
  const sc = scripted(clock, [httpError(503)]);
  assert.deepEqual(await settle(clock, b.execute(sc.op)), { ok: true, value: 'ok' });
});

test('token budget: client errors and local rejections leave it alone; retryable failures drain it', async () => {
  const clock = new VirtualClock();
  const budget = tokenBudget({ maxTokens: 4, tokenRatio: 0.5 });
  const policy = retry({ maxAttempts: 2, budget, backoff: { baseDelayMs: 0 }, clock });
  await settle(clock, policy.execute(scripted(clock, [httpError(400)]).op));
  await settle(clock, policy.execute(scripted(clock, [new CircuitOpenError('x', 10, 'open')]).op));
  assert.equal(budget.tokens, 4);
  await settle(clock, policy.execute(scripted(clock, [httpError(503), httpError(503)]).op));
  assert.equal(budget.tokens, 2, 'two failed attempts');
  const outcome = await settle(clock, policy.execute(scripted(clock, [httpError(503)]).op));
  assert.ok(!outcome.ok && outcome.error.code === 'RETRY_BUDGET_EXHAUSTED', 'tokens 1 <= 4/2: no retry');
  assert.equal(budget.tokens, 1);
});

test('describe() lists the options', () => {
  const policy = retry({ maxAttempts: 4, backoff: exponentialBackoff({ baseDelayMs: 50, jitter: 'equal' }), budget: ratioBudget(), name: 'payments' });
  assert.deepEqual(policy.describe(), {
    kind: 'retry',
    name: 'payments',
    options: {
      maxAttempts: 4,
      backoff: { kind: 'exponential', baseDelayMs: 50, maxDelayMs: 30_000, factor: 2, jitter: 'equal' },
      maxElapsedMs: Infinity,
      maxRetryAfterMs: 60_000,
      budget: 'ratio',
      shouldRetry: false,
      handleResult: false,
    },
  });
});

test('bad options fail when the policy is built; a broken custom backoff fails the call clearly', async () => {
  for (const options of [
    { maxAttempts: 0 }, { maxAttempts: 2.5 }, { maxAttempts: -1 }, { maxAttempts: NaN }, { maxAttempts: Infinity },
    { maxElapsedMs: -1 }, { maxRetryAfterMs: -1 }, { budget: {} }, { shouldRetry: 'yes' }, { handleResult: 1 },
    { backoff: { baseDelayMs: -1 } }, { random: 0.5 },
  ]) {
    assert.throws(() => retry(options as any), { code: 'INVALID_OPTIONS' }, JSON.stringify(options));
  }
  assert.throws(() => retry({ random: 0.5 } as any), { code: 'INVALID_OPTIONS', message: 'retry.random must be a function returning [0, 1), got 0.5' });
  assert.equal(retry({ maxAttempts: Infinity, budget: tokenBudget() }).maxAttempts, Infinity);
  // A concurrency budget always lets a few calls retry at once: it would never end their loop.
  assert.throws(() => retry({ maxAttempts: Infinity, budget: concurrencyBudget() }), { code: 'INVALID_OPTIONS' });

  const clock = new VirtualClock();
  const broken: Backoff = { kind: 'broken', delay: () => NaN, describe: () => ({}) };
  const outcome = await settle(clock, retry({ backoff: broken, clock }).execute(() => { throw httpError(503); }));
  assert.ok(!outcome.ok && outcome.error.code === 'INVALID_OPTIONS' && /backoff\.delay/.test(outcome.error.message));
});
