import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from './clock.js';
import { ERROR_TABLE, meaningOf, ownStatusOf, statusOf, type ErrorMeaning } from './error-table.js';
import { BulwarkError, InvalidInputError, type ErrorCode } from './errors.js';
import { InvalidStreamRequestError, QueueFullError } from '../backpressure/errors.js';
import { InvalidSnapshotError } from '../breaker/snapshot.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { coalesce } from '../coalesce/coalesce.js';
import { recordId } from '../idempotency/scope.js';
import { RateLimitInputError } from '../ratelimit/types.js';
import { InvalidAdmissionError } from '../shedding/errors.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { isDependencyFailure, isIgnoredOutcome } from '../breaker/classify.js';
import { consecutive } from '../breaker/strategies.js';
import { InvalidRequestError, problemForError } from '../http/core/problem.js';
import { isNeverRetried, isRetryableError } from '../retry/classify.js';
import { retry } from '../retry/retry.js';

/** Written out again on purpose: a row that changes must change here too, deliberately. */
const EXPECTED: Record<ErrorCode, ErrorMeaning> = {
  TIMEOUT: { status: 504, retry: 'retryable', origin: 'dependency' },
  DEADLINE_EXCEEDED: { status: 504, retry: 'never', origin: 'local' },
  CIRCUIT_OPEN: { status: 503, retry: 'never', origin: 'local' },
  BULKHEAD_FULL: { status: 503, retry: 'never', origin: 'local' },
  BULKHEAD_QUEUE_TIMEOUT: { status: 503, retry: 'never', origin: 'local' },
  RATE_LIMITED: { status: 429, retry: 'never', origin: 'local' },
  SHED: { status: 503, retry: 'never', origin: 'local' },
  QUEUE_FULL: { status: 503, retry: 'never', origin: 'local' },
  ABORTED: { status: 503, retry: 'never', origin: 'local' },
  RETRY_BUDGET_EXHAUSTED: { status: 503, retry: 'never', origin: 'dependency' },
  RETRIES_EXHAUSTED: { status: 503, retry: 'never', origin: 'dependency' },
  IDEMPOTENCY_CONFLICT: { status: 409, retry: 'not-retryable', origin: 'local' },
  IDEMPOTENCY_MISMATCH: { status: 422, retry: 'not-retryable', origin: 'local' },
  IDEMPOTENCY_KEY_INVALID: { status: 400, retry: 'not-retryable', origin: 'local' },
  LEASE_LOST: { status: 500, retry: 'not-retryable', origin: 'local' },
  NOT_IDEMPOTENT: { status: 500, retry: 'not-retryable', origin: 'local' },
  INVALID_INPUT: { status: 400, retry: 'not-retryable', origin: 'local' },
  INVALID_OPTIONS: { status: 500, retry: 'never', origin: 'local' },
  STORE_UNAVAILABLE: { status: 503, retry: 'retryable', origin: 'dependency' },
  FAULT_INJECTED: { status: 500, retry: 'retryable', origin: 'dependency' },
};

const CODES = Object.keys(EXPECTED) as ErrorCode[];

test('the table has one row per error code, each as expected', () => {
  assert.deepEqual(Object.keys(ERROR_TABLE).sort(), [...CODES].sort());
  for (const code of CODES) assert.deepEqual(ERROR_TABLE[code], EXPECTED[code], code);
});

test('every code: the HTTP answer, retry and the breaker all follow its row', () => {
  for (const code of CODES) {
    const row = EXPECTED[code];
    const error = new BulwarkError(code, `a ${code}`);
    assert.equal(problemForError(error).status, row.status, `${code}: HTTP status`);
    assert.equal(isNeverRetried(error), row.retry === 'never', `${code}: never retried`);
    assert.equal(!isNeverRetried(error) && isRetryableError(error), row.retry === 'retryable', `${code}: retried by default`);
    assert.equal(isDependencyFailure(error), row.origin === 'dependency', `${code}: breaker failure`);
    assert.equal(isIgnoredOutcome(error), row.origin === 'local', `${code}: breaker ignores it`);
  }
});

const RETRY_STOPS: ReadonlySet<ErrorCode> = new Set(['RETRIES_EXHAUSTED', 'RETRY_BUDGET_EXHAUSTED']);

test('retry and breaker agree: nothing retried by default is a local rejection, nothing local is retried', () => {
  for (const code of CODES) {
    const error = new BulwarkError(code, code);
    // What a breaker counts against the dependency is worth retrying, unless retrying already gave up on it.
    if (isDependencyFailure(error) && !RETRY_STOPS.has(code)) assert.equal(isRetryableError(error) && !isNeverRetried(error), true, `${code} counts against the dependency, so it must be retried`);
    if (isRetryableError(error) && !isNeverRetried(error)) assert.equal(isDependencyFailure(error), true, `${code} is retried, so it must count against the dependency`);
    if (isIgnoredOutcome(error)) assert.equal(isRetryableError(error), false, `${code} is a local rejection, so it must not be retried`);
  }
});

test('a full queue inside a breaker is a local rejection: it neither trips the breaker nor is retried', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, strategy: consecutive({ threshold: 1 }) });
  for (let i = 0; i < 5; i++) await assert.rejects(breaker.execute(() => { throw new QueueFullError(1, 'full'); }), { code: 'QUEUE_FULL' });
  assert.equal(breaker.state.kind, 'closed');
  assert.equal(breaker.stats().ignored, 5);

  let attempts = 0;
  const policy = retry({ clock, maxAttempts: 3 });
  await assert.rejects(policy.execute(() => { attempts++; throw new QueueFullError(1, 'full'); }), { code: 'QUEUE_FULL' });
  assert.equal(attempts, 1);
});

test('meaningOf reads the code of any error, and knows nothing of foreign codes', () => {
  assert.equal(meaningOf({ code: 'SHED' }), ERROR_TABLE.SHED);
  assert.equal(meaningOf(Object.assign(new Error('reset'), { code: 'ECONNRESET' })), undefined);
  assert.equal(meaningOf({ code: 'toString' }), undefined);
  assert.equal(meaningOf('SHED'), undefined);
  assert.equal(meaningOf(null), undefined);
});

test('statusOf reads status, statusCode, response.status(Code) and numeric strings', () => {
  assert.equal(statusOf({ status: 503 }), 503);
  assert.equal(statusOf({ statusCode: 404 }), 404);
  assert.equal(statusOf({ status: '503' }), 503);
  assert.equal(statusOf({ statusCode: '429' }), 429);
  assert.equal(statusOf({ response: { status: 502 } }), 502);
  assert.equal(statusOf({ response: { statusCode: '504' } }), 504);
  assert.equal(statusOf({ status: 'bad', statusCode: 500 }), 500);
  assert.equal(statusOf({ status: 42 }), undefined);
  assert.equal(statusOf({ status: 503.5 }), undefined);
  assert.equal(statusOf({ status: '5030' }), undefined);
  assert.equal(statusOf({ response: null }), undefined);
  assert.equal(statusOf('503'), undefined);
  // A server answers with an error's own status, never with an upstream's it wraps.
  assert.equal(ownStatusOf({ response: { status: 404 } }), undefined);
  assert.equal(ownStatusOf({ statusCode: '413' }), 413);
});

test('the breaker reads statuses where retry does: a string status and a response.statusCode', () => {
  assert.equal(isDependencyFailure({ status: '404' }), false);
  assert.equal(isDependencyFailure({ response: { statusCode: 400 } }), false);
  assert.equal(isDependencyFailure({ response: { statusCode: 503 } }), true);
});

test('every INVALID_INPUT error is an InvalidInputError: the specific ones subclass it, the rest construct it', async () => {
  const specific = [
    new RateLimitInputError('cost must be >= 0'),
    new InvalidSnapshotError('bad state'),
    new InvalidAdmissionError('unknown class'),
    new InvalidStreamRequestError('request(0)'),
    new InvalidRequestError('body too large', 413),
  ];
  for (const error of specific) {
    assert.ok(error instanceof InvalidInputError, error.name);
    assert.equal(error.code, 'INVALID_INPUT');
    assert.equal(isDependencyFailure(error), false, error.name);
  }
  assert.equal(new InvalidSnapshotError('x').name, 'InvalidSnapshotError');

  const notAFunction = 'no' as unknown as () => string;
  await assert.rejects(coalesce().execute('k', notAFunction), InvalidInputError);
  await assert.rejects(bulkhead(1).execute(() => 'x', { priority: 'urgent' as never }), InvalidInputError);
  assert.throws(() => recordId({ method: 'GET', route: '/', key: '', principal: null }), InvalidInputError);
});
