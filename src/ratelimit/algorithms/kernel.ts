/**
 * The shape every rate-limit algorithm has. An algorithm is a pure function of
 * (state, now, cost, config) → (decision, new state), written once "in place" over plain numbers
 * in a Float64Array so the memory store can keep millions of keys in one typed array with no
 * object per key and no allocation per decision. The functional form (`decide` in ./index.ts)
 * wraps the same code, so there is one implementation of each algorithm in TypeScript (the Redis
 * store has the Lua twin, checked against this one by a differential test).
 */

/** Where an algorithm writes its answer: a reused scratch object (no allocation per decision). */
export interface KernelResult {
  allowed: boolean;
  /** Whole units left after the decision. */
  remaining: number;
  /** ms from now until the key is back to its full limit. */
  resetAfterMs: number;
  /** 0 when allowed; ms until the same request could pass; Infinity when it never can. */
  retryAfterMs: number;
}

export interface RateAlgorithm {
  readonly kind: string;
  /** Reported as Decision.limit: the most a key can have available. */
  readonly limit: number;
  /** Number of float64 slots of state per key. */
  readonly stateSize: number;
  /** Writes the state of a key never seen (or forgotten) at `now`. */
  init(state: Float64Array, offset: number, now: number): void;
  /** Decides a request of `cost` at `now`, updating the state in place. */
  decide(state: Float64Array, offset: number, now: number, cost: number, out: KernelResult): void;
  /**
   * Adds `delta` units back (refund, delta > 0) or takes them (penalty, delta < 0), saturating:
   * never above the limit, never below empty.
   */
  adjust(state: Float64Array, offset: number, now: number, delta: number): void;
  /** True when the state is equivalent to a fresh key's: forgetting it loses nothing. */
  isFresh(state: Float64Array, offset: number, now: number): boolean;
}

/**
 * Tolerance for floating-point noise in fractional tokens: 1.6 + 1.4 may be 2.9999999999999996,
 * which must still pay for a cost of 3. A billionth of a unit is far below anything observable.
 */
export const EPSILON = 1e-9;

/** Rounds a wait up to whole microseconds, absorbing float noise (700.0000000000001 → 700). */
export function roundWait(ms: number): number {
  if (ms <= 0) return 0;
  if (ms === Infinity) return Infinity;
  return Math.ceil(ms * 1000 - 1e-6) / 1000;
}

/** floor() that forgives float noise just below an integer (0.9999999999 → 1). */
export function wholeUnits(units: number): number {
  return units <= 0 ? 0 : Math.floor(units + EPSILON);
}
