import { EPSILON, roundWait, wholeUnits, type KernelResult, type RateAlgorithm } from './kernel.js';

export interface TokenBucketConfig {
  /** Tokens added per `intervalMs` (continuously, fractionally). */
  limit: number;
  intervalMs: number;
  /** The most tokens the bucket holds (the burst). */
  capacity: number;
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
      // (elapsed × limit) / interval, not elapsed × (limit / interval): exact for round numbers.
      tokens = Math.min(this.#capacity, tokens + (elapsed * this.#perInterval) / this.#intervalMs);
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
    const elapsed = Math.max(0, now - state[o + UPDATED]!);
    return state[o + TOKENS]! + (elapsed * this.#perInterval) / this.#intervalMs >= this.#capacity - EPSILON;
  }

  /** Tokens in the bucket at `now` (for tests and telemetry). */
  tokensAt(state: Float64Array, o: number, now: number): number {
    const elapsed = Math.max(0, now - state[o + UPDATED]!);
    return Math.min(this.#capacity, state[o + TOKENS]! + (elapsed * this.#perInterval) / this.#intervalMs);
  }

  #msFor(tokens: number): number {
    return (tokens * this.#intervalMs) / this.#perInterval;
  }
}
