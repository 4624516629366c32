// Type tests: `tsc` checks them in `npm test`. A result predicate (`handleResult`,
// `isResultFailure`) receives the operation's result type, and that type is what the policy (and
// any pipeline holding it) accepts: an operation returning something else does not compile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expectType } from '../../test/support/expect-type.js';
import { VirtualClock } from './clock.js';
import { pipeline, type AnyPolicy, type Pipeline, type Policy } from './policy.js';
import { circuitBreaker, type CircuitBreakerPolicy } from '../breaker/breaker.js';
import { keyedBreaker } from '../breaker/keyed.js';
import type { FetchAnswer, FetchBreakerOptions } from '../fetch/options.js';
import { fallback } from '../fallback/fallback.js';
import { retry, type RetryPolicy } from '../retry/retry.js';
import { timeout } from '../timeout/timeout.js';

interface Reply {
  status: number;
  body: string;
}
const reply = (status: number): Reply => ({ status, body: String(status) });

test('retry: handleResult\'s parameter is the result type the policy runs', async () => {
  const clock = new VirtualClock();
  const policy = retry({ clock, maxAttempts: 1, handleResult: (r: Reply) => r.status >= 500 });
  expectType<RetryPolicy<Reply>>()(policy);
  expectType<Promise<Reply>>()(policy.execute(() => reply(503)));
  // @ts-expect-error the predicate reads a Reply; a string result is not one
  void policy.execute(() => 'text').catch(() => {});
  // Unannotated, the predicate gets `unknown` (not `any`): it must narrow before reading fields.
  retry({ clock, handleResult: (r) => { expectType<unknown>()(r); return false; } });
  // @ts-expect-error `unknown` has no status
  retry({ clock, handleResult: (r) => r.status >= 500 });
  assert.deepEqual(await policy.execute(() => reply(503)), reply(503), 'out of attempts: the last result');
});

test('breaker: isResultFailure\'s parameter is the result type, for one breaker and a keyed set', async () => {
  const clock = new VirtualClock();
  const breaker = circuitBreaker({ clock, isResultFailure: (r: Reply) => r.status >= 500 });
  expectType<CircuitBreakerPolicy<Reply>>()(breaker);
  // @ts-expect-error a number is not a Reply
  void breaker.execute(() => 42).catch(() => {});
  assert.deepEqual(await breaker.execute(() => reply(503)), reply(503));
  assert.equal(breaker.stats().failures, 1, 'the result counted as a failure');

  const keyed = keyedBreaker({ clock, options: { isResultFailure: (r: Reply) => r.status >= 500 } });
  expectType<Policy<never, Reply>>()(keyed.policy((ctx) => String(ctx.tags.host)));
  // @ts-expect-error a string is not a Reply
  void keyed.execute('a', () => 'text').catch(() => {});

  // The fetch client's breakers read its answers: a Response or a shared one, both with a status.
  const options: FetchBreakerOptions = { isResultFailure: (r) => { expectType<FetchAnswer>()(r); return r.status >= 500; } };
  assert.equal(typeof options.isResultFailure, 'function');
});

test('fallback: handleResult and the outcome it passes on are typed by the result', async () => {
  const policy = fallback({
    handleResult: (r: Reply) => r.status === 503,
    fallback: ({ result }) => { expectType<Reply | undefined>()(result); return null; },
  });
  expectType<Promise<Reply | null>>()(policy.execute(() => reply(503)));
  // @ts-expect-error a boolean is not a Reply
  void policy.execute(() => true).catch(() => {});
  assert.equal(await policy.execute(() => reply(503)), null);
  assert.deepEqual(await policy.execute(() => reply(200)), reply(200));
});

test('a pipeline takes what every predicate in it can read, and anything when none reads results', async () => {
  const clock = new VirtualClock();
  interface Traced {
    traceId: string;
  }
  const both = pipeline(
    retry({ clock, maxAttempts: 1, handleResult: (r: Reply) => r.status === 503 }),
    circuitBreaker({ clock, isResultFailure: (r: Traced) => r.traceId === '' }),
    timeout({ clock, ms: 100 }),
  );
  expectType<Pipeline<never, Reply & Traced>>()(both);
  const traced = { ...reply(200), traceId: 't1' };
  assert.deepEqual(await both.execute(() => traced), traced);
  // @ts-expect-error a Reply without a traceId does not suit the breaker's predicate
  void both.execute(() => reply(200)).catch(() => {});

  const plain = pipeline(timeout({ clock, ms: 100 }));
  expectType<Pipeline<never, unknown>>()(plain);
  assert.equal(await plain.execute(() => 'anything'), 'anything');

  // Any policy fits a list of AnyPolicy; a plain Policy list refuses a predicate it cannot honour.
  const mixed: AnyPolicy[] = [both, plain, fallback({ fallback: 0 })];
  // @ts-expect-error Policy runs any result; this retry reads Replies only
  const refused: Policy[] = [retry({ clock, handleResult: (r: Reply) => r.status === 503 })];
  assert.equal(mixed.length + refused.length, 4);
});
