import type { Clock } from '../core/clock.js';
import { AbortedError } from '../core/errors.js';
import { RateLimitInputError, type AcquireOptions, type Decision } from './types.js';
import { sleep } from '../core/abort.js';

/**
 * Blocking acquire on top of any limiter's consume. An acquire that sleeps for the computed time
 * and then subtracts without checking again lets concurrent waiters drive the bucket negative: they
 * all computed their wait from the same balance. Here a waiter sleeps exactly the computed time on
 * the injected clock and then asks again; if someone else took the tokens meanwhile it waits again,
 * as long as the total stays within `maxWaitMs`, so the limit is never exceeded. Waiters are not
 * queued FIFO (a steady stream of non-blocking consumers can outpace a waiter until its maxWaitMs
 * runs out).
 */
export async function acquireFrom(
  consume: (key: string, cost: number) => Decision | Promise<Decision>,
  clock: Clock,
  key: string,
  options: AcquireOptions | undefined,
): Promise<Decision> {
  const cost = options?.cost ?? 1;
  const maxWaitMs = options?.maxWaitMs ?? Infinity;
  const signal = options?.signal;
  if (typeof maxWaitMs !== 'number' || !(maxWaitMs >= 0)) throw new RateLimitInputError(`acquire: maxWaitMs must be a number >= 0, got ${String(maxWaitMs)}`);
  if (signal?.aborted) throw new AbortedError(signal.reason);
  const deadline = clock.now() + maxWaitMs;
  for (;;) {
    const decision = await consume(key, cost);
    if (decision.allowed) return decision;
    const wait = decision.retryAfterMs;
    // Infinity (never satisfiable) and waits past the bound resolve denied at once.
    if (!(wait > 0) || !(clock.now() + wait <= deadline)) return decision;
    await sleep(clock, wait, signal);
  }
}

/** Call-time checks shared by every store: a clear INVALID_INPUT error, never a crash or a hang. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') throw new RateLimitInputError(`rate limit key must be a string, got ${typeof key}`);
}

export function checkCost(cost: unknown): asserts cost is number {
  if (typeof cost !== 'number' || !(cost >= 0) || cost === Infinity) {
    throw new RateLimitInputError(`rate limit cost must be a finite number >= 0, got ${String(cost)}`);
  }
}
