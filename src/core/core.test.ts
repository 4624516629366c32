import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock, systemClock } from './clock.js';
import { seededRandom } from './random.js';
import { EventEmitter } from './events.js';
import { CallContext } from './context.js';
import { BulwarkError, CircuitOpenError, RetriesExhaustedError, hasCode, rootCause } from './errors.js';
import { BasePolicy, Pipeline, pipeline, type Next, type PolicyDescription } from './policy.js';
import { abortedError } from './abort.js';
import { TimeoutError } from './errors.js';
import type { Policy } from './policy.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { timeout } from '../timeout/timeout.js';
import { hedge } from '../hedge/hedge.js';
import { fallback } from '../fallback/fallback.js';
import { retry } from '../retry/retry.js';
import { rateLimit } from '../ratelimit/policy.js';
import { memoryRateLimiter } from '../ratelimit/memory.js';
import { adaptiveLimiter } from '../concurrency/limiter.js';
import { aimd } from '../concurrency/limits/aimd.js';
import { adaptiveThrottle } from '../throttle/throttle.js';
import { reservationGate } from '../shedding/reservation.js';
import { keyedBreaker } from '../breaker/keyed.js';

test('virtual clock fires due timers in deadline order, ties in creation order', async () => {
  const clock = new VirtualClock(1000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push('b@20'), 20);
  clock.setTimeout(() => fired.push('a@10'), 10);
  clock.setTimeout(() => fired.push('c@20'), 20);
  const cleared = clock.setTimeout(() => fired.push('never'), 5);
  clock.clearTimeout(cleared);
  await clock.advance(15);
  assert.deepEqual(fired, ['a@10']);
  assert.equal(clock.now(), 1015);
  await clock.advance(5);
  assert.deepEqual(fired, ['a@10', 'b@20', 'c@20']);
  assert.equal(clock.pendingTimers, 0);
});

test('virtual clock lets promise chains run between timers', async () => {
  const clock = new VirtualClock();
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const log: number[] = [];
  void (async () => {
    await sleep(10);
    log.push(clock.now());
    await sleep(10);
    log.push(clock.now());
  })();
  await clock.advance(100);
  assert.deepEqual(log, [10, 20]);
});

test('virtual clock runAll fires a timer that settling promises sets, not only the ones already set', async () => {
  const clock = new VirtualClock();
  const fired: number[] = [];
  // An async step before the timer, as a policy that awaits a failed attempt before its backoff.
  void Promise.resolve().then(() => clock.setTimeout(() => fired.push(clock.now()), 100));
  assert.equal(await clock.runAll(), 1);
  assert.deepEqual(fired, [100]);
  assert.equal(clock.pendingTimers, 0);
});

test('seeded random is reproducible and uniform enough', () => {
  const a = seededRandom(42);
  const b = seededRandom(42);
  const xs = Array.from({ length: 10_000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.02, `mean ${mean}`);
  assert.notDeepEqual(xs.slice(0, 5), Array.from({ length: 5 }, seededRandom(43)));
});

test('event emitter: no listener, no call; dispose stops delivery; a throwing listener does not break emit', () => {
  const emitter = new EventEmitter<number>();
  assert.equal(emitter.active, false);
  const seen: number[] = [];
  const sub = emitter.event((n) => seen.push(n));
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  const bad = emitter.event(() => { throw new Error('boom'); });
  emitter.emit(1);
  sub.dispose();
  bad.dispose();
  emitter.emit(2);
  process.off('warning', onWarning);
  assert.deepEqual(seen, [1]);
  assert.equal(emitter.active, false);
});

test('errors carry stable codes, causes and cheap stacks for rejections', () => {
  const open = new CircuitOpenError('db', 1500, 'open');
  assert.equal(open.code, 'CIRCUIT_OPEN');
  assert.equal(open.retryAfterMs, 1500);
  assert.ok(open instanceof BulwarkError && open instanceof Error);
  assert.equal(open.name, 'CircuitOpenError');
  assert.doesNotMatch(open.stack ?? '', /\n\s+at /, 'a rejection captures no stack frames');
  assert.match(new RetriesExhaustedError(1, new Error('x')).stack ?? '', /\n\s+at /, 'real failures keep their stack');
  const inner = new Error('ECONNRESET');
  const exhausted = new RetriesExhaustedError(3, inner);
  assert.equal(exhausted.attempts, 3);
  assert.equal(rootCause(exhausted), inner);
  assert.ok(hasCode(exhausted, 'RETRIES_EXHAUSTED'));
  assert.ok(!hasCode(inner, 'RETRIES_EXHAUSTED'));
});

test('context: deadline from timeoutMs, remaining, derived deadlines only shrink', () => {
  const clock = new VirtualClock(100);
  const ctx = CallContext.root(clock, () => 1, { timeoutMs: 50, priority: 'high', tags: { route: '/x' } });
  assert.equal(ctx.deadline, 150);
  assert.equal(ctx.remaining(), 50);
  assert.equal(ctx.priority, 'high');
  assert.equal(ctx.derive({ deadline: 500 }).deadline, 150);
  assert.equal(ctx.derive({ deadline: 120 }).deadline, 120);
  assert.equal(CallContext.root(clock, () => 1).remaining(), Infinity);
  assert.throws(() => CallContext.root(clock, () => 1, { timeoutMs: -1 }), { code: 'INVALID_INPUT' });
  assert.throws(() => CallContext.root(clock, () => 1, { priority: 'urgent' as never }), { code: 'INVALID_INPUT' });
});

test('context: aborting a scope aborts its signal and its children, not its parent', () => {
  const clock = new VirtualClock();
  const caller = new AbortController();
  const root = CallContext.root(clock, () => 1, caller.signal);
  const scope = root.derive({ abortable: true });
  const child = scope.derive({ attempt: 2 });
  const grandchild = child.derive({ abortable: true });
  const gSignal = grandchild.signal;
  scope.abort('stop');
  assert.equal(scope.signal.aborted, true);
  assert.equal(child.signal.aborted, true);
  assert.equal(gSignal.aborted, true);
  assert.equal(gSignal.reason, 'stop');
  assert.equal(root.aborted, false);
  assert.equal(caller.signal.aborted, false);
  assert.throws(() => root.abort(), /not abortable/);
});

test('context: the caller aborting reaches a lazily created scope signal', () => {
  const caller = new AbortController();
  const root = CallContext.root(new VirtualClock(), () => 1, { signal: caller.signal });
  const scope = root.derive({ abortable: true });
  const signal = scope.signal;
  assert.equal(signal.aborted, false);
  caller.abort(new Error('client gone'));
  assert.equal(signal.aborted, true);
  assert.equal(scope.aborted, true);
  const late = root.derive({ abortable: true });
  assert.equal(late.aborted, true);
  assert.equal(late.signal.aborted, true);
});

class Tag extends BasePolicy {
  readonly kind = 'tag';
  constructor(private readonly label: string, private readonly log: string[]) { super(undefined); }
  async run<T>(context: CallContext, next: Next<T>): Promise<T> {
    this.log.push(`>${this.label}`);
    try { return await next(context); } finally { this.log.push(`<${this.label}`); }
  }
  stats(): object { return {}; }
  describe(): PolicyDescription { return { kind: this.kind, name: this.label, options: {} }; }
}

test('pipeline composes outermost first, flattens nested pipelines and describes itself', async () => {
  const log: string[] = [];
  const p = pipeline(new Tag('a', log), pipeline(new Tag('b', log), new Tag('c', log)));
  const result = await p.execute(() => { log.push('op'); return 42; });
  assert.equal(result, 42);
  assert.deepEqual(log, ['>a', '>b', '>c', 'op', '<c', '<b', '<a']);
  assert.deepEqual(p.describe().policies?.map((d) => d.name), ['a', 'b', 'c']);
  await assert.rejects(p.execute(() => { throw new Error('sync throw'); }), /sync throw/);
  await assert.rejects(p.execute(() => 1, { timeoutMs: NaN }), { code: 'INVALID_INPUT' });
});

test('context: calls nobody can abort get their own signal, so forgotten listeners die with the call', () => {
  const clock = new VirtualClock();
  const a = CallContext.root(clock, () => 1);
  const b = CallContext.root(clock, () => 1);
  assert.notEqual(a.signal, b.signal);
  assert.equal(a.signal, a.signal, 'stable within one call');
  assert.equal(a.derive({ attempt: 2 }).signal, a.signal);
  assert.equal(a.canAbort, false);
  assert.equal(a.derive({ abortable: true }).canAbort, true);
});

test('sleep: waits on the injected clock; an abort (even one that already happened) ends it with ABORTED', async () => {
  const { sleep } = await import('./abort.js');
  const clock = new VirtualClock();
  let woke = -1;
  const nap = sleep(clock, 50).then(() => { woke = clock.now(); });
  await clock.advance(50);
  await nap;
  assert.equal(woke, 50);

  const caller = new AbortController();
  const waiting = sleep(clock, 1000, caller.signal);
  caller.abort();
  await assert.rejects(waiting, { code: 'ABORTED' });
  await assert.rejects(sleep(clock, 1000, caller.signal), { code: 'ABORTED' }, 'an already aborted signal must not wait for the timer');
  assert.equal(clock.pendingTimers, 0, 'the timer is cleared on abort');
});

test('a pipeline refuses an aborted call with ABORTED before any policy takes anything or the operation runs', async () => {
  const clock = new VirtualClock();
  const cb = circuitBreaker({ clock, openMs: 1000 });
  const bh = bulkhead({ clock, maxConcurrent: 1 });
  const to = timeout({ clock, ms: 1000 });
  const hd = hedge({ clock, delayMs: 10, idempotent: true });
  const shapes: Policy<unknown>[][] = [
    [fallback({ clock, fallback: 'cached' }), retry({ clock }), cb, bh, to],
    [cb, bh], // fused, no retry in front
    [bh, to],
    [fallback({ clock, fallback: 'cached' }), hd, to],
  ];
  let ran = 0;
  for (const policies of shapes) {
    const reason = new Error('client gone');
    await assert.rejects(pipeline(...policies).execute(() => { ran++; return 'x'; }, AbortSignal.abort(reason)), (e: any) => e.code === 'ABORTED' && e.cause === reason);
  }
  assert.equal(ran, 0, 'the operation never ran');
  assert.deepEqual({ active: bh.active, admitted: bh.stats().admitted }, { active: 0, admitted: 0 });
  assert.equal(clock.pendingTimers, 0, 'no timer armed');
  assert.equal(hd.stats().calls, 0);
  assert.equal(await pipeline(cb, bh, to).execute(() => 'ok'), 'ok');
});

test('a pipeline whose policies run on different clocks is refused with INVALID_OPTIONS when built', async () => {
  const virtual = new VirtualClock();
  const other = new VirtualClock();
  const mixed = (e: any) => e.code === 'INVALID_OPTIONS' && /different clocks \(fallback on one, timeout on another\)/.test(e.message);
  // An omitted clock is the system clock: a virtual one next to it is a mix.
  assert.throws(() => pipeline(fallback({ fallback: 1 }), timeout({ clock: virtual, ms: 100 })), mixed);
  assert.throws(() => pipeline(retry({ clock: virtual }), bulkhead({ clock: other, maxConcurrent: 1 })), { code: 'INVALID_OPTIONS' });
  // Nested pipelines are flattened and checked as one; an explicit pipeline clock counts too.
  const inner = pipeline(timeout({ clock: other, ms: 100 }));
  assert.throws(() => pipeline(retry({ clock: virtual }), inner), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new Pipeline([timeout({ clock: virtual, ms: 100 })], { clock: other }), { code: 'INVALID_OPTIONS' });

  // One clock everywhere builds, and the whole pipeline runs on it.
  const one = pipeline(fallback({ clock: virtual, fallback: 'late' }), timeout({ clock: virtual, ms: 100, graceMs: 0 }));
  assert.equal(one.clock, virtual);
  let settled: unknown;
  void one.execute(() => new Promise<string>(() => {})).then((value) => { settled = value; });
  await virtual.advance(99);
  assert.equal(settled, undefined);
  await virtual.advance(1);
  assert.equal(settled, 'late', 'the timeout fired on the virtual clock and the fallback answered');
  assert.equal(pipeline(retry(), timeout({ ms: 100 })).clock, systemClock, 'all omitted: the system clock for all');
});

test('abortedError: ABORTED with the reason as cause; a Bulwark error keeps its code', () => {
  const reason = new Error('client gone');
  const aborted = abortedError(reason);
  assert.equal(aborted.code, 'ABORTED');
  assert.equal(aborted.cause, reason);
  const timedOut = new TimeoutError(100);
  assert.equal(abortedError(timedOut), timedOut);
  assert.equal(abortedError(undefined).code, 'ABORTED');
});

test('the admission policies refuse an aborted call with ABORTED before taking a token, a slot or a sample', async () => {
  const clock = new VirtualClock();
  const limiter = memoryRateLimiter({ limit: 1, intervalMs: 60_000, clock });
  const concurrency = adaptiveLimiter({ limit: aimd(), window: false, clock });
  const throttle = adaptiveThrottle({ clock });
  const gate = reservationGate({ total: 10, shares: { normal: 1 }, clock });
  const breakers = keyedBreaker({ clock });
  const policies: Policy[] = [rateLimit({ limiter }), concurrency, throttle, gate, breakers.policy((ctx) => String(ctx.tags.host))];
  let ran = 0;
  for (const policy of policies) {
    const reason = new Error('client gone');
    await assert.rejects(
      policy.execute(() => { ran++; return 'x'; }, { signal: AbortSignal.abort(reason), tags: { host: 'a' } }),
      (e: any) => e.code === 'ABORTED' && e.cause === reason,
      policy.kind,
    );
  }
  assert.equal(ran, 0, 'the operation never ran');
  assert.equal(limiter.consume('global').allowed, true, 'no token taken: the one token of the minute is still there');
  assert.equal(concurrency.inflight, 0);
  assert.equal(throttle.snapshot().requests, 0, 'not counted as a request');
  assert.equal(gate.stats().classes.normal!.inflight, 0);
  assert.equal(breakers.size, 0, 'no breaker made for the key');
});
