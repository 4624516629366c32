import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QueueFullError } from '../../backpressure/errors.js';
import { markDegraded } from '../../core/degraded.js';
import { degradedHeaders } from './degraded-headers.js';
import {
  BulkheadFullError, BulkheadQueueTimeoutError, BulwarkError, CircuitOpenError, DeadlineExceededError, RateLimitedError, RetryBudgetExhaustedError, ShedError, TimeoutError,
} from '../../core/errors.js';
import {
  BUSY_RETRY_AFTER_MS, InvalidRequestError, overloadedResponse, problemForError, problemResponse, rateLimitedResponse, RETRY_HINT_HEADER,
} from './problem.js';
import { formatRetryAfter, rateLimitedHeaders, rateLimitHeaders } from './rate-limit-headers.js';

const json = (body: string | Uint8Array): any => JSON.parse(String(body));

test('problemResponse builds RFC 9457 problem+json with a stable code', () => {
  const r = problemResponse({ status: 504, title: 'Deadline exceeded', detail: 'late', code: 'DEADLINE_EXCEEDED', extensions: { budgetMs: 10, status: 999 } });
  assert.equal(r.status, 504);
  assert.equal(r.headers['content-type'], 'application/problem+json');
  assert.deepEqual(json(r.body), { budgetMs: 10, type: 'urn:bulwark:problem:deadline-exceeded', title: 'Deadline exceeded', status: 504, detail: 'late', code: 'DEADLINE_EXCEEDED' });
  assert.equal(json(problemResponse({ status: 404, title: 'Not found' }).body).type, 'about:blank');
});

test('Retry-After is whole seconds rounded up, never negative or NaN', () => {
  assert.equal(formatRetryAfter(1), '1');
  assert.equal(formatRetryAfter(1000), '1');
  assert.equal(formatRetryAfter(1001), '2');
  assert.equal(formatRetryAfter(0), '0');
  assert.equal(formatRetryAfter(-50), '0');
  assert.equal(formatRetryAfter(Number.NaN), '0');
  assert.equal(formatRetryAfter(Infinity), '0');
});

test('RateLimit headers, draft-6 form (default): limit, remaining, reset in delta seconds, policy', () => {
  assert.deepEqual(rateLimitHeaders({ limit: 100, remaining: 41.7, resetMs: 12_300, windowMs: 60_000 }), {
    'ratelimit-limit': '100', 'ratelimit-remaining': '41', 'ratelimit-reset': '13', 'ratelimit-policy': '100;w=60',
  });
  assert.deepEqual(rateLimitHeaders({ limit: 5, remaining: -3, resetMs: 0 }), { 'ratelimit-limit': '5', 'ratelimit-remaining': '0', 'ratelimit-reset': '0' });
});

test('RateLimit headers, draft-10 form: RateLimit-Policy and RateLimit structured fields', () => {
  assert.deepEqual(rateLimitHeaders({ limit: 100, remaining: 50, resetMs: 30_000, windowMs: 60_000, policy: 'per-ip' }, 'draft-10'), {
    'ratelimit-policy': '"per-ip";q=100;w=60', ratelimit: '"per-ip";r=50;t=30',
  });
  assert.deepEqual(rateLimitHeaders({ limit: 10, remaining: 0, resetMs: 500, policy: 'we"ird\\' }, 'draft-10'), {
    'ratelimit-policy': '"we\\"ird\\\\";q=10', ratelimit: '"we\\"ird\\\\";r=0;t=1',
  });
  assert.equal(rateLimitedHeaders({ limit: 1, remaining: 0, resetMs: 900 }, 2500)['retry-after'], '3');
});

test('429 and shed responses carry what clients need', () => {
  const limited = rateLimitedResponse(1500, { limit: 10, remaining: 0, resetMs: 1500 });
  assert.equal(limited.status, 429);
  assert.equal(limited.headers['retry-after'], '2');
  assert.equal(limited.headers['ratelimit-remaining'], '0');
  assert.equal(json(limited.body).code, 'RATE_LIMITED');
  const shed = overloadedResponse(3000);
  assert.equal(shed.status, 503);
  assert.equal(shed.headers[RETRY_HINT_HEADER], 'no');
  assert.equal(shed.headers['retry-after'], '3');
  assert.equal(json(shed.body).code, 'SHED');
});

test('problemForError maps stable codes to statuses and hints', () => {
  const cases: [unknown, number, Record<string, string>][] = [
    [new DeadlineExceededError(0), 504, {}],
    [new TimeoutError(100), 504, {}],
    [new CircuitOpenError('payments', 4200, 'open'), 503, { 'retry-after': '5' }],
    [new RateLimitedError(800), 429, { 'retry-after': '1' }],
    [new ShedError('cpu', 2000), 503, { 'retry-after': '2', 'bulwark-retry': 'no' }],
    [new RetryBudgetExhaustedError(3, new Error('x')), 503, { 'bulwark-retry': 'no' }],
    [new BulwarkError('IDEMPOTENCY_CONFLICT', 'busy'), 409, {}],
    [new BulwarkError('IDEMPOTENCY_MISMATCH', 'different'), 422, {}],
    [new InvalidRequestError('too big', 413), 413, {}],
  ];
  for (const [error, status, headers] of cases) {
    const r = problemForError(error);
    assert.equal(r.status, status, String(error));
    for (const [name, value] of Object.entries(headers)) assert.equal(r.headers[name], value, `${String(error)} ${name}`);
    assert.equal(json(r.body).code, (error as BulwarkError).code);
  }
});

test('problemForError keeps framework 4xx statuses and hides internal 500 messages', () => {
  const badJson = Object.assign(new SyntaxError('Unexpected token } in JSON'), { status: 400, expose: true });
  assert.equal(problemForError(badJson).status, 400);
  assert.match(json(problemForError(badJson).body).detail, /Unexpected token/);
  const tooLarge = Object.assign(new Error('request entity too large'), { statusCode: 413 });
  assert.equal(problemForError(tooLarge).status, 413);
  const secret = problemForError(new Error('connect to 10.1.2.3 with password hunter2 failed'));
  assert.equal(secret.status, 500);
  assert.ok(!String(secret.body).includes('hunter2'));
  assert.equal(problemForError('a string').status, 500);
  assert.equal(problemForError(Object.assign(new Error('x'), { status: 200 })).status, 500, 'a non-error status is ignored');
  assert.ok(!String(problemForError(new BulwarkError('INVALID_OPTIONS', 'secret config')).body).includes('secret'));
});

test('local "too busy" rejections without a hint of their own get Retry-After: 1 and Bulwark-Retry: no; an own hint wins', () => {
  assert.equal(BUSY_RETRY_AFTER_MS, 1000);
  for (const error of [new BulkheadFullError(10, 0), new BulkheadQueueTimeoutError(50), new QueueFullError(8, 'full'), new ShedError('queue')]) {
    const r = problemForError(error);
    assert.equal(r.status, 503, error.code);
    assert.equal(r.headers['retry-after'], '1', error.code);
    assert.equal(r.headers['bulwark-retry'], 'no', error.code);
  }
  assert.equal(problemForError(new ShedError('cpu', 4500)).headers['retry-after'], '5', "the shedder's own estimate is kept");
  assert.equal(problemForError(new TimeoutError(100)).headers['retry-after'], undefined, 'a dependency timeout promises nothing');
});

test('degradedHeaders: the mark\'s source as a header token, a stale value\'s Age in whole seconds; nothing for a normal value', () => {
  assert.deepEqual(degradedHeaders(markDegraded({ items: [] }, { source: 'fallback' })), { 'bulwark-degraded': 'fallback' });
  assert.deepEqual(degradedHeaders(markDegraded([1], { source: 'stale-cache', ageMs: 1200 })), { 'bulwark-degraded': 'stale-cache', age: '1' });
  assert.deepEqual(degradedHeaders(markDegraded([1], { source: 'stale-replica', ageMs: 999 })), { 'bulwark-degraded': 'stale-replica', age: '0' });
  assert.deepEqual(degradedHeaders(markDegraded([1], { source: 'stale-cache', ageMs: -5 })), { 'bulwark-degraded': 'stale-cache', age: '0' });
  assert.deepEqual(degradedHeaders(markDegraded([1], { source: 'stale-cache', ageMs: Number.NaN })), { 'bulwark-degraded': 'stale-cache' });
  assert.deepEqual(degradedHeaders(markDegraded({}, { source: 'my cache\r\nx: y' })), { 'bulwark-degraded': 'my-cache-x-y' });
  assert.deepEqual(degradedHeaders(markDegraded({}, { source: '' })), { 'bulwark-degraded': 'degraded' });
  assert.deepEqual(degradedHeaders({ items: [] }), {});
  assert.deepEqual(degradedHeaders('text'), {});
  assert.deepEqual(degradedHeaders(undefined), {});
});
