import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../../core/clock.js';
import { MemoryIdempotencyStore } from '../../idempotency/stores/memory-store.js';
import { timeout } from '../../timeout/timeout.js';
import { HttpGuard, pathOf, type GuardDecision, type RequestView } from './http-guard.js';
import type { Protection } from './protection.js';
import type { RequestContext, RequestOutcome } from './request-context.js';
import type { HttpResponse } from './problem.js';
import { channel, FakeResponse } from './test/fake-response.js';

const START = 1_700_000_000_000;

function view(overrides: Partial<RequestView> = {}): RequestView {
  return { method: 'GET', url: '/things?x=1', headers: {}, socketAddress: '::ffff:192.0.2.7', ...overrides };
}

function proceed(admission: GuardDecision | Promise<GuardDecision>): RequestContext {
  assert.ok(!(admission instanceof Promise), 'synchronous admission expected');
  assert.equal(admission.kind, 'proceed', `expected proceed, got ${JSON.stringify(admission)}`);
  return (admission as Extract<GuardDecision, { kind: 'proceed' }>).context;
}

function rejected(admission: GuardDecision | Promise<GuardDecision>): HttpResponse {
  assert.ok(!(admission instanceof Promise));
  assert.equal(admission.kind, 'reject');
  return (admission as Extract<GuardDecision, { kind: 'reject' }>).response;
}

function body(response: HttpResponse): any {
  return JSON.parse(String(response.body));
}

test('a request without deadline headers proceeds with no deadline and costs no timer', () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view(), channel, res));
  assert.equal(ctx.deadline, Infinity);
  assert.equal(ctx.remaining(), Infinity);
  assert.equal(ctx.deadlineSource, 'none');
  assert.equal(ctx.clientIp, '192.0.2.7');
  assert.equal(ctx.path, '/things');
  assert.equal(ctx.priority, 'normal');
  assert.equal(ctx.critical, false);
  assert.equal(res.context, ctx, 'the adapter was asked to watch the response');
  assert.equal(clock.pendingTimers, 0);
  assert.equal(ctx.signal.aborted, false);
});

test('X-Request-Timeout-Ms: the handler sees the remaining budget and a signal that aborts at the deadline', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '300' } }), channel, res));
  assert.equal(ctx.deadline, START + 300);
  assert.equal(ctx.budgetMs, 300);
  const signal = ctx.signal;
  await clock.advance(120);
  assert.equal(ctx.remaining(), 180);
  assert.equal(signal.aborted, false);
  await clock.advance(180);
  assert.equal(signal.aborted, true);
  assert.equal((signal.reason as any).code, 'DEADLINE_EXCEEDED');
  assert.equal(res.sent?.status, 504, 'the core answered 504 because the handler had not started');
  assert.equal(body(res.sent!).code, 'DEADLINE_EXCEEDED');
  assert.equal(res.sent!.headers['content-type'], 'application/problem+json');
  res.close();
  assert.equal(guard.pendingDeadlines, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('at the deadline a response already started is left alone (only the signal aborts)', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '100' } }), channel, res));
  res.started = true; // the handler is streaming
  await clock.advance(100);
  assert.equal(ctx.aborted, true);
  assert.equal(ctx.signal.aborted, true, 'a signal created after the abort is already aborted');
  assert.equal(res.sent, undefined);
});

test('respondAtDeadline: false only aborts', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock, respondAtDeadline: false });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '100' } }), channel, res));
  await clock.advance(100);
  assert.equal(ctx.aborted, true);
  assert.equal(res.sent, undefined);
});

test('an expired deadline is answered 504 without a context (the handler never runs)', () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const events: string[] = [];
  guard.onReject((e) => events.push(`${e.reason}:${e.status}`));
  for (const headers of [{ 'x-request-timeout-ms': '0' }, { 'x-request-deadline': String(START - 1) }, { 'x-request-deadline': String(START) }]) {
    const res = new FakeResponse();
    const response = rejected(guard.admit(view({ headers }), channel, res));
    assert.equal(response.status, 504);
    assert.equal(body(response).code, 'DEADLINE_EXCEEDED');
    assert.equal(res.context, undefined, 'no context was created');
  }
  assert.deepEqual(events, ['deadline-expired:504', 'deadline-expired:504', 'deadline-expired:504']);
  assert.equal(clock.pendingTimers, 0);
});

test('malformed deadline headers are answered 400 problem+json with code INVALID_INPUT', () => {
  const guard = new HttpGuard({ clock: new VirtualClock(START) });
  for (const headers of [{ 'x-request-timeout-ms': 'soon' }, { 'x-request-deadline': 'None' }, { 'x-request-timeout-ms': '-5' }]) {
    const response = rejected(guard.admit(view({ headers }), channel, new FakeResponse()));
    assert.equal(response.status, 400);
    const problem = body(response);
    assert.equal(problem.code, 'INVALID_INPUT');
    assert.equal(problem.status, 400);
    assert.equal(problem.type, 'urn:bulwark:problem:invalid-input');
    assert.ok(problem.title && problem.detail.includes(Object.keys(headers)[0]!));
  }
});

test('many requests with deadlines share one timer; ending them releases it', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const responses = Array.from({ length: 200 }, (_, i) => {
    const res = new FakeResponse();
    proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': String(1000 + i) } }), channel, res));
    return res;
  });
  assert.equal(guard.pendingDeadlines, 200);
  assert.equal(clock.pendingTimers, 1, 'one shared timer, not one per request');
  for (const res of responses) res.close(200);
  assert.equal(guard.pendingDeadlines, 0);
  assert.equal(await clock.runAll(), 1, 'no timer left behind but the idle shared one, which fires once and is not re-armed');
  await clock.advance(5000);
  assert.ok(responses.every((r) => r.sent === undefined && !r.context!.aborted), 'ended requests are not aborted later');
});

test('client disconnect aborts the signal with the adapter-given reason and ends the request', () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '1000' } }), channel, res));
  const outcomes: RequestOutcome[] = [];
  ctx.onEnd((o) => outcomes.push(o));
  res.close(200, false);
  assert.equal(ctx.signal.aborted, true);
  assert.equal(ctx.ended, true);
  assert.deepEqual(outcomes.map((o) => o.completed), [false]);
  assert.equal(guard.pendingDeadlines, 0);
});

test('routes: table by method and pattern, defaults, most specific wins, bypass', () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({
    clock,
    defaults: { deadlineMs: 5000, priority: 'low' },
    routes: {
      'GET /users/:id': { deadlineMs: 200, priority: 'high' },
      '/login': { critical: true, priority: 'critical' },
      '/metrics': { bypass: true },
      'POST /files/*': { maxDeadlineMs: 50 },
    },
  });
  const user = proceed(guard.admit(view({ url: '/users/42' }), channel, new FakeResponse()));
  assert.deepEqual([user.route.name, user.deadline - START, user.priority, user.deadlineSource], ['GET /users/:id', 200, 'high', 'route-default']);
  const other = proceed(guard.admit(view({ url: '/users/42/posts' }), channel, new FakeResponse()));
  assert.deepEqual([other.route.name, other.deadline - START, other.priority], ['default', 5000, 'low']);
  const login = proceed(guard.admit(view({ method: 'POST', url: '/login' }), channel, new FakeResponse()));
  assert.deepEqual([login.critical, login.priority, login.deadline - START], [true, 'critical', 5000]);
  const file = proceed(guard.admit(view({ method: 'POST', url: '/files/a/b', headers: { 'x-request-timeout-ms': '9999' } }), channel, new FakeResponse()));
  assert.equal(file.deadline - START, 50, 'maxDeadlineMs caps a header');
  assert.deepEqual(guard.admit(view({ url: '/metrics', headers: { 'x-request-timeout-ms': 'garbage' } }), channel, new FakeResponse()), { kind: 'bypass' });
  // Framework route config beats the table.
  const framework = proceed(guard.admit(view({ url: '/users/1', route: { deadlineMs: 75 }, routeName: '/users/:id' }), channel, new FakeResponse()));
  assert.equal(framework.deadline - START, 75);
  assert.equal(framework.route.priority, 'high', 'unset fields fall through to the table');
});

test('routes as a function; bad settings are INVALID_OPTIONS at build time, or a 500 problem at call time', () => {
  const guard = new HttpGuard({ clock: new VirtualClock(START), routes: (method, path) => (path === '/bad' ? { priority: 'urgent' as any } : method === 'DELETE' ? { priority: 'low' } : undefined) });
  assert.equal(proceed(guard.admit(view({ method: 'DELETE' }), channel, new FakeResponse())).priority, 'low');
  assert.equal(rejected(guard.admit(view({ url: '/bad' }), channel, new FakeResponse())).status, 500);
  assert.throws(() => new HttpGuard({ routes: { 'GET /x': { deadlineMs: -1 } } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new HttpGuard({ routes: { 'nope': {} } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new HttpGuard({ defaults: { priority: 'urgent' as any } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new HttpGuard({ deadlineHeaders: { combine: 'latest' as any } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new HttpGuard({ protections: [{} as any] }), { code: 'INVALID_OPTIONS' });
});

test('protections run in order; one can answer instead of the handler, set headers and see the end', async () => {
  const clock = new VirtualClock(START);
  const calls: string[] = [];
  const ended: number[] = [];
  const perIp = new Map<string, number>();
  const limiter: Protection = {
    name: 'tiny-limiter',
    check(request) {
      calls.push('limiter');
      const n = (perIp.get(request.clientIp) ?? 0) + 1;
      perIp.set(request.clientIp, n);
      if (n > 2) return { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' };
      request.setHeader('RateLimit-Remaining', String(2 - n));
      request.onEnd((outcome) => ended.push(outcome.status));
      return undefined;
    },
  };
  const audit: Protection = { name: 'audit', check: () => { calls.push('audit'); } };
  const guard = new HttpGuard({ clock, protections: [limiter, audit] });
  const rejections: string[] = [];
  guard.onReject((e) => rejections.push(`${e.protection}:${e.status}`));
  const first = new FakeResponse();
  const ctx = proceed(guard.admit(view(), channel, first));
  assert.deepEqual(ctx.responseHeaders, { 'ratelimit-remaining': '1' });
  first.close(201);
  assert.deepEqual(ended, [201]);
  proceed(guard.admit(view({ headers: { 'x-forwarded-for': '6.6.6.6' } }), channel, new FakeResponse()));
  const third = rejected(guard.admit(view({ headers: { 'x-forwarded-for': '7.7.7.7' } }), channel, new FakeResponse()));
  assert.equal(third.status, 429, 'a spoofed X-Forwarded-For does not get a fresh allowance by default');
  assert.deepEqual(calls, ['limiter', 'audit', 'limiter', 'audit', 'limiter']);
  assert.deepEqual(rejections, ['tiny-limiter:429']);
});

test('an async protection: the deadline passing while it waits answers 504 instead of running the handler', async () => {
  const clock = new VirtualClock(START);
  const slowStore: Protection = {
    name: 'slow-store',
    check: () => new Promise<undefined>((resolve) => { clock.setTimeout(() => resolve(undefined), 500); }),
  };
  const guard = new HttpGuard({ clock, protections: [slowStore] });
  const res = new FakeResponse();
  const pending = guard.admit(view({ headers: { 'x-request-timeout-ms': '100' } }), channel, res);
  assert.ok(pending instanceof Promise);
  await clock.advance(100);
  assert.equal(res.sent, undefined, 'no 504 from the timer while admission is still deciding');
  await clock.advance(400);
  const admission = await pending;
  assert.equal(admission.kind, 'reject');
  assert.equal((admission as any).response.status, 504);
  const ok = guard.admit(view({ headers: { 'x-request-timeout-ms': '1000' } }), channel, new FakeResponse());
  await clock.advance(500);
  assert.equal((await ok).kind, 'proceed');
});

test('a protection that throws is answered by its error code (e.g. 503 + Retry-After), never a crash', async () => {
  const clock = new VirtualClock(START);
  const { StoreUnavailableError } = await import('../../core/errors.js');
  const broken: Protection = { name: 'store', check: () => { throw new StoreUnavailableError('redis', new Error('ECONNREFUSED'), 2000); } };
  const rejecting: Protection = { name: 'async-store', check: () => Promise.reject(new Error('boom')) };
  const sync = rejected(new HttpGuard({ clock, protections: [broken] }).admit(view(), channel, new FakeResponse()));
  assert.equal(sync.status, 503);
  assert.equal(sync.headers['retry-after'], '2');
  const asyncAnswer = await new HttpGuard({ clock, protections: [rejecting] }).admit(view(), channel, new FakeResponse());
  assert.equal(asyncAnswer.kind, 'reject');
  assert.equal((asyncAnswer as any).response.status, 500);
  assert.ok(!String((asyncAnswer as any).response.body).includes('boom'), 'internal messages are not disclosed');
});

test('the request context is CallOptions: outbound policies inherit its deadline and signal', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const ctx = proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '1000' } }), channel, new FakeResponse()));
  const policy = timeout({ ms: 5000, clock });
  let innerDeadline = 0;
  const call = policy.execute((inner) => {
    innerDeadline = inner.deadline;
    return new Promise((_, reject) => inner.signal.addEventListener('abort', () => reject(inner.signal.reason)));
  }, ctx);
  const outcome = assert.rejects(call, { code: 'TIMEOUT' });
  assert.equal(innerDeadline, START + 900, 'attempt timeout derived from the request budget (x0.9)');
  await clock.advance(900);
  await outcome;
  assert.deepEqual(ctx.tags, { route: 'default', method: 'GET', clientIp: '192.0.2.7' });
});

test('onDeadline reports budget and whether the core answered', async () => {
  const clock = new VirtualClock(START);
  const guard = new HttpGuard({ clock });
  const seen: unknown[] = [];
  guard.onDeadline((e) => seen.push(e));
  proceed(guard.admit(view({ headers: { 'x-request-timeout-ms': '50' } }), channel, new FakeResponse()));
  await clock.advance(50);
  assert.deepEqual(seen, [{ route: 'default', budgetMs: 50, responded: true }]);
});

test('captureResponse asks the adapter once; onEnd after the end is an error', () => {
  const guard = new HttpGuard({ clock: new VirtualClock(START) });
  const res = new FakeResponse();
  const ctx = proceed(guard.admit(view(), channel, res));
  ctx.captureResponse();
  ctx.captureResponse();
  assert.equal(res.capturing, true);
  assert.equal(ctx.capturing, true);
  res.close();
  assert.throws(() => ctx.onEnd(() => {}));
});

test('adapters need a response-recording hook only for steps that may capture (idempotency holds the response instead)', () => {
  const idempotency = { store: new MemoryIdempotencyStore(), principal: () => null };
  const builtIn = new HttpGuard({ idempotency, rateLimit: { limits: [{ name: 'ip', key: 'ip', limit: 1, intervalMs: 1000 }] } });
  assert.equal(builtIn.mayCaptureResponses, false);
  const custom: Protection = { name: 'observer', check: () => undefined, needsBody: () => false };
  assert.equal(new HttpGuard({ idempotency, protections: [custom] }).mayCaptureResponses, true);
  const declared: Protection = { name: 'counter', check: () => undefined, capturesResponses: false };
  assert.equal(new HttpGuard({ idempotency, protections: [declared] }).mayCaptureResponses, false);
  assert.equal(new HttpGuard({ protections: [{ ...declared, capturesResponses: true }] }).mayCaptureResponses, true);
});

test('pathOf strips query and fragment without decoding', () => {
  assert.equal(pathOf('/a/b?x=1#f'), '/a/b');
  assert.equal(pathOf('/a%ZZ'), '/a%ZZ');
  assert.equal(pathOf('*'), '*');
  assert.equal(pathOf('/x#y?z'), '/x');
});

test('route patterns match whole segments only', async () => {
  const { compileRouteTable } = await import('./routes.js');
  const resolve = compileRouteTable({
    'GET /users/:id': { priority: 'high' },
    '/admin/*': { critical: true },
    'POST /users': { priority: 'low' },
    '/users': { priority: 'best-effort' },
  });
  assert.equal(resolve('GET', '/users/42')?.name, 'GET /users/:id');
  assert.equal(resolve('POST', '/users/42'), undefined, 'method-specific pattern');
  assert.equal(resolve('GET', '/users/42/'), undefined, 'a trailing empty segment is another segment');
  assert.equal(resolve('GET', '/users/'), undefined, 'a parameter needs a non-empty segment');
  assert.equal(resolve('GET', '/users42'), undefined);
  assert.equal(resolve('GET', '/admin')?.name, '/admin/*');
  assert.equal(resolve('GET', '/admin/a/b/c')?.name, '/admin/*');
  assert.equal(resolve('GET', '/administrator'), undefined);
  assert.equal(resolve('POST', '/users')?.priority, 'low', 'method-specific literal beats any-method literal');
  assert.equal(resolve('GET', '/users')?.priority, 'best-effort');
  assert.equal(resolve('GET', '*'), undefined);
  assert.equal(resolve('GET', ''), undefined);
});
