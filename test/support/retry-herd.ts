import { VirtualClock } from '../../src/core/clock.js';
import { seededRandom } from '../../src/core/random.js';
import { constantBackoff, decorrelatedBackoff, exponentialBackoff, type Backoff } from '../../src/retry/backoff.js';
import { retry } from '../../src/retry/retry.js';

/**
 * The thundering herd after a blip: `clients` callers fail at the same instant and retry once.
 * Marc Brooker, "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015): without jitter
 * they all come back together; jitter spreads them. Each strategy waits about 1 s on average
 * or more, so the buckets compare like with like.
 */
export const HERD_STRATEGIES: Readonly<Record<string, () => Backoff>> = {
  'fixed 1 s': () => constantBackoff(1000, { jitter: 'none' }),
  'full jitter': () => exponentialBackoff({ baseDelayMs: 1000, jitter: 'full' }),
  'equal jitter': () => exponentialBackoff({ baseDelayMs: 1000, jitter: 'equal' }),
  decorrelated: () => decorrelatedBackoff({ baseDelayMs: 1000 }),
};

export interface HerdResult {
  /** Retries that landed in the busiest `bucketMs` window. */
  largestBucket: number;
  /** From the first retry to the last. */
  spanMs: number;
}

/**
 * Runs `clients` calls through one retry policy (2 attempts, the given backoff) on a virtual
 * clock; every first attempt fails at t = 0, every retry succeeds. Counts the retries per
 * `bucketMs` window of virtual time.
 */
export async function retryHerd(backoff: Backoff, options: { clients?: number; bucketMs?: number; seed?: number } = {}): Promise<HerdResult> {
  const { clients = 1000, bucketMs = 10, seed = 1 } = options;
  const clock = new VirtualClock();
  const policy = retry({ maxAttempts: 2, backoff, clock, random: seededRandom(seed), shouldRetry: () => true });
  const retriedAt: number[] = [];
  const calls: Promise<unknown>[] = [];
  for (let i = 0; i < clients; i++) {
    let attempts = 0;
    calls.push(
      policy.execute(async () => {
        if (attempts++ === 0) throw new Error('blip');
        retriedAt.push(clock.now());
      }),
    );
  }
  await clock.runAll();
  await Promise.all(calls);
  const buckets = new Map<number, number>();
  for (const t of retriedAt) buckets.set(Math.floor(t / bucketMs), (buckets.get(Math.floor(t / bucketMs)) ?? 0) + 1);
  return { largestBucket: Math.max(...buckets.values()), spanMs: Math.max(...retriedAt) - Math.min(...retriedAt) };
}
