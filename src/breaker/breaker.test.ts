import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { AbortedError, BulkheadFullError, CircuitOpenError, RateLimitedError, TimeoutError } from '../core/errors.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { circuitBreaker, type BreakerStateChange, type CircuitBreakerPolicy } from './breaker.js';
import { countWindow, failureCount, timeWindow } from './strategies.js';
import { isDependencyFailure } from './classify.js';
import { seededRandom } from '../core/random.js';
import { problemForError } from '../http/core/problem.js';

function deferred<T = string>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

const down = () => { throw new Error('down'); };
/** Reads the state through a call, so TypeScript does not narrow it across awaits. */
const kind = (breaker: CircuitBreakerPolicy<never>) => breaker.state.kind;
const up = () => 'ok';

async function fail(breaker: CircuitBreakerPolicy, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await assert.rejects(breaker.execute(down), /down/);
}

async function succeed(breaker: CircuitBreakerPolicy, times: number): Promise<void> {
  for (let i = 0; i < times; i++) assert.equal(await breaker.execute(up), 'ok');
}

function transitions(breaker: CircuitBreakerPolicy): string[] {
  const seen: string[] = [];
  breaker.onStateChange((e: BreakerStateChange) => seen.push(`${e.from}->${e.to}:${e.reason}@${e.at}`));
  return seen;
}

test('5 consecutive failures open the breaker and the next call does not reach the dependency', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, name: 'payments' });
  let calls = 0;
  const op = () => { calls++; throw new Error('down'); };
  for (let i = 0; i < 4; i++) await assert.rejects(breaker.execute(op), /down/);
  assert.equal(kind(breaker), 'closed');
  await assert.rejects(breaker.execute(op), /down/);
  assert.equal(kind(breaker), 'open');
  await assert.rejects(breaker.execute(op), (e: any) => e instanceof CircuitOpenError && e.code === 'CIRCUIT_OPEN' && e.breaker === 'payments' && e.state === 'open');
  assert.equal(calls, 5, 'the sixth call never reached the dependency');
});

test('4 failures, a success, 4 failures stays closed', async () => {
  const breaker = circuitBreaker({ clock: new VirtualClock() });
  await fail(breaker, 4);
  await succeed(breaker, 1);
  await fail(breaker, 4);
  assert.equal(kind(breaker), 'closed');
  await fail(breaker, 1);
  assert.equal(kind(breaker), 'open', 'the fifth in a row does open it');
});

test('after the open duration exactly N probes pass concurrently, the N+1th is rejected at once, one failure reopens', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 10_000, halfOpen: { maxProbes: 3 } });
  const seen = transitions(breaker);
  await fail(breaker, 5);
  await clock.advance(9_999);
  await assert.rejects(breaker.execute(up), { code: 'CIRCUIT_OPEN' });
  await clock.advance(1);

  const probes = [deferred(), deferred(), deferred()];
  let reached = 0;
  const results = probes.map((d) => breaker.execute(() => { reached++; return d.promise; }));
  assert.equal(reached, 3);
  assert.deepEqual({ ...breaker.state, since: 0 }, { kind: 'half-open', since: 0, trips: 1, inFlight: 3, successes: 0, failures: 0 });
  let extraReached = false;
  await assert.rejects(
    breaker.execute(() => { extraReached = true; return 'x'; }),
    (e: any) => e.code === 'CIRCUIT_OPEN' && e.state === 'half-open' && e.retryAfterMs > 0,
  );
  assert.equal(extraReached, false, 'the fourth call was rejected without queueing');

  probes[0]!.reject(new Error('still down'));
  await assert.rejects(results[0]!, /still down/);
  assert.equal(kind(breaker), 'open', 'one failed probe reopens');
  // The other probes finish later; they belong to the finished half-open period and change nothing.
  probes[1]!.resolve('fine');
  probes[2]!.resolve('fine');
  assert.deepEqual(await Promise.all(results.slice(1)), ['fine', 'fine']);
  assert.equal(kind(breaker), 'open');
  assert.deepEqual(seen, ['closed->open:threshold@0', 'open->half-open:open-elapsed@10000', 'half-open->open:probe-failed@10000']);
});

test('regression: half-open never admits unlimited probes; 100 concurrent calls, 1 reaches the dependency', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000 });
  await fail(breaker, 5);
  await clock.advance(1000);
  const gate = deferred();
  let reached = 0;
  const calls = Array.from({ length: 100 }, () => breaker.execute(() => { reached++; return gate.promise; }));
  const settled = Promise.allSettled(calls);
  assert.equal(reached, 1);
  gate.resolve('ok');
  const results = await settled;
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  assert.equal(results.filter((r) => r.status === 'rejected' && (r.reason as any).code === 'CIRCUIT_OPEN').length, 99);
  assert.equal(kind(breaker), 'closed', 'the probe succeeded');
});

test('probe successes close the breaker (successThreshold), and the window starts empty', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, halfOpen: { maxProbes: 1, successThreshold: 3 } });
  const seen = transitions(breaker);
  await fail(breaker, 5);
  await clock.advance(1000);
  await succeed(breaker, 2);
  assert.equal(kind(breaker), 'half-open');
  await succeed(breaker, 1);
  assert.equal(kind(breaker), 'closed');
  assert.equal(seen.at(-1), 'half-open->closed:probes-succeeded@1000');
  await fail(breaker, 4);
  assert.equal(kind(breaker), 'closed', 'failures from before the trip were forgotten');
});

test('half-open rate mode: a sample of probes judged by failure rate, decided as soon as it is certain', async () => {
  const clock = new VirtualClock();
  const make = () => circuitBreaker({ clock, openMs: 1000, halfOpen: { maxProbes: 4, sampleSize: 4, failureRateThreshold: 0.5 } });
  // 1 failure of 4: closes once 3 successes make the verdict certain.
  const a = make();
  await fail(a, 5);
  await clock.advance(1000);
  const gates = [deferred(), deferred(), deferred(), deferred()];
  const runs = gates.map((g) => a.execute(() => g.promise).catch((e) => e));
  gates[0]!.reject(new Error('flaky'));
  gates[1]!.resolve('ok');
  gates[2]!.resolve('ok');
  await flushPromises();
  assert.equal(kind(a), 'half-open', '1 failure, 2 successes: the last probe could still make it 50%');
  gates[3]!.resolve('ok');
  await Promise.all(runs);
  assert.equal(kind(a), 'closed');

  // 2 failures of 4 reach 50%: reopens at the second failure without waiting for the rest.
  const b = make();
  await fail(b, 5);
  await clock.advance(1000);
  const g2 = [deferred(), deferred(), deferred(), deferred()];
  const runs2 = g2.map((g) => b.execute(() => g.promise).catch((e) => e));
  g2[0]!.reject(new Error('x'));
  g2[1]!.reject(new Error('y'));
  await flushPromises();
  assert.equal(kind(b), 'open');
  g2[2]!.resolve('ok');
  g2[3]!.resolve('ok');
  await Promise.all(runs2);
  assert.equal(kind(b), 'open');
});

test('open duration backs off across repeated trips (1 s, 2 s, 4 s, capped) and resets after a close', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, openBackoff: { factor: 2, maxMs: 4000 } });
  const openFor = () => { const s = breaker.state; assert.equal(s.kind, 'open'); return s.kind === 'open' ? s.reopensAt - s.openedAt : NaN; };
  await fail(breaker, 5);
  assert.equal(openFor(), 1000);
  const durations: number[] = [];
  for (let i = 0; i < 4; i++) {
    const d = openFor();
    await clock.advance(d);
    await fail(breaker, 1); // the probe fails
    durations.push(openFor());
  }
  assert.deepEqual(durations, [2000, 4000, 4000, 4000]);
  assert.deepEqual([breaker.stats().trips, breaker.stats().consecutiveTrips], [5, 5]);
  await clock.advance(4000);
  await succeed(breaker, 1);
  assert.equal(kind(breaker), 'closed');
  assert.deepEqual([breaker.stats().trips, breaker.stats().consecutiveTrips], [5, 0], 'the lifetime count survives the close');
  await fail(breaker, 5);
  assert.equal(openFor(), 1000, 'a successful close resets the backoff');
  assert.deepEqual([breaker.stats().trips, breaker.stats().consecutiveTrips], [6, 1]);
  breaker.reset();
  assert.deepEqual([breaker.stats().trips, breaker.stats().consecutiveTrips], [6, 0], 'reset clears the episode, not the history');
});

test('a 50%/10 s rate breaker with minimum 20 calls does not trip at 40% failures and does trip at 60%', async () => {
  const clock = new VirtualClock();
  const strategy = timeWindow({ windowMs: 10_000, failureRateThreshold: 0.5, minimumCalls: 20 });
  const at40 = circuitBreaker({ clock, strategy });
  const at60 = circuitBreaker({ clock, strategy, openMs: 3_600_000 });
  for (let i = 0; i < 200; i++) {
    // One call every 250 ms for 50 s: 40 calls per window.
    const fails40 = i % 5 < 2;
    const fails60 = i % 5 < 3;
    await (fails40 ? fail(at40, 1) : succeed(at40, 1));
    if (at60.state.kind === 'closed') {
      await (fails60 ? fail(at60, 1) : succeed(at60, 1));
      if (i < 19) assert.equal(kind(at60), 'closed', `minimumCalls: no verdict before the 20th call (call ${i + 1})`);
    }
    await clock.advance(250);
  }
  assert.equal(kind(at40), 'closed');
  const w = at40.stats().window;
  // Read at 50 s, the window is the empty current bucket and the 9 full ones before it (41-50 s):
  // calls 164-199, of which the 2-in-5 pattern fails 14.
  assert.deepEqual(w, { calls: 36, failures: 14, slowCalls: 0, failureRate: 14 / 36, slowCallRate: 0 });
  assert.equal(kind(at60), 'open');
  assert.equal(at60.stats().successes + at60.stats().failures, 20, 'tripped exactly when the 20th call made it judgeable');
});

test('failure-count breaker: 5 failures within 29 s open it; 5 spread over 31 s do not, and the window slides', async () => {
  const clock = new VirtualClock();
  const strategy = failureCount({ threshold: 5, windowMs: 30_000 });
  const within = circuitBreaker({ clock, strategy });
  const spread = circuitBreaker({ clock, strategy });
  const failAt = async (breaker: CircuitBreakerPolicy, times: number[]) => {
    for (const at of times) {
      await clock.advance(at - clock.now());
      await fail(breaker, 1);
      if (kind(breaker) === 'closed') await succeed(breaker, 3); // successes in between change nothing: the count is absolute
    }
  };
  await failAt(within, [0, 7_250, 14_500, 21_750, 29_000]);
  assert.equal(kind(within), 'open');
  assert.deepEqual(within.state, { kind: 'open', openedAt: 29_000, reopensAt: 59_000, trips: 1 });

  const start = clock.now();
  await failAt(spread, [0, 7_750, 15_500, 23_250, 31_000].map((t) => start + t));
  assert.equal(kind(spread), 'closed', 'the first failure left the window before the fifth');
  await failAt(spread, [start + 37_000]); // the last five span 29.25 s
  assert.equal(kind(spread), 'open');
});

test('misconfiguration hazard: a 50% / 60 s rate breaker never opens at a steady 40% failure rate; 5 failures in 30 s opens at once', async () => {
  const clock = new VirtualClock();
  const rate = circuitBreaker({ clock, strategy: timeWindow({ windowMs: 60_000, failureRateThreshold: 0.5, minimumCalls: 20 }) });
  const count = circuitBreaker({ clock, strategy: failureCount({ threshold: 5, windowMs: 30_000 }), openMs: 3_600_000 });
  let openedAt: number | undefined;
  count.onStateChange((e) => { openedAt ??= e.at; });
  // 10 calls per second for 5 minutes (five windows), 2 of every 5 failing: a dependency failing 40% of the time.
  let failures = 0;
  for (let i = 0; i < 3_000; i++) {
    const failing = i % 5 < 2;
    if (failing) failures++;
    await (failing ? fail(rate, 1) : succeed(rate, 1));
    assert.equal(kind(rate), 'closed', `call ${i + 1}`);
    if (kind(count) === 'closed') await (failing ? fail(count, 1) : succeed(count, 1));
    await clock.advance(100);
  }
  assert.equal(failures, 1_200);
  assert.equal(rate.stats().failures, 1_200, 'every failure was recorded; none tripped it');
  assert.equal(rate.stats().window.failureRate, 0.4);
  assert.equal(openedAt, 1_000, 'failures at 0, 100, 500, 600 and 1 000 ms');
});

test('count-window breaker: rate over the last N calls, minimum calls honoured', async () => {
  const breaker = circuitBreaker({ clock: new VirtualClock(), strategy: countWindow({ size: 10, minimumCalls: 6, failureRateThreshold: 0.5 }) });
  await fail(breaker, 5);
  assert.equal(kind(breaker), 'closed', '5 calls < minimumCalls 6');
  await succeed(breaker, 1);
  assert.equal(kind(breaker), 'open', '5 of 6 failed');
});

test('slow-call rate trips the breaker, and a slow probe counts as a failed probe', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, strategy: countWindow({ size: 10, slowCallDurationMs: 100, slowCallRateThreshold: 0.5 }) });
  const slowCall = () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('late'), 150));
  const run = async (slow: boolean) => {
    const p = breaker.execute(slow ? slowCall : up);
    await clock.advance(slow ? 150 : 0);
    return p;
  };
  for (let i = 0; i < 4; i++) assert.equal(await run(true), 'late');
  for (let i = 0; i < 5; i++) await run(false);
  assert.equal(kind(breaker), 'closed', '4 slow of 9');
  await run(true);
  assert.equal(kind(breaker), 'open', '5 slow of 10 = 50%: every call succeeded, but slowly');
  await clock.advance(1000);
  assert.equal(await run(true), 'late', 'the probe result still reaches the caller');
  assert.equal(kind(breaker), 'open', 'but a slow probe reopens');
  await clock.advance(1000);
  await run(false);
  assert.equal(kind(breaker), 'closed');
});

test('open rejections carry retryAfterMs, decreasing with time', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 30_000 });
  const rejections: number[] = [];
  breaker.onReject((e) => rejections.push(e.retryAfterMs));
  await fail(breaker, 5);
  const retryAfter = async () => {
    const error = await breaker.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
    assert.equal('retryAfter' in error, false, 'one name for the wait: retryAfterMs, in ms like every other');
    return error.retryAfterMs;
  };
  assert.equal(await retryAfter(), 30_000);
  await clock.advance(10_000);
  assert.equal(await retryAfter(), 20_000);
  await clock.advance(15_000);
  assert.equal(await retryAfter(), 5_000);
  assert.deepEqual(rejections, [30_000, 20_000, 5_000]);
  assert.equal(breaker.stats().rejections, 3);
});

test('half-open rejections say when the probe verdict is due, jittered with the injected random, never 0', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 10_000, halfOpen: { maxWaitMs: 4000 }, random: seededRandom(1) });
  await fail(breaker, 5);
  await clock.advance(10_000);
  const probe = deferred();
  const running = breaker.execute(() => probe.promise);
  const rejection = () => breaker.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
  const hints = async (n: number) => {
    const seen: number[] = [];
    for (let i = 0; i < n; i++) {
      const error = await rejection();
      assert.equal(error.state, 'half-open');
      seen.push(error.retryAfterMs);
    }
    return seen;
  };
  // The probe started now; the breaker gives up on it 4 s later at the latest: hints in [2 s, 4 s).
  const early = await hints(40);
  assert.ok(early.every((ms) => ms >= 2000 && ms < 4000), `in [2000, 4000): ${early.join(', ')}`);
  assert.ok(new Set(early).size > 35, 'spread, not one value for every client');
  assert.ok(Math.max(...early) - Math.min(...early) > 1000, 'spread across the window');
  const response = problemForError(await rejection());
  assert.equal(response.status, 503);
  const retryAfter = Number(response.headers['retry-after']);
  assert.ok(retryAfter >= 2 && retryAfter <= 4, `Retry-After ${retryAfter}: a hint in [2 s, 4 s) rounded up to whole seconds`);

  // Later in the probe's wait the window shrinks with it.
  await clock.advance(3000);
  const late = await hints(20);
  assert.ok(late.every((ms) => ms >= 500 && ms < 1000), `in [500, 1000): ${late.join(', ')}`);
  probe.resolve('ok');
  await running;
  assert.equal(kind(breaker), 'closed');

  // A short open period bounds the hint: the breaker would let a fresh probe through by then.
  const quick = circuitBreaker({ clock, openMs: 1000, random: seededRandom(2) });
  await fail(quick, 5);
  await clock.advance(1000);
  const hung = deferred();
  void quick.execute(() => hung.promise);
  for (let i = 0; i < 20; i++) {
    const error = await quick.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
    assert.ok(error.retryAfterMs >= 500 && error.retryAfterMs < 1000, String(error.retryAfterMs));
  }
  hung.resolve('ok');

  // With openBackoff the cap is the longer open period a failed probe would bring back (2 s here).
  const backingOff = circuitBreaker({ clock, openMs: 1000, openBackoff: { factor: 2 }, random: seededRandom(3) });
  await fail(backingOff, 5);
  await clock.advance(1000);
  void backingOff.execute(() => deferred().promise);
  for (let i = 0; i < 20; i++) {
    const error = await backingOff.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
    assert.ok(error.retryAfterMs >= 1000 && error.retryAfterMs < 2000, String(error.retryAfterMs));
  }

  // Same seed, same hints: reproducible.
  const again = circuitBreaker({ clock, openMs: 10_000, halfOpen: { maxWaitMs: 4000 }, random: seededRandom(1) });
  await fail(again, 5);
  await clock.advance(10_000);
  void again.execute(() => deferred().promise);
  const first = await again.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
  assert.equal(first.retryAfterMs, early[0]);
});

test('isFailure default: a 404-like error does not count (and proves the dependency is up); TIMEOUT does; ABORTED does not', async () => {
  const clock = new VirtualClock();
  const make = () => circuitBreaker({ clock, strategy: countWindow({ size: 1, minimumCalls: 1, failureRateThreshold: 1 }) });
  const notFound = Object.assign(new Error('no such user'), { status: 404 });
  const b404 = make();
  await assert.rejects(b404.execute(() => { throw notFound; }), /no such user/);
  assert.equal(kind(b404), 'closed');
  assert.equal(b404.stats().successes, 1);

  const bTimeout = make();
  await assert.rejects(bTimeout.execute(() => { throw new TimeoutError(100); }), { code: 'TIMEOUT' });
  assert.equal(kind(bTimeout), 'open');

  const bAborted = make();
  await assert.rejects(bAborted.execute(() => { throw new AbortedError(); }), { code: 'ABORTED' });
  assert.equal(kind(bAborted), 'closed');
  assert.equal(bAborted.stats().ignored, 1);

  for (const [status, counts] of [[400, false], [401, false], [409, false], [408, true], [429, true], [500, true], [503, true]] as const) {
    assert.equal(isDependencyFailure(Object.assign(new Error(), { statusCode: status })), counts, `status ${status}`);
    assert.equal(isDependencyFailure({ response: { status } }), counts, `axios-style ${status}`);
  }
  assert.equal(isDependencyFailure(new BulkheadFullError(1, 0)), false);
  assert.equal(isDependencyFailure(new RateLimitedError(10)), false);
  assert.equal(isDependencyFailure(new Error('ECONNRESET')), true);
  assert.equal(isDependencyFailure('a string'), true);
});

test('a timeout policy inside the breaker trips it; the caller aborting does not count', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, strategy: countWindow({ size: 2, minimumCalls: 2, failureRateThreshold: 1 }) });
  const guarded = pipeline(breaker, timeout({ ms: 100, clock }));
  const hang = (ctx: { signal: AbortSignal }) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));

  const caller = new AbortController();
  const aborted = guarded.execute(hang, { signal: caller.signal });
  caller.abort(new Error('client went away'));
  await assert.rejects(aborted, /client went away/);
  assert.equal(breaker.stats().ignored, 1, 'the caller gave up: not the dependency\'s fault');

  for (let i = 0; i < 2; i++) {
    const p = guarded.execute(hang);
    const check = assert.rejects(p, { code: 'TIMEOUT' });
    await clock.advance(100);
    await check;
  }
  assert.equal(kind(breaker), 'open');
});

test('local rejections inside the breaker (bulkhead full, rate limited, circuit open) are ignored, even with a custom isFailure', async () => {
  const breaker = circuitBreaker({ clock: new VirtualClock(), strategy: countWindow({ size: 1, minimumCalls: 1 }), isFailure: () => true });
  for (const error of [new BulkheadFullError(1, 0), new RateLimitedError(5), new CircuitOpenError('inner', 5, 'open')]) {
    await assert.rejects(breaker.execute(() => { throw error; }));
  }
  assert.equal(kind(breaker), 'closed');
  assert.equal(breaker.stats().ignored, 3);
  await assert.rejects(breaker.execute(() => { throw Object.assign(new Error('nope'), { status: 404 }); }));
  assert.equal(kind(breaker), 'open', 'the custom isFailure counts the 404');
});

test('isResultFailure counts a bad result without turning it into an error', async () => {
  const breaker = circuitBreaker({ clock: new VirtualClock(), strategy: countWindow({ size: 2, minimumCalls: 2 }), isResultFailure: (r: { status: number }) => r.status >= 500 });
  const response = { status: 503 };
  assert.equal(await breaker.execute(() => response), response);
  assert.equal(await breaker.execute(() => response), response);
  assert.equal(kind(breaker), 'open');
  assert.equal(breaker.stats().failures, 2);
});

test('a throwing predicate counts as a failure with a warning, never breaks the call', async () => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  const breaker = circuitBreaker({ clock: new VirtualClock(), strategy: countWindow({ size: 1, minimumCalls: 1 }), isFailure: () => { throw new Error('bad predicate'); } });
  await assert.rejects(breaker.execute(down), /down/);
  await new Promise((r) => setImmediate(r));
  process.off('warning', onWarning);
  assert.equal(kind(breaker), 'open');
  assert.ok(warnings.some((w) => w.includes('bad predicate')));
});

test('isolate forces the breaker open until reset; reset closes it with an empty window', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000 });
  const seen = transitions(breaker);
  await fail(breaker, 4);
  breaker.isolate();
  let reached = false;
  await assert.rejects(breaker.execute(() => { reached = true; }), (e: any) => e.code === 'CIRCUIT_OPEN' && e.state === 'isolated' && e.retryAfterMs === 1000);
  await clock.advance(3_600_000);
  await assert.rejects(breaker.execute(() => { reached = true; }), { code: 'CIRCUIT_OPEN' });
  assert.equal(reached, false);
  assert.equal(kind(breaker), 'isolated');
  breaker.reset();
  assert.equal(kind(breaker), 'closed');
  await fail(breaker, 4);
  assert.equal(kind(breaker), 'closed', 'the four failures before isolate were cleared');
  assert.deepEqual(seen, ['closed->isolated:isolated@0', 'isolated->closed:reset@3600000']);
});

test('a call that started before a trip or a reset does not count after it (epochs)', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, strategy: countWindow({ size: 1, minimumCalls: 1 }) });
  const slow = deferred();
  const early = breaker.execute(() => slow.promise);
  breaker.reset();
  slow.reject(new Error('late failure'));
  await assert.rejects(early, /late failure/);
  assert.equal(kind(breaker), 'closed', 'the failure belonged to the period before reset');

  // A call admitted while closed and still running at half-open time is not a probe.
  const lingering = deferred();
  const old = breaker.execute(() => lingering.promise);
  await fail(breaker, 1);
  await clock.advance(1000);
  lingering.resolve('ok');
  await old;
  assert.equal(kind(breaker), 'half-open', 'the old call neither closed the breaker nor used a probe slot');
  assert.equal(breaker.stats().probesInFlight, 0);
  await succeed(breaker, 1);
  assert.equal(kind(breaker), 'closed');
});

test('a hung probe cannot keep the breaker half-open for ever (halfOpen.maxWaitMs)', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, halfOpen: { maxWaitMs: 5000 } });
  const seen = transitions(breaker);
  await fail(breaker, 5);
  await clock.advance(1000);
  const hung = deferred();
  void breaker.execute(() => hung.promise).catch(() => {});
  await clock.advance(4999);
  await assert.rejects(breaker.execute(up), (e: any) => e.state === 'half-open');
  await clock.advance(1);
  await assert.rejects(breaker.execute(up), (e: any) => e.state === 'open' && e.retryAfterMs === 1000);
  assert.equal(seen.at(-1), 'half-open->open:probe-timeout@6000');
  await clock.advance(1000);
  await succeed(breaker, 1);
  assert.equal(kind(breaker), 'closed', 'a fresh probe slot: the hung probe no longer blocks');
  hung.resolve('finally');
});

test('maxWaitMs counts from the last probe activity, not from when half-open began', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, halfOpen: { maxWaitMs: 5000 } });
  await fail(breaker, 5);
  await clock.advance(1000);
  assert.equal(kind(breaker), 'half-open', 'entered half-open at 1000 (read by a dashboard)');
  await clock.advance(60_000); // no traffic for a minute
  const probe = deferred();
  const running = breaker.execute(() => probe.promise);
  await assert.rejects(breaker.execute(up), (e: any) => e.state === 'half-open', 'a fresh probe is not a hung one');
  assert.equal(kind(breaker), 'half-open');
  probe.resolve('ok');
  await running;
  assert.equal(kind(breaker), 'closed');
});

test('regression (|| defaults): openMs 0 probes on the very next call, still one probe at a time', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 0 });
  await fail(breaker, 5);
  const s = breaker.state;
  assert.equal(s.kind, 'half-open', 'open for 0 ms: due for a probe at once');
  const gate = deferred();
  let reached = 0;
  const probe = breaker.execute(() => { reached++; return gate.promise; });
  await assert.rejects(breaker.execute(() => { reached++; return 'x'; }), { code: 'CIRCUIT_OPEN' });
  assert.equal(reached, 1);
  gate.resolve('ok');
  await probe;
  assert.equal(kind(breaker), 'closed');
  assert.equal(breaker.openMs, 0);
  assert.deepEqual(circuitBreaker({ openMs: 0, openBackoff: { maxMs: 0 } }).describe().options.openBackoff, { factor: 2, maxMs: 0 });
});

test('options are validated when the breaker is built', () => {
  assert.throws(() => circuitBreaker({ openMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ halfOpen: { maxProbes: 0 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ halfOpen: { successThreshold: 0 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ halfOpen: { failureRateThreshold: 0.5, successThreshold: 2 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ halfOpen: { sampleSize: 3 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ halfOpen: { maxWaitMs: 0 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ openMs: 1000, openBackoff: { maxMs: 500 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ openBackoff: { factor: 0.5 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ strategy: {} as any }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => circuitBreaker({ isFailure: 'yes' as any }), { code: 'INVALID_OPTIONS' });
  assert.deepEqual(circuitBreaker().describe(), {
    kind: 'circuit-breaker',
    name: 'circuit-breaker',
    options: {
      strategy: { kind: 'consecutive', threshold: 5 },
      openMs: 30_000,
      openBackoff: false,
      halfOpen: { maxProbes: 1, successThreshold: 1, maxWaitMs: 30_000 },
    },
  });
  assert.deepEqual(circuitBreaker({ openBackoff: true }).describe().options.openBackoff, { factor: 2, maxMs: 300_000 });
});

test('tryAcquire: manual permits, rejection as a value, settling twice counts once', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000, strategy: countWindow({ size: 3, minimumCalls: 3 }) });
  const first = breaker.tryAcquire();
  assert.ok(!(first instanceof CircuitOpenError));
  first.failure();
  first.success(); // ignored: already settled
  const second = breaker.tryAcquire();
  assert.ok(!(second instanceof CircuitOpenError));
  second.error(Object.assign(new Error('gone'), { status: 404 })); // classified: a success
  const third = breaker.tryAcquire();
  assert.ok(!(third instanceof CircuitOpenError));
  third.failure(new Error('x'));
  assert.deepEqual([breaker.stats().failures, breaker.stats().successes], [2, 1]);
  assert.equal(kind(breaker), 'open', '2 of 3 failed');
  const rejected = breaker.tryAcquire();
  assert.ok(rejected instanceof CircuitOpenError);
  assert.equal(rejected.retryAfterMs, 1000);
  await clock.advance(1000);
  const probe = breaker.tryAcquire();
  assert.ok(!(probe instanceof CircuitOpenError));
  assert.ok(breaker.tryAcquire() instanceof CircuitOpenError, 'one probe at a time');
  probe.ignore(); // frees the slot, decides nothing
  assert.equal(kind(breaker), 'half-open');
  const probe2 = breaker.tryAcquire();
  assert.ok(!(probe2 instanceof CircuitOpenError));
  probe2.success();
  assert.equal(kind(breaker), 'closed');
});

test('events: outcomes carry probe flags; no listener, no cost; stats count everything', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 10, strategy: countWindow({ size: 2, minimumCalls: 2, slowCallDurationMs: 1000 }) });
  const outcomes: string[] = [];
  breaker.onSuccess((e) => outcomes.push(`ok${e.probe ? '(probe)' : ''}:${e.durationMs}`));
  breaker.onFailure((e) => outcomes.push(`fail${e.probe ? '(probe)' : ''}:${(e.failure as Error).message}`));
  let trip: BreakerStateChange | undefined;
  breaker.onStateChange((e) => { if (e.reason === 'threshold') trip = e; });
  await succeed(breaker, 1);
  await fail(breaker, 1);
  assert.equal(trip?.window?.failureRate, 0.5);
  await clock.advance(10);
  await succeed(breaker, 1);
  assert.deepEqual(outcomes, ['ok:0', 'fail:down', 'ok(probe):0']);
  assert.deepEqual(breaker.stats(), {
    name: 'circuit-breaker', state: 'closed', window: { calls: 0, failures: 0, slowCalls: 0, failureRate: 0, slowCallRate: 0 },
    trips: 1, consecutiveTrips: 0, probesInFlight: 0, successes: 2, failures: 1, ignored: 0, rejections: 0,
  });
  assert.equal(clock.pendingTimers, 0, 'the breaker never uses timers');
});

test('a call aborted before it arrives is refused with ABORTED and never reaches the dependency; half-open keeps its probe for the next real call', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 1000 });
  let ran = 0;
  const op = () => { ran++; return 'ok'; };
  await assert.rejects(breaker.execute(op, AbortSignal.abort(new Error('client gone'))), { code: 'ABORTED', message: /client gone/ });
  await assert.rejects(pipeline(breaker).execute(op, AbortSignal.abort()), { code: 'ABORTED' }, 'the fused path too');
  assert.equal(ran, 0, 'closed: the operation never ran');

  await fail(breaker, 5);
  await clock.advance(1000);
  await assert.rejects(breaker.execute(op, AbortSignal.abort()), { code: 'ABORTED' });
  assert.equal(ran, 0);
  assert.equal(kind(breaker), 'half-open');
  assert.equal(breaker.stats().probesInFlight, 0, 'the aborted call took no probe');
  assert.equal(await breaker.execute(op), 'ok', 'the next real call is the probe');
  assert.equal(kind(breaker), 'closed');
  assert.equal(breaker.stats().rejections, 0, 'an abort is not a breaker rejection');
});

test('half-open hints stay finite when nothing bounds the probe (openMs 0, maxWaitMs Infinity)', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, openMs: 0, halfOpen: { maxWaitMs: Infinity }, random: seededRandom(1) });
  await fail(breaker, 5);
  const probe = deferred();
  const running = breaker.execute(() => probe.promise);
  const error = await breaker.execute(up).then(() => assert.fail('should reject'), (e: CircuitOpenError) => e);
  assert.equal(error.state, 'half-open');
  assert.ok(Number.isFinite(error.retryAfterMs) && error.retryAfterMs >= 500 && error.retryAfterMs <= 1000, `hint ${error.retryAfterMs}`);
  probe.resolve("ok");
  await running;
});
