/**
 * The Bulwark samples of docs/guides/migrating.md, run as a user would write them: each test
 * below holds one sample line for line (plus the `clock` option, so it runs on virtual time), and
 * the last test checks that every line of every `ts` block of the guide is still here (or in
 * docs-migrating.integration.test.ts, the sample that needs Redis). If a sample stops compiling
 * or behaving as the guide says, these files fail before the guide misleads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  bulkhead, circuitBreaker, consecutive, degradation, fallback, hedge, memoryRateLimiter, pipeline, retry, timeout,
  timeWindow,
} from '../src/index.js';
import { flushPromises, VirtualClock } from '../src/testing.js';

interface Stock { sku: string; available: number }

/**
 * Lets virtual time pass by itself while a sample awaits, as real time would, but instantly:
 * whenever a timer is pending, the clock jumps to it once every promise has settled.
 */
function letTimePass(clock: VirtualClock): () => void {
  let running = true;
  void (async () => {
    while (running) {
      const at = clock.nextTimerAt();
      if (at === undefined) await flushPromises();
      else await clock.advanceTo(at);
    }
  })();
  return () => { running = false; };
}

/**
 * The dependency of the samples: each call takes the next of `latenciesMs` (the last one
 * repeats) on the clock, or fails with a 503 for `'fail'`; an abort ends it at once.
 */
function stockService(clock: VirtualClock, plan: ReadonlyArray<number | 'fail'>) {
  const startedAt: number[] = [];
  const getStock = (sku: string, signal: AbortSignal): Promise<Stock> => {
    const step = plan[Math.min(startedAt.length, plan.length - 1)]!;
    startedAt.push(clock.now());
    if (step === 'fail') return Promise.reject(Object.assign(new Error('inventory unavailable'), { status: 503 }));
    return new Promise((resolve, reject) => {
      const timer = clock.setTimeout(() => resolve({ sku, available: 7 }), step);
      signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
  };
  return { getStock, startedAt };
}

test('cockatiel: maxAttempts 3 (retries) is our maxAttempts 4 (calls)', async (t) => {
  const clock = new VirtualClock();
  t.after(letTimePass(clock));
  const { getStock, startedAt } = stockService(clock, ['fail', 'fail', 'fail', 5]);

  const policy = retry({
    maxAttempts: 4, // cockatiel's maxAttempts: 3 = three retries after the first call
    backoff: { kind: 'exponential', baseDelayMs: 128, maxDelayMs: 30_000, jitter: 'full' },
    clock,
  });
  const stock = await policy.execute(({ signal }) => getStock('sku-42', signal));

  assert.deepEqual(stock, { sku: 'sku-42', available: 7 });
  assert.equal(startedAt.length, 4);
});

test('cockatiel: wrap(retry, breaker, timeout) is pipeline(retry, breaker, timeout), outermost first', async (t) => {
  const clock = new VirtualClock();
  t.after(letTimePass(clock));
  const { getStock, startedAt } = stockService(clock, [5_000, 5_000, 20]);

  const policy = pipeline(                                   // outermost first, as in wrap()
    retry({ maxAttempts: 4, clock }),                               // cockatiel's maxAttempts: 3
    circuitBreaker({ strategy: consecutive({ threshold: 5 }), openMs: 10_000, clock }),
    timeout({ ms: 1_000, graceMs: 0, clock }),                      // TimeoutStrategy.Aggressive
  );
  const stock = await policy.execute(({ signal }) => getStock('sku-42', signal));

  assert.deepEqual(stock, { sku: 'sku-42', available: 7 });
  assert.equal(startedAt.length, 3, 'two attempts timed out (each one second), the third answered');
  assert.ok(startedAt[1]! >= 1_000 && startedAt[2]! >= 2_000);
});

test('cockatiel: a SamplingBreaker is a time window; minimumRps × seconds is minimumCalls', async () => {
  const clock = new VirtualClock();
  const answered = () => Promise.resolve({ sku: 'sku-42', available: 7 });
  const broken = () => Promise.reject(Object.assign(new Error('inventory unavailable'), { status: 503 }));

  const breaker = circuitBreaker({
    openMs: 10_000,                                               // halfOpenAfter
    strategy: timeWindow({ windowMs: 30_000, failureRateThreshold: 0.2, minimumCalls: 150 }), // 5 rps × 30 s
    clock,
  });

  for (let i = 0; i < 120; i++) await breaker.execute(answered);
  for (let i = 0; i < 29; i++) await assert.rejects(breaker.execute(broken), { status: 503 });
  await assert.rejects(breaker.execute(broken), { status: 503 }, 'the 150th call: 30 of 150 failed, 20 %');
  await assert.rejects(breaker.execute(broken), { code: 'CIRCUIT_OPEN' }, 'open at a rate equal to the threshold (cockatiel needs it exceeded)');
  await clock.advance(10_000);
  assert.deepEqual(await breaker.execute(answered), { sku: 'sku-42', available: 7 }, 'after openMs a probe goes through');
});

test('opossum: one breaker with timeout, capacity and fallback is a pipeline of four policies', async (t) => {
  const clock = new VirtualClock();
  t.after(letTimePass(clock));
  const { getStock } = stockService(clock, [60_000]);

  const stockCall = pipeline(
    fallback({ fallback: { sku: 'sku-42', available: 0 }, clock }),            // breaker.fallback(...)
    circuitBreaker({
      openMs: 30_000,                                                   // resetTimeout
      strategy: timeWindow({ windowMs: 10_000, buckets: 10, failureRateThreshold: 0.5, minimumCalls: 10 }),
      clock,
    }),
    bulkhead({ maxConcurrent: 10, clock }),                                    // capacity
    timeout({ ms: 3_000, graceMs: 0, clock }),                                 // timeout
  );
  const stock = await stockCall.execute(({ signal }) => getStock('sku-42', signal));

  assert.deepEqual(stock, { sku: 'sku-42', available: 0 });
  assert.equal(degradation(stock)?.source, 'fallback');
  assert.equal(clock.now(), 3_000, 'the timeout answered, the fallback replaced it');
});

test('Polly: the builder order is the pipeline order; MaxRetryAttempts 3 is maxAttempts 4', async (t) => {
  const clock = new VirtualClock();
  t.after(letTimePass(clock));
  const { getStock, startedAt } = stockService(clock, ['fail', 'fail', 'fail', 10]);

  const resilient = pipeline(
    fallback({ handle: ['CIRCUIT_OPEN'], fallback: { sku: 'sku-42', available: 0 }, clock }),
    retry({ maxAttempts: 4, backoff: { kind: 'exponential', baseDelayMs: 200, maxDelayMs: 5_000, jitter: 'full' }, clock }),
    circuitBreaker({
      strategy: timeWindow({ failureRateThreshold: 0.5, windowMs: 30_000, minimumCalls: 20 }),
      openMs: 15_000,
      clock,
    }),
    bulkhead({ maxConcurrent: 100, maxQueue: 50, clock }),
    timeout({ ms: 2_000, clock }),
  );
  const stock = await resilient.execute(({ signal }) => getStock('sku-42', signal));

  assert.deepEqual(stock, { sku: 'sku-42', available: 7 });
  assert.equal(degradation(stock), undefined, 'a real answer, not the fallback');
  assert.equal(startedAt.length, 4);
});

test('Polly: MaxHedgedAttempts 1 (hedges) is maxOutstanding 2 (attempts)', async (t) => {
  const clock = new VirtualClock();
  t.after(letTimePass(clock));
  const { getStock, startedAt } = stockService(clock, [1_000, 50]);

  const hedged = hedge({ delayMs: 200, maxOutstanding: 2, idempotent: true, clock });
  const stock = await hedged.execute(({ signal }) => getStock('sku-42', signal));

  assert.deepEqual(stock, { sku: 'sku-42', available: 7 });
  assert.deepEqual(startedAt, [0, 200], 'the hedge started after 200 ms');
  assert.equal(clock.now(), 250, 'the hedge won; the slow primary was aborted');
});

test('rate-limiter-flexible: points per duration (s) is limit per intervalMs, and a denial is a value', () => {
  const clock = new VirtualClock();
  const clientIp = '203.0.113.9';
  const outcomes: string[] = [];
  const handle = () => outcomes.push('handled');
  const tooManyRequests = (retryAfterMs: number) => outcomes.push(`429 after ${retryAfterMs} ms`);
  clock.advanceSync(250);

  const limiter = memoryRateLimiter({ algorithm: 'fixed-window', limit: 10, intervalMs: 1_000, clock });
  for (let i = 0; i < 11; i++) {
    const decision = limiter.consume(clientIp);
    if (decision.allowed) handle();
    else tooManyRequests(decision.retryAfterMs);
  }

  assert.deepEqual(outcomes, [...Array<string>(10).fill('handled'), '429 after 750 ms'], 'windows are aligned to the clock');
});

/** Spacing is layout, not code: runs of blanks count as one. */
function normalize(line: string): string {
  return line.trim().replace(/\s+/g, ' ');
}

test('every line of the guide\'s ts samples is in these tests, so the guide shows code that runs', () => {
  const guide = readFileSync(new URL('../docs/guides/migrating.md', import.meta.url), 'utf8');
  const samples = [new URL(import.meta.url), new URL('./docs-migrating.integration.test.ts', import.meta.url)].map((file) => readFileSync(file, 'utf8'));
  const here = new Set(samples.join('\n')
    .split('\n')
    .filter((line) => line.trim() !== 'clock,')
    .map((line) => normalize(line.replace(/, clock(?= \})/g, ''))));
  const blocks = [...guide.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  assert.ok(blocks.length >= 6, `only ${blocks.length} ts samples found in the guide`);
  const missing = blocks
    .flatMap((block) => block.split('\n'))
    .map(normalize)
    .filter((line) => line !== '' && !line.startsWith('import ') && !here.has(line));
  assert.deepEqual(missing, [], 'guide lines with no counterpart in this test');
});
