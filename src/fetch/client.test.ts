import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { exitsByItself } from '../../test/support/exits-by-itself.js';
import { Request } from 'undici';
import { VirtualClock } from '../core/clock.js';
import { once } from '../core/events.js';
import { hasCode } from '../core/errors.js';
import { consecutive } from '../breaker/strategies.js';
import { ratioBudget } from '../retry/budget.js';
import { createFetch, type CreateFetchOptions } from '../fetch.js';
import { reply, startResetServer, startServer, eventually, type TestServer } from './test/server.js';

const EPOCH = 1_700_000_000_000;
const NO_WAIT = { kind: 'constant', baseDelayMs: 0, jitter: 'none' } as const;

/** A client on a virtual clock (retry waits and deadlines move only when the test says so). */
function makeClient(t: { after(fn: () => Promise<void> | void): void }, options: CreateFetchOptions = {}, clock = new VirtualClock(EPOCH)) {
  const fetch = createFetch({ clock, budget: false, ...options });
  t.after(() => fetch.close());
  return { fetch, clock };
}

async function serve(t: { after(fn: () => Promise<void> | void): void }, handler: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const server = await startServer(handler);
  t.after(() => server.close());
  return server;
}

test('a 503 with Retry-After: 2 is retried after exactly 2 s, and the final response is returned', async (t) => {
  const server = await serve(t, (req, res) => (req.n === 1 ? reply(res, 503, 'busy', { 'retry-after': '2' }) : reply(res, 200, 'ok')));
  const { fetch, clock } = makeClient(t);
  const retry = fetch.dependency('default').dependency.retry!;
  const retried = once(retry.onRetry);

  const pending = fetch(`${server.url}/item`);
  const event = await retried;
  assert.equal(event.retryAfterMs, 2000);
  assert.equal(event.delayMs, 2000);
  await clock.advance(1999);
  assert.equal(server.hits, 1, 'no second request before Retry-After elapsed');
  await clock.advance(1);
  const response = await pending;
  assert.equal(response.status, 200);
  assert.equal(await response.text(), 'ok');
  assert.equal(server.hits, 2);
  assert.equal(fetch.stats().dependencies.default!.retries, 1);
});

test('a POST without an Idempotency-Key is not retried: the 503 is returned as a response', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 503, 'busy', { 'retry-after': '0' }));
  const { fetch } = makeClient(t);
  const response = await fetch(`${server.url}/orders`, { method: 'POST', body: '{"sku":1}' });
  assert.equal(response.status, 503);
  assert.equal(await response.text(), 'busy');
  assert.equal(server.hits, 1);
});

test('a POST with an Idempotency-Key is retried, with the same key and body', async (t) => {
  const server = await serve(t, (req, res) => (req.n === 1 ? reply(res, 503, '', { 'retry-after': '0' }) : reply(res, 201, 'created')));
  const { fetch } = makeClient(t);
  const response = await fetch(`${server.url}/orders`, { method: 'POST', body: '{"sku":1}', headers: { 'Idempotency-Key': 'k-1' } });
  assert.equal(response.status, 201);
  assert.equal(server.hits, 2);
  assert.deepEqual(server.requests.map((r) => [r.method, r.headers['idempotency-key'], r.body]), [
    ['POST', 'k-1', '{"sku":1}'],
    ['POST', 'k-1', '{"sku":1}'],
  ]);
});

test('PUT and DELETE are retried (idempotent methods); a Request object body is replayed', async (t) => {
  const server = await serve(t, (req, res) => (req.n % 2 === 1 ? reply(res, 502, '', { 'retry-after': '0' }) : reply(res, 200, req.body)));
  const { fetch } = makeClient(t);
  const put = await fetch(`${server.url}/doc/1`, { method: 'PUT', body: 'v2' });
  assert.equal(put.status, 200);
  assert.equal(await put.text(), 'v2');
  const del = await fetch(new Request(`${server.url}/doc/1`, { method: 'DELETE', body: 'why' }));
  assert.equal(del.status, 200);
  assert.equal(await del.text(), 'why');
  assert.deepEqual(server.requests.map((r) => `${r.method} ${r.body}`), ['PUT v2', 'PUT v2', 'DELETE why', 'DELETE why']);
});

test('a response with Bulwark-Retry: no is never retried, whatever its status and Retry-After', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 503, 'shed', { 'retry-after': '0', 'bulwark-retry': 'no' }));
  const { fetch } = makeClient(t);
  const response = await fetch(`${server.url}/x`);
  assert.equal(response.status, 503);
  assert.equal(response.headers.get('bulwark-retry'), 'no');
  assert.equal(server.hits, 1);
});

test('retries are per attempt count; when they run out the last 5xx response is returned, not thrown', async (t) => {
  const server = await serve(t, (req, res) => reply(res, 500, `attempt ${req.n}`));
  const { fetch } = makeClient(t, { defaults: { retry: { maxAttempts: 3, backoff: NO_WAIT } } });
  const response = await fetch(`${server.url}/x`);
  assert.equal(response.status, 500);
  assert.equal(await response.text(), 'attempt 3');
  assert.equal(server.hits, 3);
});

test('4xx answers are neither retried nor counted by the breaker', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 404, 'nope'));
  const { fetch } = makeClient(t, { defaults: { breaker: { strategy: consecutive({ threshold: 2 }) } } });
  for (let i = 0; i < 5; i++) {
    const response = await fetch(`${server.url}/missing`);
    assert.equal(response.status, 404);
    await response.arrayBuffer();
  }
  assert.equal(server.hits, 5);
  assert.deepEqual(fetch.stats().dependencies.default!.breakers, { [server.host]: 'closed' });
});

test('a streamed request body is sent once and not retried, even with an Idempotency-Key', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 503, '', { 'retry-after': '0' }));
  const { fetch } = makeClient(t);
  const response = await fetch(`${server.url}/upload`, {
    method: 'POST',
    headers: { 'idempotency-key': 'k' },
    body: Readable.toWeb(Readable.from([Buffer.from('chunk')])) as ReadableStream,
    duplex: 'half',
  });
  assert.equal(response.status, 503);
  assert.equal(server.hits, 1);
  assert.equal(server.requests[0]!.body, 'chunk');
});

test('the breaker opens on a dead host and then fails fast without a socket; other hosts are unaffected', async (t) => {
  const dead = await startResetServer();
  t.after(() => dead.close());
  const alive = await serve(t, (_req, res) => reply(res, 200, 'alive'));
  const { fetch } = makeClient(t, {
    defaults: { retry: { maxAttempts: 3, backoff: NO_WAIT }, breaker: { strategy: consecutive({ threshold: 3 }), openMs: 30_000 } },
  });

  // First call: three attempts, three failed connections; the third trips the breaker.
  const first = await fetch(`${dead.url}/x`).then(() => undefined, (error: unknown) => error);
  assert.ok(hasCode(first, 'RETRIES_EXHAUSTED'), `expected RETRIES_EXHAUSTED, got ${String(first)}`);
  assert.equal(dead.connections, 3);
  assert.equal(fetch.stats().dependencies.default!.breakers[dead.host], 'open');

  // Next call: rejected by the open breaker at once (no retry wait, no connection attempt).
  const second = await fetch(`${dead.url}/x`).then(() => undefined, (error: unknown) => error);
  assert.ok(hasCode(second, 'CIRCUIT_OPEN'), `expected CIRCUIT_OPEN, got ${String(second)}`);
  assert.equal((second as unknown as { retryAfterMs: number }).retryAfterMs, 30_000);
  assert.equal(dead.connections, 3, 'an open breaker makes no connection');
  assert.equal(fetch.stats().dependencies.default!.retries, 2, 'the breaker-open rejection was not retried');

  // The breaker is per host: another host of the same dependency still works.
  const ok = await fetch(`${alive.url}/x`);
  assert.equal(await ok.text(), 'alive');
});

test('breaker events and state are public: fetch.onBreakerStateChange, dependency(name).onBreakerStateChange and .breakers()', async (t) => {
  const dead = await startResetServer();
  t.after(() => dead.close());
  const { fetch, clock } = makeClient(t, {
    dependencies: { inventory: { hosts: [dead.host], retry: false, breaker: { strategy: consecutive({ threshold: 2 }), openMs: 5_000 } } },
  });
  const inventory = fetch.dependency('inventory');
  const clientWide: unknown[] = [];
  const perDependency: unknown[] = [];
  const all = fetch.onBreakerStateChange((e) => clientWide.push({ dependency: e.dependency, host: e.host, from: e.from, to: e.to, reason: e.reason }));
  t.after(() => all.dispose());
  const subscription = inventory.onBreakerStateChange((e) => perDependency.push(`${e.from}->${e.to}`));
  assert.deepEqual(inventory.breakers(), {}, 'no host called yet');

  for (let i = 0; i < 2; i++) await fetch(`${dead.url}/x`).catch(() => undefined);
  assert.deepEqual(clientWide, [{ dependency: 'inventory', host: dead.host, from: 'closed', to: 'open', reason: 'threshold' }]);
  assert.deepEqual(perDependency, ['closed->open']);
  const stats = inventory.breakers()[dead.host]!;
  assert.equal(stats.state, 'open');
  assert.equal(stats.failures, 2);
  await fetch(`${dead.url}/x`).catch(() => undefined);
  assert.equal(inventory.breakers()[dead.host]!.rejections, 1);

  subscription.dispose();
  await clock.advance(5_000);
  await fetch(`${dead.url}/x`).catch(() => undefined); // the half-open probe fails: open again
  assert.deepEqual(perDependency, ['closed->open'], 'disposed: no more events');
  assert.deepEqual(clientWide.map((e: any) => `${e.from}->${e.to}`), ['closed->open', 'open->half-open', 'half-open->open']);
  assert.deepEqual(fetch.dependency('default').breakers(), {});
});

test('the remaining deadline travels as X-Request-Timeout-Ms on each attempt, shrinking across a retry', async (t) => {
  const server = await serve(t, (req, res) => (req.n === 1 ? reply(res, 503, '', { 'retry-after': '1' }) : reply(res, 200, 'ok')));
  const { fetch, clock } = makeClient(t, { deadlineMarginMs: 50 });
  const retried = once(fetch.dependency('default').dependency.retry!.onRetry);
  const pending = fetch(`${server.url}/x`, { bulwark: { timeoutMs: 5000 } });
  await retried;
  await clock.advance(1000);
  assert.equal((await pending).status, 200);
  const sent = server.requests.map((r) => Number(r.headers['x-request-timeout-ms']));
  // Attempt timeout = min(10 000, 0.9 × remaining); the header is that minus the 50 ms margin.
  assert.deepEqual(sent, [0.9 * 5000 - 50, 0.9 * 4000 - 50]);
  assert.ok(sent[1]! < sent[0]!);
});

test('the remaining budget reaches the server through every optional layer (cache, coalescing, retry, breaker, bulkhead, hedge, timeouts)', async (t) => {
  const server = await serve(t, (req, res) => (req.n === 1 ? reply(res, 503, '', { 'retry-after': '1' }) : reply(res, 200, 'ok')));
  const { fetch, clock } = makeClient(t, {
    deadlineMarginMs: 50,
    defaults: {
      timeoutMs: 10_000,
      totalTimeoutMs: 30_000,
      retry: { maxAttempts: 3, backoff: NO_WAIT },
      breaker: { strategy: consecutive({ threshold: 5 }) },
      bulkhead: { maxConcurrent: 10, maxQueue: 10 },
      hedge: { delayMs: 5_000 },
      coalesce: true,
      cache: { ttlMs: 60_000, staleIfErrorMs: 60_000 },
    },
  });
  const dependency = fetch.dependency('default').dependency;
  assert.ok(dependency.cache && dependency.coalescer && dependency.retry && dependency.breakers && dependency.bulkhead && dependency.hedge && dependency.attemptTimeout);
  const retried = once(dependency.retry.onRetry);
  const inbound = { deadline: clock.now() + 2000, clock };
  const pending = fetch(`${server.url}/catalog/1`, { bulwark: { context: inbound } });
  await retried;
  await clock.advance(1000);
  const response = await pending;
  assert.equal(response.status, 200);
  assert.equal(await response.text(), 'ok');
  const sent = server.requests.map((r) => r.headers['x-request-timeout-ms']);
  // A GET shared by the cache and coalescing runs detached from its caller and announces that
  // caller's remaining budget minus the margin, recomputed after the retry wait.
  assert.deepEqual(sent, [String(2000 - 50), String(1000 - 50)]);
  // A POST (not shared, not cached) through the same pipeline carries it too.
  await (await fetch(`${server.url}/orders`, { method: 'POST', body: '{}', bulwark: { timeoutMs: 3000 } })).text();
  assert.equal(server.requests[2]!.headers['x-request-timeout-ms'], String(0.9 * 3000 - 50));
});

test('regression (seed defect "X-Deadline: None"): no deadline header at all when the call has no deadline', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 200, 'ok'));
  const { fetch } = makeClient(t);
  await (await fetch(`${server.url}/x`)).text();
  await (await fetch(`${server.url}/y`, { method: 'POST', body: 'b' })).text();
  for (const request of server.requests) {
    for (const name of ['x-request-timeout-ms', 'x-request-deadline', 'x-deadline']) assert.equal(request.headers[name], undefined, name);
    assert.ok(!Object.values(request.headers).some((v) => v === 'None' || v === 'undefined' || v === 'null'));
  }
});

test('the deadline of an inbound request context is propagated, re-anchored on the client clock', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 200, 'ok'));
  const { fetch } = makeClient(t, { defaults: { timeoutMs: 60_000 } });
  const serverClock = new VirtualClock(5_000); // another clock entirely: only the remaining budget matters
  const inbound = { deadline: serverClock.now() + 2000, clock: serverClock, priority: 'high' as const };
  await (await fetch(`${server.url}/x`, { bulwark: { context: inbound } })).text();
  assert.equal(server.requests[0]!.headers['x-request-timeout-ms'], String(0.9 * 2000 - 50));
});

test('an expired deadline (or one shorter than the margin) fails with DEADLINE_EXCEEDED before any I/O', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 200, 'ok'));
  const { fetch, clock } = makeClient(t, { deadlineMarginMs: 50 });
  await assert.rejects(fetch(`${server.url}/x`, { bulwark: { deadline: clock.now() - 1 } }), (e) => hasCode(e, 'DEADLINE_EXCEEDED'));
  await assert.rejects(fetch(`${server.url}/x`, { bulwark: { timeoutMs: 0 } }), (e) => hasCode(e, 'DEADLINE_EXCEEDED'));
  // 40 ms left: the attempt would get 36 ms, less than the 50 ms margin; not retried either.
  await assert.rejects(fetch(`${server.url}/x`, { bulwark: { timeoutMs: 40 } }), (e) => hasCode(e, 'DEADLINE_EXCEEDED'));
  assert.equal(server.hits, 0);
  assert.equal(fetch.stats().dependencies.default!.retries, 0);
});

test('the caller\'s signal aborts the request in flight: the server sees the connection close', async (t) => {
  const server = await serve(t, () => { /* never answers */ });
  const { fetch } = makeClient(t);
  const controller = new AbortController();
  const pending = fetch(`${server.url}/slow`, { signal: controller.signal });
  await server.waitForHits(1);
  controller.abort();
  await assert.rejects(pending, (e: unknown) => (e as Error).name === 'AbortError');
  await server.waitForAbort(1);
  assert.equal(server.hits, 1);
});

test('the caller\'s signal also aborts reading the body after the response arrived', async (t) => {
  const server = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part;'); // and never ends
  });
  const { fetch } = makeClient(t);
  const controller = new AbortController();
  const response = await fetch(`${server.url}/stream`, { signal: controller.signal });
  const reader = response.body!.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), 'first part;');
  const rest = reader.read();
  controller.abort();
  await assert.rejects(rest);
  await server.waitForAbort(1);
});

test('the attempt timeout aborts a slow attempt (TIMEOUT) and the retry sends another', async (t) => {
  const server = await serve(t, (req, res) => { if (req.n > 1) reply(res, 200, 'second'); });
  const { fetch, clock } = makeClient(t, { defaults: { timeoutMs: 1000, retry: { maxAttempts: 2, backoff: NO_WAIT } } });
  const pending = fetch(`${server.url}/x`);
  await server.waitForHits(1);
  await clock.advance(1000);
  const response = await pending;
  assert.equal(await response.text(), 'second');
  await server.waitForAbort(1);
});

test('bodies of retried responses are released: connections stay bounded (no socket leak)', async (t) => {
  const big = 'x'.repeat(256 * 1024); // larger than undici buffers: an unread body pins its socket
  const server = await serve(t, (req, res) => (req.n % 3 === 0 ? reply(res, 200, 'ok') : reply(res, 503, big, { 'retry-after': '0' })));
  const { fetch } = makeClient(t);
  for (let i = 0; i < 10; i++) {
    const response = await fetch(`${server.url}/x`);
    assert.equal(response.status, 200);
    await response.text();
  }
  assert.equal(server.hits, 30);
  await eventually(() => server.openSockets <= 2, `open sockets to fall to <= 2 (now ${server.openSockets})`);
  const connections = fetch.stats().connections as Record<string, { connected: number; running: number }>;
  const pool = connections[server.url]; // undici drops an origin's pool once it has no connection left
  assert.ok(pool === undefined || (pool.connected <= 2 && pool.running === 0), JSON.stringify(connections));
});

test('retries and hedges draw from the retry budget: when it is spent, neither adds load', async (t) => {
  const server = await serve(t, (req, res) => {
    if (req.path === '/slow') setTimeout(() => reply(res, 200, 'slow'), 50);
    else reply(res, 503, 'busy', { 'retry-after': '0' });
  });
  const clock = new VirtualClock(EPOCH);
  const { fetch } = makeClient(t, { budget: ratioBudget({ ratio: 0, minRetriesPerSecond: 0, clock }), defaults: { hedge: { delayMs: 10 } } }, clock);
  const response = await fetch(`${server.url}/x`);
  assert.equal(response.status, 503, 'the retry was refused: the 503 comes back at once');
  const slow = fetch(`${server.url}/slow`);
  await server.waitForHits(2);
  await clock.advance(10);
  assert.equal(await (await slow).text(), 'slow');
  assert.equal(server.hits, 2, 'no retry, no hedge');
  const stats = fetch.stats().dependencies.default!;
  assert.equal(stats.retries, 0);
  assert.equal(stats.hedge!.denied, 1);
  assert.equal(stats.budget?.kind, 'ratio');
});

test('the bulkhead bounds concurrent calls per dependency; a full bulkhead rejects (BULKHEAD_FULL), not retried', async (t) => {
  const server = await serve(t, (_req, res) => void setTimeout(() => reply(res, 200, 'ok'), 30));
  const { fetch } = makeClient(t, { defaults: { bulkhead: { maxConcurrent: 1, maxQueue: 0 } } });
  const first = fetch(`${server.url}/a`);
  await assert.rejects(fetch(`${server.url}/b`), (e) => hasCode(e, 'BULKHEAD_FULL'));
  assert.equal(await (await first).text(), 'ok');
  assert.equal(server.hits, 1);
  assert.equal(fetch.stats().dependencies.default!.bulkhead!.rejected, 1);
});

test('calls are routed by host, by match function, by explicit name; defaults: false rejects unknown hosts', async (t) => {
  const a = await serve(t, (_req, res) => reply(res, 200, 'a'));
  const b = await serve(t, (_req, res) => reply(res, 200, 'b'));
  const { fetch } = makeClient(t, {
    defaults: false,
    dependencies: {
      alpha: { hosts: [a.host] },
      beta: { match: (url) => url.pathname.startsWith('/beta/') },
    },
  });
  await (await fetch(`${a.url}/x`)).text();
  await (await fetch(`${b.url}/beta/1`)).text();
  await (await fetch(`${b.url}/other`, { bulwark: { dependency: 'beta' } })).text();
  await (await fetch.dependency('alpha').fetch(`${b.url}/via-alpha`)).text();
  await assert.rejects(fetch(`${b.url}/unknown`), (e) => hasCode(e, 'INVALID_INPUT'));
  await assert.rejects(fetch(`${b.url}/x`, { bulwark: { dependency: 'nope' } }), (e) => hasCode(e, 'INVALID_INPUT'));
  const stats = fetch.stats().dependencies;
  assert.equal(stats.alpha!.requests, 2);
  assert.equal(stats.beta!.requests, 2);
  assert.deepEqual(fetch.dependencies, ['alpha', 'beta']);
});

test('bad input is rejected with INVALID_INPUT, never retried nor held against the breaker', async (t) => {
  const server = await serve(t, (_req, res) => reply(res, 200, 'ok'));
  const { fetch } = makeClient(t, { defaults: { breaker: { strategy: consecutive({ threshold: 1 }) } } });
  const bad: Array<[string, () => Promise<unknown>]> = [
    ['relative URL', () => fetch('/relative')],
    ['ftp URL', () => fetch('ftp://example.com/x')],
    ['GET with a body', () => fetch(`${server.url}/x`, { body: 'x' })],
    ['bad method', () => fetch(`${server.url}/x`, { method: 'BAD METHOD' })],
    ['bad timeoutMs', () => fetch(`${server.url}/x`, { bulwark: { timeoutMs: -5 } })],
    ['bad priority', () => fetch(`${server.url}/x`, { bulwark: { priority: 'urgent' as never } })],
    ['bad header value (found by undici)', () => fetch(`${server.url}/x`, { headers: { 'x-a': 'line\nbreak' } })],
  ];
  for (const [what, call] of bad) await assert.rejects(call(), (e) => hasCode(e, 'INVALID_INPUT'), what);
  assert.equal(server.hits, 0);
  assert.equal(fetch.stats().dependencies.default!.retries, 0);
  assert.equal((await fetch(`${server.url}/x`)).status, 200, 'the breaker is still closed');
  await fetch.close();
  await assert.rejects(fetch(`${server.url}/x`), (e) => hasCode(e, 'INVALID_INPUT'), 'a closed client');
});

test('bad options fail when the client is built (INVALID_OPTIONS)', () => {
  const bad: CreateFetchOptions[] = [
    { defaults: { timeoutMs: -1 } },
    { defaults: { totalTimeoutMs: 0 } },
    { defaults: { retry: { maxAttempts: 0 } } },
    { defaults: { retry: { statuses: [999] } } },
    { defaults: { bulkhead: { maxConcurrent: 0 } } },
    { defaults: { hedge: {} } },
    { defaults: { cache: { ttlMs: 0 } } },
    { dependencies: { a: { hosts: ['h'] }, b: { hosts: ['h'] } } },
    { dependencies: { default: {} } },
    { dependencies: { a: { match: 'x' as never } } },
    { deadlineMarginMs: -1 },
    { dispatcher: {} },
  ];
  for (const options of bad) assert.throws(() => createFetch(options), (e) => hasCode(e, 'INVALID_OPTIONS'), JSON.stringify(options));
});

test('a process that used the client exits by itself once the client and servers are closed', async () => {
  const { code, out } = await exitsByItself(fileURLToPath(new URL('./test/exit-check.ts', import.meta.url)), 'done');
  assert.equal(code, 0, `child ${code === 'leaked' ? 'did not exit after it closed everything (something leaked)' : `exited ${String(code)}`}: ${out}`);
});
