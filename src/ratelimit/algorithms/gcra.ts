import { EPSILON, roundWait, wholeUnits, type KernelResult, type RateAlgorithm } from './kernel.js';

export interface GcraConfig {
  /** Requests per `intervalMs` in the long run. */
  limit: number;
  intervalMs: number;
  /** How many may pass at once (the burst). */
  capacity: number;
}

// State layout: [tat] — the theoretical arrival time of the next request.
const TAT = 0;

/**
 * Generic Cell Rate Algorithm (ATM; the algorithm behind redis-cell and many API gateways).
 * Admission is that of a token bucket with the same rate and capacity, but the state is a single
 * number: each unit of cost pushes the theoretical arrival time (TAT) forward by the emission
 * interval T = intervalMs / limit; a request is allowed when the new TAT is at most
 * capacity × T ahead of now.
 */
export class Gcra implements RateAlgorithm {
  readonly kind = 'gcra';
  readonly stateSize = 1;
  readonly limit: number;
  /** Emission interval: ms per unit. */
  readonly #t: number;
  /** Burst tolerance: how far ahead of now the TAT may run. */
  readonly #tau: number;
  readonly #capacity: number;

  constructor(readonly config: GcraConfig) {
    this.#t = config.intervalMs / config.limit;
    this.#capacity = config.capacity;
    this.#tau = config.capacity * this.#t;
    this.limit = config.capacity;
  }

  init(state: Float64Array, o: number, now: number): void {
    state[o + TAT] = now;
  }

  decide(state: Float64Array, o: number, now: number, cost: number, out: KernelResult): void {
    const tat = Math.max(state[o + TAT]!, now);
    const next = tat + cost * this.#t;
    const tolerance = this.#tau + EPSILON * this.#t;
    if (next - now <= tolerance) {
      state[o + TAT] = next;
      out.allowed = true;
      out.retryAfterMs = 0;
      out.remaining = wholeUnits((this.#tau - (next - now)) / this.#t);
      out.resetAfterMs = roundWait(next - now);
    } else {
      out.allowed = false;
      out.retryAfterMs = cost > this.#capacity + EPSILON ? Infinity : roundWait(next - now - this.#tau);
      out.remaining = wholeUnits((this.#tau - (tat - now)) / this.#t);
      out.resetAfterMs = roundWait(tat - now);
    }
  }

  adjust(state: Float64Array, o: number, now: number, delta: number): void {
    const tat = Math.max(state[o + TAT]!, now);
    // Refund moves the TAT back (not before now); penalty forward (not past a full burst).
    state[o + TAT] = Math.min(now + this.#tau, Math.max(now, tat - delta * this.#t));
  }

  isFresh(state: Float64Array, o: number, now: number): boolean {
    return state[o + TAT]! <= now;
  }
}
