/**
 * Adaptive concurrency limits as pure update functions, after Netflix's concurrency-limits
 * (https://github.com/Netflix/concurrency-limits): every algorithm is `(state, sample) → state`,
 * so the enforcing limiter, the simulator and the tests all drive the same code.
 */

/** What one request (or one aggregated sampling window) tells the algorithm. */
export interface LimitSample {
  /** Round-trip time in ms (for a window: its average, minimum or percentile). */
  rttMs: number;
  /** Requests in flight when it started, itself included (for a window: the maximum seen). */
  inflight: number;
  /** True when it was dropped: timed out, rejected by an overloaded dependency, failed. */
  dropped: boolean;
}

/** Every algorithm state exposes the integer limit to enforce. */
export interface LimitState {
  readonly limit: number;
}

export interface LimitAlgorithm<S extends LimitState = LimitState> {
  readonly kind: string;
  readonly minLimit: number;
  readonly maxLimit: number;
  /** The state before any sample. */
  initial(): S;
  /** The next state after `sample`; never mutates `state`. */
  update(state: S, sample: LimitSample): S;
  /** Options in effect (for `describe()` and the dashboard). */
  describe(): Record<string, unknown>;
}

export function clamp(value: number, min: number, max: number): number {
  return value < min ? min : value > max ? max : value;
}

/**
 * Netflix's `Log10RootIntFunction`: max(1, ⌊log10(limit)⌋) at every size (its Javadoc says
 * "sqrt", its code and tests say log10: 4 at 10 000). Vegas scales its alpha / beta / step sizes
 * with it, so steps grow slowly with the limit: 24 at 10 000, where √ would give 600.
 */
export function log10Root(limit: number): number {
  return limit < 10 ? 1 : Math.floor(Math.log10(limit));
}

/** Netflix's `SquareRootFunction.create(baseline)`: max(baseline, ⌊√limit⌋ (≥ 1)). */
export function squareRoot(limit: number, baseline = 0): number {
  return Math.max(baseline, Math.max(1, Math.floor(Math.sqrt(Math.max(0, limit)))));
}
