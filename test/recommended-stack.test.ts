/**
 * The recommended stack of docs/adr/0004-policy-order.md, run whole against one dependency that
 * fails, then hangs, then recovers, on a virtual clock: every figure below follows from the
 * options, so it is asserted exactly.
 *
 *   fallback → retry (+ 10 % budget) → circuit breaker → bulkhead → timeout → dependency
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bulkhead, circuitBreaker, consecutive, degradation, fallback, pipeline, ratioBudget, retry, timeout,
  type BreakerStateChange,
} from '../src/index.js';
import { VirtualClock, seededRandom } from '../src/testing.js';

type Mode = 'failing' | 'hanging' | 'healthy';
interface Answer { items: string[] }

test('the recommended stack: fails, hangs, recovers — budgeted retries, none while open, degraded fallbacks, slots held until aborted work ends', async () => {
  const clock = new VirtualClock();
  // 10 % of requests may be retried; no free floor, so the figures come from the ratio alone.
  const budget = ratioBudget({ ratio: 0.1, windowMs: 10_000, minRetriesPerSecond: 0, clock });
  const retries = retry({ maxAttempts: 3, backoff: { kind: 'exponential', baseDelayMs: 100, jitter: 'none' }, budget, clock });
  const breaker = circuitBreaker({ strategy: consecutive({ threshold: 5 }), openMs: 5_000, clock, random: seededRandom(7) });
  const slots = bulkhead({ maxConcurrent: 2, clock });
  const deadline = timeout({ ms: 1_000, graceMs: 1_000, clock });
  const stack = pipeline(
    fallback({ fallback: (): Answer => ({ items: ['popular'] }), clock }),
    retries,
    breaker,
    slots,
    deadline,
  );

  let mode: Mode = 'failing';
  const calls: number[] = [];          // when each attempt reached the dependency
  const cleanedUpAt: number[] = [];    // when aborted hanging work really ended
  const dependency = (signal: AbortSignal): Promise<Answer> => {
    calls.push(clock.now());
    if (mode === 'failing') return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    if (mode === 'healthy') return new Promise((resolve) => clock.setTimeout(() => resolve({ items: ['for-you'] }), 20));
    // Hanging: never answers; once aborted it takes 50 ms to clean up (close the socket, roll back).
    return new Promise((_, reject) => signal.addEventListener('abort', () => {
      clock.setTimeout(() => { cleanedUpAt.push(clock.now()); reject(signal.reason); }, 50);
    }, { once: true }));
  };
  const call = (): Promise<Answer> => stack.execute((ctx) => dependency(ctx.signal));

  const retriedAt: number[] = [];
  retries.onRetry(() => retriedAt.push(clock.now()));
  const transitions: string[] = [];
  breaker.onStateChange((e: BreakerStateChange) => transitions.push(`${e.at}:${e.from}->${e.to}`));
  const openIntervals = (): [number, number][] => {
    const spans: [number, number][] = [];
    let openedAt: number | undefined;
    for (const t of transitions) {
      const [at, change] = t.split(':') as [string, string];
      if (change.endsWith('->open')) openedAt = Number(at);
      else if (openedAt !== undefined) { spans.push([openedAt, Number(at)]); openedAt = undefined; }
    }
    if (openedAt !== undefined) spans.push([openedAt, Infinity]);
    return spans;
  };

  // ---- Phase 1, t = 0…900: the dependency refuses connections. 10 requests, 100 ms apart. ----
  const phase1: Answer[] = [];
  for (let i = 0; i < 10; i++) {
    await clock.advanceTo(i * 100);
    const answer = call();
    await clock.advance(100);
    phase1.push(await answer);
  }
  // Request 1: attempt 1 fails; the budget grants 1 retry (0 < 0.1 × 1), sent 100 ms later; it
  // fails too and the next retry is refused (1 < 0.1 × 1 is false). Requests 2–4: one attempt
  // each (1 retry already spent of 0.2–0.4). The 5th consecutive failure (request 4, t = 300)
  // opens the breaker: requests 5–10 never reach the dependency.
  assert.deepEqual(calls, [0, 100, 100, 200, 300]);
  assert.deepEqual(retriedAt, [0], 'one retry, granted by the budget');
  assert.ok(retriedAt.length <= Math.ceil(0.1 * 10), 'retries ≤ 10 % of the 10 requests');
  assert.equal(breaker.state.kind, 'open');
  assert.deepEqual(transitions, ['300:closed->open']);
  assert.equal(budget.snapshot().retries, 1);
  for (const answer of phase1) {
    assert.deepEqual(answer, { items: ['popular'] }, 'every user got an answer');
    assert.equal(degradation(answer)?.source, 'fallback', 'marked degraded');
  }

  // ---- Phase 2: the dependency hangs. The breaker lets one probe through at t = 5 300. ----
  mode = 'hanging';
  await clock.advanceTo(5_300);
  const probe = call();
  const others = [call(), call()];
  await clock.advance(0);
  assert.deepEqual(calls.slice(5), [5_300], 'half-open: one probe reaches the dependency');
  for (const answer of await Promise.all(others)) {
    assert.equal(degradation(answer)?.source, 'fallback', 'the others get the fallback at once (CIRCUIT_OPEN)');
  }
  assert.equal(clock.now(), 5_300);
  assert.equal(slots.active, 1);
  await clock.advanceTo(6_300);         // the timeout aborts the probe's work…
  assert.equal(slots.active, 1, '…whose slot stays taken while the work cleans up');
  await clock.advanceTo(6_349);
  assert.equal(slots.active, 1);
  await clock.advanceTo(6_350);
  assert.deepEqual(cleanedUpAt, [6_350]);
  assert.equal(slots.active, 0, 'released when the aborted work really ended');
  // The probe's TIMEOUT reopened the breaker; the retry it earned met the open breaker:
  // CIRCUIT_OPEN is never retried, the fallback answers.
  await clock.advance(100);
  const probeAnswer = await probe;
  assert.equal(degradation(probeAnswer)?.source, 'fallback');
  assert.deepEqual(transitions, ['300:closed->open', '5300:open->half-open', '6350:half-open->open']);
  assert.equal(calls.length, 6, 'the retry after the failed probe never reached the dependency');

  // The retry after the failed probe was granted at 6 350 (1 < 0.1 × 13) and met the open
  // breaker 100 ms later: no attempt reached the dependency while the breaker was open.
  assert.deepEqual(retriedAt, [0, 6_350]);
  assert.equal(budget.snapshot().retries, 2);
  for (const at of calls) {
    for (const [from, to] of openIntervals()) assert.ok(!(at > from && at < to), `a call at ${at} inside open (${from}, ${to})`);
  }

  // ---- Phase 3: the dependency recovers. Next probe at 6 350 + 5 000. ----
  mode = 'healthy';
  await clock.advanceTo(11_350);
  const recovered = call();
  await clock.advance(20);
  assert.deepEqual(await recovered, { items: ['for-you'] });
  assert.equal(degradation(await recovered), undefined, 'a real answer carries no degraded mark');
  assert.equal(breaker.state.kind, 'closed');
  const after = call();
  await clock.advance(20);
  assert.deepEqual(await after, { items: ['for-you'] });
  assert.equal(slots.active, 0);
  assert.equal(slots.stats().rejected, 0, 'the bulkhead never filled: the breaker kept callers off the hung dependency');
});
