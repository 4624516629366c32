import { rejectAborted } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import { CircuitOpenError, InvalidOptionsError } from '../core/errors.js';
import { BasePolicy, NOT_FUSED, type Next, type PolicyDescription } from '../core/policy.js';
import { systemRandom, type Random } from '../core/random.js';
import { errorCode, type PolicyTelemetry } from '../core/telemetry.js';
import { REQUIRED, fn, nonNegative, positive, positiveInt, ratio } from '../core/validate.js';
import { isDependencyFailure, isIgnoredOutcome } from './classify.js';
import { parseSnapshot, type BreakerSnapshot, type CircuitState, type SnapshotState } from './snapshot.js';
import { consecutive, type TripStrategy, type TripStrategyFactory, type BreakerWindowStats } from './strategies.js';
import type {
  BreakerCallOutcome, BreakerRejection, BreakerStateChange, BreakerStats, CircuitBreakerOptions, TransitionReason,
} from './types.js';

export type {
  HalfOpenOptions, OpenBackoffOptions, CircuitBreakerOptions, TransitionReason, BreakerStateChange, BreakerRejection,
  BreakerCallOutcome, BreakerStats,
} from './types.js';

const SUCCESS = 0;
const FAILURE = 1;
const IGNORED = 2;
type Outcome = typeof SUCCESS | typeof FAILURE | typeof IGNORED;

interface HalfOpen {
  kind: 'half-open';
  since: number;
  trips: number;
  inFlight: number;
  successes: number;
  failures: number;
  /** Probes admitted in this half-open period (rate mode caps it at the sample size). */
  started: number;
  /** When a probe was last admitted or settled (or the period began): the `maxWaitMs` clock. */
  progressAt: number;
}

/** The breaker's own state: the public union, with half-open's bookkeeping mutable. */
type State = Exclude<CircuitState, { kind: 'half-open' }> | HalfOpen;

type PermitSettle = (epoch: number, start: number, outcome: Outcome | 'classify', detail: unknown) => void;

/**
 * Manual use without `execute` (e.g. a batched Redis call): `tryAcquire()` returns a permit,
 * or the rejection as a value. Settle the permit exactly once; later calls are ignored.
 */
export class BreakerPermit {
  #settled = false;
  readonly #settle: PermitSettle;
  readonly #epoch: number;
  readonly #start: number;

  /** @internal Permits come from `CircuitBreakerPolicy.tryAcquire()`. */
  constructor(settle: PermitSettle, epoch: number, start: number) {
    this.#settle = settle;
    this.#epoch = epoch;
    this.#start = start;
  }

  /** The dependency answered well. */
  success(): void {
    this.#done(SUCCESS, undefined);
  }

  /** The dependency failed (counted unconditionally). */
  failure(error?: unknown): void {
    this.#done(FAILURE, error);
  }

  /** Judges `error` as `execute` would (`isFailure`, local rejections ignored). */
  error(error: unknown): void {
    this.#done('classify', error);
  }

  /** The call never reached the dependency or was abandoned: frees a probe slot, judges nothing. */
  ignore(): void {
    this.#done(IGNORED, undefined);
  }

  #done(outcome: Outcome | 'classify', detail: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#settle(this.#epoch, this.#start, outcome, detail);
  }
}

/**
 * A circuit breaker (Michael Nygard, *Release It!*; Martin Fowler, "CircuitBreaker", 2014): stops
 * calling a dependency that is failing, lets a bounded number of probes test it after an open
 * period, and closes when they succeed.
 *
 * Hot path: in the closed state a call costs a state check, the await of `next`, and an O(1)
 * window update; the clock is read only when the strategy is time-based or a slow-call
 * threshold is set. State changes are lazy (checked when a call arrives): no timers at all.
 *
 * Every state change starts a new epoch. A call records its outcome only if the epoch it was
 * admitted in is still current, so a call that started before a trip (or before `reset()`)
 * can never be mistaken for a probe, and stale results never leak into a fresh window.
 */
export class CircuitBreakerPolicy<In = unknown> extends BasePolicy<never, In> {
  readonly kind = 'circuit-breaker';
  override readonly name: string;
  readonly openMs: number;
  readonly #strategyFactory: TripStrategyFactory;
  readonly #strategy: TripStrategy;
  readonly #backoff: { factor: number; maxMs: number } | undefined;
  readonly #maxProbes: number;
  readonly #successThreshold: number;
  /** Rate mode: reopen threshold; NaN in count mode. */
  readonly #probeFailureRate: number;
  /** Rate mode: the sample size; Infinity in count mode (probes are only limited in concurrency). */
  readonly #probeLimit: number;
  readonly #maxWaitMs: number;
  readonly #isFailure: (error: unknown) => boolean;
  /** Typed by `In` in the options; `run` only takes operations whose results are `In`. */
  readonly #isResultFailure: ((result: unknown) => boolean) | undefined;
  /** Measure call durations (a slow-call threshold is set). */
  readonly #timed: boolean;
  /** Read the clock when recording (time windows, or durations). */
  readonly #recordNeedsNow: boolean;
  readonly #slowMs: number;
  readonly #random: Random;

  #state: State;
  #epoch = 0;
  #successes = 0;
  #failures = 0;
  #ignored = 0;
  #rejections = 0;
  #trips = 0;

  readonly #onStateChange = this.telemetry.emitter<BreakerStateChange>('state-change', (e) => ({
    attributes: { from: e.from, to: e.to, reason: e.reason },
  }));
  readonly #onReject = this.telemetry.emitter<BreakerRejection>('reject', (e) => ({
    outcome: 'rejected',
    attributes: { state: e.state, retryAfterMs: e.retryAfterMs },
  }));
  readonly #onSuccess = this.telemetry.emitter<BreakerCallOutcome>('success', (e) => ({
    outcome: 'success',
    durationMs: e.durationMs,
    attributes: { probe: e.probe },
  }));
  readonly #onFailure = this.telemetry.emitter<BreakerCallOutcome>('failure', (e) => ({
    outcome: 'failure',
    durationMs: e.durationMs,
    attributes: { probe: e.probe, code: errorCode(e.failure) },
  }));
  /** Every state change: from, to, reason, time. */
  readonly onStateChange = this.#onStateChange.event;
  /** A call rejected without reaching the dependency. */
  readonly onReject = this.#onReject.event;
  readonly onSuccess = this.#onSuccess.event;
  readonly onFailure = this.#onFailure.event;

  /** `telemetry` is internal: a keyed breaker's breakers report through the keyed breaker's stream. */
  constructor(options: CircuitBreakerOptions<In> = {}, telemetry?: PolicyTelemetry) {
    super(options.clock, options, telemetry);
    if (options.name !== undefined && typeof options.name !== 'string') throw new InvalidOptionsError('breaker.name must be a string');
    this.name = options.name ?? 'circuit-breaker';
    const strategy = options.strategy ?? consecutive();
    if (typeof strategy !== 'object' || strategy === null || typeof strategy.create !== 'function') {
      throw new InvalidOptionsError('breaker.strategy must come from consecutive(), countWindow(), timeWindow() (or have create())');
    }
    this.#strategyFactory = strategy;
    this.#strategy = strategy.create();
    this.openMs = nonNegative('breaker.openMs', options.openMs, 30_000);
    this.#backoff = backoffOptions(options.openBackoff, this.openMs);

    const halfOpen = options.halfOpen ?? {};
    this.#maxProbes = positiveInt('breaker.halfOpen.maxProbes', halfOpen.maxProbes, 1);
    if (halfOpen.failureRateThreshold !== undefined) {
      if (halfOpen.successThreshold !== undefined) {
        throw new InvalidOptionsError('breaker.halfOpen: successThreshold (count mode) and failureRateThreshold (rate mode) exclude each other');
      }
      this.#probeFailureRate = ratio('breaker.halfOpen.failureRateThreshold', halfOpen.failureRateThreshold, REQUIRED);
      if (this.#probeFailureRate === 0) throw new InvalidOptionsError('breaker.halfOpen.failureRateThreshold must be > 0');
      this.#probeLimit = positiveInt('breaker.halfOpen.sampleSize', halfOpen.sampleSize, this.#maxProbes);
      this.#successThreshold = this.#probeLimit;
    } else {
      if (halfOpen.sampleSize !== undefined) throw new InvalidOptionsError('breaker.halfOpen.sampleSize needs failureRateThreshold (rate mode)');
      this.#probeFailureRate = NaN;
      this.#probeLimit = Infinity;
      this.#successThreshold = positiveInt('breaker.halfOpen.successThreshold', halfOpen.successThreshold, this.#maxProbes);
    }
    this.#maxWaitMs = positive('breaker.halfOpen.maxWaitMs', halfOpen.maxWaitMs, 30_000);

    this.#isFailure = fn('breaker.isFailure', options.isFailure, isDependencyFailure);
    this.#isResultFailure = fn('breaker.isResultFailure', options.isResultFailure) as ((result: unknown) => boolean) | undefined;
    this.#random = fn('breaker.random', options.random, systemRandom, 'returning [0, 1)');

    const slow = this.#strategy.slowCallDurationMs;
    this.#timed = slow !== undefined;
    this.#slowMs = slow ?? Infinity;
    this.#recordNeedsNow = this.#timed || this.#strategy.usesTime;

    const now = this.clock.now();
    this.#state = { kind: 'closed', since: now };
    if (options.initialState !== undefined) {
      let snapshot: BreakerSnapshot;
      try {
        snapshot = parseSnapshot(options.initialState);
      } catch (error) {
        throw new InvalidOptionsError(`breaker.initialState: ${(error as Error).message}`);
      }
      this.#restore(snapshot, now, false);
    }
  }

  // ------------------------------------------------------------------------------ calls

  run<T extends In>(context: CallContext, next: Next<T>): Promise<T> {
    // Before admission: an aborted call must not spend a half-open probe.
    if (context.aborted) return rejectAborted(context);
    if (this.#state.kind === 'closed') return this.#call(context, next, this.#epoch);
    const admitted = this.#admitNotClosed();
    return typeof admitted === 'number' ? this.#call(context, next, admitted) : Promise.reject(admitted);
  }

  /**
   * @internal Pipeline fast path (see FusablePolicy): a closed breaker that needs no call
   * duration admits at once; the ticket is the epoch the call ran in.
   */
  fusedEnter(context: CallContext): unknown {
    return this.#state.kind === 'closed' && !this.#timed && !context.aborted ? this.#epoch : NOT_FUSED;
  }

  /** @internal */
  fusedExitValue(epoch: unknown, value: unknown): void {
    this.#settleValue(epoch as number, 0, value);
  }

  /** @internal */
  fusedExitError(epoch: unknown, error: unknown, context: CallContext): undefined {
    this.#settle(epoch as number, 0, this.#classify(error, context), error);
    return undefined;
  }

  /**
   * Asks for permission to make one call, for code that does not fit `execute`. Returns a
   * permit to settle when the call ends, or the `CircuitOpenError` (not thrown).
   */
  tryAcquire(): BreakerPermit | CircuitOpenError {
    const admitted = this.#state.kind === 'closed' ? this.#epoch : this.#admitNotClosed();
    if (typeof admitted !== 'number') return admitted;
    return new BreakerPermit(this.#settlePermit, admitted, this.#timed ? this.clock.now() : 0);
  }

  #call<T>(context: CallContext, next: Next<T>, epoch: number): Promise<T> {
    const start = this.#timed ? this.clock.now() : 0;
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      work = Promise.reject(error);
    }
    // `then` rather than an async frame: the success path is the hot one.
    return work.then(
      (result) => {
        this.#settleValue(epoch, start, result);
        return result;
      },
      (error) => {
        this.#settle(epoch, start, this.#classify(error, context), error);
        throw error;
      },
    );
  }

  /** A call returned: a success, unless `isResultFailure` says the result is a failure. */
  #settleValue(epoch: number, start: number, result: unknown): void {
    if (this.#isResultFailure === undefined || !this.#resultFails(result)) this.#settle(epoch, start, SUCCESS, undefined);
    else this.#settle(epoch, start, FAILURE, result);
  }

  /** Admission outside the closed state: the epoch to run in, or the rejection. */
  #admitNotClosed(): number | CircuitOpenError {
    const now = this.clock.now();
    const state = this.#refresh(now);
    switch (state.kind) {
      case 'closed':
        return this.#epoch;
      case 'half-open':
        if (state.inFlight < this.#maxProbes && state.started < this.#probeLimit) {
          state.inFlight++;
          state.started++;
          state.progressAt = now;
          return this.#epoch;
        }
        if (state.inFlight > 0 && now - state.progressAt >= this.#maxWaitMs) {
          const open = this.#open(now, state.trips + 1, 'probe-timeout');
          return this.#reject('open', open.reopensAt - now);
        }
        return this.#reject('half-open', this.#halfOpenRetryAfter(state, now));
      case 'open':
        return this.#reject('open', state.reopensAt - now);
      case 'isolated':
        // No reopen time exists; the base open duration is a finite hint for Retry-After.
        return this.#reject('isolated', this.openMs);
    }
  }

  /**
   * When a client rejected during half-open should come back. Not 0: that would send every
   * rejected client back at once while the probe is still running. The probes' verdict is due,
   * at the latest, when the breaker stops waiting for them (`maxWaitMs` after their last
   * progress); a failed probe reopens it for the open duration, so neither bound is worth
   * exceeding. Equal jitter (half fixed, half random) spreads the returns over the second half of
   * that window, and keeps the hint above 0.
   */
  #halfOpenRetryAfter(state: HalfOpen, now: number): number {
    const verdictDueIn = state.progressAt + this.#maxWaitMs - now; // > 0, or the breaker would have reopened
    const openFor = this.#openDuration(state.trips + 1); // what a failed probe would bring back
    const window = openFor > 0 && openFor < verdictDueIn ? openFor : verdictDueIn;
    // No finite bound (openMs 0, maxWaitMs Infinity): a short hint rather than "never".
    return Math.max(1, (Number.isFinite(window) ? window : 1000) * (0.5 + 0.5 * this.#random()));
  }

  #reject(state: 'open' | 'half-open' | 'isolated', retryAfterMs: number): CircuitOpenError {
    this.#rejections++;
    if (this.#onReject.active) this.#onReject.emit({ breaker: this.name, state, retryAfterMs });
    return new CircuitOpenError(this.name, retryAfterMs, state);
  }

  #classify(error: unknown, context: CallContext | undefined): Outcome {
    if (isIgnoredOutcome(error, context)) return IGNORED;
    try {
      return this.#isFailure(error) ? FAILURE : SUCCESS;
    } catch (predicateError) {
      warn('isFailure', predicateError);
      return FAILURE;
    }
  }

  #resultFails(result: unknown): boolean {
    try {
      return this.#isResultFailure!(result);
    } catch (predicateError) {
      warn('isResultFailure', predicateError);
      return true;
    }
  }

  readonly #settlePermit: PermitSettle = (epoch, start, outcome, detail) => {
    this.#settle(epoch, start, outcome === 'classify' ? this.#classify(detail, undefined) : outcome, detail);
  };

  /** One admitted call ended. Only calls of the current epoch change the breaker. */
  #settle(epoch: number, start: number, outcome: Outcome, detail: unknown): void {
    if (outcome === SUCCESS) this.#successes++;
    else if (outcome === FAILURE) this.#failures++;
    else this.#ignored++;
    const current = epoch === this.#epoch;
    const state = this.#state;
    if (current && state.kind === 'closed') {
      if (outcome !== IGNORED) {
        const now = this.#recordNeedsNow ? this.clock.now() : 0;
        const strategy = this.#strategy;
        strategy.record(outcome === SUCCESS, this.#timed ? now - start : 0, now);
        if (strategy.shouldTrip(now)) this.#trip(now);
      }
      if (outcome !== IGNORED && (this.#onSuccess.active || this.#onFailure.active)) this.#emitOutcome(outcome, start, detail, false);
      return;
    }
    if (current && state.kind === 'half-open') this.#settleProbe(state, start, outcome);
    if (outcome !== IGNORED && (this.#onSuccess.active || this.#onFailure.active)) this.#emitOutcome(outcome, start, detail, current);
  }

  #settleProbe(state: HalfOpen, start: number, outcome: Outcome): void {
    const now = this.clock.now();
    state.inFlight--;
    state.progressAt = now;
    if (outcome === IGNORED) {
      state.started--; // the sample slot is free again: this probe proved nothing
      return;
    }
    // A probe that succeeded slowly says the dependency is still sick.
    const ok = outcome === SUCCESS && !(now - start > this.#slowMs);
    if (ok) state.successes++;
    else state.failures++;
    if (Number.isNaN(this.#probeFailureRate)) {
      if (!ok) this.#open(now, state.trips + 1, 'probe-failed');
      else if (state.successes >= this.#successThreshold) this.#close(now, 'probes-succeeded');
      return;
    }
    // Rate mode: decide as soon as the sample's verdict cannot change.
    const sample = this.#probeLimit;
    if (state.failures / sample >= this.#probeFailureRate) this.#open(now, state.trips + 1, 'probe-failed');
    else if ((sample - state.successes) / sample < this.#probeFailureRate) this.#close(now, 'probes-succeeded');
  }

  #emitOutcome(outcome: Outcome, start: number, detail: unknown, probe: boolean): void {
    const durationMs = this.#timed ? this.clock.now() - start : undefined;
    if (outcome === SUCCESS) this.#onSuccess.emit({ breaker: this.name, durationMs, probe });
    else this.#onFailure.emit({ breaker: this.name, durationMs, failure: detail, probe });
  }

  // ------------------------------------------------------------------------- transitions

  /** Applies the time-driven transition (open → half-open) lazily. */
  #refresh(now: number): State {
    const state = this.#state;
    if (state.kind === 'open' && now >= state.reopensAt) {
      this.#transition(halfOpenState(now, state.trips), 'open-elapsed', now);
    }
    return this.#state;
  }

  #trip(now: number): void {
    if (!this.#recordNeedsNow) now = this.clock.now();
    const window = this.#onStateChange.active ? this.#strategy.stats(now) : undefined;
    this.#open(now, 1, 'threshold', window);
  }

  #open(now: number, trips: number, reason: TransitionReason, window?: BreakerWindowStats): { reopensAt: number } {
    this.#trips++;
    const state: State = { kind: 'open', openedAt: now, reopensAt: now + this.#openDuration(trips), trips };
    this.#transition(state, reason, now, window);
    return state;
  }

  #close(now: number, reason: TransitionReason): void {
    this.#strategy.reset();
    this.#transition({ kind: 'closed', since: now }, reason, now);
  }

  #openDuration(trips: number): number {
    const backoff = this.#backoff;
    if (backoff === undefined || trips <= 1) return this.openMs;
    return Math.min(backoff.maxMs, this.openMs * backoff.factor ** (trips - 1));
  }

  #transition(next: State, reason: TransitionReason, now: number, window?: BreakerWindowStats): void {
    const from = this.#state.kind;
    this.#state = next;
    this.#epoch++;
    if (this.#onStateChange.active) {
      this.#onStateChange.emit({ breaker: this.name, from, to: next.kind, reason, at: now, state: publicState(next), ...(window ? { window } : {}) });
    }
  }

  // ------------------------------------------------------------------------ manual control

  /** Forces the breaker open until `reset()`: every call is rejected (`state: 'isolated'`). */
  isolate(): void {
    const now = this.clock.now();
    this.#transition({ kind: 'isolated', since: now }, 'isolated', now);
  }

  /** Back to closed with an empty window and no trip history. */
  reset(): void {
    this.#close(this.clock.now(), 'reset');
  }

  /** The current state (a copy). Reading it applies a due open → half-open transition. */
  get state(): CircuitState {
    return publicState(this.#refresh(this.clock.now()));
  }

  stats(): BreakerStats {
    const now = this.clock.now();
    const state = this.#refresh(now);
    return {
      name: this.name,
      state: state.kind,
      window: this.#strategy.stats(now),
      trips: this.#trips,
      consecutiveTrips: state.kind === 'open' || state.kind === 'half-open' ? state.trips : 0,
      probesInFlight: state.kind === 'half-open' ? state.inFlight : 0,
      successes: this.#successes,
      failures: this.#failures,
      ignored: this.#ignored,
      rejections: this.#rejections,
    };
  }

  // ------------------------------------------------------------------------- hydration

  /** A JSON-serialisable snapshot of the state and the window. */
  exportState(): BreakerSnapshot {
    const now = this.clock.now();
    const state = this.#refresh(now);
    let portable: SnapshotState;
    switch (state.kind) {
      case 'closed': portable = { kind: 'closed' }; break;
      case 'open': portable = { kind: 'open', openedAt: state.openedAt, reopensAt: state.reopensAt, trips: state.trips }; break;
      case 'half-open': portable = { kind: 'half-open', trips: state.trips }; break;
      case 'isolated': portable = { kind: 'isolated', since: state.since }; break;
    }
    return { version: 1, name: this.name, at: now, state: portable, window: this.#strategy.exportWindow(now) };
  }

  /**
   * Restores a snapshot (from `exportState()`, possibly of another process). Throws
   * `InvalidSnapshotError` (code `INVALID_INPUT`) for malformed input and changes nothing
   * then. Calls in flight keep running but no longer count (their epoch has passed).
   */
  importState(snapshot: unknown): void {
    this.#restore(parseSnapshot(snapshot), this.clock.now(), true);
  }

  #restore(snapshot: BreakerSnapshot, now: number, emit: boolean): void {
    // A window from another kind of strategy cannot be translated: start it empty.
    if (snapshot.window.kind === this.#strategy.kind) this.#strategy.importWindow(snapshot.window, now);
    else this.#strategy.reset();
    const s = snapshot.state;
    let next: State;
    switch (s.kind) {
      case 'closed': next = { kind: 'closed', since: now }; break;
      case 'open': next = { kind: 'open', openedAt: s.openedAt, reopensAt: s.reopensAt, trips: s.trips }; break;
      case 'half-open': next = halfOpenState(now, s.trips); break; // its probes stayed with the exporter
      case 'isolated': next = { kind: 'isolated', since: s.since }; break;
    }
    if (emit) this.#transition(next, 'imported', now);
    else {
      this.#state = next;
      this.#epoch++;
    }
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      name: this.name,
      options: {
        strategy: { kind: this.#strategyFactory.kind, ...this.#strategyFactory.options },
        openMs: this.openMs,
        openBackoff: this.#backoff ?? false,
        halfOpen: Number.isNaN(this.#probeFailureRate)
          ? { maxProbes: this.#maxProbes, successThreshold: this.#successThreshold, maxWaitMs: this.#maxWaitMs }
          : { maxProbes: this.#maxProbes, sampleSize: this.#probeLimit, failureRateThreshold: this.#probeFailureRate, maxWaitMs: this.#maxWaitMs },
      },
    };
  }
}

function halfOpenState(now: number, trips: number): HalfOpen {
  return { kind: 'half-open', since: now, trips, inFlight: 0, successes: 0, failures: 0, started: 0, progressAt: now };
}

function publicState(state: State): CircuitState {
  if (state.kind !== 'half-open') return { ...state };
  const { since, trips, inFlight, successes, failures } = state;
  return { kind: 'half-open', since, trips, inFlight, successes, failures };
}

function backoffOptions(value: CircuitBreakerOptions['openBackoff'], openMs: number): { factor: number; maxMs: number } | undefined {
  if (value === undefined || value === false) return undefined;
  if (value !== true && (typeof value !== 'object' || value === null)) throw new InvalidOptionsError('breaker.openBackoff must be true, false or { factor, maxMs }');
  const options = value === true ? {} : value;
  const factor = positive('breaker.openBackoff.factor', options.factor, 2);
  if (factor < 1) throw new InvalidOptionsError(`breaker.openBackoff.factor must be >= 1, got ${factor}`);
  const maxMs = nonNegative('breaker.openBackoff.maxMs', options.maxMs, Math.max(openMs, 300_000));
  if (maxMs < openMs) throw new InvalidOptionsError(`breaker.openBackoff.maxMs (${maxMs}) must be >= openMs (${openMs})`);
  return { factor, maxMs };
}

function warn(what: string, error: unknown): void {
  process.emitWarning(`bulwark: breaker ${what} threw (counted as a failure): ${error instanceof Error ? error.message : String(error)}`);
}

/** Builds a circuit breaker. See `CircuitBreakerOptions` for the defaults. */
export function circuitBreaker<In = unknown>(options: CircuitBreakerOptions<In> = {}): CircuitBreakerPolicy<In> {
  return new CircuitBreakerPolicy<In>(options);
}
