import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { IdempotencyEngine, type Lease } from './engine.js';
import { MemoryIdempotencyStore } from './stores/memory-store.js';
import type { IdempotencyStore } from './types.js';

const scope = (key: string) => ({ principal: 'alice', method: 'POST', route: '/orders', key });

test('IdempotencyEngine: claims, a lost lease and a store error are uniform events without keys; stats count claims by result', async () => {
  const clock = new VirtualClock(1_000_000);
  const memory = new MemoryIdempotencyStore({ clock });
  let storeDown = false;
  // The memory store, except that claims fail while `storeDown`.
  const store: IdempotencyStore = {
    name: 'memory',
    remote: false,
    claim: (input) => (storeDown ? Promise.reject(new Error('ECONNREFUSED')) : memory.claim(input)),
    complete: (input) => memory.complete(input),
    release: (input) => memory.release(input),
    renew: (input) => memory.renew(input),
    saveStep: (input) => memory.saveStep(input),
    inspect: (id) => memory.inspect(id),
  };
  const registry = new PolicyRegistry();
  const engine = new IdempotencyEngine({ store, clock, leaseMs: 1000, renewEveryMs: false, name: 'orders', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));

  const first = await engine.claim(scope('a'), 'fp');
  assert.equal((await engine.claim(scope('a'), 'fp')).kind, 'in-progress');
  await (first as { lease: Lease }).lease.complete({ body: 'done' });
  assert.equal((await engine.claim(scope('a'), 'fp')).kind, 'completed');
  assert.equal((await engine.claim(scope('a'), 'other')).kind, 'mismatch');
  const stalled = ((await engine.claim(scope('b'), 'fp')) as { lease: Lease }).lease;
  await clock.advance(1000);
  assert.equal((await engine.claim(scope('b'), 'fp')).kind, 'new', 'the lease ran out: taken over');
  await assert.rejects(stalled.complete({ body: 'late' }), { code: 'LEASE_LOST' });
  storeDown = true;
  await assert.rejects(engine.claim(scope('c'), 'fp'), { code: 'STORE_UNAVAILABLE' });

  const uniform = (event: string, outcome: string, attributes: object) => ({ kind: 'idempotency', name: 'orders', event, outcome, attributes });
  assert.deepEqual(seen, [
    uniform('claim', 'success', { result: 'acquired' }),
    uniform('claim', 'rejected', { result: 'busy' }),
    uniform('claim', 'substituted', { result: 'completed' }),
    uniform('claim', 'rejected', { result: 'mismatch' }),
    uniform('claim', 'success', { result: 'acquired' }),
    uniform('claim', 'success', { result: 'takeover' }),
    uniform('lease-lost', 'failure', { operation: 'complete' }),
    uniform('store-error', 'failure', { operation: 'claim', code: 'Error' }),
  ]);
  assert.deepEqual(engine.stats(), {
    claims: { acquired: 2, takeover: 1, completed: 1, busy: 1, mismatch: 1 },
    leasesLost: 1,
    storeErrors: 1,
    inFlight: 0,
  });
  assert.equal(engine.describe().name, 'orders');
});
