import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { coalesce } from './coalesce.js';

test('a coalescer reports an abandoned execution as one uniform event without its key, and counts executions and shared calls', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const coalescer = coalesce({ clock, name: 'profiles', registry, resultTtlMs: 50 });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const slow = (ctx: CallContext) =>
    new Promise<string>((resolve, reject) => {
      const timer = clock.setTimeout(() => resolve('profile'), 100);
      ctx.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(ctx.signal.reason); }, { once: true });
    });

  // Two callers share one execution and both leave: it is abandoned.
  const a = new AbortController();
  const b = new AbortController();
  const left = [coalescer.execute('user:1', slow, { signal: a.signal }), coalescer.execute('user:1', slow, { signal: b.signal })];
  a.abort();
  b.abort();
  await Promise.allSettled(left);
  // Two more share a second execution, and a third arrives while its result is kept.
  const served = [coalescer.execute('user:1', slow), coalescer.execute('user:1', slow)];
  await clock.advance(100);
  assert.deepEqual(await Promise.all(served), ['profile', 'profile']);
  assert.equal(await coalescer.execute('user:1', slow), 'profile');

  assert.deepEqual(seen, [{ kind: 'coalesce', name: 'profiles', event: 'abandon', attributes: {} }]);
  assert.deepEqual(coalescer.stats(), { executions: 2, shared: 3, inFlight: 0, kept: 1 });
  assert.equal(coalescer.describe().name, 'profiles');
  assert.deepEqual(registry.policies(), [coalescer]);
});
