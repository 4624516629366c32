import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { timeout, type TimeoutEvent } from './timeout.js';

test('a timeout reports each timed-out call once, and work it gave up on as an abandon, and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = timeout({ name: 'search', registry, clock, ms: 100, graceMs: 50 });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const typed: TimeoutEvent[] = [];
  policy.onTimeout((e) => typed.push(e));
  /** Work of `ms` that stops when its signal aborts, unless `deaf`. */
  const work = (ms: number, deaf = false) => (ctx: CallContext) => new Promise<string>((resolve, reject) => {
    const timer = clock.setTimeout(() => resolve('done'), ms);
    if (!deaf) ctx.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(ctx.signal.reason); }, { once: true });
  });

  const fast = policy.execute(work(30));
  const stopped = assert.rejects(policy.execute(work(500)), { code: 'TIMEOUT', abandoned: false });
  const deaf = assert.rejects(policy.execute(work(500, true)), { code: 'TIMEOUT', abandoned: true });
  const squeezed = assert.rejects(policy.execute(work(500), { timeoutMs: 100 }), { code: 'TIMEOUT' }); // 90% of the deadline: 90 ms
  await assert.rejects(policy.execute(work(10), { timeoutMs: 0 }), { code: 'DEADLINE_EXCEEDED' });
  await clock.advance(500);
  assert.equal(await fast, 'done');
  await Promise.all([stopped, deaf, squeezed]);

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'timeout', name: 'search', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('timeout', { outcome: 'failure', durationMs: 90, attributes: { byDeadline: true } }),
    event('timeout', { outcome: 'failure', durationMs: 100, attributes: { byDeadline: false } }),
    event('timeout', { outcome: 'failure', durationMs: 100, attributes: { byDeadline: false } }),
    event('abandon', { durationMs: 150, attributes: { byDeadline: false } }),
  ]);
  assert.deepEqual(typed.map((e) => e.abandoned), [false, false, false, true], 'the typed event carries both');
  assert.deepEqual(policy.stats(), { calls: 4, timeouts: 3, abandoned: 1, deadlineExceeded: 1, inFlight: 0 });
  assert.equal(policy.describe().name, 'search');
});
