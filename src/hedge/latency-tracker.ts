import { InvalidInputError } from '../core/errors.js';
import { positiveInt } from '../core/validate.js';

/*
 * A log-linear histogram (the HdrHistogram idea, reduced): values are counted in 0.1 ms units;
 * below 32 units every value has its own bucket, above that every power of two is split into
 * 16 sub-buckets, so a bucket is at most 1/16 (6.25%) wide relative to its value. Recording is
 * O(1) with no allocation; 448 buckets cover 0.1 ms to ~60 hours in 1.75 KiB.
 */
const UNITS_PER_MS = 10;
const SUB_BITS = 4;
const SUB_BUCKETS = 1 << SUB_BITS;
const LINEAR_LIMIT = 2 * SUB_BUCKETS; // exact buckets below this many units
const MAX_UNITS = 0x7fffffff;
/** 32 exact buckets, then 16 per octave for exponents 5..30. */
export const BUCKET_COUNT = LINEAR_LIMIT + (30 - 5 + 1) * SUB_BUCKETS;

/** The bucket of a value given in 0.1 ms units (a non-negative integer). */
export function bucketOf(units: number): number {
  if (units < LINEAR_LIMIT) return units;
  const exponent = 31 - Math.clz32(units); // >= 5
  const sub = (units >>> (exponent - SUB_BITS)) & (SUB_BUCKETS - 1);
  return LINEAR_LIMIT + (exponent - 5) * SUB_BUCKETS + sub;
}

/** The exclusive upper edge of a bucket, in ms: every value in the bucket is below it. */
export function bucketUpperMs(bucket: number): number {
  if (bucket < LINEAR_LIMIT) return (bucket + 1) / UNITS_PER_MS;
  const exponent = 5 + Math.floor((bucket - LINEAR_LIMIT) / SUB_BUCKETS);
  const sub = (bucket - LINEAR_LIMIT) % SUB_BUCKETS;
  return ((SUB_BUCKETS + sub + 1) * 2 ** (exponent - SUB_BITS)) / UNITS_PER_MS;
}

export interface LatencyTrackerOptions {
  /**
   * Samples per half-window. The tracker keeps the current half and the previous one, so a
   * percentile reflects the last `windowSize` to `2 × windowSize` samples and old behaviour
   * fades out. Default 1000.
   */
  windowSize?: number;
  /** Percentiles are recomputed (an O(buckets) scan) at most once per this many samples. Default 16. */
  refreshEvery?: number;
}

/**
 * Recent latency percentiles in bounded memory: two fixed histograms (current and previous
 * half-window) rotated by sample count. `record` is O(1); `percentile` scans the buckets only
 * when enough new samples have arrived since the last answer, so asking on every call is cheap.
 * Answers are bucket upper edges, so they err on the high side by at most 6.25%.
 */
export class LatencyTracker {
  readonly windowSize: number;
  readonly #refreshEvery: number;
  #current = new Uint32Array(BUCKET_COUNT);
  #previous = new Uint32Array(BUCKET_COUNT);
  #currentCount = 0;
  #previousCount = 0;
  #version = 0;
  #cachedP = NaN;
  #cachedValue = NaN;
  #cachedVersion = -Infinity;

  constructor(options: LatencyTrackerOptions = {}) {
    this.windowSize = positiveInt('latencyTracker.windowSize', options.windowSize, 1000);
    this.#refreshEvery = positiveInt('latencyTracker.refreshEvery', options.refreshEvery, 16);
  }

  /** Samples currently contributing to percentiles. */
  get count(): number {
    return this.#currentCount + this.#previousCount;
  }

  /** Records one latency in ms (negative or NaN values are ignored). */
  record(ms: number): void {
    if (!(ms >= 0)) return;
    const units = Math.min(MAX_UNITS, Math.floor(ms * UNITS_PER_MS));
    this.#current[bucketOf(units)]!++;
    this.#version++;
    if (++this.#currentCount >= this.windowSize) {
      const old = this.#previous;
      this.#previous = this.#current;
      this.#previousCount = this.#currentCount;
      old.fill(0);
      this.#current = old;
      this.#currentCount = 0;
    }
  }

  /** The p-th percentile (0 < p ≤ 100) in ms, or NaN with no samples. */
  percentile(p: number): number {
    if (!(p > 0 && p <= 100)) throw new InvalidInputError(`percentile must be in (0, 100], got ${String(p)}`);
    if (p === this.#cachedP && this.#version - this.#cachedVersion < this.#refreshEvery) return this.#cachedValue;
    const value = this.#compute(p);
    this.#cachedP = p;
    this.#cachedValue = value;
    this.#cachedVersion = this.#version;
    return value;
  }

  reset(): void {
    this.#current.fill(0);
    this.#previous.fill(0);
    this.#currentCount = this.#previousCount = 0;
    this.#version++;
    this.#cachedVersion = -Infinity;
  }

  #compute(p: number): number {
    const total = this.count;
    if (total === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * total)); // nearest-rank
    let seen = 0;
    for (let b = 0; b < BUCKET_COUNT; b++) {
      seen += this.#current[b]! + this.#previous[b]!;
      if (seen >= rank) return bucketUpperMs(b);
    }
    return bucketUpperMs(BUCKET_COUNT - 1);
  }
}
