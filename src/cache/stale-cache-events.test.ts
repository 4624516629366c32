import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { TimeoutError } from '../core/errors.js';
import { PolicyRegistry, policyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { staleCache } from './stale-cache.js';

test('a stale cache reports stale answers and failed refreshes as uniform events without their key, and counts hits, misses and stale answers', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const cache = staleCache({ ttlMs: 1000, staleWhileRevalidateMs: 500, staleIfErrorMs: 2000, clock, name: 'prices', registry });
  const seen: PolicyEvent[] = [];
  cache.onEvent((e) => seen.push(e));
  let down = false;
  const load = () => (down ? Promise.reject(new TimeoutError(50)) : Promise.resolve({ price: 7 }));

  await cache.execute('sku:1', load); // miss, stored at t=0
  await cache.execute('sku:1', load); // fresh hit
  down = true;
  await clock.advance(1200);
  await cache.execute('sku:1', load); // stale while a background refresh runs, and fails
  await clock.advance(400); // 1600 ms old: past revalidating, within stale-if-error
  await cache.execute('sku:1', load); // the load fails: stale again

  assert.deepEqual(seen, [
    { kind: 'stale-cache', name: 'prices', event: 'stale', outcome: 'substituted', attributes: { reason: 'revalidating', ageMs: 1200 } },
    { kind: 'stale-cache', name: 'prices', event: 'revalidate-error', outcome: 'failure', attributes: { code: 'TIMEOUT' } },
    { kind: 'stale-cache', name: 'prices', event: 'stale', outcome: 'substituted', attributes: { reason: 'error', ageMs: 1600, code: 'TIMEOUT' } },
  ]);
  assert.deepEqual(cache.stats(), { hits: 1, misses: 2, staleServed: 2, staleOnError: 1, revalidations: 1, revalidateErrors: 1, evictions: 0, size: 1 });
  assert.equal(cache.describe().name, 'prices');
  assert.deepEqual(registry.policies(), [cache]);
  assert.equal(policyRegistry.policies().filter((p) => p.kind === 'coalesce').length, 0, 'its inner load coalescer registers nowhere');
});
