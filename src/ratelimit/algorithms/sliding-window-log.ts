import { RateLimitInputError } from '../types.js';
import { roundWait, type KernelResult, type RateAlgorithm } from './kernel.js';
import type { WindowConfig } from './fixed-window.js';

// State layout: [count, head, t0, t1, … t(limit-1)] — a ring of the timestamps of the last
// `limit` admitted units, oldest at `head`.
const COUNT = 0;
const HEAD = 1;
const RING = 2;

/**
 * Sliding window log: remembers when each admitted unit passed, so it can promise exactly at most
 * `limit` units in any window of `intervalMs`. Precise, at the price of `limit` numbers per key
 * (8 bytes each): use it for small limits (logins, signups), not for 10,000 requests per minute.
 * Expired entries are dropped from the head as time passes (each entry once: O(1) amortised).
 */
export class SlidingWindowLog implements RateAlgorithm {
  readonly kind = 'sliding-window-log';
  readonly stateSize: number;
  readonly limit: number;
  readonly #w: number;

  constructor(readonly config: WindowConfig) {
    if (!Number.isInteger(config.limit)) throw new RangeError('sliding-window-log needs an integer limit');
    this.limit = config.limit;
    this.#w = config.intervalMs;
    this.stateSize = RING + config.limit;
  }

  init(state: Float64Array, o: number, _now: number): void {
    state[o + COUNT] = 0;
    state[o + HEAD] = 0;
  }

  /** Drops entries that left the window (at or before now − interval); returns the count left. */
  #expire(state: Float64Array, o: number, now: number): number {
    let count = state[o + COUNT]!;
    let head = state[o + HEAD]!;
    const horizon = now - this.#w;
    while (count > 0 && state[o + RING + head]! <= horizon) {
      head = head + 1 === this.limit ? 0 : head + 1;
      count--;
    }
    state[o + COUNT] = count;
    state[o + HEAD] = count === 0 ? 0 : head;
    return count;
  }

  #push(state: Float64Array, o: number, now: number, units: number): void {
    let count = state[o + COUNT]!;
    let head = state[o + HEAD]!;
    for (let i = 0; i < units; i++) {
      if (count === this.limit) {
        // Full: the newest entry overwrites the oldest (only penalties get here).
        state[o + RING + head] = now;
        head = head + 1 === this.limit ? 0 : head + 1;
      } else {
        state[o + RING + ((head + count) % this.limit)] = now;
        count++;
      }
    }
    state[o + COUNT] = count;
    state[o + HEAD] = head;
  }

  decide(state: Float64Array, o: number, now: number, cost: number, out: KernelResult): void {
    if (!Number.isInteger(cost)) throw new RateLimitInputError(`sliding-window-log costs are whole units, got ${cost}`);
    let count = this.#expire(state, o, now);
    const head = state[o + HEAD]!;
    if (count + cost <= this.limit) {
      this.#push(state, o, now, cost);
      count += cost;
      out.allowed = true;
      out.retryAfterMs = 0;
    } else {
      out.allowed = false;
      if (cost > this.limit) {
        out.retryAfterMs = Infinity;
      } else {
        // The oldest (count + cost − limit) entries must leave the window first.
        const k = count + cost - this.limit - 1;
        const ts = state[o + RING + ((head + k) % this.limit)]!;
        out.retryAfterMs = roundWait(ts + this.#w - now);
      }
    }
    out.remaining = this.limit - count;
    out.resetAfterMs = count > 0 ? roundWait(this.#newest(state, o) + this.#w - now) : 0;
  }

  #newest(state: Float64Array, o: number): number {
    const count = state[o + COUNT]!;
    return state[o + RING + ((state[o + HEAD]! + count - 1) % this.limit)]!;
  }

  adjust(state: Float64Array, o: number, now: number, delta: number): void {
    if (!Number.isInteger(delta)) throw new RateLimitInputError(`sliding-window-log costs are whole units, got ${Math.abs(delta)}`);
    const count = this.#expire(state, o, now);
    if (delta < 0) this.#push(state, o, now, -delta);
    else state[o + COUNT] = Math.max(0, count - delta); // a refund forgets the newest entries
    if (state[o + COUNT] === 0) state[o + HEAD] = 0;
  }

  isFresh(state: Float64Array, o: number, now: number): boolean {
    const count = state[o + COUNT]!;
    return count === 0 || this.#newest(state, o) <= now - this.#w;
  }
}
