import { InvalidOptionsError } from '../../core/errors.js';
import { REQUIRED, oneOf, positive } from '../../core/validate.js';
import type { AlgorithmKind, AlgorithmOptions } from '../types.js';
import type { KernelResult, RateAlgorithm } from './kernel.js';
import { TokenBucket } from './token-bucket.js';
import { Gcra } from './gcra.js';
import { FixedWindow } from './fixed-window.js';
import { SlidingWindowCounter } from './sliding-window-counter.js';
import { SlidingWindowLog } from './sliding-window-log.js';

export { EPSILON, type KernelResult, type RateAlgorithm } from './kernel.js';
export { TokenBucket, type TokenBucketConfig } from './token-bucket.js';
export { Gcra, type GcraConfig } from './gcra.js';
export { FixedWindow, type WindowConfig } from './fixed-window.js';
export { SlidingWindowCounter } from './sliding-window-counter.js';
export { SlidingWindowLog } from './sliding-window-log.js';

export const ALGORITHMS: readonly AlgorithmKind[] = ['token-bucket', 'gcra', 'fixed-window', 'sliding-window-log', 'sliding-window-counter'];

/** Validated, defaulted algorithm options. */
export interface ResolvedAlgorithmOptions {
  algorithm: AlgorithmKind;
  limit: number;
  intervalMs: number;
  capacity: number;
}

/** Validates options (INVALID_OPTIONS on anything wrong) and fills defaults. */
export function resolveAlgorithmOptions(options: AlgorithmOptions, prefix = 'rateLimiter'): ResolvedAlgorithmOptions {
  if (options === null || typeof options !== 'object') throw new InvalidOptionsError(`${prefix}: options are required ({ limit, intervalMs })`);
  const algorithm = oneOf(`${prefix}.algorithm`, options.algorithm, ALGORITHMS, 'token-bucket');
  const limit = positive(`${prefix}.limit`, options.limit, REQUIRED);
  const intervalMs = positive(`${prefix}.intervalMs`, options.intervalMs, 1000);
  if (!Number.isFinite(limit) || !Number.isFinite(intervalMs)) throw new InvalidOptionsError(`${prefix}: limit and intervalMs must be finite`);
  const isBucket = algorithm === 'token-bucket' || algorithm === 'gcra';
  if (!isBucket && options.capacity !== undefined) {
    throw new InvalidOptionsError(`${prefix}.capacity applies to token-bucket and gcra only (a ${algorithm} allows \`limit\` per window)`);
  }
  const capacity = isBucket ? positive(`${prefix}.capacity`, options.capacity, limit) : limit;
  if (!Number.isFinite(capacity)) throw new InvalidOptionsError(`${prefix}.capacity must be finite`);
  if (algorithm === 'sliding-window-log' && (!Number.isInteger(limit) || limit > 100_000)) {
    throw new InvalidOptionsError(`${prefix}.limit of a sliding-window-log must be an integer <= 100000 (it stores one timestamp per unit); use sliding-window-counter for large limits`);
  }
  return { algorithm, limit, intervalMs, capacity };
}

/** Validates options and builds the algorithm. */
export function createAlgorithm(options: AlgorithmOptions): RateAlgorithm {
  return algorithmFor(resolveAlgorithmOptions(options));
}

/** Builds the algorithm for already validated options. */
export function algorithmFor(o: ResolvedAlgorithmOptions): RateAlgorithm {
  switch (o.algorithm) {
    case 'token-bucket': return new TokenBucket(o);
    case 'gcra': return new Gcra(o);
    case 'fixed-window': return new FixedWindow(o);
    case 'sliding-window-counter': return new SlidingWindowCounter(o);
    case 'sliding-window-log': return new SlidingWindowLog(o);
  }
}

/** The plain result of the functional form. */
export interface AlgorithmDecision {
  allowed: boolean;
  remaining: number;
  resetAfterMs: number;
  retryAfterMs: number;
}

/**
 * The functional form: (state | undefined, now, cost) → { decision, state }, with the state a
 * plain array of numbers (undefined = a key never seen). Pure: the input state is not modified.
 * The memory store runs the same code in place over a typed array.
 */
export function decide(
  algorithm: RateAlgorithm,
  state: readonly number[] | undefined,
  now: number,
  cost: number,
): { decision: AlgorithmDecision; state: number[] } {
  const scratch = new Float64Array(algorithm.stateSize);
  if (state === undefined) algorithm.init(scratch, 0, now);
  else scratch.set(state);
  const out: KernelResult = { allowed: false, remaining: 0, resetAfterMs: 0, retryAfterMs: 0 };
  algorithm.decide(scratch, 0, now, cost, out);
  return { decision: { ...out }, state: Array.from(scratch) };
}
