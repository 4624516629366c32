import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { adaptiveThrottle } from './throttle.js';

test('an adaptive throttle reports each local rejection with its probability, and counts requests, accepts and rejections', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const throttle = adaptiveThrottle({ clock, random: () => 0.4, name: 'search', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  let healthy = true;
  const call = () =>
    throttle.execute(() => {
      if (!healthy) throw Object.assign(new Error('overloaded'), { status: 503 });
      return 'ok';
    }).catch((error: { code?: string }) => error.code);

  assert.equal(await call(), 'ok'); // accepted
  healthy = false;
  // With k = 2 the probability is (requests − 2·accepts) / (requests + 1): 0, 0, 1/4, 2/5 (not below the
  // drawn 0.4), then 1/2, which rejects.
  assert.deepEqual([await call(), await call(), await call(), await call(), await call()], [undefined, undefined, undefined, undefined, 'SHED']);

  assert.deepEqual(seen, [{ kind: 'adaptive-throttle', name: 'search', event: 'reject', outcome: 'rejected', attributes: { probability: 0.5 } }]);
  assert.deepEqual(throttle.stats(), { requests: 6, accepts: 1, throttled: 1, probability: 4 / 7 });
  assert.equal(throttle.describe().name, 'search');
});
