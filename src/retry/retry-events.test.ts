import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { TimeoutError } from '../core/errors.js';
import type { RetryBudget } from '../core/budget.js';
import { pipeline } from '../core/policy.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { retry } from './retry.js';

/** A budget that grants `grants` retries, then refuses. */
function grantingBudget(grants: number): RetryBudget {
  return {
    recordRequest() {},
    recordOutcome() {},
    tryAcquire: () => grants-- > 0,
    snapshot: () => ({ kind: 'granting', available: grants > 0 }),
  };
}

/** An operation that throws the given errors in turn, then returns 'ok'. */
function failing(...errors: Error[]): () => string {
  let call = 0;
  return () => {
    const error = errors[call++];
    if (error !== undefined) throw error;
    return 'ok';
  };
}

test('retry reports retries, successes and give-ups as uniform events (error code, never the message) and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = retry({ name: 'payments', registry, clock, maxAttempts: 3, backoff: { kind: 'constant', baseDelayMs: 100, jitter: 'none' }, budget: grantingBudget(3) });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const unavailable = () => Object.assign(new Error('HTTP 503 from https://pay.example/charge/42'), { status: 503 });

  // The first attempt succeeds (the pipeline's fused path).
  assert.equal(await pipeline(policy, bulkhead({ maxConcurrent: 1, clock })).execute(() => 'ok'), 'ok');
  // A timeout, then a success.
  const second = policy.execute(failing(new TimeoutError(50)));
  await clock.advance(100);
  assert.equal(await second, 'ok');
  // Three 503s: the attempts run out.
  const third = assert.rejects(policy.execute(failing(unavailable(), unavailable(), unavailable())), { code: 'RETRIES_EXHAUSTED' });
  await clock.advance(200);
  await third;
  // The budget's grants are spent: no retry at all.
  await assert.rejects(policy.execute(failing(unavailable())), { code: 'RETRY_BUDGET_EXHAUSTED' });

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'retry', name: 'payments', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('success', { outcome: 'success', attributes: { attempts: 1 } }),
    event('retry', { outcome: 'failure', attributes: { attempt: 1, delayMs: 100, code: 'TIMEOUT' } }),
    event('success', { outcome: 'success', attributes: { attempts: 2 } }),
    event('retry', { outcome: 'failure', attributes: { attempt: 1, delayMs: 100, code: 'Error' } }),
    event('retry', { outcome: 'failure', attributes: { attempt: 2, delayMs: 100, code: 'Error' } }),
    event('give-up', { outcome: 'failure', attributes: { attempts: 3, reason: 'max-attempts', code: 'Error' } }),
    event('give-up', { outcome: 'failure', attributes: { attempts: 1, reason: 'budget', code: 'Error' } }),
  ]);
  assert.deepEqual(policy.stats(), { calls: 4, attempts: 7, retries: 3, successes: 2, giveUps: 2, budgetDenials: 1 });
  assert.equal(policy.describe().name, 'payments');
  assert.deepEqual(registry.policies(), [policy]);
});
