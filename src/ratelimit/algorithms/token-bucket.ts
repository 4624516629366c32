import { EPSILON, roundWait, wholeUnits, type KernelResult, type RateAlgorithm } from './kernel.js';

export interface TokenBucketConfig {
  /** Tokens added per `intervalMs` (continuously, fractionally). */
  limit: number;
  intervalMs: number;
  /** The most tokens the bucket holds (the burst). */
  capacity: number;
}

/**
 * The token-bucket refill, the one computation of it in TypeScript (the Lua scripts have their
 * twin, checked against this kernel): `tokens` after `elapsedMs` of refilling at `limit` per
 * `intervalMs`, never above `capacity`. Time that did not move forward refills nothing (nor caps:
 * a bucket above its capacity stays as it is). `share` > 1 runs a 1/share slice of the bucket,
 * rate and capacity both (the hybrid limiter's per-instance share).
 */
export function refillTokens(tokens: number, elapsedMs: number, limit: number, intervalMs: number, capacity: number, share = 1): number {
  if (elapsedMs <= 0) return tokens;
  // (elapsed × limit) / interval, not elapsed × (limit / interval): exact for round numbers.
  return Math.min(capacity / share, tokens + (elapsedMs * limit) / intervalMs / share);
}

// State layout: [tokens, updatedAt].
const TOKENS = 0;
const UPDATED = 1;

/**
 * Token bucket: tokens = min(capacity, tokens + rate × Δt), a request of cost n takes n tokens
 * when at least n are there. Burst-friendly: a full bucket lets `capacity` through at once, then
 * `limit` per `intervalMs`. Over any interval of length Δ it admits at most capacity + rate × Δ.
 */
export class TokenBucket implements RateAlgorithm {
  readonly kind = 'token-bucket';
  readonly stateSize = 2;
  readonly limit: number;
  readonly #capacity: number;
  readonly #perInterval: number;
  readonly #intervalMs: number;

  constructor(readonly config: TokenBucketConfig) {
    this.#capacity = config.capacity;
    this.#perInterval = config.limit;
    this.#intervalMs = config.intervalMs;
    this.limit = config.capacity;
  }

  init(state: Float64Array, o: number, now: number): void {
    state[o + TOKENS] = this.#capacity;
    state[o + UPDATED] = now;
  }

  /** Refills to `now` in place and returns the tokens. A clock that steps back refills nothing. */
  #refill(state: Float64Array, o: number, now: number): number {
    let tokens = state[o + TOKENS]!;
    const elapsed = now - state[o + UPDATED]!;
    if (elapsed > 0) {
      tokens = refillTokens(tokens, elapsed, this.#perInterval, this.#intervalMs, this.#capacity);
      state[o + TOKENS] = tokens;
      state[o + UPDATED] = now;
    }
    return tokens;
  }

  decide(state: Float64Array, o: number, now: number, cost: number, out: KernelResult): void {
    let tokens = this.#refill(state, o, now);
    if (cost <= tokens + EPSILON) {
      // max(0, …): the tolerance must never leave a negative balance, not even by a rounding
      // error: tokens always stay within [0, capacity].
      tokens = Math.max(0, tokens - cost);
      state[o + TOKENS] = tokens;
      out.allowed = true;
      out.retryAfterMs = 0;
    } else {
      out.allowed = false;
      out.retryAfterMs = cost > this.#capacity + EPSILON ? Infinity : roundWait(this.#msFor(cost - tokens));
    }
    out.remaining = wholeUnits(tokens);
    out.resetAfterMs = roundWait(this.#msFor(this.#capacity - tokens));
  }

  adjust(state: Float64Array, o: number, now: number, delta: number): void {
    const tokens = this.#refill(state, o, now);
    state[o + TOKENS] = Math.min(this.#capacity, Math.max(0, tokens + delta));
  }

  isFresh(state: Float64Array, o: number, now: number): boolean {
    return this.tokensAt(state, o, now) >= this.#capacity - EPSILON;
  }

  /** Tokens in the bucket at `now` (for tests and telemetry). */
  tokensAt(state: Float64Array, o: number, now: number): number {
    return refillTokens(state[o + TOKENS]!, now - state[o + UPDATED]!, this.#perInterval, this.#intervalMs, this.#capacity);
  }

  #msFor(tokens: number): number {
    return (tokens * this.#intervalMs) / this.#perInterval;
  }
}
