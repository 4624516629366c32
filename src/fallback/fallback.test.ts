import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock, flushPromises } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { degradation } from '../core/degraded.js';
import { CircuitOpenError, RetriesExhaustedError, TimeoutError } from '../core/errors.js';
import { pipeline } from '../core/policy.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { fallback, type FallbackEvent, type FallbackPolicy } from './fallback.js';

const fail = (error: unknown) => () => Promise.reject(error);

function codeError(code: string, message = code): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

test('by error code: the code of the error or of any error along its cause chain', async () => {
  const policy = fallback({ handle: ['TIMEOUT', 'ECONNREFUSED'], fallback: 'cached' });
  assert.equal(await policy.execute(fail(new TimeoutError(100))), 'cached');
  assert.equal(await policy.execute(fail(codeError('ECONNREFUSED'))), 'cached', 'Node-style codes work too');
  assert.equal(await policy.execute(fail(new RetriesExhaustedError(3, new TimeoutError(100)))), 'cached', 'found along the cause chain');
  const other = codeError('ECONNRESET');
  await assert.rejects(policy.execute(fail(other)), (e) => e === other, 'other codes pass through untouched');
  const open = new CircuitOpenError('db', 1000, 'open');
  await assert.rejects(policy.execute(fail(open)), (e) => e === open);
  await assert.rejects(policy.execute(fail('a string')), (e) => e === 'a string');
});

test('by error class, also along the cause chain', async () => {
  class PaymentDeclined extends Error {}
  const policy = fallback({ handle: [TypeError, PaymentDeclined], fallback: 0 });
  assert.equal(await policy.execute(fail(new TypeError('fetch failed'))), 0);
  assert.equal(await policy.execute(fail(new Error('wrapped', { cause: new PaymentDeclined('no') }))), 0);
  await assert.rejects(policy.execute(fail(new RangeError('nope'))), RangeError);
  const mixed = fallback({ handle: ['CIRCUIT_OPEN', RangeError], fallback: 'x' });
  assert.equal(await mixed.execute(fail(new RangeError('r'))), 'x');
  assert.equal(await mixed.execute(fail(new CircuitOpenError('db', 5, 'open'))), 'x');
});

test('by predicate, which sees the error and the call context', async () => {
  const seen: [unknown, string][] = [];
  const policy = fallback({
    handle: (error, context) => { seen.push([error, context.priority]); return (error as Error).message.startsWith('soft'); },
    fallback: 'soft-fallback',
  });
  assert.equal(await policy.execute(fail(new Error('soft failure')), { priority: 'low' }), 'soft-fallback');
  await assert.rejects(policy.execute(fail(new Error('hard failure'))), /hard failure/);
  assert.deepEqual(seen.map(([, p]) => p), ['low', 'normal']);
});

test('by result: a bad result is replaced, and the fallback function receives it', async () => {
  const outcomes: unknown[] = [];
  const policy = fallback({
    handleResult: (r: { status: number }) => r.status === 503,
    fallback: (outcome) => { outcomes.push(outcome); return { status: 200, body: 'cached' }; },
  });
  const unavailable = { status: 503, body: 'busy' };
  const served = await policy.execute(() => unavailable);
  assert.deepEqual(served, { status: 200, body: 'cached' });
  assert.deepEqual(outcomes, [{ result: unavailable }]);
  assert.deepEqual(degradation(served), { source: 'fallback', reason: unavailable });
  const fine = { status: 200, body: 'fresh' };
  assert.equal(await policy.execute(() => fine), fine);
  assert.equal(degradation(fine), undefined, 'a normal result carries no mark');
});

test('static and function fallbacks (sync and async); the function gets the outcome and the context', async () => {
  const clock = new VirtualClock();
  assert.deepEqual(await fallback({ fallback: ['default'] }).execute(fail(new Error('x'))), ['default']);
  const error = new Error('down');
  let received: [unknown, CallContext | undefined] = [undefined, undefined];
  const fn = fallback({ fallback: ({ error: e }, context) => { received = [e, context]; return `for ${String(context.tags.user)}`; } });
  assert.equal(await fn.execute(fail(error), { tags: { user: 'ada' } }), 'for ada');
  assert.equal(received[0], error);
  const slow = fallback({ clock, fallback: () => new Promise<string>((r) => clock.setTimeout(() => r('later'), 10)) });
  const p = slow.execute(fail(error));
  await clock.advance(10);
  assert.equal(await p, 'later');
  const undef = fallback({ fallback: undefined });
  assert.equal(await undef.execute(fail(error)), undefined, 'an explicit undefined is a legal static value');
  const typed: FallbackPolicy<string[]> = fallback({ fallback: () => ['a'] });
  assert.deepEqual(await typed.execute(fail(error)), ['a']);
});

test('the value is marked degraded with the replaced error; primitives are observable through onFallback', async () => {
  const policy = fallback({ handle: ['TIMEOUT'], fallback: () => ({ items: [] as string[] }) });
  const events: FallbackEvent[] = [];
  policy.onFallback((e) => events.push(e));
  const timeoutError = new TimeoutError(250);
  const value = await policy.execute(fail(timeoutError));
  assert.deepEqual(value, { items: [] });
  assert.deepEqual(Object.keys(value), ['items'], 'the mark is not enumerable (JSON stays clean)');
  assert.deepEqual(degradation(value), { source: 'fallback', reason: timeoutError });
  assert.equal(events.length, 1);
  assert.equal(events[0]!.error, timeoutError);

  const primitive = fallback({ fallback: 42 });
  const seen: FallbackEvent[] = [];
  primitive.onFallback((e) => seen.push(e));
  assert.equal(await primitive.execute(fail(new Error('x'))), 42);
  assert.equal(await primitive.execute(() => 7), 7);
  assert.equal(seen.length, 1, 'one event per fallback served, none for a success');
});

test('a caller abort is never replaced by a fallback value (by default or with a catch-all predicate)', async () => {
  const clock = new VirtualClock();
  for (const policy of [fallback({ clock, fallback: 'x' }), fallback({ clock, handle: () => true, fallback: 'x' })]) {
    let fired = 0;
    policy.onFallback(() => fired++);
    const caller = new AbortController();
    const p = policy.execute((ctx) => new Promise((_, reject) => {
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
    }), { signal: caller.signal });
    await flushPromises();
    caller.abort(new Error('client gone'));
    await assert.rejects(p, /client gone/);
    assert.equal(fired, 0);
  }
  // An abort-looking error from the operation itself (not the caller) is a normal failure.
  const own = fallback({ fallback: 'x' });
  assert.equal(await own.execute(fail(new DOMException('inner abort', 'AbortError'))), 'x');
});

test('a fallback function that throws surfaces its error, with the replaced error as cause unless it has one', async () => {
  const original = new Error('primary down');
  const policy = fallback({ fallback: () => { throw new Error('cache down too'); } });
  await assert.rejects(policy.execute(fail(original)), (e: any) => e.message === 'cache down too' && e.cause === original);
  const ownCause = new Error('disk');
  const keeps = fallback({ fallback: async () => { throw new Error('cache down', { cause: ownCause }); } });
  await assert.rejects(keeps.execute(fail(original)), (e: any) => e.cause === ownCause);
  const frozen = Object.freeze(new Error('frozen'));
  await assert.rejects(fallback({ fallback: () => { throw frozen; } }).execute(fail(original)), (e) => e === frozen);
  let fired = 0;
  policy.onFallback(() => fired++);
  await assert.rejects(policy.execute(fail(original)));
  assert.equal(fired, 0, 'no event when no fallback value was served');
});

test('with a bulkhead: a full bulkhead is answered by the fallback', async () => {
  const clock = new VirtualClock();
  const bh = bulkhead({ maxConcurrent: 1, clock });
  const p = pipeline(fallback({ clock, handle: ['BULKHEAD_FULL', 'BULKHEAD_QUEUE_TIMEOUT'], fallback: () => ({ recommendations: 'static' }) }), bh);
  const busy = p.execute(() => new Promise((r) => clock.setTimeout(() => r({ recommendations: 'live' }), 100)));
  const rejected = await p.execute(() => ({ recommendations: 'never called' }));
  assert.deepEqual(rejected, { recommendations: 'static' });
  assert.equal((degradation(rejected)?.reason as any).code, 'BULKHEAD_FULL');
  await clock.advance(100);
  assert.deepEqual(await busy, { recommendations: 'live' });
  assert.deepEqual(p.describe().policies?.map((d) => d.kind), ['fallback', 'bulkhead']);
});

test('bad options fail when the policy is built; describe() tells what is handled', () => {
  assert.throws(() => fallback({} as never), { code: 'INVALID_OPTIONS' });
  assert.throws(() => fallback(undefined as never), { code: 'INVALID_OPTIONS' });
  assert.throws(() => fallback({ handle: TimeoutError as never, fallback: 1 }), (e: any) => e.code === 'INVALID_OPTIONS' && /\[TimeoutError\]/.test(e.message));
  assert.throws(() => fallback({ handle: [], fallback: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => fallback({ handle: [42 as never], fallback: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => fallback({ handle: 'TIMEOUT' as never, fallback: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => fallback({ handleResult: true as never, fallback: 1 }), { code: 'INVALID_OPTIONS' });
  assert.deepEqual(fallback({ name: 'recs', handle: ['TIMEOUT', TypeError], fallback: [] }).describe(), {
    kind: 'fallback', name: 'recs', options: { handle: ['TIMEOUT', 'TypeError'], handleResult: false, fallback: 'value' },
  });
  assert.deepEqual(fallback({ handle: () => true, handleResult: () => false, fallback: () => 1 }).describe().options, {
    handle: 'predicate', handleResult: true, fallback: 'function',
  });
});

test('a call aborted before it arrives is refused with ABORTED: the operation does not run and nothing is substituted', async () => {
  const clock = new VirtualClock();
  const policy = fallback({ clock, fallback: 'cached' });
  const served: FallbackEvent[] = [];
  policy.onFallback((e) => served.push(e));
  let ran = 0;
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, AbortSignal.abort(new Error('client gone'))), { code: 'ABORTED', message: /client gone/ });
  assert.equal(ran, 0, 'the operation never ran');
  assert.equal(served.length, 0);
});
