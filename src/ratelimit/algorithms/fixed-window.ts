import { EPSILON, roundWait, wholeUnits, type KernelResult, type RateAlgorithm } from './kernel.js';

export interface WindowConfig {
  limit: number;
  intervalMs: number;
}

// State layout: [windowStart, count].
const START = 0;
const COUNT = 1;

/**
 * Fixed window: a counter per aligned window of `intervalMs` (aligned to clock time 0, so every
 * instance and Redis agree on the boundaries). Simple and cheap; at most `limit` per aligned
 * window, but up to 2 × `limit` in a window that straddles a boundary (the edge artifact).
 */
export class FixedWindow implements RateAlgorithm {
  readonly kind = 'fixed-window';
  readonly stateSize = 2;
  readonly limit: number;
  readonly #w: number;

  constructor(readonly config: WindowConfig) {
    this.limit = config.limit;
    this.#w = config.intervalMs;
  }

  init(state: Float64Array, o: number, now: number): void {
    state[o + START] = windowStart(now, this.#w);
    state[o + COUNT] = 0;
  }

  #roll(state: Float64Array, o: number, now: number): number {
    const start = windowStart(now, this.#w);
    if (state[o + START] !== start) {
      if (start < state[o + START]!) return state[o + COUNT]!; // clock stepped back: keep counting
      state[o + START] = start;
      state[o + COUNT] = 0;
    }
    return state[o + COUNT]!;
  }

  decide(state: Float64Array, o: number, now: number, cost: number, out: KernelResult): void {
    let count = this.#roll(state, o, now);
    const end = state[o + START]! + this.#w;
    if (count + cost <= this.limit + EPSILON) {
      count += cost;
      state[o + COUNT] = count;
      out.allowed = true;
      out.retryAfterMs = 0;
    } else {
      out.allowed = false;
      out.retryAfterMs = cost > this.limit + EPSILON ? Infinity : roundWait(end - now);
    }
    out.remaining = wholeUnits(this.limit - count);
    out.resetAfterMs = count > 0 ? roundWait(end - now) : 0;
  }

  adjust(state: Float64Array, o: number, now: number, delta: number): void {
    const count = this.#roll(state, o, now);
    state[o + COUNT] = Math.min(this.limit, Math.max(0, count - delta));
  }

  isFresh(state: Float64Array, o: number, now: number): boolean {
    return state[o + COUNT] === 0 || state[o + START]! + this.#w <= now;
  }
}

export function windowStart(now: number, intervalMs: number): number {
  return Math.floor(now / intervalMs) * intervalMs;
}
