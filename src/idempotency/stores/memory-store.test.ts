import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../../core/clock.js';
import { idempotencyStoreContract } from '../contract.js';
import { MemoryIdempotencyStore } from './memory-store.js';

idempotencyStoreContract('memory', async () => {
  const clock = new VirtualClock(1_700_000_000_000);
  const store = new MemoryIdempotencyStore({ clock });
  return { store, clock, leaseMs: 30_000, elapse: (ms) => clock.advance(ms), close: async () => {} };
});

test('memory: expired records are dropped a few per claim, without any timer', async () => {
  const clock = new VirtualClock();
  const store = new MemoryIdempotencyStore({ clock, sweepPerClaim: 2 });
  for (let i = 0; i < 10; i++) await store.claim({ id: `r${i}`, fingerprint: 'f', owner: 'o', leaseMs: 10, ttlMs: 100 });
  assert.equal(store.size, 10);
  assert.equal(clock.pendingTimers, 0, 'no per-key timers');
  await clock.advance(100);
  await store.claim({ id: 'new-1', fingerprint: 'f', owner: 'o', leaseMs: 10, ttlMs: 100 });
  assert.equal(store.size, 9, '2 expired dropped, 1 added');
  assert.equal(store.sweep(), 8, 'sweep drops the rest of the expired ones');
  assert.equal(store.size, 1);
});

test('memory: completion moves a record to the back of the expiry order', async () => {
  const clock = new VirtualClock();
  const store = new MemoryIdempotencyStore({ clock });
  await store.claim({ id: 'a', fingerprint: 'f', owner: 'oa', leaseMs: 10, ttlMs: 100 });
  await clock.advance(50);
  await store.claim({ id: 'b', fingerprint: 'f', owner: 'ob', leaseMs: 10, ttlMs: 100 });
  await store.complete({ id: 'a', owner: 'oa', response: 'r', ttlMs: 100 }); // now expires at 150
  await clock.advance(60); // t=110: b (expires 150) and a (expires 150) both alive
  await store.claim({ id: 'c', fingerprint: 'f', owner: 'oc', leaseMs: 10, ttlMs: 100 });
  assert.equal((await store.inspect('a'))?.state, 'completed');
  assert.equal(store.size, 3);
});
