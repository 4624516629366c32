import { InvalidOptionsError } from '../core/errors.js';
import { nonNegative, positiveInt } from '../core/validate.js';
import type { LimitSample } from './limits/types.js';

/** How a window's RTTs become the one RTT the limit algorithm sees. */
export type WindowAggregate = 'average' | 'min' | { percentile: number };

export interface SampleWindowOptions {
  /** A window closes only once it holds this many samples. Default 10 (Netflix). */
  minSamples?: number;
  /** ...and has lasted this long. Default 1000 ms (Netflix). 0 with minSamples 1: every sample. */
  windowMs?: number;
  /** Default 'average' (Netflix's default window); 'min' suits Vegas on steady RPCs. */
  aggregate?: WindowAggregate;
  /** Successful samples faster than this are noise (cache hits, errors before I/O) and skipped. Default 0. */
  minRttMs?: number;
  /** For percentile windows: how many of the most recent samples are kept. Default 1000. */
  maxSamples?: number;
}

/**
 * Aggregates per-request samples into one sample per window (Netflix `WindowedLimit`): the RTT
 * by average / minimum / percentile, the maximum in-flight, and "dropped" if any request in
 * the window was. Updating the limit once per window, not per request, is what keeps the
 * estimate from chasing noise, and (like TCP reacting once per RTT) one burst of timeouts
 * halves an AIMD limit once, not once per timeout.
 *
 * Unlike Netflix, a window with too few samples is not thrown away: it stays open until it has
 * `minSamples`, so a low-traffic service still adapts, just more slowly. O(1) per sample; a
 * percentile window costs one O(n) selection when it closes. No timers: windows close when a
 * sample arrives.
 */
export class SampleWindow {
  readonly minSamples: number;
  readonly windowMs: number;
  readonly aggregate: WindowAggregate;
  readonly minRttMs: number;
  readonly #percentile: number | undefined;
  readonly #buffer: Float64Array | undefined;

  #startedAt = 0;
  #count = 0;
  #sum = 0;
  #min = Infinity;
  #maxInflight = 0;
  #dropped = false;

  constructor(options: SampleWindowOptions = {}) {
    this.minSamples = positiveInt('window.minSamples', options.minSamples, 10);
    this.windowMs = nonNegative('window.windowMs', options.windowMs, 1000);
    this.minRttMs = nonNegative('window.minRttMs', options.minRttMs, 0);
    const aggregate = options.aggregate ?? 'average';
    if (typeof aggregate === 'object' && aggregate !== null) {
      const p = aggregate.percentile;
      if (typeof p !== 'number' || !(p > 0 && p <= 1)) {
        throw new InvalidOptionsError(`window.aggregate.percentile must be in (0, 1] (e.g. 0.9), got ${String(p)}`);
      }
      this.#percentile = p;
      this.#buffer = new Float64Array(positiveInt('window.maxSamples', options.maxSamples, 1000));
    } else if (aggregate !== 'average' && aggregate !== 'min') {
      throw new InvalidOptionsError(`window.aggregate must be 'average', 'min' or { percentile }, got ${String(aggregate)}`);
    }
    this.aggregate = aggregate;
  }

  /** Samples in the open window. */
  get count(): number {
    return this.#count;
  }

  /**
   * Adds one request's outcome; returns the window's aggregate sample when this one closes it,
   * otherwise undefined.
   */
  add(now: number, rttMs: number, inflight: number, dropped: boolean): LimitSample | undefined {
    if (!dropped && rttMs < this.minRttMs) return undefined;
    if (this.#count === 0) this.#startedAt = now;
    const buffer = this.#buffer;
    if (buffer) buffer[this.#count % buffer.length] = rttMs;
    this.#count++;
    this.#sum += rttMs;
    if (rttMs < this.#min) this.#min = rttMs;
    if (inflight > this.#maxInflight) this.#maxInflight = inflight;
    if (dropped) this.#dropped = true;
    if (this.#count < this.minSamples || now - this.#startedAt < this.windowMs) return undefined;
    const sample: LimitSample = { rttMs: this.#rtt(), inflight: this.#maxInflight, dropped: this.#dropped };
    this.#count = 0;
    this.#sum = 0;
    this.#min = Infinity;
    this.#maxInflight = 0;
    this.#dropped = false;
    return sample;
  }

  #rtt(): number {
    if (this.aggregate === 'average') return this.#sum / this.#count;
    if (this.aggregate === 'min') return this.#min;
    const buffer = this.#buffer!;
    const n = Math.min(this.#count, buffer.length);
    const rank = Math.max(0, Math.ceil(this.#percentile! * n) - 1); // nearest rank
    return select(buffer, n, rank);
  }
}

/** The k-th smallest of `values[0..n)` (Hoare's quickselect; reorders the buffer, which is discarded anyway). */
function select(values: Float64Array, n: number, k: number): number {
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const pivot = values[(lo + hi) >>> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i]! < pivot) i++;
      while (values[j]! > pivot) j--;
      if (i <= j) {
        const t = values[i]!;
        values[i] = values[j]!;
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return values[k]!;
  }
  return values[lo]!;
}
