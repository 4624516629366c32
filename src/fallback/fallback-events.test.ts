import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { CircuitOpenError, TimeoutError, hasCode } from '../core/errors.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { fallback } from './fallback.js';

test('a fallback reports each value it serves as a substituted outcome (what it replaced, the error code), and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = fallback({
    name: 'recommendations', registry, clock,
    handle: ['TIMEOUT', 'CIRCUIT_OPEN'],
    handleResult: (r: string[]) => r.length === 0,
    fallback: ({ error }) => {
      if (hasCode(error, 'CIRCUIT_OPEN')) throw new Error('the cache is down too');
      return ['bestsellers'];
    },
  });
  const seen: PolicyEvent[] = [];
  policy.onEvent((e) => seen.push(e));

  assert.deepEqual(await policy.execute(() => ['for-you']), ['for-you']);
  assert.deepEqual(await policy.execute(() => { throw new TimeoutError(800); }), ['bestsellers']);
  assert.deepEqual(await policy.execute((): string[] => []), ['bestsellers']);
  await assert.rejects(policy.execute(() => { throw new TypeError('not handled'); }), TypeError);
  await assert.rejects(policy.execute(() => { throw new CircuitOpenError('recs', 1000, 'open'); }), /the cache is down too/);

  const event = (attributes: PolicyEvent['attributes']): PolicyEvent => ({ kind: 'fallback', name: 'recommendations', event: 'fallback', outcome: 'substituted', attributes });
  assert.deepEqual(seen, [event({ replaced: 'error', code: 'TIMEOUT' }), event({ replaced: 'result' })]);
  assert.deepEqual(policy.stats(), { calls: 5, fallbacks: 2, fallbackFailures: 1 });
  assert.equal(policy.describe().name, 'recommendations');
});
