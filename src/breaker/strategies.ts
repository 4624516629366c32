import { InvalidOptionsError } from '../core/errors.js';
import { nonNegative, nonNegativeInt, positive, positiveInt, ratio } from '../core/validate.js';

/**
 * Trip strategies decide when a closed breaker opens. Each one is a small stateful window
 * behind one interface, O(1) per recorded call. Options are validated once by the factory
 * (`consecutive`, `countWindow`, `timeWindow`); each breaker then `create()`s its own window,
 * so one options object can safely configure many breakers (keyed breakers).
 */

/** What a window currently holds (stats, dashboards, trip events). Rates are 0 with no calls. */
export interface BreakerWindowStats {
  calls: number;
  failures: number;
  slowCalls: number;
  failureRate: number;
  slowCallRate: number;
  /** Failures since the last success (consecutive strategy only). */
  consecutiveFailures?: number;
}

/** A JSON-serialisable picture of a window, for export/import (hydration). */
export type BreakerWindowSnapshot = BuiltInBreakerWindowSnapshot | CustomBreakerWindowSnapshot;

export type BuiltInBreakerWindowSnapshot =
  | { kind: 'consecutive'; consecutiveFailures: number }
  /** Outcomes oldest first, one character each: 0 success, 1 failure, 2 slow success, 3 slow failure. */
  | { kind: 'count'; outcomes: string }
  /** Non-empty buckets as [bucket start ms, calls, failures, slow calls]. */
  | { kind: 'time'; bucketMs: number; buckets: Array<[number, number, number, number]> }
  /** Clock times (ms) of the failures still in the window, oldest first. */
  | { kind: 'failure-count'; failures: number[] };

/** Snapshots of user-defined strategies: anything JSON with a `kind`. */
export interface CustomBreakerWindowSnapshot {
  kind: string;
  [field: string]: unknown;
}

export interface TripStrategy {
  readonly kind: string;
  /** Calls slower than this count as slow (and a slow probe as a failed probe); undefined: latency not judged. */
  readonly slowCallDurationMs: number | undefined;
  /** True when `record`/`shouldTrip` need the current time; otherwise the breaker skips the clock read. */
  readonly usesTime: boolean;
  /** One call in the closed state ended. `durationMs` is 0 unless a slow-call threshold is set. */
  record(success: boolean, durationMs: number, now: number): void;
  /** Whether the window now says "open". Checked after every record. */
  shouldTrip(now: number): boolean;
  /** Forgets everything (the breaker closed again, or was reset). */
  reset(): void;
  stats(now: number): BreakerWindowStats;
  exportWindow(now: number): BreakerWindowSnapshot;
  /**
   * Restores a window exported by a strategy of the same kind. Snapshots reaching here are
   * already validated for the built-in kinds; a kind this strategy does not understand leaves
   * the window empty (restoring state is best-effort, never a crash).
   */
  importWindow(snapshot: BreakerWindowSnapshot, now: number): void;
}

/** A validated strategy configuration; each breaker creates its own window from it. */
export interface TripStrategyFactory {
  readonly kind: string;
  readonly options: Readonly<Record<string, unknown>>;
  create(): TripStrategy;
}

/** Outcome codes in the count window's ring: bit 0 failure, bit 1 slow. */
const FAILED = 1;
const SLOW = 2;

function rate(part: number, calls: number): number {
  return calls === 0 ? 0 : part / calls;
}

/**
 * Failure rate and slow-call rate are judged the same way in both rate windows: trip once
 * at least `minimumCalls` calls (and at least one) are in the window and either rate is
 * >= its threshold (resilience4j's rule). Division, not multiplication, so that exact decimal
 * thresholds behave exactly: 3/10 >= 0.3 holds, 0.3 × 10 > 3 in floating point.
 */
function rateTrips(calls: number, failures: number, slow: number, minimumCalls: number, failureThreshold: number, slowThreshold: number): boolean {
  if (calls === 0 || calls < minimumCalls) return false;
  return failures / calls >= failureThreshold || slow / calls >= slowThreshold;
}

// ---------------------------------------------------------------------------------------------
// Consecutive failures

export interface ConsecutiveOptions {
  /** Failures in a row (no success in between) that open the breaker. Default 5. */
  threshold?: number;
}

class ConsecutiveWindow implements TripStrategy {
  readonly kind = 'consecutive';
  readonly slowCallDurationMs = undefined;
  readonly usesTime = false;
  #failures = 0;
  constructor(private readonly threshold: number) {}

  record(success: boolean): void {
    this.#failures = success ? 0 : this.#failures + 1;
  }

  shouldTrip(): boolean {
    return this.#failures >= this.threshold;
  }

  reset(): void {
    this.#failures = 0;
  }

  stats(): BreakerWindowStats {
    const n = this.#failures;
    return { calls: n, failures: n, slowCalls: 0, failureRate: n > 0 ? 1 : 0, slowCallRate: 0, consecutiveFailures: n };
  }

  exportWindow(): BreakerWindowSnapshot {
    return { kind: 'consecutive', consecutiveFailures: this.#failures };
  }

  importWindow(snapshot: BreakerWindowSnapshot): void {
    this.#failures = snapshot.kind === 'consecutive' ? (snapshot as { consecutiveFailures: number }).consecutiveFailures : 0;
  }
}

/** Opens after `threshold` failures in a row (default 5). */
export function consecutive(options: ConsecutiveOptions = {}): TripStrategyFactory {
  const threshold = positiveInt('consecutive.threshold', options.threshold, 5);
  return { kind: 'consecutive', options: { threshold }, create: () => new ConsecutiveWindow(threshold) };
}

// ---------------------------------------------------------------------------------------------
// Failure count: N failures within T

export interface FailureCountOptions {
  /** Failures within `windowMs` that open the breaker, successes in between or not. Default 5. */
  threshold?: number;
  /** How long a failure counts, in ms: it leaves the window `windowMs` after it happened. Default 30 000. */
  windowMs?: number;
}

/**
 * The times of the last `threshold` failures, in a ring. "N failures within T" holds exactly
 * when the oldest of the last N failures is less than T old, so one comparison decides and
 * recording is O(1). Successes are not recorded: the count is absolute, not a rate.
 */
class FailureCountWindow implements TripStrategy {
  readonly kind = 'failure-count';
  readonly slowCallDurationMs = undefined;
  readonly usesTime = true;
  readonly #times: Float64Array;
  /** The slot the next failure goes to; once the ring is full, the oldest failure's slot. */
  #next = 0;
  #size = 0;

  constructor(private readonly threshold: number, private readonly windowMs: number) {
    this.#times = new Float64Array(threshold);
  }

  record(success: boolean, _durationMs: number, now: number): void {
    if (!success) this.#push(now);
  }

  #push(at: number): void {
    this.#times[this.#next] = at;
    this.#next = this.#next + 1 === this.threshold ? 0 : this.#next + 1;
    if (this.#size < this.threshold) this.#size++;
  }

  #inWindow(at: number, now: number): boolean {
    return now - at < this.windowMs;
  }

  shouldTrip(now: number): boolean {
    return this.#size === this.threshold && this.#inWindow(this.#times[this.#next]!, now);
  }

  reset(): void {
    this.#next = this.#size = 0;
  }

  /** Failures still in the window, oldest first (O(threshold): for stats and export, not per call). */
  #recent(now: number): number[] {
    const start = this.#size === this.threshold ? this.#next : 0;
    const out: number[] = [];
    for (let k = 0; k < this.#size; k++) {
      const at = this.#times[(start + k) % this.threshold]!;
      if (this.#inWindow(at, now)) out.push(at);
    }
    return out;
  }

  /** Only failures are counted, so `calls` is the failures in the window (as for `consecutive`). */
  stats(now: number): BreakerWindowStats {
    const n = this.#recent(now).length;
    return { calls: n, failures: n, slowCalls: 0, failureRate: n > 0 ? 1 : 0, slowCallRate: 0 };
  }

  exportWindow(now: number): BreakerWindowSnapshot {
    return { kind: 'failure-count', failures: this.#recent(now) };
  }

  importWindow(snapshot: BreakerWindowSnapshot, now: number): void {
    this.reset();
    if (snapshot.kind !== 'failure-count') return;
    const failures = (snapshot as { failures: number[] }).failures;
    // Another threshold keeps the newest failures that fit.
    for (let k = Math.max(0, failures.length - this.threshold); k < failures.length; k++) {
      if (this.#inWindow(failures[k]!, now)) this.#push(failures[k]!);
    }
  }
}

/**
 * Opens after `threshold` failures within `windowMs` (default 5 within 30 s), however many
 * calls succeeded in between: an absolute count, unlike the rate windows below, so it still
 * opens when heavy traffic keeps the failure rate under a rate threshold.
 */
export function failureCount(options: FailureCountOptions = {}): TripStrategyFactory {
  const threshold = positiveInt('failureCount.threshold', options.threshold, 5);
  if (threshold > 1_000_000) throw new InvalidOptionsError(`failureCount.threshold must be at most 1 000 000, got ${threshold}`);
  const windowMs = positive('failureCount.windowMs', options.windowMs, 30_000);
  if (!Number.isFinite(windowMs)) throw new InvalidOptionsError('failureCount.windowMs must be finite (a failure must leave the window some time)');
  return { kind: 'failure-count', options: { threshold, windowMs }, create: () => new FailureCountWindow(threshold, windowMs) };
}

// ---------------------------------------------------------------------------------------------
// Shared rate options

export interface BreakerRateOptions {
  /** Trip when failures / calls >= this (0 < x <= 1). Default 0.5. */
  failureRateThreshold?: number;
  /** Calls strictly slower than this (ms) are slow. Unset: latency is not judged. */
  slowCallDurationMs?: number;
  /** Trip when slow calls / calls >= this (0 < x <= 1). Default 0.5; needs `slowCallDurationMs`. */
  slowCallRateThreshold?: number;
}

interface RateSettings {
  failureRateThreshold: number;
  slowCallDurationMs: number | undefined;
  /** Infinity when latency is not judged, so the comparison is simply never true. */
  slowCallRateThreshold: number;
}

function rateSettings(prefix: string, options: BreakerRateOptions): RateSettings {
  const failureRateThreshold = ratio(`${prefix}.failureRateThreshold`, options.failureRateThreshold, 0.5);
  if (failureRateThreshold === 0) throw new InvalidOptionsError(`${prefix}.failureRateThreshold must be > 0 (0 would open on every call)`);
  const slowCallDurationMs = options.slowCallDurationMs === undefined ? undefined : nonNegative(`${prefix}.slowCallDurationMs`, options.slowCallDurationMs, 0);
  if (slowCallDurationMs === undefined && options.slowCallRateThreshold !== undefined) {
    throw new InvalidOptionsError(`${prefix}.slowCallRateThreshold needs slowCallDurationMs (which calls are slow?)`);
  }
  let slowCallRateThreshold = Infinity;
  if (slowCallDurationMs !== undefined) {
    slowCallRateThreshold = ratio(`${prefix}.slowCallRateThreshold`, options.slowCallRateThreshold, 0.5);
    if (slowCallRateThreshold === 0) throw new InvalidOptionsError(`${prefix}.slowCallRateThreshold must be > 0`);
  }
  return { failureRateThreshold, slowCallDurationMs, slowCallRateThreshold };
}

function describeRates(s: RateSettings): Record<string, unknown> {
  return s.slowCallDurationMs === undefined
    ? { failureRateThreshold: s.failureRateThreshold }
    : { failureRateThreshold: s.failureRateThreshold, slowCallDurationMs: s.slowCallDurationMs, slowCallRateThreshold: s.slowCallRateThreshold };
}

// ---------------------------------------------------------------------------------------------
// Count window: the last `size` calls

export interface CountWindowOptions extends BreakerRateOptions {
  /** How many of the most recent calls are judged. Default 100. */
  size?: number;
  /** Calls needed before the rate is judged; at most `size`. Default `size` (resilience4j). 0 behaves as 1. */
  minimumCalls?: number;
}

/** A ring buffer of outcomes with running totals: recording is O(1) whatever the size. */
class CountWindow implements TripStrategy {
  readonly kind = 'count';
  readonly slowCallDurationMs: number | undefined;
  readonly usesTime = false;
  readonly #ring: Uint8Array;
  readonly #slowMs: number;
  #next = 0;
  #calls = 0;
  #failures = 0;
  #slow = 0;

  constructor(private readonly size: number, private readonly minimumCalls: number, private readonly rates: RateSettings) {
    this.#ring = new Uint8Array(size);
    this.slowCallDurationMs = rates.slowCallDurationMs;
    this.#slowMs = rates.slowCallDurationMs ?? Infinity;
  }

  record(success: boolean, durationMs: number): void {
    const outcome = (success ? 0 : FAILED) | (durationMs > this.#slowMs ? SLOW : 0);
    this.#push(outcome);
  }

  #push(outcome: number): void {
    const ring = this.#ring;
    const i = this.#next;
    if (this.#calls === this.size) {
      const old = ring[i]!;
      this.#failures -= old & FAILED;
      this.#slow -= old >> 1;
    } else {
      this.#calls++;
    }
    ring[i] = outcome;
    this.#failures += outcome & FAILED;
    this.#slow += outcome >> 1;
    this.#next = i + 1 === this.size ? 0 : i + 1;
  }

  shouldTrip(): boolean {
    return rateTrips(this.#calls, this.#failures, this.#slow, this.minimumCalls, this.rates.failureRateThreshold, this.rates.slowCallRateThreshold);
  }

  reset(): void {
    this.#ring.fill(0);
    this.#next = this.#calls = this.#failures = this.#slow = 0;
  }

  stats(): BreakerWindowStats {
    const calls = this.#calls;
    return { calls, failures: this.#failures, slowCalls: this.#slow, failureRate: rate(this.#failures, calls), slowCallRate: rate(this.#slow, calls) };
  }

  exportWindow(): BreakerWindowSnapshot {
    // Oldest first: the slot after the newest is the oldest once the ring is full.
    const start = this.#calls === this.size ? this.#next : 0;
    let outcomes = '';
    for (let k = 0; k < this.#calls; k++) outcomes += String(this.#ring[(start + k) % this.size]);
    return { kind: 'count', outcomes };
  }

  importWindow(snapshot: BreakerWindowSnapshot): void {
    this.reset();
    if (snapshot.kind !== 'count') return;
    const outcomes = (snapshot as { outcomes: string }).outcomes;
    // A different size keeps the most recent calls that fit.
    for (let k = Math.max(0, outcomes.length - this.size); k < outcomes.length; k++) this.#push(outcomes.charCodeAt(k) - 48);
  }
}

/** Failure (and slow-call) rate over the last `size` calls. */
export function countWindow(options: CountWindowOptions = {}): TripStrategyFactory {
  const size = positiveInt('countWindow.size', options.size, 100);
  if (size > 10_000_000) throw new InvalidOptionsError(`countWindow.size must be at most 10 000 000, got ${size}`);
  const minimumCalls = nonNegativeInt('countWindow.minimumCalls', options.minimumCalls, size);
  if (minimumCalls > size) {
    throw new InvalidOptionsError(`countWindow.minimumCalls (${minimumCalls}) must be <= size (${size}); the window never holds more than size calls`);
  }
  const rates = rateSettings('countWindow', options);
  return {
    kind: 'count',
    options: { size, minimumCalls, ...describeRates(rates) },
    create: () => new CountWindow(size, minimumCalls, rates),
  };
}

// ---------------------------------------------------------------------------------------------
// Time window: calls of the last `windowMs`, in buckets

export interface TimeWindowOptions extends BreakerRateOptions {
  /** Length of the window in ms. Default 10 000. */
  windowMs?: number;
  /** Buckets the window is divided into (its time resolution). Default 10, at most 1000. */
  buckets?: number;
  /** Calls needed in the window before the rate is judged. Default 20. 0 behaves as 1. */
  minimumCalls?: number;
}

/**
 * Per-bucket counters plus running totals. Buckets rotate lazily by clock time when a call
 * is recorded or the window is read: each elapsed bucket is cleared once, so the cost is
 * O(1) amortised (at most `buckets` clears per call after a long idle gap) and independent
 * of how many calls the window holds. No timers.
 *
 * The window holds the current bucket and the `buckets − 1` before it, so a call is
 * forgotten between `windowMs − bucketMs` and `windowMs` after it was recorded.
 */
class TimeWindow implements TripStrategy {
  readonly kind = 'time';
  readonly slowCallDurationMs: number | undefined;
  readonly usesTime = true;
  readonly #calls: Float64Array;
  readonly #failures: Float64Array;
  readonly #slow: Float64Array;
  readonly #slowMs: number;
  /** Index (time / bucketMs) of the newest bucket; -Infinity before the first call. */
  #head = -Infinity;
  /** Start of the bucket after the head: until then, recording needs no rotation (no division). */
  #nextBucketAt = -Infinity;
  #totalCalls = 0;
  #totalFailures = 0;
  #totalSlow = 0;

  constructor(
    private readonly bucketMs: number,
    private readonly buckets: number,
    private readonly minimumCalls: number,
    private readonly rates: RateSettings,
  ) {
    this.#calls = new Float64Array(buckets);
    this.#failures = new Float64Array(buckets);
    this.#slow = new Float64Array(buckets);
    this.slowCallDurationMs = rates.slowCallDurationMs;
    this.#slowMs = rates.slowCallDurationMs ?? Infinity;
  }

  #slot(index: number): number {
    const s = index % this.buckets;
    return s < 0 ? s + this.buckets : s;
  }

  /** Moves the head to `now`'s bucket, clearing the buckets that fell out of the window. */
  #rotate(now: number): void {
    if (now < this.#nextBucketAt) return; // the head bucket (or the clock went back: keep using the head)
    const index = Math.floor(now / this.bucketMs);
    if (!(index > this.#head)) return; // float edge: now is on the boundary of the head bucket
    const steps = Math.min(index - this.#head, this.buckets);
    for (let k = 0; k < steps; k++) {
      const s = this.#slot(index - k);
      this.#totalCalls -= this.#calls[s]!;
      this.#totalFailures -= this.#failures[s]!;
      this.#totalSlow -= this.#slow[s]!;
      this.#calls[s] = this.#failures[s] = this.#slow[s] = 0;
    }
    this.#head = index;
    this.#nextBucketAt = (index + 1) * this.bucketMs;
  }

  record(success: boolean, durationMs: number, now: number): void {
    this.#rotate(now);
    this.#add(this.#slot(this.#head), 1, success ? 0 : 1, durationMs > this.#slowMs ? 1 : 0);
  }

  #add(s: number, calls: number, failures: number, slow: number): void {
    this.#calls[s]! += calls;
    this.#failures[s]! += failures;
    this.#slow[s]! += slow;
    this.#totalCalls += calls;
    this.#totalFailures += failures;
    this.#totalSlow += slow;
  }

  shouldTrip(now: number): boolean {
    this.#rotate(now);
    return rateTrips(this.#totalCalls, this.#totalFailures, this.#totalSlow, this.minimumCalls, this.rates.failureRateThreshold, this.rates.slowCallRateThreshold);
  }

  reset(): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#slow.fill(0);
    this.#head = -Infinity;
    this.#nextBucketAt = -Infinity;
    this.#totalCalls = this.#totalFailures = this.#totalSlow = 0;
  }

  stats(now: number): BreakerWindowStats {
    this.#rotate(now);
    const calls = this.#totalCalls;
    return {
      calls,
      failures: this.#totalFailures,
      slowCalls: this.#totalSlow,
      failureRate: rate(this.#totalFailures, calls),
      slowCallRate: rate(this.#totalSlow, calls),
    };
  }

  exportWindow(now: number): BreakerWindowSnapshot {
    this.#rotate(now);
    const buckets: Array<[number, number, number, number]> = [];
    if (this.#head !== -Infinity) {
      for (let index = this.#head - this.buckets + 1; index <= this.#head; index++) {
        const s = this.#slot(index);
        if (this.#calls[s]! > 0) buckets.push([index * this.bucketMs, this.#calls[s]!, this.#failures[s]!, this.#slow[s]!]);
      }
    }
    return { kind: 'time', bucketMs: this.bucketMs, buckets };
  }

  importWindow(snapshot: BreakerWindowSnapshot, now: number): void {
    this.reset();
    if (snapshot.kind !== 'time') return;
    this.#rotate(now);
    // Buckets are placed by their start time, so a snapshot taken with another bucket size
    // still lands in the right part of this window (at this window's resolution).
    for (const [start, calls, failures, slow] of (snapshot as { buckets: Array<[number, number, number, number]> }).buckets) {
      const index = Math.floor(start / this.bucketMs);
      if (index > this.#head || index <= this.#head - this.buckets) continue; // outside the window now
      this.#add(this.#slot(index), calls, failures, slow);
    }
  }
}

/** Failure (and slow-call) rate over the last `windowMs` of calls, in `buckets` buckets. */
export function timeWindow(options: TimeWindowOptions = {}): TripStrategyFactory {
  const windowMs = positive('timeWindow.windowMs', options.windowMs, 10_000);
  const buckets = positiveInt('timeWindow.buckets', options.buckets, 10);
  if (buckets > 1000) throw new InvalidOptionsError(`timeWindow.buckets must be at most 1000, got ${buckets}`);
  const minimumCalls = nonNegativeInt('timeWindow.minimumCalls', options.minimumCalls, 20);
  const rates = rateSettings('timeWindow', options);
  const bucketMs = windowMs / buckets;
  return {
    kind: 'time',
    options: { windowMs, buckets, minimumCalls, ...describeRates(rates) },
    create: () => new TimeWindow(bucketMs, buckets, minimumCalls, rates),
  };
}
