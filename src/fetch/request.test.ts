import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Headers, Request } from 'undici';
import { VirtualClock } from '../core/clock.js';
import { hasCode } from '../core/errors.js';
import { prepareCall, shareKey, isReplayableBody, normalizeHeaders, DEFAULT_KEY_HEADERS, type FetchInitLike } from './request.js';

const clock = new VirtualClock(1_000_000);
const prepare = (input: Parameters<typeof prepareCall>[0], init?: FetchInitLike) => prepareCall(input, init, { clock, idempotencyKeyHeader: 'idempotency-key' });

test('methods: idempotent per RFC 9110, or made retryable by an Idempotency-Key; the caller can override both ways', async () => {
  const url = 'http://h/x';
  for (const method of ['GET', 'head', 'OPTIONS', 'put', 'DELETE']) assert.equal((await prepare(url, { method })).idempotent, true, method);
  for (const method of ['POST', 'PATCH', 'CONNECT']) assert.equal((await prepare(url, { method })).idempotent, false, method);
  assert.equal((await prepare(url, { method: 'POST', headers: { 'Idempotency-Key': 'k' } })).idempotent, true);
  assert.equal((await prepare(url, { method: 'PATCH', bulwark: { idempotent: true } })).idempotent, true);
  assert.equal((await prepare(url, { method: 'GET', bulwark: { idempotent: false } })).idempotent, false);
  assert.equal((await prepare(url, { method: 'put' })).method, 'PUT', 'standard methods are upper-cased');
  assert.equal((await prepare(url, { method: 'patch' })).method, 'patch', 'others are sent as given (fetch standard)');
});

test('headers from a Headers, pairs or an object are lower-cased; repeats are joined', () => {
  const expected = { accept: 'a, b', 'x-one': '1' };
  assert.deepEqual(normalizeHeaders(new Headers([['Accept', 'a'], ['accept', 'b'], ['X-One', '1']])), expected);
  assert.deepEqual(normalizeHeaders([['Accept', 'a'], ['ACCEPT', 'b'], ['x-one', '1']]), expected);
  assert.deepEqual(normalizeHeaders({ Accept: ['a', 'b'], 'X-One': '1', skipped: undefined }), expected);
  assert.throws(() => normalizeHeaders([['only-name']] as never), (e) => hasCode(e, 'INVALID_INPUT'));
});

test('bodies held in memory are replayable; streams are not', () => {
  for (const body of [null, undefined, 'text', new Uint8Array(2), new ArrayBuffer(2), new URLSearchParams('a=1'), new Blob(['x']), new FormData()]) {
    assert.equal(isReplayableBody(body), true, Object.prototype.toString.call(body));
  }
  assert.equal(isReplayableBody(new ReadableStream()), false);
  assert.equal(isReplayableBody((async function* () { yield 'x'; })()), false);
});

test('a Request input: URL, method, headers and body are taken from it, init overrides them', async () => {
  const request = new Request('http://h/r', { method: 'PUT', headers: { a: '1' }, body: 'payload' });
  const call = await prepare(request, { headers: { b: '2' } });
  assert.equal(call.href, 'http://h/r');
  assert.equal(call.method, 'PUT');
  assert.deepEqual(call.headers, { b: '2' });
  assert.deepEqual(new TextDecoder().decode(call.body as Uint8Array), 'payload');
  assert.equal(call.replayable, true);
});

test('the deadline is the earliest of deadline, timeoutMs and the inbound context, on the client clock', async () => {
  const other = new VirtualClock(50);
  const call = await prepare('http://h/', { bulwark: { deadline: clock.now() + 900, timeoutMs: 700, context: { deadline: other.now() + 800, clock: other } } });
  assert.equal(call.deadline, clock.now() + 700);
  const viaContext = await prepare('http://h/', { bulwark: { timeoutMs: 700, context: { deadline: other.now() + 300, clock: other } } });
  assert.equal(viaContext.deadline, clock.now() + 300);
  assert.equal((await prepare('http://h/')).deadline, Infinity);
  await assert.rejects(prepare('http://h/', { bulwark: { timeoutMs: 0 } }), (e) => hasCode(e, 'DEADLINE_EXCEEDED'));
  await assert.rejects(prepare('http://h/', { bulwark: { deadline: Number.NaN } }), (e) => hasCode(e, 'INVALID_INPUT'));
  await assert.rejects(prepare('http://h/', { bulwark: { context: {} as never } }), (e) => hasCode(e, 'INVALID_INPUT'));
});

test('signals: init.signal and the inbound context\'s signal both abort the call; an aborted one rejects at once', async () => {
  const a = new AbortController();
  const b = new AbortController();
  const call = await prepare('http://h/', { signal: a.signal, bulwark: { context: { deadline: Infinity, signal: b.signal } } });
  assert.equal(call.callerSignal!.aborted, false);
  b.abort(new Error('client gone'));
  assert.equal(call.callerSignal!.aborted, true);
  const aborted = new AbortController();
  aborted.abort(new Error('already'));
  await assert.rejects(prepare('http://h/', { signal: aborted.signal }), /already/);
});

test('the share key covers method, URL and key headers; secrets appear only as a hash', async () => {
  const key = async (headers: Record<string, string>) => shareKey(await prepare('http://h/p?q=1', { headers }), DEFAULT_KEY_HEADERS);
  const base = await key({ accept: 'application/json' });
  assert.equal(base, 'GET http://h/p?q=1\naccept: application/json');
  assert.equal(await key({ accept: 'application/json', 'x-trace': 'abc' }), base, 'other headers do not split the key');
  assert.notEqual(await key({ accept: 'text/html' }), base);
  const withAuth = await key({ accept: 'application/json', authorization: 'Bearer secret-token' });
  assert.ok(!withAuth.includes('secret-token'));
  assert.notEqual(withAuth, await key({ accept: 'application/json', authorization: 'Bearer other-token' }));
  assert.equal(withAuth, await key({ accept: 'application/json', authorization: 'Bearer secret-token' }));
});
