import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidInputError } from './errors.js';
import { REQUIRED, fn, keyLimit, nonNegative, nonNegativeInt, oneOf, positive, positiveInt, ratio } from './validate.js';

const invalid = (message: string) => ({ code: 'INVALID_OPTIONS', message });

test('numeric checks: a left-out option takes its default, zero only where it is legal, and a bad value is named with what it got', () => {
  assert.equal(positive('timeout.ms', undefined, 250), 250);
  assert.equal(positive('timeout.ms', null as never, 250), 250, 'null is left out too (`??`)');
  assert.equal(nonNegative('retry.maxElapsedMs', 0, 100), 0, 'an explicit zero is kept, not replaced by the default');
  assert.throws(() => positive('timeout.ms', 0, 250), invalid('timeout.ms must be a number > 0, got 0'));
  assert.throws(() => nonNegative('x', -1, 0), invalid('x must be a number >= 0, got -1'));
  assert.throws(() => positive('x', NaN, 1), invalid('x must be a number > 0, got NaN'));
  assert.throws(() => positive('x', '5' as never, 1), invalid('x must be a number > 0, got "5"'), 'a string shows quoted, unlike the number');
  assert.throws(() => positiveInt('x', 1.5, 1), invalid('x must be an integer >= 1, got 1.5'));
  assert.equal(nonNegativeInt('x', Infinity, 0), Infinity);
  assert.throws(() => nonNegativeInt('x', -1, 0), invalid('x must be an integer >= 0 (or Infinity), got -1'));
  assert.equal(ratio('x', 1, 0.5), 1);
  assert.throws(() => ratio('x', 1.01, 0.5), invalid('x must be a number between 0 and 1, got 1.01'));
  assert.equal(oneOf('mode', undefined, ['open', 'closed'], 'open'), 'open');
  assert.throws(() => oneOf('mode', 'maybe' as 'open', ['open', 'closed'], 'open'), invalid('mode must be one of open, closed, got "maybe"'));
  assert.throws(() => keyLimit('maxKeys', 2 ** 24 + 1, 10), invalid('maxKeys must be <= 16777216 (the most keys an in-process limiter tracks), got 16777217'));
});

test('REQUIRED: leaving the option out says it is required and what it takes; a given value is checked as usual', () => {
  assert.equal(positiveInt('bulkhead.maxConcurrent', 4, REQUIRED), 4);
  assert.throws(() => positiveInt('bulkhead.maxConcurrent', undefined, REQUIRED), invalid('bulkhead.maxConcurrent is required: an integer >= 1'));
  assert.throws(() => positive('timeout.ms', -5, REQUIRED), invalid('timeout.ms must be a number > 0, got -5'));
  assert.throws(() => ratio('red.min', null as never, REQUIRED), invalid('red.min must be a number between 0 and 1, got null'));
  assert.throws(() => oneOf('type', undefined, ['a', 'b'], REQUIRED), invalid('type is required: one of a, b'));
});

test('a value passed with a call fails with the error the caller names (INVALID_INPUT), not INVALID_OPTIONS', () => {
  assert.throws(() => nonNegative('timeoutMs', -1, 0, InvalidInputError), { code: 'INVALID_INPUT', message: 'timeoutMs must be a number >= 0, got -1' });
  assert.throws(() => positive('cost', undefined, REQUIRED, InvalidInputError), { code: 'INVALID_INPUT', message: 'cost is required: a number > 0' });
});

test('fn: left out gives its fallback (or undefined), a function passes as is, anything else is named by kind', () => {
  const predicate = (error: unknown) => error instanceof Error;
  const systemDefault = () => 0.5;
  assert.equal(fn('retry.shouldRetry', undefined), undefined);
  assert.equal(fn('retry.shouldRetry', predicate), predicate);
  assert.equal(fn('retry.random', undefined, systemDefault), systemDefault);
  assert.equal(fn('retry.random', Math.random, systemDefault), Math.random);
  for (const [bad, got] of [[true, 'true'], [0, '0'], ['yes', '"yes"'], [null, 'null'], [{}, 'an object'], [[], 'an array']] as const) {
    assert.throws(() => fn('retry.shouldRetry', bad as never), invalid(`retry.shouldRetry must be a function, got ${got}`));
    assert.throws(() => fn('retry.random', bad as never, systemDefault), invalid(`retry.random must be a function, got ${got}`), 'a fallback does not hide a bad value');
  }
  assert.throws(() => fn('retry.random', 2 as never, systemDefault, 'returning [0, 1)'), invalid('retry.random must be a function returning [0, 1), got 2'));
});

test('fn with REQUIRED: leaving it out says it is required and what it takes', () => {
  const principal = () => 'tenant-1';
  assert.equal(fn('idempotency.principal', principal, REQUIRED, '(request) => user id'), principal);
  assert.throws(() => fn('idempotency.principal', undefined, REQUIRED, '(request) => user id'), invalid('idempotency.principal is required: a function (request) => user id'));
  assert.throws(() => fn('idempotency.principal', 'user' as never, REQUIRED), invalid('idempotency.principal must be a function, got "user"'));
});
