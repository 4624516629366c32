/**
 * The examples of docs/guides/testing.md, as a user writes them (imports from the package's entry
 * files): if one of them stops working, this file fails before the guide misleads anyone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pipeline, retry, timeout, type CallContext } from '../src/index.js';
import { hybridRateLimiter } from '../src/redis.js';
import { memoryHybridRemote, seededRandom, VirtualClock } from '../src/testing.js';

/** Waits `ms` of the clock's time; gives up when the call is aborted (as real I/O would). */
function sleep(clock: VirtualClock, ms: number, context: CallContext): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = clock.setTimeout(() => resolve('done'), ms);
    context.signal.addEventListener('abort', () => { clock.clearTimeout(timer); reject(context.signal.reason); }, { once: true });
  });
}

test('guide: a slow dependency times out at 200 ms on the virtual clock, and leaves no timer behind', async () => {
  const clock = new VirtualClock();
  const policy = timeout({ ms: 200, clock });
  const call = policy.execute((context) => sleep(clock, 5_000, context));
  const outcome = assert.rejects(call, { code: 'TIMEOUT' }); // attach before time moves
  await clock.advance(200);
  await outcome;
  assert.equal(clock.now(), 200);
  assert.equal(clock.pendingTimers, 0);
});

test('guide: retries wait the seeded backoff; runAll plays every timer out', async () => {
  const run = async (seed: number) => {
    const clock = new VirtualClock();
    const policy = retry({ maxAttempts: 3, backoff: { baseDelayMs: 100 }, clock, random: seededRandom(seed) });
    const startedAt: number[] = [];
    const call = policy.execute(() => {
      startedAt.push(clock.now());
      throw Object.assign(new Error('unavailable'), { status: 503 });
    });
    const outcome = assert.rejects(call, { code: 'RETRIES_EXHAUSTED' });
    const fired = await clock.runAll();
    await outcome;
    return { startedAt, fired };
  };
  const first = await run(42);
  assert.equal(first.startedAt.length, 3);
  assert.equal(first.fired, 2, 'one backoff timer per retry');
  assert.deepEqual(await run(42), first, 'same seed, same delays');
  assert.notDeepEqual((await run(7)).startedAt, first.startedAt, 'another seed, other delays');
});

test('guide: describe() shows how a pipeline is assembled', () => {
  const policy = pipeline(timeout({ ms: 2_000 }), retry({ maxAttempts: 3, name: 'payments' }), timeout({ ms: 500 }));
  const { policies = [] } = policy.describe();
  assert.deepEqual(policies.map((p) => p.kind), ['timeout', 'retry', 'timeout']);
  assert.equal(policies[1]?.name, 'payments');
  assert.equal(policies[1]?.options.maxAttempts, 3);
  assert.equal(policies[2]?.options.ms, 500);
});

test('guide: two instances share one global limit through the in-memory remote', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, intervalMs: 1_000, clock });
  const options = { limit: 10, intervalMs: 1_000, remote, clock, syncIntervalMs: 100, breaker: false as const };
  const a = hybridRateLimiter(options);
  const b = hybridRateLimiter(options);
  const admitted = () => [a, b].flatMap((limiter) => Array.from({ length: 10 }, () => limiter.consume('tenant-1').allowed)).filter(Boolean).length;
  assert.equal(admitted(), 20, 'before their first sync each instance believes it has the whole bucket');
  await clock.advance(100); // one sync: both learn the global balance and that they share the key
  assert.equal(admitted(), 0, 'the fleet is in debt: nothing more until it refills');
  remote.down = true; // the remote fails: decisions go on from what each instance last knew
  await clock.advance(100);
  assert.ok(a.stale && b.stale);
  await Promise.all([a.close(), b.close()]);
});

test('guide: told the fleet size, two instances admit one bucket between them on a fresh key', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, intervalMs: 1_000, clock });
  const options = { limit: 10, intervalMs: 1_000, remote, clock, syncIntervalMs: 100, breaker: false as const, instances: 2 };
  const fleet = [hybridRateLimiter(options), hybridRateLimiter(options)];
  const admitted = fleet.flatMap((limiter) => Array.from({ length: 10 }, () => limiter.consume('tenant-1').allowed)).filter(Boolean).length;
  assert.equal(admitted, 10);
  await Promise.all(fleet.map((limiter) => limiter.close()));
});
