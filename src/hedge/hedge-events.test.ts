import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import type { RetryBudget } from '../core/budget.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { hedge } from './hedge.js';

test('a hedge policy reports hedges, wins and budget denials as uniform events, and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  let tokens = 1;
  const budget: RetryBudget = {
    recordRequest() {},
    recordOutcome() {},
    tryAcquire: () => tokens-- > 0,
    snapshot: () => ({ kind: 'one-token', available: tokens > 0 }),
  };
  const policy = hedge({ name: 'search', registry, clock, delayMs: 50, idempotent: true, budget });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  /** The primary takes `primaryMs`, a hedge 20 ms; both stop when aborted. */
  const op = (primaryMs: number) => (ctx: CallContext) => new Promise<number>((resolve, reject) => {
    const timer = clock.setTimeout(() => resolve(ctx.attempt), ctx.attempt === 1 ? primaryMs : 20);
    ctx.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(ctx.signal.reason); }, { once: true });
  });

  const won = policy.execute(op(200)); // hedged at 50 ms, the hedge answers at 70 ms
  await clock.advance(200);
  assert.equal(await won, 2);
  const fast = policy.execute(op(30)); // answers before the hedge delay
  await clock.advance(30);
  assert.equal(await fast, 1);
  const denied = policy.execute(op(100)); // the budget's token is spent: no hedge
  await clock.advance(100);
  assert.equal(await denied, 1);

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'hedge', name: 'search', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('hedge', { attributes: { attempt: 2, delayMs: 50 } }),
    event('hedge-won', { outcome: 'success', durationMs: 70, attributes: { attempt: 2, cancelled: 1 } }),
    event('hedge-denied', { attributes: { attempt: 2, reason: 'budget' } }),
  ]);
  assert.deepEqual(policy.stats(), { calls: 3, hedges: 1, hedgeWins: 1, denied: 1, scheduled: 0 });
  assert.equal(policy.describe().name, 'search');
});
