import { EPSILON, roundWait, wholeUnits, type KernelResult, type RateAlgorithm } from './kernel.js';
import { windowStart, type WindowConfig } from './fixed-window.js';

// State layout: [windowStart, current, previous].
const START = 0;
const CURR = 1;
const PREV = 2;

/**
 * Sliding window counter (Cloudflare's approximation): two fixed-window counters, and the count
 * of the sliding window estimated as previous × (overlap of the previous window) + current.
 * O(1) state per key like a fixed window, without the burst at every boundary. It is an estimate:
 * it guarantees at most `limit` per aligned window, and never more than 2 × `limit` in any
 * sliding window (reached only if the previous window's traffic all came at its very end).
 */
export class SlidingWindowCounter implements RateAlgorithm {
  readonly kind = 'sliding-window-counter';
  readonly stateSize = 3;
  readonly limit: number;
  readonly #w: number;

  constructor(readonly config: WindowConfig) {
    this.limit = config.limit;
    this.#w = config.intervalMs;
  }

  init(state: Float64Array, o: number, now: number): void {
    state[o + START] = windowStart(now, this.#w);
    state[o + CURR] = 0;
    state[o + PREV] = 0;
  }

  #roll(state: Float64Array, o: number, now: number): void {
    const start = windowStart(now, this.#w);
    const old = state[o + START]!;
    if (start <= old) return; // same window (or the clock stepped back)
    state[o + PREV] = start - old === this.#w ? state[o + CURR]! : 0;
    state[o + CURR] = 0;
    state[o + START] = start;
  }

  decide(state: Float64Array, o: number, now: number, cost: number, out: KernelResult): void {
    this.#roll(state, o, now);
    const start = state[o + START]!;
    const prev = state[o + PREV]!;
    let curr = state[o + CURR]!;
    const elapsed = Math.max(0, now - start);
    const weight = (this.#w - elapsed) / this.#w; // share of the previous window still inside
    const estimate = prev * weight + curr;
    if (estimate + cost <= this.limit + EPSILON) {
      curr += cost;
      state[o + CURR] = curr;
      out.allowed = true;
      out.retryAfterMs = 0;
      out.remaining = wholeUnits(this.limit - (estimate + cost));
    } else {
      out.allowed = false;
      out.remaining = wholeUnits(this.limit - estimate);
      out.retryAfterMs = cost > this.limit + EPSILON ? Infinity : roundWait(this.#waitFor(cost, start, prev, curr) - now);
    }
    // Back to a zero estimate when both windows with traffic have slid out.
    out.resetAfterMs = curr > 0 ? start + 2 * this.#w - now : prev > 0 ? start + this.#w - now : 0;
  }

  /** The earliest time at which prev·weight + curr + cost ≤ limit (the estimate only decays). */
  #waitFor(cost: number, start: number, prev: number, curr: number): number {
    const room = this.limit - cost;
    if (curr <= room + EPSILON) {
      // Still in this window: wait for the previous window's share to decay enough.
      return start + this.#w - ((room - curr) * this.#w) / prev;
    }
    // Only in the next window, where today's count becomes the decaying "previous".
    return start + this.#w + Math.max(0, this.#w - (room * this.#w) / curr);
  }

  adjust(state: Float64Array, o: number, now: number, delta: number): void {
    this.#roll(state, o, now);
    state[o + CURR] = Math.min(this.limit, Math.max(0, state[o + CURR]! - delta));
  }

  isFresh(state: Float64Array, o: number, now: number): boolean {
    const start = state[o + START]!;
    if (now >= start + 2 * this.#w) return true;
    if (now >= start + this.#w) return state[o + CURR] === 0;
    return state[o + CURR] === 0 && state[o + PREV] === 0;
  }
}
