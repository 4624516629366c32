import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { coalesce } from './coalesce.js';

/** A dependency on the virtual clock that counts calls and remembers each call's signal. */
function backend(clock: VirtualClock, ms = 100) {
  const state = { calls: 0, signals: [] as AbortSignal[], fail: undefined as Error | undefined };
  const fn = (ctx: CallContext) => {
    state.calls++;
    const signal = ctx.signal;
    state.signals.push(signal);
    const n = state.calls;
    return new Promise<{ n: number }>((resolve, reject) => {
      const timer = clock.setTimeout(() => (state.fail ? reject(state.fail) : resolve({ n })), ms);
      signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(signal.reason); }, { once: true });
    });
  };
  return { state, fn };
}

test('1,000 concurrent identical calls make one backend call and all get its result', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const { state, fn } = backend(clock);
  const calls = Array.from({ length: 1000 }, () => coalescer.execute('user:42', fn));
  assert.equal(coalescer.inFlight, 1);
  await clock.advance(100);
  const results = await Promise.all(calls);
  assert.equal(state.calls, 1);
  assert.ok(results.every((r) => r === results[0] && r.n === 1));
  assert.deepEqual(coalescer.stats(), { executions: 1, shared: 999, inFlight: 0, kept: 0 });

  // Waiters with their own signals take the per-waiter path; still one backend call.
  const controllers = Array.from({ length: 1000 }, () => new AbortController());
  const withSignals = controllers.map((c) => coalescer.execute('user:42', fn, { signal: c.signal }));
  await clock.advance(100);
  assert.equal((await Promise.all(withSignals)).every((r) => r.n === 2), true);
  assert.equal(state.calls, 2, 'the finished execution is not reused: a new burst, a new call');
});

test('different keys do not share; a pipeline takes the key from tags.key or a key function', async () => {
  const clock = new VirtualClock();
  const { fn } = backend(clock);
  const byTag = pipeline(coalesce({ clock }));
  const a = [byTag.execute(fn, { tags: { key: 'a' } }), byTag.execute(fn, { tags: { key: 'a' } }), byTag.execute(fn, { tags: { key: 'b' } })];
  await clock.advance(100);
  assert.deepEqual((await Promise.all(a)).map((r) => r.n), [1, 1, 2]);

  const byRoute = coalesce({ clock, key: (ctx) => (ctx.tags.method === 'GET' ? String(ctx.tags.url) : undefined) });
  const b = [
    byRoute.execute(fn, { tags: { method: 'GET', url: '/x' } }),
    byRoute.execute(fn, { tags: { method: 'GET', url: '/x' } }),
    byRoute.execute(fn, { tags: { method: 'POST', url: '/x' } }), // undefined key: runs on its own
    byRoute.execute(fn, { tags: { method: 'POST', url: '/x' } }),
  ];
  await clock.advance(100);
  assert.deepEqual((await Promise.all(b)).map((r) => r.n), [3, 3, 4, 5]);

  await assert.rejects(coalesce({ clock }).execute(fn), { code: 'INVALID_INPUT' });
  await assert.rejects(coalesce({ clock }).execute('k', 'not a function' as never), { code: 'INVALID_INPUT' });
});

test('one waiter aborting does not abort the others or the shared call', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const { state, fn } = backend(clock);
  const leaving = new AbortController();
  const staying = new AbortController();
  const first = coalescer.execute('k', fn, { signal: leaving.signal });
  const second = coalescer.execute('k', fn, { signal: staying.signal });
  const pinned = coalescer.execute('k', fn);
  await clock.advance(10);
  leaving.abort(new Error('client went away'));
  await assert.rejects(first, (e: any) => e.code === 'ABORTED' && /client went away/.test(e.message));
  assert.equal(state.signals[0]!.aborted, false);
  await clock.advance(90);
  assert.equal((await second).n, 1);
  assert.equal((await pinned).n, 1);
  assert.equal(state.calls, 1);
});

test('every waiter aborting aborts the backend call; the next call starts afresh', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const abandoned: string[] = [];
  coalescer.onAbandoned((e) => abandoned.push(e.key));
  const { state, fn } = backend(clock);
  const controllers = Array.from({ length: 1000 }, () => new AbortController());
  const calls = controllers.map((c) => coalescer.execute('k', fn, { signal: c.signal }));
  const outcomes = Promise.allSettled(calls);
  await clock.advance(10);
  for (const c of controllers.slice(0, 999)) c.abort();
  await clock.advance(1);
  assert.equal(state.signals[0]!.aborted, false, 'one waiter is still there');
  controllers[999]!.abort();
  await clock.advance(1);
  assert.equal(state.signals[0]!.aborted, true);
  assert.equal((state.signals[0]!.reason as any).code, 'ABORTED');
  const settled = await outcomes;
  assert.ok(settled.every((s) => s.status === 'rejected' && (s.reason as any).code === 'ABORTED'));
  assert.deepEqual(abandoned, ['k']);
  assert.equal(coalescer.inFlight, 0);
  assert.equal(clock.pendingTimers, 0, 'the backend timer was cleared by the abort');

  const again = coalescer.execute('k', fn);
  await clock.advance(100);
  assert.equal((await again).n, 2);
});

test('a waiter that cannot leave keeps the shared call alive when the others leave', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const { state, fn } = backend(clock);
  const pinned = coalescer.execute('k', fn);
  const caller = new AbortController();
  const leaving = coalescer.execute('k', fn, { signal: caller.signal });
  caller.abort();
  await assert.rejects(leaving, { code: 'ABORTED' });
  assert.equal(state.signals[0]!.aborted, false);
  await clock.advance(100);
  assert.equal((await pinned).n, 1);
});

test('a per-caller timeout outside the coalescer lets a slow waiter go without cancelling the others', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const impatient = pipeline(timeout({ ms: 50, clock }), coalescer);
  const { state, fn } = backend(clock, 100);
  const a = assert.rejects(impatient.execute(fn, { tags: { key: 'k' } }), { code: 'TIMEOUT' });
  const b = coalescer.execute('k', fn);
  await clock.advance(50);
  await a;
  await clock.advance(50);
  assert.equal((await b).n, 1);
  assert.equal(state.calls, 1);
});

test('errors are shared by the waiters of one execution but never kept', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock, resultTtlMs: 1000 });
  const { state, fn } = backend(clock);
  state.fail = new Error('503');
  const calls = Promise.allSettled(Array.from({ length: 10 }, () => coalescer.execute('k', fn)));
  await clock.advance(100);
  const settled = await calls;
  assert.ok(settled.every((s) => s.status === 'rejected' && s.reason === state.fail));
  assert.equal(state.calls, 1);
  state.fail = undefined;
  const next = coalescer.execute('k', fn);
  await clock.advance(100);
  assert.equal((await next).n, 2, 'the failure was not cached');
  const sync = coalesce({ clock });
  await assert.rejects(sync.execute('k', () => { throw new Error('sync'); }), /sync/);
  assert.equal(sync.inFlight, 0);
});

test('optional result keeping: served without a call while younger than resultTtlMs, bounded in size', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock, resultTtlMs: 500, maxResults: 2 });
  const { state, fn } = backend(clock, 100);
  const first = coalescer.execute('k', fn);
  await clock.advance(100);
  const value = await first;
  await clock.advance(499);
  assert.equal(await coalescer.execute('k', fn), value);
  assert.equal(state.calls, 1);
  await clock.advance(1); // exactly resultTtlMs old: expired
  const fresh = coalescer.execute('k', fn);
  await clock.advance(100);
  assert.equal((await fresh).n, 2);

  for (const key of ['a', 'b', 'c']) {
    const p = coalescer.execute(key, fn);
    await clock.advance(100);
    await p;
  }
  assert.equal(coalescer.stats().kept, 2, 'oldest evicted');
  coalescer.forget('c');
  assert.equal(coalescer.stats().kept, 1);
  assert.throws(() => coalesce({ resultTtlMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => coalesce({ maxResults: 0 }), { code: 'INVALID_OPTIONS' });
});

test('an already aborted caller is rejected without starting anything', async () => {
  const clock = new VirtualClock();
  const coalescer = coalesce({ clock });
  const { state, fn } = backend(clock);
  await assert.rejects(coalescer.execute('k', fn, { signal: AbortSignal.abort() }), { code: 'ABORTED' });
  assert.equal(state.calls, 0);
  assert.equal(coalescer.inFlight, 0);
});
