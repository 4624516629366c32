import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { IdempotencyEngine } from './engine.js';
import { IdempotencyHttp, defaultShouldStore, httpDate, type IdempotencyHttpResponse, type IdempotentRequest } from './http.js';
import { fingerprintRequest } from './fingerprint.js';
import { LeaseLostError } from './errors.js';
import { MemoryIdempotencyStore } from './stores/memory-store.js';
import type { IdempotencyStore } from './types.js';

function setup(options: Partial<ConstructorParameters<typeof IdempotencyHttp>[0]> = {}) {
  const clock = new VirtualClock(Date.UTC(2025, 0, 2, 3, 4, 5));
  const store = new MemoryIdempotencyStore({ clock });
  const idem = new IdempotencyHttp({ store, clock, renewEveryMs: false, ...options });
  return { clock, store, idem };
}

const post = (key: string | string[] | undefined, body: unknown = { a: 1 }, extra: Partial<IdempotentRequest> = {}): IdempotentRequest => ({
  method: 'POST', path: '/orders', headers: key === undefined ? {} : { 'idempotency-key': key }, body: body as object, principal: 'alice', ...extra,
});

const problemCode = (r: IdempotencyHttpResponse) => JSON.parse(r.body as string).code as string;

test('key validation: 256 characters, control characters, empty or several keys → 400 IDEMPOTENCY_KEY_INVALID', async () => {
  const { idem } = setup();
  let ran = 0;
  const handler = async (): Promise<IdempotencyHttpResponse> => ({ status: 201, headers: {}, body: ++ran });
  for (const bad of ['x'.repeat(256), 'abc\u0001', 'tab\there', '', ' ', ['k1', 'k2']]) {
    const r = await idem.handle(post(bad), handler);
    assert.equal(r.status, 400, `key ${JSON.stringify(bad)}`);
    assert.equal(r.headers['content-type'], 'application/problem+json');
    assert.equal(problemCode(r), 'IDEMPOTENCY_KEY_INVALID');
    assert.equal(JSON.parse(r.body as string).status, 400);
  }
  assert.equal(ran, 0);
  assert.equal((await idem.handle(post('x'.repeat(255)), handler)).status, 201);
  assert.equal((await idem.handle(post('"quoted-key"'), handler)).status, 201);
  assert.equal((await idem.handle(post('quoted-key'), handler)).headers['idempotent-replayed'], 'true', '"k" and k are the same key');
});

test('a missing key is 400 where the route requires one, and runs unprotected elsewhere', async () => {
  const { idem } = setup();
  const handler = async (): Promise<IdempotencyHttpResponse> => ({ status: 201, headers: {}, body: 'ok' });
  const required = await idem.handle(post(undefined), handler, { required: true });
  assert.equal(required.status, 400);
  assert.equal(problemCode(required), 'IDEMPOTENCY_KEY_INVALID');
  const begun = await idem.begin(post(undefined));
  assert.deepEqual(begun, { action: 'run', lease: undefined, mode: 'no-key', key: undefined, body: undefined });
  const strict = setup({ required: true }).idem;
  assert.equal((await strict.begin(post(undefined))).action, 'respond');
});

test('unguarded methods pass through untouched (GET, PUT, DELETE by default; configurable)', async () => {
  const { idem } = setup();
  assert.equal((await idem.begin({ ...post('k'), method: 'GET' }) as { mode: string }).mode, 'not-applicable');
  assert.equal((await idem.begin({ ...post('k'), method: 'put' }) as { mode: string }).mode, 'not-applicable');
  assert.equal((await idem.begin({ ...post('k'), method: 'patch' }) as { mode: string }).mode, 'idempotent');
  const withPut = setup({ methods: ['POST', 'PUT'] }).idem;
  assert.equal((await withPut.begin({ ...post('k'), method: 'PUT' }) as { mode: string }).mode, 'idempotent');
});

test('which outcomes are stored: 2xx, 3xx and 4xx except 408/409/425/429; 5xx and thrown errors release', async () => {
  assert.deepEqual([200, 201, 204, 303, 400, 404, 422].map(defaultShouldStore), [true, true, true, true, true, true, true]);
  assert.deepEqual([408, 409, 425, 429, 500, 502, 503, 101].map(defaultShouldStore), [false, false, false, false, false, false, false, false]);
  const { idem } = setup();
  for (const status of [500, 503, 429, 409]) {
    let runs = 0;
    const handler = async (): Promise<IdempotencyHttpResponse> => ({ status: runs++ === 0 ? status : 201, headers: {}, body: runs });
    assert.equal((await idem.handle(post(`k-${status}`), handler)).status, status);
    const retry = await idem.handle(post(`k-${status}`), handler);
    assert.equal(retry.status, 201, `${status} released the key, the retry ran`);
    assert.equal(runs, 2);
  }
  let runs = 0;
  const notFound = async (): Promise<IdempotencyHttpResponse> => ({ status: 404, headers: {}, body: ++runs });
  await idem.handle(post('k-404'), notFound);
  const replayed = await idem.handle(post('k-404'), notFound);
  assert.equal(replayed.status, 404);
  assert.equal(replayed.headers['idempotent-replayed'], 'true');
  assert.equal(runs, 1);
  let thrown = 0;
  const throwing = async (): Promise<IdempotencyHttpResponse> => { if (thrown++ === 0) throw new Error('db down'); return { status: 201, headers: {}, body: 'ok' }; };
  await assert.rejects(idem.handle(post('k-throw'), throwing), /db down/);
  assert.equal((await idem.handle(post('k-throw'), throwing)).status, 201);
  const custom = setup({ shouldStore: (s) => s === 201 }).idem;
  let n = 0;
  const ok200 = async (): Promise<IdempotencyHttpResponse> => ({ status: 200, headers: {}, body: ++n });
  await custom.handle(post('c'), ok200);
  await custom.handle(post('c'), ok200);
  assert.equal(n, 2, 'a custom rule decides');
});

test('replay: stored status, allow-listed headers, body type preserved, replay marker and original date', async () => {
  const { clock, idem } = setup({ replayHeaders: ['content-type', 'x-request-cost'] });
  const first = await idem.handle(post('bytes'), async () => ({
    status: 201,
    headers: { 'Content-Type': 'application/octet-stream', 'X-Request-Cost': '3', 'Set-Cookie': 'session=1', Location: '/x' },
    body: Buffer.from([0, 1, 2, 255]),
  }));
  assert.equal(first.headers['idempotent-replayed'], undefined);
  await clock.advance(60_000);
  const replay = await idem.handle(post('bytes'), async () => { throw new Error('must not run'); });
  assert.equal(replay.status, 201);
  assert.deepEqual(replay.headers, {
    'content-type': 'application/octet-stream', 'x-request-cost': '3', 'idempotent-replayed': 'true', 'idempotent-original-date': 'Thu, 02 Jan 2025 03:04:05 GMT',
  });
  assert.ok(Buffer.isBuffer(replay.body));
  assert.deepEqual([...(replay.body as Buffer)], [0, 1, 2, 255]);
  await idem.handle(post('text'), async () => ({ status: 200, headers: {}, body: 'plain text' }));
  assert.equal((await idem.handle(post('text'), async () => ({ status: 500, headers: {}, body: '' }))).body, 'plain text');
  await idem.handle(post('empty'), async () => ({ status: 204, headers: {}, body: undefined }));
  const empty = await idem.handle(post('empty'), async () => ({ status: 500, headers: {}, body: '' }));
  assert.deepEqual([empty.status, empty.body], [204, undefined]);
  assert.throws(() => setup({ replayHeaders: ['Set-Cookie'] }), { code: 'INVALID_OPTIONS' });
});

test('a concurrent duplicate gets 409 with Retry-After, or (configured) waits and gets the replay', async () => {
  const { idem } = setup({ conflictRetryAfterSeconds: 2 });
  const first = await idem.begin(post('k'));
  assert.equal(first.action, 'run');
  const dup = await idem.begin(post('k'));
  assert.equal(dup.action === 'respond' && dup.response.status, 409);
  assert.equal(dup.action === 'respond' && dup.response.headers['retry-after'], '2');
  assert.equal(dup.action === 'respond' && problemCode(dup.response), 'IDEMPOTENCY_CONFLICT');
  if (first.action === 'run') await idem.finish(first, { status: 201, headers: {}, body: 'first' });

  const waiting = setup({ onInProgress: 'wait', waitMs: 5_000 });
  const a = await waiting.idem.begin(post('w'));
  const b = waiting.idem.begin(post('w'));
  await waiting.clock.advance(120);
  if (a.action === 'run') await waiting.idem.finish(a, { status: 201, headers: {}, body: 'first' });
  await waiting.clock.advance(60);
  const outcome = await b;
  assert.equal(outcome.action === 'respond' && outcome.reason, 'replay');
  assert.equal(outcome.action === 'respond' && outcome.response.body, 'first');
});

test('reuse with a different body, path or method is 422; JSON key order is not a difference', async () => {
  const { idem } = setup();
  const ok = async (): Promise<IdempotencyHttpResponse> => ({ status: 201, headers: {}, body: 'ok' });
  await idem.handle(post('k', { amount: 100, currency: 'EUR' }), ok);
  assert.equal((await idem.handle(post('k', { currency: 'EUR', amount: 100 }), ok)).headers['idempotent-replayed'], 'true');
  const mismatch = await idem.handle(post('k', { amount: 100, currency: 'USD' }), ok);
  assert.equal(mismatch.status, 422);
  assert.equal(problemCode(mismatch), 'IDEMPOTENCY_MISMATCH');
  const otherQuery = await idem.handle(post('k', { amount: 100, currency: 'EUR' }, { path: '/orders?dry=1', route: '/orders' }), ok);
  assert.equal(otherQuery.status, 422, 'same route scope, different path: a different request');
});

test('a 10 MB streamed body is fingerprinted on the fly and kept once for the handler', async () => {
  const { idem } = setup();
  const chunk = 256 * 1024;
  const count = 40;
  async function* upload() {
    for (let i = 0; i < count; i++) yield Buffer.alloc(chunk, i);
  }
  let seen = 0;
  const response = await idem.handle({ ...post('upload'), body: undefined, bodyStream: upload() }, async (run) => {
    assert.equal(run.body!.byteLength, chunk * count);
    assert.equal(run.body!.chunks.length, count, 'the chunks as they arrived, not a copy');
    const whole = run.body!.toBuffer();
    assert.equal(whole, run.body!.toBuffer(), 'concatenated at most once');
    seen = whole.length;
    return { status: 201, headers: {}, body: { bytes: whole.length } };
  });
  assert.equal(seen, 10 * 1024 * 1024);
  assert.deepEqual(response.body, { bytes: 10 * 1024 * 1024 });
  // The same bytes sent as one buffer are the same request (replayed, not a mismatch).
  const same = Buffer.concat(Array.from({ length: count }, (_, i) => Buffer.alloc(chunk, i)));
  const replay = await idem.handle({ ...post('upload'), body: same }, async () => { throw new Error('must not run'); });
  assert.equal(replay.headers['idempotent-replayed'], 'true');
  const changed = Buffer.from(same);
  changed[5_000_000] = 255;
  assert.equal((await idem.handle({ ...post('upload'), body: changed }, async () => { throw new Error('no'); })).status, 422);
});

test('a custom fingerprint replaces the default', async () => {
  const { idem } = setup({ fingerprint: (r) => fingerprintRequest(r.method, r.route ?? r.path, { amount: (r.body as { amount: number }).amount }) });
  await idem.handle(post('k', { amount: 1, traceId: 'a' }), async () => ({ status: 201, headers: {}, body: 'x' }));
  const r = await idem.handle(post('k', { amount: 1, traceId: 'b' }), async () => ({ status: 201, headers: {}, body: 'y' }));
  assert.equal(r.body, 'x', 'fields outside the fingerprint do not make a mismatch');
});

function downStore(): IdempotencyStore {
  const fail = () => Promise.reject(new Error('ECONNREFUSED 127.0.0.1:6379'));
  return { name: 'down', remote: true, claim: fail, complete: fail, release: fail, renew: fail, saveStep: fail, inspect: fail };
}

test('store down: fail closed with 503 + Retry-After by default; fail open runs the handler unprotected', async () => {
  const clock = new VirtualClock();
  const closed = new IdempotencyHttp({ store: downStore(), clock });
  const r = await closed.handle(post('k'), async () => { throw new Error('must not run'); });
  assert.equal(r.status, 503);
  assert.equal(r.headers['retry-after'], '1');
  assert.equal(problemCode(r), 'STORE_UNAVAILABLE');
  const open = new IdempotencyHttp({ store: downStore(), clock, storeUnavailable: 'fail-open' });
  const begun = await open.begin(post('k'));
  assert.deepEqual(begun, { action: 'run', lease: undefined, mode: 'fail-open', key: 'k', body: undefined });
  assert.equal((await open.handle(post('k'), async () => ({ status: 201, headers: {}, body: 'ran' }))).body, 'ran');
});

test('a handler whose lease was taken over gets 409 instead of its result, so the client fetches the canonical one', async () => {
  const { clock, store, idem } = setup({ leaseMs: 1_000 });
  const slow = await idem.begin(post('k'));
  await clock.advance(1_000);
  const other = new IdempotencyHttp({ store, clock, renewEveryMs: false, leaseMs: 1_000 });
  const fast = await other.handle(post('k'), async () => ({ status: 201, headers: {}, body: 'canonical' }));
  assert.equal(fast.body, 'canonical');
  assert.equal(slow.action, 'run');
  if (slow.action !== 'run') return;
  const late = await idem.finish(slow, { status: 201, headers: {}, body: 'stale' });
  assert.equal(late.status, 409);
  assert.equal(slow.lease!.status, 'lost');
  assert.equal((await idem.handle(post('k'), async () => ({ status: 500, headers: {}, body: '' }))).body, 'canonical');
});

test('a handler whose transactional completion was fenced off (LEASE_LOST) answers 409, not 500', async () => {
  const { idem } = setup();
  const r = await idem.handle(post('fenced'), async (run) => { throw new LeaseLostError(run.lease!.id, 'complete'); });
  assert.equal(r.status, 409);
  assert.equal(problemCode(r), 'IDEMPOTENCY_CONFLICT');
  const begun = await idem.begin(post('other'));
  assert.equal(begun.action === 'run' && await idem.abort(begun, new Error('db down')), undefined, 'other errors are the caller\'s');
});

test('options are validated at construction', () => {
  const store = new MemoryIdempotencyStore();
  assert.throws(() => new IdempotencyHttp({ store, headerName: 'Bad Header' }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyHttp({ store, onInProgress: 'queue' as never }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyHttp({ store, storeUnavailable: 'maybe' as never }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyHttp({ store, maxKeyLength: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new IdempotencyHttp({ engine: {} as never }), { code: 'INVALID_OPTIONS' });
  const engine = new IdempotencyEngine({ store });
  assert.equal(new IdempotencyHttp({ engine, headerName: 'X-Request-Id' }).engine, engine);
});

test('httpDate is toUTCString (IMF-fixdate)', () => {
  for (const ms of [0, 1_735_787_045_123, 1_735_787_045_999, 951_782_400_000, Date.UTC(2099, 11, 31, 23, 59, 59)]) {
    assert.equal(httpDate(ms), new Date(ms).toUTCString());
  }
});

test('custom header name', async () => {
  const { idem } = setup({ headerName: 'X-Idempotency-Token' });
  const r1 = await idem.handle({ ...post(undefined), headers: { 'x-idempotency-token': 't1' } }, async () => ({ status: 201, headers: {}, body: 1 }));
  const r2 = await idem.handle({ ...post(undefined), headers: { 'x-idempotency-token': 't1' } }, async () => ({ status: 201, headers: {}, body: 2 }));
  assert.deepEqual([r1.body, r2.body, r2.headers['idempotent-replayed']], [1, 1, 'true']);
});
