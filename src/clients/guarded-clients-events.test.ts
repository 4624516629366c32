import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import type { Next } from '../core/policy.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { BulkheadPolicy } from '../bulkhead/bulkhead.js';
import { guardPool, type PgClientLike } from './guarded-postgres.js';
import { guardRedis } from './guarded-redis.js';

/** A bulkhead that also reports each admission in the uniform stream: shows what reaches the client's onEvent. */
class ReportingBulkhead extends BulkheadPolicy {
  #report(): void {
    if (this.telemetry.active) this.telemetry.emit('admit', { attributes: { active: this.active } });
  }
  override run<T>(context: CallContext, next: Next<T>): Promise<T> {
    this.#report();
    return super.run(context, next);
  }
  override fusedEnter(context: CallContext): unknown {
    this.#report();
    return super.fusedEnter(context);
  }
}

/** A pg-like client whose statements never end; `release(true)` fails the running one, as pg does. */
class HangingClient implements PgClientLike {
  processID = 4242;
  #fail: ((error: Error) => void) | undefined;
  query(): Promise<any> {
    return new Promise((_, reject) => { this.#fail = reject; });
  }
  release(destroy?: boolean | Error): void {
    if (destroy) this.#fail?.(new Error('Connection terminated'));
  }
}

const hangingPool = { options: { max: 4 }, connect: (): Promise<HangingClient> => Promise.resolve(new HangingClient()) };

test('guardPool: its policies are named after it; onEvent carries its cancel events and its policies\' events; it registers as itself', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const db = guardPool(hangingPool, { name: 'orders-db', registry, clock, timeoutMs: 100, cancel: async () => { throw new Error('no route to host'); } });
  assert.deepEqual([db.breaker.name, db.bulkhead.name, db.timeout.name, db.retry?.name], ['orders-db', 'orders-db', 'orders-db', 'orders-db']);
  assert.deepEqual(registry.policies().filter((p) => p.kind === 'guarded-postgres'), [db]);
  const seen: PolicyEvent[] = [];
  db.onEvent((e) => seen.push(e));
  const outcome = assert.rejects(db.query('SELECT pg_sleep(60)'), { code: 'TIMEOUT' });
  await clock.advance(100);
  await outcome;
  assert.deepEqual(seen.filter((e) => e.kind === 'guarded-postgres'), [
    { kind: 'guarded-postgres', name: 'orders-db', event: 'cancel', outcome: 'failure', attributes: { method: 'custom', reason: 'timeout' } },
  ]);
  assert.ok(seen.every((e) => e.name === 'orders-db'), 'every event names the dependency');
  assert.deepEqual(db.stats().cancels, { requested: 1, failed: 1 });
  assert.equal(db.describe().name, 'orders-db');

  const bulkhead = new ReportingBulkhead({ maxConcurrent: 2, name: 'shared-slots', clock });
  const withOwn = guardPool(hangingPool, { name: 'reports-db', registry: null, clock, timeoutMs: 100, bulkhead, cancel: 'destroy' });
  const forwarded: PolicyEvent[] = [];
  withOwn.onEvent((e) => forwarded.push(e));
  const call = assert.rejects(withOwn.query('SELECT 1'), { code: 'TIMEOUT' });
  await clock.advance(100);
  await call;
  assert.deepEqual(forwarded.find((e) => e.event === 'admit'), { kind: 'bulkhead', name: 'shared-slots', event: 'admit', attributes: { active: 0 } });
  assert.deepEqual(forwarded.find((e) => e.event === 'cancel'), { kind: 'guarded-postgres', name: 'reports-db', event: 'cancel', outcome: 'success', attributes: { method: 'destroy', reason: 'timeout' } });
});

test('guardRedis: named policies, registered as itself, onEvent forwards its policies\' events', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const client = { status: 'ready', call: async () => 'PONG', options: { enableOfflineQueue: false, commandTimeout: 100 } };
  const bulkhead = new ReportingBulkhead({ maxConcurrent: 5, name: 'cache', clock });
  const cache = guardRedis(client, { name: 'cache', registry, clock, bulkhead });
  assert.deepEqual([cache.breaker.name, cache.timeout.name, cache.retry?.name], ['cache', 'cache', 'cache']);
  assert.deepEqual(registry.policies().filter((p) => p.kind === 'guarded-redis'), [cache]);
  const seen: PolicyEvent[] = [];
  cache.onEvent((e) => seen.push(e));
  assert.equal(await cache.command('PING'), 'PONG');
  assert.deepEqual(seen.filter((e) => e.event === 'admit'), [{ kind: 'bulkhead', name: 'cache', event: 'admit', attributes: { active: 0 } }]);
  assert.equal(cache.stats().name, 'cache');
});
