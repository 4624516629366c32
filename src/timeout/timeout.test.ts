import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { timeout } from './timeout.js';
import type { CallContext } from '../core/context.js';

function sleeper(clock: VirtualClock) {
  return (ms: number, ctx?: CallContext) => new Promise<string>((resolve, reject) => {
    const t = clock.setTimeout(() => resolve('done'), ms);
    ctx?.signal.addEventListener('abort', () => { clock.clearTimeout(t); reject(ctx.signal.reason); });
  });
}

test('a slow call times out with TIMEOUT and its signal is aborted', async () => {
  const clock = new VirtualClock();
  const sleep = sleeper(clock);
  const policy = timeout({ ms: 100, clock });
  let seen: AbortSignal | undefined;
  const p = policy.execute((ctx) => { seen = ctx.signal; return sleep(1000, ctx); });
  const outcome = assert.rejects(p, (e: any) => e.code === 'TIMEOUT' && e.timeoutMs === 100 && e.abandoned === false);
  await clock.advance(100);
  await outcome;
  assert.equal(seen?.aborted, true);
  assert.equal(clock.now(), 100);
  assert.equal(policy.inFlight, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer left behind');
});

test('a fast call passes its value through; calls share the one guard timer, which ends by itself', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 100, clock });
  const p = policy.execute((ctx) => sleeper(clock)(30, ctx));
  await clock.advance(30);
  assert.equal(await p, 'done');
  // The idle guard timer stays armed for the next call (it no longer reaches the policy: see
  // deadline-queue.test.ts); concurrent and sequential calls share it.
  assert.equal(clock.pendingTimers, 1, 'only the shared guard timer');
  const a = policy.execute((ctx) => sleeper(clock)(10, ctx));
  const b = policy.execute((ctx) => sleeper(clock)(20, ctx));
  await clock.advance(10);
  assert.equal(await a, 'done');
  assert.equal(clock.pendingTimers, 2, 'one call still pending: its operation timer and the shared guard timer');
  await clock.advance(10);
  assert.equal(await b, 'done');
  await clock.advance(100);
  assert.equal(clock.pendingTimers, 0, 'the guard timer fired once with nothing to do and was not re-armed');
  assert.equal(await policy.execute(() => 'sync'), 'sync');
  assert.equal(clock.pendingTimers, 1, 'an operation that answers at once leaves only the idle guard timer');
});

test('work that ignores its signal is abandoned after the grace period, and says so', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 100, graceMs: 50, clock });
  let abandonedEvents = 0;
  policy.onTimeout((e) => { if (e.abandoned) abandonedEvents++; });
  const p = policy.execute(() => sleeper(clock)(10_000));
  let settledAt = -1;
  p.catch(() => { settledAt = clock.now(); });
  await clock.advance(120);
  assert.equal(settledAt, -1, 'still waiting for the work during the grace period');
  await clock.advance(30);
  await assert.rejects(p, (e: any) => e.code === 'TIMEOUT' && e.abandoned === true);
  assert.equal(settledAt, 150);
  assert.equal(abandonedEvents, 1);
});

test('the timeout waits for cooperative work to end before rejecting (permits stay truthful)', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 100, clock });
  let ended = -1;
  const p = policy.execute((ctx) => new Promise((_, reject) => {
    ctx.signal.addEventListener('abort', () => {
      clock.setTimeout(() => { ended = clock.now(); reject(new Error('cleaned up')); }, 20);
    });
  }));
  let rejectedAt = -1;
  p.catch(() => { rejectedAt = clock.now(); });
  await clock.advance(200);
  await assert.rejects(p, { code: 'TIMEOUT' });
  assert.equal(ended, 120);
  assert.equal(rejectedAt, 120);
});

test('deadline-derived: attempt timeout = min(configured, remaining x 0.9); expired deadline fails before the call', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 1000, clock });
  let sawDeadline = 0;
  const p = policy.execute((ctx) => { sawDeadline = ctx.deadline; return sleeper(clock)(10_000, ctx); }, { timeoutMs: 200 });
  const check = assert.rejects(p, (e: any) => e.code === 'TIMEOUT' && e.timeoutMs === 180);
  await clock.advance(180);
  await check;
  assert.equal(sawDeadline, 180);

  let called = false;
  await assert.rejects(policy.execute(() => { called = true; return 1; }, { deadline: clock.now() - 1 }), { code: 'DEADLINE_EXCEEDED' });
  await assert.rejects(policy.execute(() => { called = true; return 1; }, { deadline: clock.now() }), { code: 'DEADLINE_EXCEEDED' });
  assert.equal(called, false);

  const margin = timeout({ ms: 1000, safetyMarginMs: 50, clock });
  const q = margin.execute((ctx) => sleeper(clock)(10_000, ctx), { timeoutMs: 200 });
  const check2 = assert.rejects(q, (e: any) => e.timeoutMs === 150);
  await clock.advance(150);
  await check2;
});

test('many concurrent calls share one timer (no per-call setTimeout)', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 100, clock });
  const calls = Array.from({ length: 1000 }, (_, i) => policy.execute((ctx) => sleeper(clock)(i % 2 ? 50 : 500, ctx)));
  assert.equal(clock.pendingTimers, 1 + 1000, 'one guard timer plus the operations own timers');
  const settled = Promise.allSettled(calls);
  await clock.advance(500);
  const results = await settled;
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 500);
  assert.equal(results.filter((r) => r.status === 'rejected' && (r.reason as any).code === 'TIMEOUT').length, 500);
  assert.equal(clock.pendingTimers, 0);
});

test('the caller aborting reaches the operation through the timeout scope', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 1000, clock });
  const caller = new AbortController();
  const p = policy.execute((ctx) => sleeper(clock)(10_000, ctx), { signal: caller.signal });
  await clock.advance(10);
  caller.abort(new Error('client gone'));
  await assert.rejects(p, /client gone/);
});

test('bad options fail when the policy is built', () => {
  assert.throws(() => timeout({ ms: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => timeout({ ms: -5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => timeout({ ms: 10, deadlineRatio: 2 }), { code: 'INVALID_OPTIONS' });
});

test('a call aborted before it arrives is refused with ABORTED and arms no timer', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ clock, ms: 1000 });
  let ran = 0;
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, AbortSignal.abort(new Error('client gone'))), { code: 'ABORTED', message: /client gone/ });
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, { signal: AbortSignal.abort(), timeoutMs: 5000 }), { code: 'ABORTED' });
  assert.equal(ran, 0, 'the operation never ran');
  assert.equal(policy.inFlight, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer was armed');
});
