import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { VirtualClock } from '../core/clock.js';
import { degradation } from '../core/degraded.js';
import { once } from '../core/events.js';
import { hasCode } from '../core/errors.js';
import { consecutive } from '../breaker/strategies.js';
import { createFetch, STALE_HEADER, type CreateFetchOptions } from '../fetch.js';
import { reply, startServer, type TestServer } from './test/server.js';

// Hedging, coalescing and the stale cache: the GET-only parts of the client.

const EPOCH = 1_700_000_000_000;
const NO_WAIT = { kind: 'constant', baseDelayMs: 0, jitter: 'none' } as const;
type T = { after(fn: () => Promise<void> | void): void };

function makeClient(t: T, options: CreateFetchOptions = {}, clock = new VirtualClock(EPOCH)) {
  const fetch = createFetch({ clock, budget: false, ...options });
  t.after(() => fetch.close());
  return { fetch, clock };
}

async function serve(t: T, handler: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const server = await startServer(handler);
  t.after(() => server.close());
  return server;
}

/** Lets real I/O and promise chains move (the virtual clock does not drive sockets). */
async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
}

test('a hedge wins over a slow first attempt, and the loser\'s request is aborted on the server', async (t) => {
  const server = await serve(t, (req, res) => { if (req.n === 2) reply(res, 200, 'hedge'); /* the first never answers */ });
  const { fetch, clock } = makeClient(t, { defaults: { hedge: { delayMs: 50 } } });
  const pending = fetch(`${server.url}/item`);
  await server.waitForHits(1);
  await clock.advance(49);
  await settle();
  assert.equal(server.hits, 1, 'no hedge before the delay');
  await clock.advance(1);
  const response = await pending;
  assert.equal(await response.text(), 'hedge');
  await server.waitForAbort(1); // the loser's connection was closed
  assert.equal(server.requests[0]!.aborted, true);
  assert.equal(server.requests[1]!.aborted, false);
  const hedge = fetch.stats().dependencies.default!.hedge!;
  assert.equal(hedge.hedges, 1);
  assert.equal(hedge.hedgeWins, 1);
});

test('only GETs are hedged: a slow PUT gets no second copy', async (t) => {
  const server = await serve(t, (_req, res) => void setTimeout(() => reply(res, 200, 'done'), 30));
  const { fetch, clock } = makeClient(t, { defaults: { hedge: { delayMs: 5 } } });
  const pending = fetch(`${server.url}/doc`, { method: 'PUT', body: 'x' });
  await server.waitForHits(1);
  await clock.advance(100);
  assert.equal(await (await pending).text(), 'done');
  assert.equal(server.hits, 1);
  assert.equal(fetch.stats().dependencies.default!.hedge!.hedges, 0);
});

test('50 concurrent identical GETs are coalesced into one server hit; each caller gets its own readable body', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const server = await serve(t, async (req, res) => {
    await released;
    reply(res, 200, `body of ${req.path}`, { 'x-hit': String(req.n) });
  });
  const { fetch } = makeClient(t, { defaults: { coalesce: true } });
  const calls = Array.from({ length: 50 }, () => fetch(`${server.url}/catalog`, { headers: { accept: 'application/json' } }));
  await server.waitForHits(1);
  await settle();
  release();
  const responses = await Promise.all(calls);
  const bodies = await Promise.all(responses.map((r) => r.text()));
  assert.equal(server.hits, 1);
  assert.ok(bodies.every((b) => b === 'body of /catalog'));
  assert.ok(responses.every((r) => r.status === 200 && r.headers.get('x-hit') === '1' && r.url === `${server.url}/catalog`));
  assert.equal(new Set(responses).size, 50, 'each caller has its own Response object');
  const coalesce = fetch.stats().dependencies.default!.coalesce!;
  assert.equal(coalesce.executions, 1);
  assert.equal(coalesce.shared, 49);
});

test('a coalesced GET announces the budget of the caller that started it; once that caller is gone, the flight\'s own timeout', async (t) => {
  const server = await serve(t, (req, res) => (req.n === 1 ? reply(res, 503, '', { 'retry-after': '2' }) : reply(res, 200, 'shared')));
  const { fetch, clock } = makeClient(t, { deadlineMarginMs: 50, defaults: { coalesce: true, timeoutMs: 10_000, retry: { backoff: NO_WAIT } } });
  const retried = once(fetch.dependency('default').dependency.retry!.onRetry);
  const first = fetch(`${server.url}/catalog`, { bulwark: { timeoutMs: 1000 } }).then(() => 'answered', (error) => error.code);
  const second = fetch(`${server.url}/catalog`);
  await retried;
  await clock.advance(2000); // the first caller's deadline passes during the Retry-After wait
  assert.equal(await first, 'TIMEOUT', 'the first caller stopped waiting at its deadline');
  const response = await second;
  assert.equal(await response.text(), 'shared');
  assert.deepEqual(server.requests.map((r) => r.headers['x-request-timeout-ms']), [String(1000 - 50), String(10_000 - 50)]);
});

test('coalescing keys on method, URL and the key headers: different Accept or Authorization, different requests; POSTs never', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const server = await serve(t, async (_req, res) => {
    await released;
    reply(res, 200, 'ok');
  });
  const { fetch } = makeClient(t, { defaults: { coalesce: true } });
  const url = `${server.url}/x`;
  const calls = [
    fetch(url, { headers: { accept: 'text/plain' } }),
    fetch(url, { headers: { accept: 'text/plain' } }),
    fetch(url, { headers: { accept: 'application/json' } }),
    fetch(url, { headers: { accept: 'text/plain', authorization: 'Bearer a' } }),
    fetch(url, { headers: { accept: 'text/plain', authorization: 'Bearer b' } }),
    fetch(url, { method: 'POST', body: '1' }),
    fetch(url, { method: 'POST', body: '1' }),
    fetch(url, { headers: { accept: 'text/plain' }, bulwark: { coalesce: false } }),
  ];
  await server.waitForHits(7);
  await settle();
  release();
  for (const r of await Promise.all(calls)) await r.text();
  assert.equal(server.hits, 7);
});

test('a coalesced answer larger than maxSharedBodyBytes is not buffered: one caller streams it, the others send their own', async (t) => {
  const big = 'y'.repeat(64 * 1024);
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const server = await serve(t, async (req, res) => {
    if (req.n === 1) await released;
    reply(res, 200, big);
  });
  const { fetch } = makeClient(t, { defaults: { coalesce: true, maxSharedBodyBytes: 1024 } });
  const calls = [1, 2, 3].map(() => fetch(`${server.url}/big`));
  await server.waitForHits(1);
  await settle();
  release();
  const bodies = await Promise.all((await Promise.all(calls)).map((r) => r.text()));
  assert.ok(bodies.every((b) => b === big));
  assert.equal(server.hits, 3, 'one shared request, then one each for the two callers that could not share it');
  // Remembered: the next GET of that URL is not coalesced at all.
  const again = await Promise.all([fetch(`${server.url}/big`), fetch(`${server.url}/big`)]);
  for (const r of again) assert.equal((await r.text()).length, big.length);
  assert.equal(server.hits, 5);
});

test('stale-if-error: a cached GET is served (marked stale) while the server answers 500, until staleIfErrorMs runs out', async (t) => {
  let failing = false;
  const server = await serve(t, (req, res) => (failing ? reply(res, 500, 'down') : reply(res, 200, `v${req.n}`, { 'content-type': 'application/json' })));
  const { fetch, clock } = makeClient(t, {
    defaults: { retry: { maxAttempts: 2, backoff: NO_WAIT }, cache: { ttlMs: 1000, staleIfErrorMs: 60_000 } },
  });
  const url = `${server.url}/price`;

  const first = await fetch(url);
  assert.equal(await first.text(), 'v1');
  await clock.advance(500);
  const fresh = await fetch(url);
  assert.equal(await fresh.text(), 'v1', 'fresh: served from the cache');
  assert.equal(fresh.headers.get(STALE_HEADER), null);
  assert.equal(degradation(fresh), undefined);
  assert.equal(server.hits, 1);

  failing = true;
  await clock.advance(1000); // 1500 ms old: stale
  const stale = await fetch(url);
  assert.equal(stale.status, 200);
  assert.equal(await stale.text(), 'v1');
  assert.equal(stale.headers.get('content-type'), 'application/json');
  assert.equal(stale.headers.get(STALE_HEADER), '1500');
  assert.equal(degradation(stale)?.source, 'stale-cache');
  assert.equal(degradation(stale)?.ageMs, 1500);
  assert.equal(server.hits, 3, 'the load was tried (and retried) before falling back');

  await clock.advance(60_000); // beyond ttl + staleIfError: the error surfaces, as a response
  const expired = await fetch(url);
  assert.equal(expired.status, 500);
  assert.equal(await expired.text(), 'down');
  assert.equal(degradation(expired), undefined);

  failing = false;
  const recovered = await fetch(url);
  assert.equal(recovered.headers.get(STALE_HEADER), null);
  assert.match(await recovered.text(), /^v\d+$/);
});

test('stale-if-error also covers a dead dependency: breaker open, stale answer served', async (t) => {
  let failing = false;
  const server = await serve(t, (_req, res: ServerResponse) => { if (failing) res.socket?.destroy(); else reply(res, 200, 'cached'); });
  const { fetch, clock } = makeClient(t, {
    defaults: { retry: false, breaker: { strategy: consecutive({ threshold: 1 }) }, cache: { ttlMs: 100, staleIfErrorMs: 10_000 } },
  });
  const url = `${server.url}/x`;
  await (await fetch(url)).text();
  failing = true;
  await clock.advance(200);
  assert.equal(await (await fetch(url)).text(), 'cached'); // network error → stale
  assert.equal(fetch.stats().dependencies.default!.breakers[server.host], 'open');
  const hits = server.hits;
  const viaOpenBreaker = await fetch(url);
  assert.equal(await viaOpenBreaker.text(), 'cached');
  assert.ok(hasCode(degradation(viaOpenBreaker)?.reason, 'CIRCUIT_OPEN'));
  assert.equal(server.hits, hits, 'no request while the breaker is open');
});

test('the cache stores only chosen statuses and respects Cache-Control: no-store; POST, no-store requests and opt-outs bypass it', async (t) => {
  const server = await serve(t, (req, res) => {
    if (req.path === '/nostore') return reply(res, 200, 'secret', { 'cache-control': 'private, no-store' });
    if (req.path === '/missing') return reply(res, 404, 'no');
    reply(res, 200, `v${req.n}`);
  });
  const { fetch } = makeClient(t, { defaults: { cache: { ttlMs: 60_000 } } });
  const text = async (url: string, init?: Parameters<typeof fetch>[1]) => (await fetch(`${server.url}${url}`, init)).text();
  await text('/nostore');
  await text('/nostore');
  await text('/missing');
  await text('/missing');
  assert.equal(server.hits, 4);
  const cached = await text('/ok');
  assert.equal(await text('/ok'), cached);
  assert.equal(await text('/ok', { cache: 'no-store' }), `v${server.hits}`);
  assert.equal(await text('/ok', { bulwark: { cache: false } }), `v${server.hits}`);
  await text('/ok', { method: 'POST', body: 'x' });
  assert.equal(server.hits, 8);
  assert.equal(await text('/ok'), cached, 'the stored answer was not replaced by bypassing calls');
});

test('stale-while-revalidate: a stale answer is served at once and refreshed by one background request', async (t) => {
  const server = await serve(t, (req, res) => reply(res, 200, `v${req.n}`));
  const { fetch, clock } = makeClient(t, { defaults: { cache: { ttlMs: 1000, staleWhileRevalidateMs: 5000 } } });
  const url = `${server.url}/x`;
  assert.equal(await (await fetch(url)).text(), 'v1');
  await clock.advance(2000);
  const stale = await Promise.all([fetch(url), fetch(url), fetch(url)]);
  for (const r of stale) {
    assert.equal(await r.text(), 'v1');
    assert.equal(r.headers.get(STALE_HEADER), '2000');
  }
  await server.waitForHits(2);
  await settle();
  assert.equal(server.hits, 2, 'one background refresh for three stale reads');
  assert.equal(await (await fetch(url)).text(), 'v2');
});

test('a caller\'s deadline bounds its wait for a shared answer, without cancelling it for the others', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const server = await serve(t, async (_req, res) => {
    await released;
    reply(res, 200, 'late');
  });
  const { fetch, clock } = makeClient(t, { defaults: { coalesce: true } });
  const patient = fetch(`${server.url}/x`);
  const hurried = fetch(`${server.url}/x`, { bulwark: { timeoutMs: 100 } }).then(() => 'answered', (error: unknown) => error);
  await server.waitForHits(1);
  await clock.advance(100);
  assert.ok(hasCode(await hurried, 'TIMEOUT'));
  release();
  assert.equal(await (await patient).text(), 'late');
  assert.equal(server.hits, 1);
  assert.equal(server.requests[0]!.headers['x-request-timeout-ms'], undefined, 'a shared request carries no one caller\'s deadline');
});
