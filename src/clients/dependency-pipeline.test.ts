// Guarded clients serving an inbound request: the request's budget and abort reach the call,
// retries included, on a VirtualClock (no real Redis or PostgreSQL needed: a custom client).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { seededRandom } from '../core/random.js';
import { retry } from '../retry/retry.js';
import { ClientDisconnectedError, RequestContext } from '../http/core/request-context.js';
import { resolveRoute } from '../http/core/routes.js';
import { callOptionsOf } from './dependency-pipeline.js';
import { guardRedis } from './guarded-redis.js';
import { guardPool, type PgClientLike } from './guarded-postgres.js';

const T0 = 1_000_000;

/** An inbound request as an adapter builds it, with an 800 ms budget. */
function inboundRequest(clock: VirtualClock, budgetMs = 800): RequestContext {
  return new RequestContext({
    clock,
    method: 'GET',
    url: '/search',
    path: '/search',
    headers: {},
    clientIp: '203.0.113.9',
    route: resolveRoute('GET /search', {}, undefined, undefined),
    startedAt: clock.now(),
    deadline: clock.now() + budgetMs,
    deadlineSource: 'route-default',
    channel: { started: () => false, send: () => {}, watch: () => {}, capture: () => {}, hold: () => {} },
    target: undefined,
  });
}

/** A Redis operation that fails with a connection reset 100 ms after each start (a transient error). */
function flakyOperation(clock: VirtualClock, starts: number[]) {
  return (): Promise<never> => {
    starts.push(clock.now() - T0);
    return new Promise((_resolve, reject) => {
      clock.setTimeout(() => reject(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 100);
    });
  };
}

/** Settles `promise` on the virtual clock; returns how it ended and when. */
async function settle(clock: VirtualClock, promise: Promise<unknown>): Promise<{ code?: string; cause?: unknown; at: number; value?: unknown }> {
  let outcome: { code?: string; cause?: unknown; at: number; value?: unknown } | undefined;
  promise.then(
    (value) => { outcome = { value, at: clock.now() - T0 }; },
    (error) => { outcome = { code: error?.code, cause: error?.cause, at: clock.now() - T0 }; },
  );
  for (let i = 0; i < 5000 && outcome === undefined; i++) await clock.advance(1);
  assert.ok(outcome, 'the call settled');
  return outcome;
}

function redisFor(clock: VirtualClock, delayMs: number) {
  const client = { status: 'ready', options: { enableOfflineQueue: false, commandTimeout: 1000 }, call: () => undefined };
  return guardRedis(client, {
    clock,
    random: seededRandom(1),
    timeoutMs: 1000,
    retry: { maxAttempts: 5, backoff: { kind: 'constant', baseDelayMs: delayMs, jitter: 'none' } },
  });
}

test('{ context: request.bulwark, safe: true }: retries stay inside the request budget and end with DEADLINE_EXCEEDED', async () => {
  const clock = new VirtualClock(T0);
  const request = inboundRequest(clock);
  const starts: number[] = [];
  const outcome = await settle(clock, redisFor(clock, 250).run(flakyOperation(clock, starts), { context: request, safe: true }));
  // Attempts at 0, 350, 700; the third is cut by the deadline's share of the timeout, and no
  // fourth starts (it would start at 1050, past the 800 ms budget).
  assert.deepEqual(starts, [0, 350, 700]);
  assert.equal(outcome.code, 'DEADLINE_EXCEEDED');
  assert.equal(outcome.at, 790, 'the third attempt is cut at the deadline less its margin, not at 800 or later');
  assert.ok(outcome.cause !== undefined, 'the last failure is the cause');
});

test('a guarded call with only timeoutMs ends with DEADLINE_EXCEEDED that names its deadline', async () => {
  const clock = new VirtualClock(T0);
  const starts: number[] = [];
  const call = redisFor(clock, 250).run(flakyOperation(clock, starts), { timeoutMs: 800, safe: true });
  const caught = call.catch((error: unknown) => error);
  await settle(clock, call);
  const error = await caught as { code?: string; deadline?: number };
  assert.equal(error.code, 'DEADLINE_EXCEEDED');
  assert.equal(error.deadline, T0 + 800);
});

test('a backoff wait that would end past the deadline is not started: DEADLINE_EXCEEDED at once', async () => {
  const clock = new VirtualClock(T0);
  const request = inboundRequest(clock);
  const starts: number[] = [];
  const outcome = await settle(clock, redisFor(clock, 400).run(flakyOperation(clock, starts), { context: request, safe: true }));
  assert.deepEqual(starts, [0, 500], 'the next attempt (at 1000) would start past the deadline');
  assert.equal(outcome.code, 'DEADLINE_EXCEEDED');
  assert.equal(outcome.at, 600, 'answered when the second attempt failed, not at the deadline or later');
  // The same call with a plain deadline behaves the same.
  const plain: number[] = [];
  const direct = await settle(clock, redisFor(clock, 400).run(flakyOperation(clock, plain), { deadline: clock.now() + 800, safe: true }));
  assert.equal(direct.code, 'DEADLINE_EXCEEDED');
  assert.equal(plain.length, 2);
});

test('the request\'s abort (client gone) stops a guarded call and its retries, with { context } or with a spread copy of the context', async () => {
  for (const spelling of ['context', 'spread'] as const) {
    const clock = new VirtualClock(T0);
    const request = inboundRequest(clock, 60_000);
    const starts: number[] = [];
    const options = spelling === 'context' ? { context: request, safe: true } : { ...request, safe: true };
    const call = redisFor(clock, 250).run(flakyOperation(clock, starts), options);
    await clock.advance(200); // first attempt failed at 100, waiting until 350
    request.abort(new ClientDisconnectedError());
    const outcome = await settle(clock, call);
    assert.equal(outcome.code, 'ABORTED', spelling);
    assert.equal(outcome.at, 200, `${spelling}: rejected as soon as the request was aborted`);
    assert.deepEqual(starts, [0], `${spelling}: no attempt after the abort`);
  }
});

test('a spread copy of the request context leads back to it: the guarded call gets its deadline, signal, priority and tags', () => {
  const clock = new VirtualClock(T0);
  const request = inboundRequest(clock);
  const redis = redisFor(clock, 100);
  const viaSpread = callOptionsOf(redis.timeout.clock, { ...request, safe: true })!;
  const viaContext = callOptionsOf(redis.timeout.clock, { context: request, safe: true })!;
  for (const options of [viaSpread, viaContext]) {
    assert.equal(options.signal, request.signal);
    assert.equal(options.deadline, T0 + 800);
    assert.equal(options.priority, 'normal');
    assert.deepEqual(options.tags, { route: 'GET /search', method: 'GET', clientIp: '203.0.113.9' });
  }
  assert.equal(JSON.stringify({ ...request }).includes('callSource'), false, 'the back reference never reaches JSON');
});

test('guardPool takes the request context too: its deadline bounds a safe query\'s retries', async () => {
  const clock = new VirtualClock(T0);
  const starts: number[] = [];
  const client: PgClientLike = {
    query: () => {
      starts.push(clock.now() - T0);
      return new Promise((_resolve, reject) => {
        clock.setTimeout(() => reject(Object.assign(new Error('deadlock detected'), { code: '40P01', severity: 'ERROR' })), 100);
      });
    },
    release: () => {},
  };
  const pool = { options: { max: 4 }, connect: () => Promise.resolve(client) };
  const db = guardPool(pool, {
    clock,
    random: seededRandom(3),
    timeoutMs: 1000,
    retry: { maxAttempts: 5, backoff: { kind: 'constant', baseDelayMs: 400, jitter: 'none' } },
  });
  const outcome = await settle(clock, db.query('SELECT 1', [], { context: inboundRequest(clock), safe: true }));
  assert.equal(outcome.code, 'DEADLINE_EXCEEDED');
  assert.deepEqual(starts, [0, 500]);
});

test('a context without a numeric deadline is bad input (INVALID_INPUT), not a crash', async () => {
  const clock = new VirtualClock(T0);
  const redis = redisFor(clock, 100);
  await assert.rejects(redis.run(() => 1, { context: { deadline: 'soon' } as never }), { code: 'INVALID_INPUT' });
  await assert.rejects(redis.run(() => 1, { context: null as never }), { code: 'INVALID_INPUT' });
});

test('any policy given a spread copy of the request context keeps its abort (the copy leads back to the context)', async () => {
  const clock = new VirtualClock(T0);
  const request = inboundRequest(clock, 60_000);
  const policy = retry({ maxAttempts: 5, backoff: { kind: 'constant', baseDelayMs: 1000, jitter: 'none' }, clock, random: seededRandom(4) });
  let attempts = 0;
  const call = policy.execute(() => { attempts++; throw Object.assign(new Error('reset'), { code: 'ECONNRESET' }); }, { ...request, timeoutMs: 30_000 });
  await clock.advance(500);
  request.abort(new ClientDisconnectedError());
  const outcome = await settle(clock, call);
  assert.equal(outcome.code, 'ABORTED');
  assert.equal(attempts, 1);
});
