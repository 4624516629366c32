import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { degradation, markDegraded } from '../core/degraded.js';
import { pipeline } from '../core/policy.js';
import { staleCache } from './stale-cache.js';

/** A dependency on the virtual clock: answers `{ version }` after `ms`, or fails while `down`. */
function dependency(clock: VirtualClock, ms = 10) {
  const state = { calls: 0, down: false, version: 0 };
  const fn = (_ctx: CallContext) => {
    state.calls++;
    return new Promise<{ version: number }>((resolve, reject) => {
      clock.setTimeout(() => (state.down ? reject(new Error('dependency down')) : resolve({ version: ++state.version })), ms);
    });
  };
  return { state, fn };
}

/** Starts a call and lets the virtual clock run until it settles (at most `maxMs`). */
async function call<T>(clock: VirtualClock, p: Promise<T>, maxMs = 1000): Promise<T> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < maxMs && !done; i++) await clock.advance(1);
  return p;
}

test('fresh within ttl, served without calling; a miss loads once', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 1000, clock });
  const { state, fn } = dependency(clock);
  const first = await call(clock, cache.execute('k', fn));
  assert.deepEqual(first, { version: 1 });
  await clock.advance(999); // stored at t=10, now 999 ms old: still fresh
  assert.equal(await cache.execute('k', fn), first);
  assert.equal(degradation(first), undefined);
  assert.equal(state.calls, 1);
  await clock.advance(1); // exactly ttl old: no longer fresh, no stale window: foreground load
  const second = await call(clock, cache.execute('k', fn));
  assert.deepEqual(second, { version: 2 });
  assert.equal(state.calls, 2);
  assert.equal(clock.pendingTimers, 0, 'no per-entry timers');
});

test('stale-while-revalidate: at its edges, stale served at once (degraded, with age) and one coalesced background refresh', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 1000, staleWhileRevalidateMs: 500, clock });
  const stale: Array<[string, number]> = [];
  cache.onStale((e) => stale.push([e.reason, e.ageMs]));
  const { state, fn } = dependency(clock, 10);
  await call(clock, cache.execute('k', fn)); // stored at t=10
  await clock.advance(1000); // age exactly ttl: first instant of the stale window
  const t0 = clock.now();
  const served = await Promise.all(Array.from({ length: 5 }, () => cache.execute('k', fn)));
  assert.equal(clock.now(), t0, 'served without waiting');
  assert.ok(served.every((v) => v.version === 1));
  assert.deepEqual(degradation(served[0]), { source: 'stale-cache', ageMs: 1000 });
  assert.equal(state.calls, 2, 'one background refresh for five stale reads');
  await clock.advance(10);
  const refreshed = await cache.execute('k', fn);
  assert.deepEqual(refreshed, { version: 2 });
  assert.equal(degradation(refreshed), undefined);
  assert.deepEqual(stale, Array.from({ length: 5 }, () => ['revalidating', 1000]));

  // Last instant of the window (age ttl + swr - 1) is still served stale...
  await clock.advance(1000 + 500 - 1);
  const last = await cache.execute('k', fn);
  assert.equal(last.version, 2);
  assert.equal(degradation(last)?.ageMs, 1499);
  assert.equal(state.calls, 3);
  // ...and at ttl + swr the entry can no longer be served stale: a foreground load.
  const clock2 = new VirtualClock();
  const cache2 = staleCache({ ttlMs: 1000, staleWhileRevalidateMs: 500, clock: clock2 });
  const dep2 = dependency(clock2, 10);
  await call(clock2, cache2.execute('k', dep2.fn));
  await clock2.advance(1500);
  const t1 = clock2.now();
  const beyond = await call(clock2, cache2.execute('k', dep2.fn));
  assert.equal(clock2.now() - t1, 10, 'waited for the load');
  assert.deepEqual(beyond, { version: 2 });
  assert.equal(degradation(beyond), undefined);
});

test('background refresh errors never reach callers; they are reported as events', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 100, staleWhileRevalidateMs: 1000, clock });
  const errors: string[] = [];
  cache.onRevalidateError((e) => errors.push(`${e.key}: ${(e.error as Error).message}`));
  const { state, fn } = dependency(clock, 10);
  await call(clock, cache.execute('k', fn));
  state.down = true;
  await clock.advance(200);
  const v = await cache.execute('k', fn);
  assert.equal(v.version, 1);
  await clock.advance(10);
  assert.deepEqual(errors, ['k: dependency down']);
  const again = await cache.execute('k', fn);
  assert.equal(again.version, 1, 'still served stale after the failed refresh');
  assert.equal(cache.stats().revalidateErrors, 1);
});

test('stale-if-error: at its edges, a failed load is answered with the stale value (degraded, with the error and age)', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 1000, staleIfErrorMs: 5000, clock });
  const { state, fn } = dependency(clock, 10);
  await call(clock, cache.execute('k', fn)); // stored at t=10
  state.down = true;
  await clock.advance(1000 - 10); // age ttl - 10: fresh, no call
  assert.equal((await cache.execute('k', fn)).version, 1);
  assert.equal(state.calls, 1);
  await clock.advance(10); // age exactly ttl
  const atTtl = await call(clock, cache.execute('k', fn));
  assert.equal(atTtl.version, 1);
  const mark = degradation(atTtl);
  assert.equal(mark?.source, 'stale-cache');
  assert.equal(mark?.ageMs, 1010, 'age when served (the load took 10 ms)');
  assert.match((mark?.reason as Error).message, /dependency down/);

  await clock.advance(5000 - 10 - 10 - 1); // load ends at age ttl + sie - 1
  const lastServable = await call(clock, cache.execute('k', fn));
  assert.equal(degradation(lastServable)?.ageMs, 5999);
  await assert.rejects(call(clock, cache.execute('k', fn)), /dependency down/, 'beyond staleIfError the error surfaces');
  assert.equal(cache.stats().staleOnError, 2);
});

test('a dependency outage within staleIfError gives zero errors to callers, then fresh data after recovery', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 5_000, staleWhileRevalidateMs: 5_000, staleIfErrorMs: 60_000, clock });
  const { state, fn } = dependency(clock, 20);
  const keys = Array.from({ length: 20 }, (_, i) => `product:${i}`);
  await Promise.all(keys.map((k) => call(clock, cache.execute(k, fn))));
  state.down = true;
  let errors = 0;
  let degraded = 0;
  let served = 0;
  for (let second = 0; second < 45; second++) { // a 45 s outage, 20 reads per second
    const reads = keys.map((k) => cache.execute(k, fn).then((v) => { served++; if (degradation(v)) degraded++; }, () => { errors++; }));
    await clock.advance(1000);
    await Promise.all(reads);
  }
  assert.equal(errors, 0);
  assert.equal(served, 45 * 20);
  assert.ok(degraded >= 40 * 20, `degraded ${degraded}`);
  state.down = false;
  await Promise.all(keys.map((k) => call(clock, cache.execute(k, fn))));
  await clock.advance(100);
  const after = await Promise.all(keys.map((k) => cache.execute(k, fn)));
  assert.ok(after.every((v) => degradation(v) === undefined && v.version > 20), 'recovered with fresh values');
});

test('concurrent misses share one load; a caller aborting gets its abort, not a stale value', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 100, staleIfErrorMs: 10_000, clock });
  const { state, fn } = dependency(clock, 50);
  const many = Promise.all(Array.from({ length: 100 }, () => cache.execute('k', fn)));
  await clock.advance(50);
  assert.ok((await many).every((v) => v.version === 1));
  assert.equal(state.calls, 1);
  await clock.advance(200);
  const caller = new AbortController();
  const p = cache.execute('k', (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason))), { signal: caller.signal });
  caller.abort(new Error('gone'));
  await assert.rejects(p, { code: 'ABORTED' });
});

test('only successful results are cached; shouldCache filters; fallback values are not cached by default', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 1000, clock, shouldCache: (v) => (v as { ok: boolean }).ok });
  let n = 0;
  await assert.rejects(cache.execute('k', () => { n++; throw new Error('boom'); }), /boom/);
  assert.equal(cache.size, 0);
  await cache.execute('k', () => { n++; return { ok: false }; });
  assert.equal(cache.size, 0);
  const stored = await cache.execute('k', () => { n++; return { ok: true }; });
  assert.equal(await cache.execute('k', () => { n++; return { ok: true }; }), stored);
  assert.equal(n, 3);

  const defaults = staleCache({ ttlMs: 1000, clock });
  await defaults.execute('f', () => markDegraded({ items: [] }, { source: 'fallback' }));
  assert.equal(defaults.size, 0, 'a fallback value is not stored as real data');
  await defaults.execute('p', () => 42);
  assert.equal(await defaults.execute('p', () => 0), 42, 'primitives are cached too');
});

test('bounded by maxEntries with LRU eviction; recently read keys survive', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 60_000, maxEntries: 4, clock });
  for (const k of ['a', 'b', 'c', 'd']) cache.set(k, k);
  // Push 'a' into the older half, then read it: it is moved to the recent end.
  cache.set('e', 'e'); // evicts a
  assert.equal(cache.get('a'), undefined);
  cache.set('f', 'f'); // evicts b
  assert.equal(await cache.execute('c', () => 'reloaded'), 'c'); // c was in the older half: touched
  cache.set('g', 'g'); // evicts d, not c
  assert.equal(cache.get('c'), 'c');
  assert.equal(cache.get('d'), undefined);
  assert.equal(cache.size, 4);
  assert.equal(cache.stats().evictions, 3);
  assert.equal(clock.pendingTimers, 0);
});

test('pipeline use: key from tags.key or a key function; undefined bypasses; missing key is INVALID_INPUT', async () => {
  const clock = new VirtualClock();
  let n = 0;
  const op = () => ++n;
  const byTag = pipeline(staleCache({ ttlMs: 1000, clock }));
  assert.equal(await byTag.execute(op, { tags: { key: 'x' } }), 1);
  assert.equal(await byTag.execute(op, { tags: { key: 'x' } }), 1);
  await assert.rejects(byTag.execute(op), { code: 'INVALID_INPUT' });
  const onlyGets = staleCache({ ttlMs: 1000, clock, key: (ctx) => (ctx.tags.method === 'GET' ? String(ctx.tags.url) : undefined) });
  assert.equal(await onlyGets.execute(op, { tags: { method: 'GET', url: '/a' } }), 2);
  assert.equal(await onlyGets.execute(op, { tags: { method: 'GET', url: '/a' } }), 2);
  assert.equal(await onlyGets.execute(op, { tags: { method: 'POST', url: '/a' } }), 3);
  assert.equal(await onlyGets.execute(op, { tags: { method: 'POST', url: '/a' } }), 4);
});

test('peek, get, set, delete; options validated when built', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 100, staleIfErrorMs: 100, clock });
  cache.set('k', 'v');
  assert.deepEqual(cache.peek('k'), { value: 'v', ageMs: 0, state: 'fresh' });
  await clock.advance(150);
  assert.equal(cache.get('k'), undefined);
  assert.equal(cache.peek('k')?.state, 'stale');
  await clock.advance(50);
  assert.equal(cache.peek('k')?.state, 'expired');
  assert.equal(cache.delete('k'), true);
  assert.equal(cache.peek('k'), undefined);
  assert.throws(() => staleCache({} as never), { code: 'INVALID_OPTIONS' });
  assert.throws(() => staleCache({ ttlMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => staleCache({ ttlMs: 10, staleIfErrorMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => staleCache({ ttlMs: 10, maxEntries: 0 }), { code: 'INVALID_OPTIONS' });
  assert.ok(staleCache({ ttlMs: 10, staleWhileRevalidateMs: 0, staleIfErrorMs: 0 }), 'zero windows are legal');
});

test('a caller that already aborted is refused with ABORTED: no load, no background refresh, not even a fresh hit', async () => {
  const clock = new VirtualClock();
  const cache = staleCache({ ttlMs: 100, staleWhileRevalidateMs: 1000, clock });
  let loads = 0;
  const load = async () => ++loads;
  assert.equal(await cache.execute('k', load), 1);
  const gone = AbortSignal.abort(new Error('client left'));
  await assert.rejects(cache.execute('k', load, gone), { code: 'ABORTED' });
  await assert.rejects(cache.execute('other', load, { signal: gone }), { code: 'ABORTED' });
  await clock.advance(150); // stale: a live caller would get the value and start a refresh
  await assert.rejects(cache.execute('k', load, gone), { code: 'ABORTED' });
  await clock.advance(0);
  assert.equal(loads, 1, 'nothing ran for the callers that had left');
});
