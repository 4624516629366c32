import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { IdempotencyEngine, type Lease } from './engine.js';
import { recordId } from './scope.js';
import { MemoryIdempotencyStore } from './stores/memory-store.js';
import type { ClaimResult, IdempotencyStore } from './types.js';

const scope = (key = 'k1', principal: string | null = 'alice') => ({ principal, method: 'POST', route: '/orders', key });

function setup(options: Partial<ConstructorParameters<typeof IdempotencyEngine>[0]> = {}) {
  const clock = new VirtualClock(1_000_000);
  const store = new MemoryIdempotencyStore({ clock });
  const engine = new IdempotencyEngine({ store, clock, ...options });
  return { clock, store, engine };
}

async function lease(engine: IdempotencyEngine, key = 'k1'): Promise<Lease> {
  const outcome = await engine.claim(scope(key), 'fp');
  assert.equal(outcome.kind, 'new');
  return (outcome as { lease: Lease }).lease;
}

test('options are validated when the engine is built', () => {
  const store = new MemoryIdempotencyStore();
  assert.throws(() => new IdempotencyEngine({ store, leaseMs: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyEngine({ store, ttlMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyEngine({ store, leaseMs: 100, renewEveryMs: 100 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyEngine({ store, completeAttempts: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyEngine({} as never), { code: 'INVALID_OPTIONS' });
  const engine = new IdempotencyEngine({ store });
  assert.deepEqual(engine.describe().options, { store: 'memory', leaseMs: 30_000, ttlMs: 86_400_000, renewEveryMs: 10_000, guarded: false });
});

test('bad input at call time is a clear INVALID_INPUT error', async () => {
  const { engine } = setup();
  await assert.rejects(engine.claim({ ...scope(), method: 'PO ST' }, 'fp'), { code: 'INVALID_INPUT' });
  await assert.rejects(engine.claim(scope(''), 'fp'), { code: 'INVALID_INPUT' });
  await assert.rejects(engine.claim(scope(), ''), { code: 'INVALID_INPUT' });
  await assert.rejects(engine.claim(scope(), 'fp', { waitMs: -1 }), { code: 'INVALID_INPUT' });
  await lease(engine, 'held');
  await assert.rejects(engine.claim(scope('held'), 'fp', { waitMs: 1_000, pollMs: 0 }), { code: 'INVALID_INPUT' });
  const l = await lease(engine);
  await assert.rejects(l.complete({ status: 42 }), { code: 'INVALID_INPUT' });
  await assert.rejects(l.step('', () => 1), { code: 'INVALID_INPUT' });
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await assert.rejects(l.complete({ body: cyclic }), { code: 'INVALID_INPUT' });
  assert.equal(l.status, 'active', 'a bad response does not end the lease');
});

test('one lease expiry, no double execution — property over lease lengths and arrival times', async () => {
  // A common hand-written design treats a lock as stale at 60 s but lets it expire at 5 min:
  // between the two, a duplicate runs the handler while the first is still running. Here the lease expiry is the
  // only threshold: a duplicate before it is refused; after it, it takes over and the first
  // owner can no longer complete. Never two accepted completions.
  await fc.assert(fc.asyncProperty(
    fc.integer({ min: 1, max: 600_000 }),
    fc.integer({ min: 0, max: 1_200_000 }),
    async (leaseMs, arrivalMs) => {
      const { clock, engine } = setup({ leaseMs, renewEveryMs: false });
      const first = await lease(engine);
      await clock.advance(arrivalMs);
      const duplicate = await engine.claim(scope(), 'fp');
      if (arrivalMs < leaseMs) {
        assert.equal(duplicate.kind, 'in-progress');
        assert.equal((duplicate as { retryAfterMs: number }).retryAfterMs, leaseMs - arrivalMs);
        await first.complete({ body: 'first' });
        return;
      }
      assert.equal(duplicate.kind, 'new');
      const second = (duplicate as { lease: Lease }).lease;
      assert.equal(second.takeover, true);
      assert.equal(second.fence, 2);
      await assert.rejects(first.complete({ body: 'first' }), { code: 'LEASE_LOST' });
      await second.complete({ body: 'second' });
      const replay = await engine.claim(scope(), 'fp');
      assert.equal(replay.kind === 'completed' && replay.response.body, 'second');
    },
  ), { numRuns: 200, seed: 424242 });
});

test('a long handler keeps its lease by automatic renewal (one shared timer), so duplicates stay out', async () => {
  const { clock, engine } = setup({ leaseMs: 300, renewEveryMs: 100 });
  const first = await lease(engine, 'a');
  const second = await lease(engine, 'b');
  assert.equal(clock.pendingTimers, 1, 'one timer for all in-flight leases');
  assert.equal(engine.inFlight, 2);
  for (let t = 0; t < 2000; t += 50) {
    await clock.advance(50);
    assert.equal((await engine.claim(scope('a'), 'fp')).kind, 'in-progress', `still owned at +${t + 50} ms`);
  }
  await first.complete({ body: 1 });
  await second.release();
  assert.equal(engine.inFlight, 0);
  await clock.advance(1000);
  assert.equal(clock.pendingTimers, 0, 'the renewal timer stops once nothing is in flight');
});

test('a lease whose renewal is refused is reported lost and its signal aborted', async () => {
  const { clock, engine } = setup({ leaseMs: 300, renewEveryMs: 200 });
  const lost: string[] = [];
  engine.onLeaseLost((e) => lost.push(e.operation));
  const first = await lease(engine);
  const signal = first.signal;
  // The store is unreachable for the worker's renewals (simulated: a takeover happens after expiry).
  const other = new IdempotencyEngine({ store: engine.store, clock, leaseMs: 300, renewEveryMs: false });
  engine.store.renew = async () => false; // our renewals are refused: someone else owns it
  await clock.advance(200);
  await flushPromises();
  assert.equal(first.status, 'lost');
  assert.equal(signal.aborted, true);
  assert.equal((signal.reason as { code: string }).code, 'LEASE_LOST');
  assert.deepEqual(lost, ['renew']);
  await clock.advance(150);
  assert.equal((await other.claim(scope(), 'fp')).kind, 'new');
  await assert.rejects(first.complete({ body: 'late' }), { code: 'LEASE_LOST' });
});

test('manual renew extends the lease; a lost lease refuses to renew', async () => {
  const { clock, engine } = setup({ leaseMs: 300, renewEveryMs: false });
  const first = await lease(engine);
  await clock.advance(250);
  await first.renew();
  await clock.advance(250);
  assert.equal((await engine.claim(scope(), 'fp')).kind, 'in-progress');
  await clock.advance(100);
  const taken = await engine.claim(scope(), 'fp');
  assert.equal(taken.kind, 'new');
  await assert.rejects(first.renew(), { code: 'LEASE_LOST' });
  assert.equal(first.status, 'lost');
});

test('steps run once per key: saved results come back without running again, across owners', async () => {
  const { engine } = setup();
  const ran: string[] = [];
  const first = await lease(engine);
  assert.deepEqual(await first.step('reserve', () => { ran.push('reserve'); return { id: 'r1' }; }), { id: 'r1' });
  assert.equal(await first.step('nothing', () => { ran.push('nothing'); return undefined; }), undefined);
  assert.deepEqual(await first.step('reserve', () => { ran.push('again'); return { id: 'r2' }; }), { id: 'r1' }, 'same name in the same run: saved result');
  await first.release();
  const retry = await lease(engine);
  assert.equal(retry.takeover, true);
  assert.deepEqual(retry.completedSteps.sort(), ['nothing', 'reserve']);
  assert.deepEqual(await retry.step('reserve', () => { ran.push('reserve-2'); return 0; }), { id: 'r1' });
  assert.equal(await retry.step('nothing', () => { ran.push('nothing-2'); return 1; }), undefined);
  assert.equal(await retry.step('charge', () => { ran.push('charge'); return 'ch'; }), 'ch');
  assert.deepEqual(ran, ['reserve', 'nothing', 'charge']);
  await assert.rejects(retry.step('bad', () => 10n), { code: 'INVALID_INPUT' });
});

test('run(): first call runs, duplicates replay, conflicts and mismatches throw, failures release', async () => {
  const { engine } = setup();
  let calls = 0;
  const first = await engine.run(scope(), 'fp', () => ({ n: ++calls }));
  assert.deepEqual(first, { value: { n: 1 }, replayed: false, completedAt: undefined });
  const again = await engine.run(scope(), 'fp', () => ({ n: ++calls }));
  assert.equal(again.replayed, true);
  assert.deepEqual(again.value, { n: 1 });
  assert.equal(again.completedAt, 1_000_000);
  await assert.rejects(engine.run(scope(), 'other', () => 1), { code: 'IDEMPOTENCY_MISMATCH' });

  const held = await lease(engine, 'busy');
  await assert.rejects(engine.run(scope('busy'), 'fp', () => 1), (e: any) => e.code === 'IDEMPOTENCY_CONFLICT' && e.retryAfterMs === 30_000);
  await held.complete({});

  await assert.rejects(engine.run(scope('boom'), 'fp', () => { throw new Error('boom'); }), /boom/);
  const afterFailure = await engine.run(scope('boom'), 'fp', () => 'second try');
  assert.equal(afterFailure.value, 'second try', 'a failed run released the key');
  assert.equal(calls, 1);
});

test('waiting for an in-progress duplicate: replays the first result, or takes over if it was released', async () => {
  const { clock, engine } = setup({ renewEveryMs: false });
  const first = await lease(engine);
  const waiting = engine.claim(scope(), 'fp', { waitMs: 5_000, pollMs: 100 });
  await clock.advance(250);
  await first.complete({ status: 201, body: 'done' });
  await clock.advance(100);
  const outcome = await waiting;
  assert.equal(outcome.kind === 'completed' && outcome.response.body, 'done');

  const failing = await lease(engine, 'k2');
  const waiter = engine.claim(scope('k2'), 'fp', { waitMs: 5_000, pollMs: 100 });
  await clock.advance(150);
  await failing.release();
  await clock.advance(100);
  assert.equal((await waiter).kind, 'new', 'the waiter runs it after the first failed');

  await lease(engine, 'k3');
  const gaveUp = engine.claim(scope('k3'), 'fp', { waitMs: 1_000, pollMs: 100 });
  await clock.advance(1_000);
  assert.equal((await gaveUp).kind, 'in-progress');

  const controller = new AbortController();
  const aborted = engine.claim(scope('k3'), 'fp', { waitMs: 10_000, signal: controller.signal });
  await clock.advance(100);
  controller.abort();
  await assert.rejects(aborted, { code: 'ABORTED' });
});

/** A store whose calls can be made to fail or hang. */
function flakyStore(clock: VirtualClock, remote: boolean) {
  const inner = new MemoryIdempotencyStore({ clock });
  const state = { mode: 'ok' as 'ok' | 'fail' | 'hang', calls: 0, failNext: 0 };
  const wrap = <A extends unknown[], R>(fn: (...a: A) => Promise<R>) => (...args: A): Promise<R> => {
    state.calls++;
    if (state.failNext > 0) {
      state.failNext--;
      return Promise.reject(new Error('ECONNRESET'));
    }
    if (state.mode === 'fail') return Promise.reject(new Error('ECONNREFUSED'));
    if (state.mode === 'hang') return new Promise<R>(() => {});
    return fn(...args);
  };
  const store: IdempotencyStore = {
    name: 'flaky', remote,
    claim: wrap((i) => inner.claim(i)), complete: wrap((i) => inner.complete(i)), release: wrap((i) => inner.release(i)),
    renew: wrap((i) => inner.renew(i)), saveStep: wrap((i) => inner.saveStep(i)), inspect: (id) => inner.inspect(id),
  };
  return { store, state };
}

test('store failures surface as STORE_UNAVAILABLE; a hung network store times out; the breaker then answers at once', async () => {
  const clock = new VirtualClock(1_000_000);
  const { store, state } = flakyStore(clock, true);
  const engine = new IdempotencyEngine({ store, clock, storeTimeoutMs: 200, renewEveryMs: false });
  const errors: string[] = [];
  engine.onStoreError((e) => errors.push(e.operation));
  state.mode = 'fail';
  await assert.rejects(engine.claim(scope(), 'fp'), (e: any) => e.code === 'STORE_UNAVAILABLE' && /ECONNREFUSED/.test(e.message));
  state.mode = 'hang';
  const hung = engine.claim(scope(), 'fp');
  const check = assert.rejects(hung, (e: any) => e.code === 'STORE_UNAVAILABLE' && e.cause.code === 'TIMEOUT');
  await clock.advance(200);
  await check;
  for (let i = 0; i < 3; i++) {
    const p = assert.rejects(engine.claim(scope(), 'fp'), { code: 'STORE_UNAVAILABLE' });
    await clock.advance(200);
    await p;
  }
  const callsBefore = state.calls;
  await assert.rejects(engine.claim(scope(), 'fp'), (e: any) => e.code === 'STORE_UNAVAILABLE' && e.cause.code === 'CIRCUIT_OPEN' && e.retryAfterMs >= 1000);
  assert.equal(state.calls, callsBefore, 'breaker open: the store is not called');
  assert.equal(errors.length, 6);
  state.mode = 'ok';
  await clock.advance(5_000);
  assert.equal((await engine.claim(scope(), 'fp')).kind, 'new', 'the breaker probes and closes again');
});

test('a completion is retried through transient store errors; if it cannot be recorded the lease is abandoned', async () => {
  const clock = new VirtualClock(1_000_000);
  const { store, state } = flakyStore(clock, false);
  const engine = new IdempotencyEngine({ store, clock, renewEveryMs: false, completeAttempts: 3 });
  const first = await lease(engine);
  state.failNext = 2;
  const done = first.complete({ body: 'ok' });
  await clock.advance(200);
  await done;
  assert.equal(first.status, 'completed');
  assert.equal((await engine.claim(scope(), 'fp')).kind, 'completed');

  const second = await lease(engine, 'k2');
  state.mode = 'fail';
  const failed = assert.rejects(second.complete({ body: 'lost' }), { code: 'STORE_UNAVAILABLE' });
  await clock.advance(1_000);
  await failed;
  assert.equal(second.status, 'abandoned');
});

test('a completion\'s store write is retried by the retry policy on the engine\'s clock: 25 ms, then 100 ms, completeAttempts in all; each failure reported', async () => {
  const clock = new VirtualClock(1_000_000);
  const { store, state } = flakyStore(clock, false);
  const engine = new IdempotencyEngine({ store, clock, renewEveryMs: false });
  const reported: string[] = [];
  engine.onStoreError((e) => reported.push(`${e.operation} ${String((e.error.cause as Error).message)}`));
  const held = await lease(engine);
  const callsAtStart = state.calls;
  state.failNext = 2;
  let settled = false;
  const done = held.complete({ body: 'ok' }).then(() => { settled = true; });
  await clock.advance(0);
  assert.equal(state.calls - callsAtStart, 1, 'the first attempt at once');
  await clock.advance(24);
  assert.equal(state.calls - callsAtStart, 1, 'no second attempt before 25 ms');
  await clock.advance(1);
  assert.equal(state.calls - callsAtStart, 2, 'the second at 25 ms');
  await clock.advance(99);
  assert.equal(state.calls - callsAtStart, 2, 'no third before another 100 ms');
  await clock.advance(1);
  await done;
  assert.equal(settled, true);
  assert.equal(state.calls - callsAtStart, 3, 'the third, successful, at 125 ms');
  assert.equal(held.status, 'completed');
  assert.deepEqual(reported, ['complete ECONNRESET', 'complete ECONNRESET']);

  // completeAttempts: 1 is one write, no retry.
  const once = new IdempotencyEngine({ store, clock, renewEveryMs: false, completeAttempts: 1 });
  const single = await lease(once, 'k2');
  const before = state.calls;
  state.failNext = 1;
  await assert.rejects(single.complete({ body: 'x' }), (e: any) => e.code === 'STORE_UNAVAILABLE' && /ECONNRESET/.test(e.message));
  assert.equal(state.calls - before, 1);
  assert.equal(single.status, 'abandoned');
});

test('a completion refused by an open store breaker is not retried: the breaker already knows the store is down', async () => {
  const clock = new VirtualClock(1_000_000);
  const { store, state } = flakyStore(clock, true);
  const engine = new IdempotencyEngine({ store, clock, renewEveryMs: false });
  const held = await lease(engine);
  state.mode = 'fail';
  for (let i = 0; i < 5; i++) await assert.rejects(engine.claim(scope(`other${i}`), 'fp'), { code: 'STORE_UNAVAILABLE' });
  const before = state.calls;
  const reported: string[] = [];
  engine.onStoreError((e) => reported.push((e.error.cause as { code?: string }).code ?? ''));
  await assert.rejects(held.complete({ body: 'x' }), (e: any) => e.code === 'STORE_UNAVAILABLE' && e.cause.code === 'CIRCUIT_OPEN');
  assert.equal(state.calls, before, 'the store was not called');
  assert.deepEqual(reported, ['CIRCUIT_OPEN'], 'one attempt, one report');
  assert.equal(held.status, 'abandoned');
});

test('owner tokens can be injected; fences count takeovers', async () => {
  let n = 0;
  const { clock, engine } = setup({ newOwnerToken: () => `owner-${++n}`, leaseMs: 100, renewEveryMs: false });
  const first = await lease(engine);
  assert.equal(first.owner, 'owner-1');
  assert.equal(first.fence, 1);
  await clock.advance(100);
  const second = await lease(engine);
  await clock.advance(100);
  const third = await lease(engine);
  assert.deepEqual([second.owner, second.fence, third.owner, third.fence], ['owner-2', 2, 'owner-3', 3]);
});

test('claim results are exhaustive: every store outcome maps to one engine outcome', async () => {
  const clock = new VirtualClock();
  const outcomes: ClaimResult[] = [
    { kind: 'acquired', fence: 1, takeover: false, leaseExpiresAt: 1, steps: {} },
    { kind: 'busy', retryAfterMs: 5 },
    { kind: 'completed', response: '{"s":200,"h":{},"k":"s","b":"x"}', completedAt: 7 },
    { kind: 'mismatch' },
  ];
  const kinds: string[] = [];
  for (const result of outcomes) {
    const store = { ...new MemoryIdempotencyStore({ clock }), name: 'fixed', remote: false, claim: async () => result } as unknown as IdempotencyStore;
    kinds.push((await new IdempotencyEngine({ store, clock, renewEveryMs: false }).claim(scope(), 'fp')).kind);
  }
  assert.deepEqual(kinds, ['new', 'in-progress', 'completed', 'mismatch']);
});

test("the claim's store version goes back to complete until the lease writes anything else (renew, step, even failed)", async () => {
  const clock = new VirtualClock(1_000_000);
  const inner = new MemoryIdempotencyStore({ clock });
  const versions: (string | undefined)[] = [];
  let renewFails = false;
  let claims = 0;
  const store: IdempotencyStore = {
    name: 'versioned', remote: false, inspect: (id) => inner.inspect(id),
    claim: async (input) => {
      const result = await inner.claim(input);
      return result.kind === 'acquired' ? { ...result, version: `v${++claims}` } : result;
    },
    complete: (input) => { versions.push(input.version); return inner.complete(input); },
    release: (input) => inner.release(input),
    renew: (input) => (renewFails ? Promise.reject(new Error('store down')) : inner.renew(input)),
    saveStep: (input) => inner.saveStep(input),
  };
  const engine = new IdempotencyEngine({ store, clock, renewEveryMs: 1_000, leaseMs: 5_000 });

  await (await lease(engine, 'plain')).complete({ status: 201 });
  const renewed = await lease(engine, 'renewed');
  await renewed.renew();
  await renewed.complete({ status: 201 });
  const stepped = await lease(engine, 'stepped');
  await stepped.step('a', () => 1);
  await stepped.complete({ status: 201 });
  const background = await lease(engine, 'background');
  renewFails = true;
  clock.advance(1_000);
  await flushPromises();
  renewFails = false;
  await background.complete({ status: 201 });
  assert.deepEqual(versions, ['v1', undefined, undefined, undefined]);
});

test('a claim that lands after the engine gave up on it is released at once, fenced by its owner token', async () => {
  const clock = new VirtualClock(1_000_000);
  const inner = new MemoryIdempotencyStore({ clock });
  const signals: (AbortSignal | undefined)[] = [];
  const released: string[] = [];
  /** Claims sent while `hold` is set wait until `land()` runs them. */
  let hold = true;
  const held: Array<() => void> = [];
  const land = async (): Promise<void> => {
    for (const run of held.splice(0)) run();
    await flushPromises();
  };
  const store: IdempotencyStore = {
    name: 'slow-claims', remote: true, cancellable: true, inspect: (id) => inner.inspect(id),
    claim: (input, signal) => {
      signals.push(signal);
      if (!hold) return inner.claim(input);
      return new Promise((resolve) => held.push(() => resolve(inner.claim(input))));
    },
    complete: (input) => inner.complete(input),
    release: (input) => { released.push(input.owner); return inner.release(input); },
    renew: (input) => inner.renew(input),
    saveStep: (input) => inner.saveStep(input),
  };
  let n = 0;
  const engine = new IdempotencyEngine({ store, clock, storeTimeoutMs: 200, renewEveryMs: false, newOwnerToken: () => `owner-${++n}` });

  // The claim outlives the engine's bound: the caller gets STORE_UNAVAILABLE, the store an aborted signal.
  const gaveUp = assert.rejects(engine.claim(scope('late'), 'fp'), (e: any) => e.code === 'STORE_UNAVAILABLE' && e.cause?.code === 'TIMEOUT');
  await clock.advance(200);
  await gaveUp;
  assert.equal(signals[0]?.aborted, true, 'the store is told that the caller gave up');
  // Then it lands after all: nobody holds that lease, so it is released, and the retry runs.
  await land();
  assert.deepEqual(released, ['owner-1']);
  assert.equal(await inner.inspect(recordId(scope('late'))), undefined);
  hold = false;
  assert.equal((await engine.claim(scope('late'), 'fp')).kind, 'new', 'the retry runs instead of waiting out the lease');

  // A late claim that finds someone else's lease releases nothing.
  hold = true;
  const second = assert.rejects(engine.claim(scope('taken'), 'fp'), { code: 'STORE_UNAVAILABLE' });
  await clock.advance(200);
  await second;
  hold = false;
  const winner = await lease(engine, 'taken');
  await land();
  assert.deepEqual(released, ['owner-1'], 'the busy late claim releases nothing');
  assert.equal((await inner.inspect(winner.id))?.owner, winner.owner);
});

test('only a cancellable store is handed the guard\'s signal (an AbortSignal per call would cost the others for nothing)', async () => {
  const clock = new VirtualClock(1_000_000);
  for (const cancellable of [true, undefined]) {
    const inner = new MemoryIdempotencyStore({ clock });
    const signals: unknown[] = [];
    const store: IdempotencyStore = {
      name: 'network', remote: true, ...(cancellable ? { cancellable } : {}), inspect: (id) => inner.inspect(id),
      claim: (input, signal) => { signals.push(signal); return inner.claim(input); },
      complete: (input, signal) => { signals.push(signal); return inner.complete(input); },
      release: (input, signal) => { signals.push(signal); return inner.release(input); },
      renew: (input, signal) => { signals.push(signal); return inner.renew(input); },
      saveStep: (input, signal) => { signals.push(signal); return inner.saveStep(input); },
    };
    const engine = new IdempotencyEngine({ store, clock, renewEveryMs: false });
    const l = await lease(engine);
    await l.step('a', () => 1);
    await l.renew();
    await l.complete({ body: 'ok' });
    const other = await lease(engine, 'k2');
    await other.release();
    assert.equal(signals.length, 6);
    if (cancellable) assert.ok(signals.every((s) => s instanceof AbortSignal && !s.aborted), 'every guarded call carries a live signal');
    else assert.deepEqual(signals, [undefined, undefined, undefined, undefined, undefined, undefined]);
  }
});
