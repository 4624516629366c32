import { InvalidOptionsError } from '../../core/errors.js';
import { positive, positiveInt } from '../../core/validate.js';
import { clamp, type LimitAlgorithm, type LimitSample, type LimitState } from './types.js';

/**
 * AIMD (additive increase, multiplicative decrease), TCP Reno's sawtooth applied to request
 * concurrency (Van Jacobson, "Congestion Avoidance and Control", SIGCOMM 1988; Netflix's
 * `concurrency-limits`). The defaults:
 *
 *   dropped                          → limit × 0.5   (multiplicative decrease)
 *   rtt > target × 2                 → limit × 0.9   (latency backoff)
 *   rtt < target (and the limit used) → limit + 1     (additive increase)
 *   otherwise                        → unchanged
 *
 * clamped to [min 1, max 1000], initial 10, target 100 ms. Decreases are floored to an integer
 * and always remove at least one slot (Netflix `AIMDLimit`), so 1 × 0.9 can never round back to 1
 * and stall a shrinking limit above its floor.
 *
 * One deliberate difference from a plain AIMD: like Netflix, the limit only grows while
 * it is actually used (`inflight × 2 ≥ limit`). Without that guard an idle or lightly loaded
 * service grows its limit +1 per sample up to the maximum, and the limiter no longer protects
 * anything when the burst comes (set `growOnlyWhenUsed: false` for the plain rule).
 */
export interface AimdOptions {
  /** Default 10. */
  initialLimit?: number;
  /** Default 1. */
  minLimit?: number;
  /** Default 1000. */
  maxLimit?: number;
  /** Latency goal in ms. Default 100. */
  targetMs?: number;
  /** Multiplier on a drop. Default 0.5. */
  backoffRatio?: number;
  /** Multiplier when rtt > target × latencyTolerance. Default 0.9. */
  latencyBackoffRatio?: number;
  /** Default 2: "slow" means slower than twice the target. */
  latencyTolerance?: number;
  /** Grow only while inflight × 2 ≥ limit (Netflix). Default true. */
  growOnlyWhenUsed?: boolean;
}

export interface AimdState extends LimitState {
  readonly limit: number;
}

export interface AimdSettings {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
  targetMs: number;
  backoffRatio: number;
  latencyBackoffRatio: number;
  latencyTolerance: number;
  growOnlyWhenUsed: boolean;
}

/** The pure AIMD step. */
export function aimdUpdate(state: AimdState, sample: LimitSample, s: AimdSettings): AimdState {
  const limit = state.limit;
  let next: number;
  if (sample.dropped) {
    next = decrease(limit, s.backoffRatio);
  } else if (sample.rttMs > s.targetMs * s.latencyTolerance) {
    next = decrease(limit, s.latencyBackoffRatio);
  } else if (sample.rttMs < s.targetMs && (!s.growOnlyWhenUsed || sample.inflight * 2 >= limit)) {
    next = limit + 1;
  } else {
    return state;
  }
  next = clamp(next, s.minLimit, s.maxLimit);
  return next === limit ? state : { limit: next };
}

function decrease(limit: number, ratio: number): number {
  return Math.min(limit - 1, Math.floor(limit * ratio));
}

export interface AimdLimit extends LimitAlgorithm<AimdState> {
  readonly kind: 'aimd';
  readonly settings: Readonly<AimdSettings>;
}

export function aimd(options: AimdOptions = {}): AimdLimit {
  const minLimit = positiveInt('aimd.minLimit', options.minLimit, 1);
  const maxLimit = positiveInt('aimd.maxLimit', options.maxLimit, 1000);
  const initialLimit = positiveInt('aimd.initialLimit', options.initialLimit, Math.min(Math.max(10, minLimit), maxLimit));
  if (minLimit > maxLimit) throw new InvalidOptionsError(`aimd.minLimit (${minLimit}) must be <= maxLimit (${maxLimit})`);
  if (initialLimit < minLimit || initialLimit > maxLimit) {
    throw new InvalidOptionsError(`aimd.initialLimit (${initialLimit}) must be within [minLimit, maxLimit] = [${minLimit}, ${maxLimit}]`);
  }
  const settings: AimdSettings = {
    initialLimit,
    minLimit,
    maxLimit,
    targetMs: positive('aimd.targetMs', options.targetMs, 100),
    backoffRatio: openRatio('aimd.backoffRatio', options.backoffRatio, 0.5),
    latencyBackoffRatio: openRatio('aimd.latencyBackoffRatio', options.latencyBackoffRatio, 0.9),
    latencyTolerance: atLeastOne('aimd.latencyTolerance', options.latencyTolerance, 2),
    growOnlyWhenUsed: options.growOnlyWhenUsed ?? true,
  };
  Object.freeze(settings);
  return {
    kind: 'aimd',
    minLimit,
    maxLimit,
    settings,
    initial: () => ({ limit: initialLimit }),
    update: (state, sample) => aimdUpdate(state, sample, settings),
    describe: () => ({ ...settings }),
  };
}

/** A ratio in (0, 1): 0 would collapse the limit, 1 would never decrease it. */
export function openRatio(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v > 0 && v < 1)) throw new InvalidOptionsError(`${name} must be > 0 and < 1, got ${String(value)}`);
  return v;
}

export function atLeastOne(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v >= 1) || !Number.isFinite(v)) throw new InvalidOptionsError(`${name} must be a number >= 1, got ${String(value)}`);
  return v;
}
