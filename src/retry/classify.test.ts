import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AbortedError, BulkheadFullError, BulkheadQueueTimeoutError, CircuitOpenError, DeadlineExceededError, InvalidOptionsError,
  RateLimitedError, RetriesExhaustedError, RetryBudgetExhaustedError, ShedError, StoreUnavailableError, TimeoutError,
} from '../core/errors.js';
import {
  decideRetry, getHeader, isNeverRetried, isRetryableError, parseRetryAfter, retryAfterOf, type RetryOutcome,
} from './classify.js';

function httpError(status: number, headers?: unknown): Error {
  return Object.assign(new Error(`HTTP ${status}`), { status, headers });
}

function codeError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

const err = (error: unknown, attempt = 1): RetryOutcome => ({ kind: 'error', error, attempt });

test('network errors are retried, including undici codes and a cause chain (fetch failed → ECONNREFUSED)', () => {
  for (const code of ['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
    'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']) {
    assert.equal(isRetryableError(codeError(code)), true, code);
  }
  const fetchFailed = new TypeError('fetch failed', { cause: codeError('ECONNREFUSED') });
  assert.equal(isRetryableError(fetchFailed), true);
});

test('5xx 500/502/503/504 and 429 are retried; other 4xx and 5xx are not', () => {
  for (const status of [429, 500, 502, 503, 504]) assert.equal(isRetryableError(httpError(status)), true, String(status));
  for (const status of [400, 401, 403, 404, 405, 409, 410, 413, 422, 501, 505]) assert.equal(isRetryableError(httpError(status)), false, String(status));
  // other places a status lives
  assert.equal(isRetryableError(Object.assign(new Error('x'), { statusCode: 503 })), true);
  assert.equal(isRetryableError(Object.assign(new Error('x'), { response: { status: 404 } })), false);
  assert.equal(isRetryableError(Object.assign(new Error('x'), { response: { statusCode: 502 } })), true);
  assert.equal(isRetryableError(Object.assign(new Error('x'), { status: '503' })), true);
});

test('Bulwark TIMEOUT is retried; unknown errors are retried; a deliberate AbortError is not', () => {
  assert.equal(isRetryableError(new TimeoutError(100)), true);
  assert.equal(isRetryableError(new StoreUnavailableError('redis')), true);
  assert.equal(isRetryableError(new Error('something odd')), true);
  assert.equal(isRetryableError('a thrown string'), true);
  assert.equal(isRetryableError(undefined), true);
  assert.equal(isRetryableError(new DOMException('stop', 'AbortError')), false);
});

test('regression: local rejections (breaker open, bulkhead full, ...) are never retried, even when shouldRetry says yes', () => {
  const rejections = [
    new CircuitOpenError('db', 5000, 'open'), new BulkheadFullError(10, 0), new BulkheadQueueTimeoutError(50), new RateLimitedError(100),
    new ShedError('overload'), new DeadlineExceededError(0), new AbortedError(), new InvalidOptionsError('x'),
    new RetryBudgetExhaustedError(1, new Error('x')), new RetriesExhaustedError(3, new Error('x')),
  ];
  for (const rejection of rejections) {
    assert.equal(isNeverRetried(rejection), true, rejection.code);
    assert.equal(isRetryableError(rejection), false, rejection.code);
    assert.deepEqual(decideRetry(err(rejection), () => true, 0, 60_000), { retry: false }, rejection.code);
    // wrapped by someone else's error: still a local rejection underneath
    assert.deepEqual(decideRetry(err(new Error('wrapped', { cause: rejection })), () => true, 0, 60_000), { retry: false }, rejection.code);
  }
  // another copy of the library (dual package): recognised by code, not class
  assert.equal(isNeverRetried(codeError('CIRCUIT_OPEN')), true);
});

test('`Bulwark-Retry: no` and `retryable: false` forbid retries at any layer; `retryable: true` allows them', () => {
  assert.equal(isNeverRetried(httpError(503, { 'Bulwark-Retry': 'no' })), true);
  assert.equal(isNeverRetried(httpError(503, new Headers({ 'bulwark-retry': 'NO' }))), true);
  assert.equal(isNeverRetried({ status: 503, headers: new Headers({ 'bulwark-retry': 'no' }) }), true, 'a Response-like result');
  assert.equal(isNeverRetried(Object.assign(new Error('x'), { response: { headers: { 'bulwark-retry': 'no' } } })), true);
  assert.equal(isNeverRetried(httpError(503, { 'bulwark-retry': 'yes' })), false);
  assert.deepEqual(decideRetry(err(Object.assign(httpError(503), { retryable: false })), () => true, 0, 60_000), { retry: false });
  assert.equal(isRetryableError(Object.assign(httpError(400), { retryable: true })), true);
});

test('shouldRetry decides, or defers with undefined', () => {
  assert.deepEqual(decideRetry(err(httpError(503)), () => false, 0, 60_000), { retry: false });
  assert.deepEqual(decideRetry(err(httpError(400)), () => true, 0, 60_000), { retry: true });
  assert.deepEqual(decideRetry(err(httpError(400)), () => undefined, 0, 60_000), { retry: false });
  assert.deepEqual(decideRetry(err(httpError(503)), () => undefined, 0, 60_000), { retry: true });
  const seen: RetryOutcome[] = [];
  decideRetry(err(httpError(503), 2), (o) => { seen.push(o); return undefined; }, 0, 60_000);
  assert.equal(seen[0]?.attempt, 2);
});

test('headers are read from WHATWG Headers or plain objects, case-insensitively', () => {
  assert.equal(getHeader(new Headers({ 'Retry-After': '5' }), 'retry-after'), '5');
  assert.equal(getHeader({ 'Retry-After': '5' }, 'retry-after'), '5');
  assert.equal(getHeader({ 'retry-after': ['7', '8'] }, 'Retry-After'), '7');
  assert.equal(getHeader({ 'RETRY-AFTER': 9 }, 'retry-after'), '9');
  assert.equal(getHeader(new Map([['retry-after', '3']]), 'Retry-After'), '3');
  assert.equal(getHeader(undefined, 'retry-after'), undefined);
  assert.equal(getHeader({}, 'retry-after'), undefined);
});

test('Retry-After: seconds or an HTTP date; negative, past and garbage values are ignored', () => {
  const now = Date.parse('Sun, 06 Nov 1994 08:49:37 GMT');
  assert.equal(parseRetryAfter('120', now), 120_000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('1.5', now), 1500);
  assert.equal(parseRetryAfter(30, now), 30_000);
  assert.equal(parseRetryAfter('Sun, 06 Nov 1994 08:50:07 GMT', now), 30_000, 'IMF-fixdate');
  assert.equal(parseRetryAfter('Sunday, 06-Nov-94 08:50:37 GMT', now), 60_000, 'RFC 850');
  assert.equal(parseRetryAfter('Sun Nov  6 08:49:47 1994', now), 10_000, 'asctime is GMT');
  assert.equal(parseRetryAfter('Sun, 06 Nov 1994 08:49:00 GMT', now), undefined, 'in the past');
  for (const garbage of ['-5', 'soon', '', '12abc', 'NaN', '1e3', undefined, null, -1, Infinity]) {
    assert.equal(parseRetryAfter(garbage, now), undefined, String(garbage));
  }
});

test('Retry-After is capped, and read from the header before a retryAfterMs property', () => {
  assert.equal(retryAfterOf(httpError(429, { 'retry-after': '3600' }), 0, 60_000), 60_000);
  assert.equal(retryAfterOf(httpError(503, { 'retry-after': '2' }), 0, 60_000), 2000);
  assert.equal(retryAfterOf(new StoreUnavailableError('redis', undefined, 1500), 0, 60_000), 1500);
  assert.equal(retryAfterOf(Object.assign(httpError(503, { 'retry-after': '4' }), { retryAfterMs: 99 }), 0, 60_000), 4000);
  assert.equal(retryAfterOf(httpError(503, { 'retry-after': 'later' }), 0, 60_000), undefined);
  assert.deepEqual(decideRetry(err(httpError(429, { 'retry-after': '60' })), undefined, 0, 60_000), { retry: true, retryAfterMs: 60_000 });
  assert.deepEqual(
    decideRetry({ kind: 'result', result: { status: 503, headers: new Headers({ 'retry-after': '2' }) }, attempt: 1 }, undefined, 0, 60_000),
    { retry: true, retryAfterMs: 2000 },
  );
});
