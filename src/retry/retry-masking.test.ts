import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { pipeline } from '../core/policy.js';
import { seededRandom } from '../core/random.js';
import { faultInjection } from '../fault/fault.js';
import { retry } from './retry.js';

const CALLS = 10_000;

/**
 * CALLS requests through retry (3 attempts) over a dependency that loses each attempt with
 * probability `dropRate` (a connection reset, seeded). Returns the share that succeeded.
 */
async function successRate(dropRate: number, seed: number): Promise<{ rate: number; attempts: number }> {
  const clock = new VirtualClock();
  const lossy = faultInjection({ enabled: true, faults: [{ type: 'abort', rate: dropRate }], random: seededRandom(seed), clock });
  const policy = pipeline(retry({ maxAttempts: 3, clock, random: seededRandom(seed + 1) }), lossy);
  let ok = 0;
  const calls = Array.from({ length: CALLS }, () => policy.execute(async () => 'answer').then(() => ok++, () => {}));
  await clock.runAll();
  await Promise.all(calls);
  return { rate: ok / CALLS, attempts: lossy.stats().calls };
}

/** Four standard deviations of the share of successes in CALLS Bernoulli(p) trials. */
const fourSigma = (p: number): number => 4 * Math.sqrt((p * (1 - p)) / CALLS);

// An attempt is lost independently with probability d, so a request fails only when all three
// attempts are lost: success = 1 − d³. Retries hide a 30 % loss almost entirely (97.3 %) but
// not a 50 % one (87.5 %): one request in eight still fails, and each costs up to 3 attempts.
test('3 attempts over 30 % loss: success ≈ 1 − 0.3³ = 97.3 % (10,000 calls, within 4σ)', async () => {
  const expected = 1 - 0.3 ** 3;
  const { rate, attempts } = await successRate(0.3, 1);
  assert.ok(Math.abs(rate - expected) <= fourSigma(expected), `success ${rate}`);
  // Expected attempts per request: 1 + d + d² = 1.39.
  assert.ok(Math.abs(attempts / CALLS - 1.39) < 0.03, `attempts/request ${attempts / CALLS}`);
});

test('3 attempts over 50 % loss: success ≈ 1 − 0.5³ = 87.5 %, so retries no longer mask it (10,000 calls, within 4σ)', async () => {
  const expected = 1 - 0.5 ** 3;
  const { rate, attempts } = await successRate(0.5, 1);
  assert.ok(Math.abs(rate - expected) <= fourSigma(expected), `success ${rate}`);
  // 1 + 0.5 + 0.25 = 1.75 attempts per request.
  assert.ok(Math.abs(attempts / CALLS - 1.75) < 0.03, `attempts/request ${attempts / CALLS}`);
});
