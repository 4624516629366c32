import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HERD_STRATEGIES, retryHerd } from './support/retry-herd.js';

// 1,000 clients fail at the same instant and retry once; retries counted per 10 ms bucket.
// With jitter each retry lands uniformly over a window of W ms (full: [0, 1000), equal:
// [500, 1000), decorrelated: [1000, 3000)), so a bucket's count is Binomial(1000, 10 / W):
// mean 10 / 20 / 5. The bound is the smallest k with (W / 10) · P(Binomial ≥ k) < 0.001
// (a union bound over the buckets): any seed stays under it 999 times in 1,000.
const BOUND: Record<string, number> = { 'fixed 1 s': 1000, 'full jitter': 27, 'equal jitter': 42, decorrelated: 18 };
const SEED_1: Record<string, number> = { 'fixed 1 s': 1000, 'full jitter': 19, 'equal jitter': 30, decorrelated: 12 };

test('1,000 simultaneous failures: a fixed 1 s backoff sends all 1,000 retries in the same instant', async () => {
  assert.deepEqual(await retryHerd(HERD_STRATEGIES['fixed 1 s']!()), { largestBucket: 1000, spanMs: 0 });
});

test('full / equal / decorrelated jitter spread the same 1,000 retries: largest 10 ms bucket 19 / 30 / 12 (seeded), within the binomial bound for five seeds', async () => {
  for (const name of ['full jitter', 'equal jitter', 'decorrelated']) {
    const make = HERD_STRATEGIES[name]!;
    assert.equal((await retryHerd(make(), { seed: 1 })).largestBucket, SEED_1[name], name);
    for (let seed = 2; seed <= 5; seed++) {
      const { largestBucket } = await retryHerd(make(), { seed });
      assert.ok(largestBucket <= BOUND[name]!, `${name}, seed ${seed}: ${largestBucket} > ${BOUND[name]}`);
    }
  }
});
