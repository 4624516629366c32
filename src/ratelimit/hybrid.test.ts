import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { seededRandom } from '../core/random.js';
import { HybridRateLimiter, memoryHybridRemote } from './hybrid.js';

/** A fleet of hybrid limiters sharing one remote on a virtual clock; `pick` routes each request. */
async function simulate(options: { instances: number; configured?: number; capacity: number; rate: number; seconds: number; demand: number; pick: (t: number, random: () => number) => number; latencyMs?: number }) {
  const clock = new VirtualClock(0);
  const random = seededRandom(7);
  const remote = memoryHybridRemote({ limit: options.rate, capacity: options.capacity, clock, latencyMs: options.latencyMs ?? 1 });
  const fleet = Array.from({ length: options.instances }, () => new HybridRateLimiter({
    limit: options.rate, capacity: options.capacity, remote, instances: options.configured ?? options.instances, clock, breaker: false, timeoutMs: 1000,
  }));
  const admitted: number[] = [];
  let asked = 0;
  let carry = 0;
  for (let t = 0; t < options.seconds * 1000; t++) {
    carry += (options.rate * options.demand) / 1000;
    while (carry >= 1) {
      carry -= 1;
      asked++;
      if (fleet[options.pick(t, random)]!.consume('k').allowed) admitted.push(clock.now());
    }
    await clock.advance(1);
  }
  let worstSecond = 0;
  for (let i = 0, j = 0; i < admitted.length; i++) {
    while (admitted[j]! <= admitted[i]! - 1000) j++;
    worstSecond = Math.max(worstSecond, i - j + 1);
  }
  const calls = fleet.reduce((s, l) => s + l.redisCalls, 0);
  return { admitted: admitted.length, asked, worstSecond, calls, max: options.capacity + options.rate * options.seconds };
}

test('hybrid fleet (simulated): overshoot within 5% under saturation, far fewer remote calls than decisions', async () => {
  const r = await simulate({ instances: 4, capacity: 100, rate: 100, seconds: 20, demand: 5, pick: (_t, random) => Math.floor(random() * 4) });
  assert.ok(r.admitted <= r.max * 1.05, `admitted ${r.admitted} of ${r.max}`);
  assert.ok(r.admitted >= r.max * 0.95, `and not far below: ${r.admitted}`);
  assert.ok(r.worstSecond <= 3 * 100 + 100, `worst second ${r.worstSecond} within the documented bound`);
  assert.ok(r.calls < r.asked / 10, `${r.calls} calls for ${r.asked} decisions`);
});

test('hybrid fleet (simulated, adversarial routing): every window stays within 3 × capacity + rate × window; the long-run total within 5%', async () => {
  const r = await simulate({ instances: 4, capacity: 1000, rate: 100, seconds: 20, demand: 20, pick: (t) => Math.floor(t / 130) % 4 });
  assert.ok(r.worstSecond <= 3 * 1000 + 100, `worst second ${r.worstSecond}`);
  assert.ok(r.admitted <= r.max * 1.05, `admitted ${r.admitted} of ${r.max}`);
  // Even with `instances` set too low (1 instead of 4) the debt keeps the long run close to the limit.
  const wrong = await simulate({ instances: 4, configured: 1, capacity: 100, rate: 100, seconds: 20, demand: 5, pick: (_t, random) => Math.floor(random() * 4) });
  assert.ok(wrong.admitted <= wrong.max * 1.05, `misconfigured: ${wrong.admitted} of ${wrong.max}`);
});

test('sharers are counted by the remote: a key used by one instance gets the whole limit, one spread over four gets a quarter each', async () => {
  const solo = await simulate({ instances: 4, configured: 4, capacity: 100, rate: 100, seconds: 10, demand: 5, pick: () => 0 });
  assert.ok(solo.admitted >= solo.max * 0.95 && solo.admitted <= solo.max * 1.05, `solo: ${solo.admitted} of ${solo.max}`);
  const spread = await simulate({ instances: 4, configured: 1, capacity: 100, rate: 100, seconds: 10, demand: 5, pick: (t) => t % 4 });
  assert.ok(spread.admitted >= spread.max * 0.95 && spread.admitted <= spread.max * 1.05, `spread: ${spread.admitted} of ${spread.max}`);
});

test('a burst on every instance at once admits exactly the capacity', () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, capacity: 100, clock });
  const fleet = Array.from({ length: 4 }, () => new HybridRateLimiter({ limit: 10, capacity: 100, remote, instances: 4, clock, breaker: false }));
  let admitted = 0;
  for (let i = 0; i < 400; i++) if (fleet[i % 4]!.consume('k').allowed) admitted++;
  assert.equal(admitted, 100);
});

test('remote down: decisions go on synchronously on last-known state, marked stale; usage is pushed when it returns', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, capacity: 20, clock });
  const limiter = new HybridRateLimiter({ limit: 10, capacity: 20, remote, clock, breaker: false });
  const errors: unknown[] = [];
  limiter.onStoreError((e) => errors.push(e.error));
  for (let i = 0; i < 5; i++) assert.equal(limiter.consume('k').allowed, true);
  await clock.advance(100);
  assert.equal(remote.balances.get('bulwark:rlh:{k}')!.tokens, 15);

  remote.down = true;
  for (let i = 0; i < 5; i++) limiter.consume('k');
  await clock.advance(100);
  assert.equal(errors.length, 1);
  assert.equal(limiter.stale, true);
  const d = limiter.consume('k');
  assert.equal(d.degraded, 'stale');
  assert.equal(d.allowed, true);
  // Keeps deciding on last-known state: 15 (+1 refilled in 100 ms) − 6 = 10 more pass, then denied.
  let more = 0;
  while (limiter.consume('k').allowed) more++;
  assert.equal(more, 10);
  assert.equal(clock.pendingTimers, 1, 'one timer for the whole limiter');

  remote.down = false;
  await clock.advance(100);
  assert.equal(limiter.stale, false);
  assert.equal(limiter.consume('k', 0).degraded, undefined);
  // Everything admitted during the outage was charged once it came back: 15 + 2 refilled − 16.
  assert.ok(Math.abs(remote.balances.get('bulwark:rlh:{k}')!.tokens - 1) < 1e-9, `balance ${remote.balances.get('bulwark:rlh:{k}')!.tokens}`);
});

test('bounded memory, no timer while idle, refund and penalty go through the sync', async () => {
  const clock = new VirtualClock();
  const remote = memoryHybridRemote({ limit: 10, capacity: 10, clock });
  const limiter = new HybridRateLimiter({ limit: 10, capacity: 10, remote, clock, breaker: false, maxKeys: 1000 });
  for (let i = 0; i < 100_000; i++) {
    limiter.consume(`ip:${i}`);
    if (i % 5000 === 0) await clock.advance(100);
  }
  assert.ok(limiter.size <= 1000, `size ${limiter.size}`);
  await clock.advance(100);
  assert.equal(clock.pendingTimers, 0, 'idle: no timer');
  limiter.consume('u', 5);
  limiter.refund('u', 2);
  limiter.penalty('u', 1);
  await clock.advance(100);
  assert.equal(remote.balances.get('bulwark:rlh:{u}')!.tokens, 6);
  assert.throws(() => new HybridRateLimiter({ limit: 1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new HybridRateLimiter({ limit: 1, remote, maxKeys: 2 ** 24 + 1 }), { code: 'INVALID_OPTIONS', message: /maxKeys must be <= 16777216/ });
  assert.throws(() => limiter.consume('u', -1), { code: 'INVALID_INPUT' });
});
