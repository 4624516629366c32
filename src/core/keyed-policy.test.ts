import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from './clock.js';
import type { CallContext, CallOptions } from './context.js';
import { KeyedPolicy } from './keyed-policy.js';
import { pipeline, type Next, type PolicyDescription } from './policy.js';
import { coalesce } from '../coalesce/coalesce.js';
import { staleCache } from '../cache/stale-cache.js';
import { MemoryRateLimiter } from '../ratelimit/memory.js';
import { rateLimit } from '../ratelimit/policy.js';

/** Records the key of every call; answers 'cached:<key>' at once for keys starting with 'hot'. */
class Recorder extends KeyedPolicy {
  readonly kind = 'recorder';
  readonly keys: string[] = [];
  runKeyed<T>(key: string, context: CallContext, next: Next<T>): Promise<T> {
    this.keys.push(key);
    return next(context);
  }
  protected override answerAtOnce<T>(key: string, _options: CallOptions | AbortSignal | undefined): Promise<T> | undefined {
    return key.startsWith('hot') ? Promise.resolve(`cached:${key}` as T) : undefined;
  }
  describe(): PolicyDescription {
    return { kind: this.kind, options: { key: this.keySource } };
  }
  stats(): { keys: number } {
    return { keys: this.keys.length };
  }
}

test('KeyedPolicy.execute: an explicit key, the tags.key of a call, the hot path, and INVALID_INPUT for a call with no key or no operation', async () => {
  const clock = new VirtualClock();
  const policy = new Recorder(clock, undefined, 'recorder');
  assert.equal(await policy.execute('a', () => 1), 1);
  assert.equal(await policy.execute(() => 2, { tags: { key: 'b' } }), 2);
  assert.equal(await pipeline(policy).execute(() => 3, { tags: { key: 'c' } }), 3);
  assert.equal(await policy.execute('hot1', () => 'never run'), 'cached:hot1');
  assert.deepEqual(policy.keys, ['a', 'b', 'c'], 'the hot path answered without running the policy');
  await assert.rejects(policy.execute(() => 4), (e: any) => e.code === 'INVALID_INPUT' && /recorder: the call has no key/.test(e.message));
  await assert.rejects(policy.execute('a', 'not a function' as never), (e: any) => e.code === 'INVALID_INPUT' && /recorder\.execute\(key, operation\): operation must be a function/.test(e.message));
  await assert.rejects(policy.execute('hot2', undefined as never), { code: 'INVALID_INPUT' }, 'checked before the hot path');
  assert.equal(policy.describe().options.key, 'tags.key');

  const custom = new Recorder(clock, (context) => (context.tags.tenant === undefined ? undefined : `t:${String(context.tags.tenant)}`), 'recorder');
  assert.equal(await custom.execute(() => 5, { tags: { tenant: 7 } }), 5);
  assert.equal(await custom.execute(() => 6), 6, 'no key from the key option: passes through');
  assert.deepEqual(custom.keys, ['t:7']);
  assert.equal(custom.describe().options.key, 'custom');
});

test('every keyed policy takes execute(key, operation): coalesce, stale cache and the rate-limit policy', async () => {
  const clock = new VirtualClock();
  let runs = 0;
  const slow = (): Promise<number> => new Promise((resolve) => clock.setTimeout(() => resolve(++runs), 10));
  const coalescer = coalesce({ clock });
  const shared = Promise.all([coalescer.execute('k', slow), coalescer.execute('k', slow)]);
  await clock.advance(10);
  assert.deepEqual(await shared, [1, 1], 'the second call joined the first');

  const cache = staleCache({ clock, ttlMs: 100 });
  assert.equal(await cache.execute('k', () => 'v1'), 'v1');
  assert.equal(await cache.execute('k', () => 'v2'), 'v1', 'a fresh hit');
  await assert.rejects(cache.execute('k', 'v3' as never), { code: 'INVALID_INPUT' }, 'a fresh hit does not excuse a missing operation');

  const limited = rateLimit({ limiter: new MemoryRateLimiter({ limit: 1, intervalMs: 1000, clock }) });
  assert.equal(await limited.execute('acme', () => 'ok'), 'ok');
  assert.equal(await limited.execute('globex', () => 'ok'), 'ok', 'another key has its own limit');
  await assert.rejects(limited.execute('acme', () => 'ok'), { code: 'RATE_LIMITED' });
  assert.equal(await limited.execute(() => 'ok'), 'ok', 'no key option: one key for every call');
  await assert.rejects(limited.execute(() => 'ok'), { code: 'RATE_LIMITED' });
});
