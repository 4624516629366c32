import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import type { PolicyIdentity } from '../core/telemetry.js';
import type { BreakerSnapshot, CircuitState, CircuitStateKind } from './snapshot.js';
import type { BreakerWindowStats, TripStrategyFactory } from './strategies.js';

// The circuit breaker's options, events and stats: what a user writes and reads (breaker.ts holds the behaviour).

export interface HalfOpenOptions {
  /** Probes allowed in flight at once; every other call is rejected at once (no queueing). Default 1. */
  maxProbes?: number;
  /** Count mode (default): probe successes that close the breaker. One failed probe reopens it. Default `maxProbes`. */
  successThreshold?: number;
  /**
   * Rate mode, when set: judge a sample of `sampleSize` probes and reopen when
   * failures / sampleSize >= this (0 < x <= 1), close otherwise. Decided as soon as the
   * outcome is certain, so a clearly dead dependency gets no more probes than needed.
   */
  failureRateThreshold?: number;
  /** Rate mode: probes in the sample. Default `maxProbes`. */
  sampleSize?: number;
  /**
   * If no probe has started or settled for this long while every probe slot is taken (a probe hangs,
   * e.g. no timeout inside the breaker), the next rejected call reopens the breaker (reason
   * `probe-timeout`), so a hung probe cannot keep it half-open for ever. It also bounds the
   * `retryAfterMs` of half-open rejections: set it near the probe's own timeout. Default 30 000.
   */
  maxWaitMs?: number;
}

export interface OpenBackoffOptions {
  /** Each consecutive trip without a successful close multiplies the open duration by this. Default 2. */
  factor?: number;
  /** Cap on the open duration. Default max(openMs, 300 000). */
  maxMs?: number;
}

/** `In`: the results `isResultFailure` reads (the operation must return one); inferred from its parameter. */
export interface CircuitBreakerOptions<In = unknown> extends PolicyIdentity {
  /** Shown in errors, events and `describe()`; a named breaker joins the policy registry. Default 'circuit-breaker'. */
  name?: string;
  /** When to open: `consecutive()`, `countWindow()`, `timeWindow()`, or your own. Default `consecutive({ threshold: 5 })`. */
  strategy?: TripStrategyFactory;
  /** How long the breaker stays open before letting probes through. 0 probes on the next call. Default 30 000. */
  openMs?: number;
  /** Grow the open duration across repeated trips (`true` for the defaults). Off by default. */
  openBackoff?: boolean | OpenBackoffOptions;
  halfOpen?: HalfOpenOptions;
  /**
   * Which errors count against the dependency. Default `isDependencyFailure`: all but HTTP 4xx
   * other than 408/429. Local Bulwark rejections (bulkhead full, rate limited, shed, circuit
   * open, deadline already expired) and caller aborts are always ignored, whatever this says.
   * Errors that are not failures count as successes (the dependency answered).
   */
  isFailure?: (error: unknown) => boolean;
  /**
   * Counts some results as failures without turning them into errors, e.g.
   * `(r: Response) => r.status >= 500`. The parameter's type is the policy's `In`: the operations
   * it runs must return that type.
   */
  isResultFailure?: (result: In) => boolean;
  /** Start from an exported snapshot (hydration). A malformed one fails with `INVALID_OPTIONS`. */
  initialState?: BreakerSnapshot;
  clock?: Clock;
  /** Jitter of the half-open `retryAfterMs` (so rejected clients come back spread out). Default Math.random. */
  random?: Random;
}

/** Why the state changed. */
export type TransitionReason =
  /** closed → open: the strategy's threshold was crossed. */
  | 'threshold'
  /** open → half-open: the open duration elapsed. */
  | 'open-elapsed'
  /** half-open → open. */
  | 'probe-failed'
  /** half-open → open: every probe slot was taken and none settled within `halfOpen.maxWaitMs`. */
  | 'probe-timeout'
  /** half-open → closed. */
  | 'probes-succeeded'
  | 'isolated'
  | 'reset'
  | 'imported';

export interface BreakerStateChange {
  breaker: string;
  from: CircuitStateKind;
  to: CircuitStateKind;
  reason: TransitionReason;
  at: number;
  state: CircuitState;
  /** The window that tripped the breaker (reason 'threshold'). */
  window?: BreakerWindowStats;
}

export interface BreakerRejection {
  breaker: string;
  state: 'open' | 'half-open' | 'isolated';
  retryAfterMs: number;
}

export interface BreakerCallOutcome {
  breaker: string;
  /** Only measured when a slow-call threshold is configured (the clock is not read otherwise). */
  durationMs: number | undefined;
  /** The error (or the result judged a failure by `isResultFailure`). */
  failure?: unknown;
  /** The call was a half-open probe. */
  probe: boolean;
}

export interface BreakerStats {
  name: string;
  state: CircuitStateKind;
  /** What the trip strategy's window holds now (while open: the calls that tripped it; it restarts empty on close). */
  window: BreakerWindowStats;
  /** Times the breaker opened (a trip, or a failed or hung probe reopening it), over its lifetime. */
  trips: number;
  /** Opens in the current episode, without a successful close in between (0 when closed); drives `openBackoff`. */
  consecutiveTrips: number;
  probesInFlight: number;
  /** Lifetime counters. */
  successes: number;
  failures: number;
  ignored: number;
  rejections: number;
}
