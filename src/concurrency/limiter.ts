import { rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { hasCode, InvalidOptionsError, ShedError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { fn, nonNegative } from '../core/validate.js';
import type { LimitAlgorithm, LimitSample, LimitState } from './limits/types.js';
import { SampleWindow, type SampleWindowOptions } from './sample-window.js';

/** How a finished request feeds the limit: a normal sample, a drop, or nothing. */
export type SampleOutcome = 'success' | 'dropped' | 'ignore';

export interface AdaptiveLimiterOptions<S extends LimitState = LimitState> {
  /** The algorithm: `aimd(...)`, `vegas(...)`, `gradient2(...)` or your own pure update. */
  limit: LimitAlgorithm<S>;
  /**
   * Sampling window (default: ≥ 10 samples and ≥ 1000 ms, average RTT). `false` feeds every
   * request straight to the algorithm (per-request AIMD).
   */
  window?: SampleWindowOptions | false;
  /**
   * Policy form only: how a failed call counts. Default: `ABORTED` (the caller left) is
   * ignored, every other error (timeouts, overload rejections, failures) is a drop.
   */
  classify?: (error: unknown) => SampleOutcome;
  /** Rejection hint. Default: the smoothed observed RTT (≥ 1 ms), i.e. about when a slot frees. */
  retryAfterMs?: number;
  clock?: Clock;
  name?: string;
}

/** A refused acquisition: a value, never an exception, on the hot path. */
export interface LimiterRejection {
  readonly acquired: false;
  readonly reason: 'limit';
  readonly limit: number;
  readonly inflight: number;
  readonly retryAfterMs: number;
}

export interface LimitChangeEvent {
  previous: number;
  limit: number;
  /** The (window) sample that moved it. */
  sample: LimitSample;
}

export interface LimiterRejectEvent {
  limit: number;
  inflight: number;
}

export interface AdaptiveLimiterStats {
  limit: number;
  inflight: number;
  acquired: number;
  rejected: number;
  dropped: number;
}

const RECORD = Symbol('record');

/**
 * One admitted request. Call exactly one of `success()`, `dropped()` or `ignore()` when it ends;
 * later calls are no-ops, so a permit can never be released twice.
 */
export class LimiterPermit {
  readonly acquired = true as const;
  #limiter: AdaptiveLimiter<any> | undefined;

  constructor(
    limiter: AdaptiveLimiter<any>,
    /** Clock time when it was admitted. */
    readonly startedAt: number,
    /** In flight when it was admitted, itself included. */
    readonly inflight: number,
  ) {
    this.#limiter = limiter;
  }

  /** It completed normally: its RTT is a sample. */
  success(): void {
    this.#end('success');
  }

  /** It timed out or was rejected downstream: a congestion signal. */
  dropped(): void {
    this.#end('dropped');
  }

  /** It ended in a way that says nothing about capacity (caller cancelled, validation error). */
  ignore(): void {
    this.#end('ignore');
  }

  /** Ends the permit with the given outcome. */
  release(outcome: SampleOutcome): void {
    this.#end(outcome);
  }

  #end(outcome: SampleOutcome): void {
    const limiter = this.#limiter;
    if (limiter === undefined) return;
    this.#limiter = undefined;
    limiter[RECORD](this, outcome);
  }
}

export type LimiterDecision = LimiterPermit | LimiterRejection;

const defaultClassify = (error: unknown): SampleOutcome => (hasCode(error, 'ABORTED') ? 'ignore' : 'dropped');

/**
 * An enforcing adaptive concurrency limiter: admits while in-flight < limit, measures each
 * admitted request's RTT on the injected clock, aggregates samples per window and lets the pure
 * limit algorithm move the limit. Admission is O(1) and allocation-light: a rejection is a
 * plain value (`tryAcquire`) or, in the policy form, a stack-less `ShedError` (code `SHED`,
 * reason 'concurrency-limit') with a retry-after hint.
 *
 * A falling limit never preempts: requests already in flight finish, and new ones are refused
 * until in-flight drops below the new limit. So at every admission, in-flight ≤ limit.
 */
export class AdaptiveLimiter<S extends LimitState = LimitState> extends BasePolicy {
  readonly kind = 'adaptive-concurrency';
  readonly algorithm: LimitAlgorithm<S>;
  readonly #window: SampleWindow | undefined;
  readonly #classify: (error: unknown) => SampleOutcome;
  readonly #retryAfterMs: number | undefined;
  #state: S;
  #limit: number;
  #inflight = 0;
  #rttEwma = 0;
  #acquired = 0;
  #rejected = 0;
  #dropped = 0;

  readonly #onLimitChange = new EventEmitter<LimitChangeEvent>();
  readonly #onReject = new EventEmitter<LimiterRejectEvent>();
  /** Fires when the enforced limit changes. */
  readonly onLimitChange = this.#onLimitChange.event;
  /** Fires when an acquisition is refused. */
  readonly onReject = this.#onReject.event;

  constructor(options: AdaptiveLimiterOptions<S>) {
    super(options.clock, options);
    const algorithm = options?.limit;
    if (!algorithm || typeof algorithm.update !== 'function' || typeof algorithm.initial !== 'function') {
      throw new InvalidOptionsError('adaptiveLimiter needs `limit`: aimd(...), vegas(...), gradient2(...) or a LimitAlgorithm');
    }
    this.algorithm = algorithm;
    this.#state = algorithm.initial();
    this.#limit = this.#state.limit;
    this.#window = options.window === false ? undefined : new SampleWindow(options.window ?? {});
    this.#classify = fn('adaptiveLimiter.classify', options.classify, defaultClassify);
    this.#retryAfterMs = options.retryAfterMs === undefined ? undefined : nonNegative('adaptiveLimiter.retryAfterMs', options.retryAfterMs, 0);
  }

  /** The limit enforced now. */
  get limit(): number {
    return this.#limit;
  }

  get inflight(): number {
    return this.#inflight;
  }

  /** The algorithm's current state (immutable). */
  get state(): S {
    return this.#state;
  }

  stats(): AdaptiveLimiterStats {
    return { limit: this.#limit, inflight: this.#inflight, acquired: this.#acquired, rejected: this.#rejected, dropped: this.#dropped };
  }

  /** Admits one request if in-flight < limit. Never throws. */
  tryAcquire(): LimiterDecision {
    const inflight = this.#inflight;
    if (inflight >= this.#limit) {
      this.#rejected++;
      if (this.#onReject.active) this.#onReject.emit({ limit: this.#limit, inflight });
      return { acquired: false, reason: 'limit', limit: this.#limit, inflight, retryAfterMs: this.#retryAfter() };
    }
    this.#inflight = inflight + 1;
    this.#acquired++;
    return new LimiterPermit(this, this.clock.now(), inflight + 1);
  }

  /** Feeds one sample straight to the algorithm, bypassing the window (tests, simulators, external measurements). */
  observe(sample: LimitSample): void {
    this.#apply(sample);
  }

  /** @internal Called by a permit exactly once. */
  [RECORD](permit: LimiterPermit, outcome: SampleOutcome): void {
    this.#inflight--;
    if (outcome === 'ignore') return;
    const dropped = outcome === 'dropped';
    if (dropped) this.#dropped++;
    const now = this.clock.now();
    const rtt = now - permit.startedAt;
    this.#rttEwma = this.#rttEwma === 0 ? rtt : this.#rttEwma + (rtt - this.#rttEwma) * 0.1;
    if (this.#window === undefined) {
      this.#apply({ rttMs: rtt, inflight: permit.inflight, dropped });
    } else {
      const sample = this.#window.add(now, rtt, permit.inflight, dropped);
      if (sample !== undefined) this.#apply(sample);
    }
  }

  #apply(sample: LimitSample): void {
    const previous = this.#limit;
    this.#state = this.algorithm.update(this.#state, sample);
    this.#limit = this.#state.limit;
    if (this.#limit !== previous && this.#onLimitChange.active) this.#onLimitChange.emit({ previous, limit: this.#limit, sample });
  }

  #retryAfter(): number {
    return this.#retryAfterMs ?? Math.max(1, Math.round(this.#rttEwma));
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context); // before taking a slot
    const decision = this.tryAcquire();
    if (!decision.acquired) return Promise.reject(new ShedError('concurrency-limit', decision.retryAfterMs));
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      decision.release(this.#classify(error));
      return Promise.reject(error);
    }
    return work.then(
      (value) => {
        decision.success();
        return value;
      },
      (error: unknown) => {
        decision.release(this.#classify(error));
        throw error;
      },
    );
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        limit: { kind: this.algorithm.kind, ...this.algorithm.describe() },
        window: this.#window
          ? { minSamples: this.#window.minSamples, windowMs: this.#window.windowMs, aggregate: this.#window.aggregate, minRttMs: this.#window.minRttMs }
          : false,
      },
    };
  }
}

export function adaptiveLimiter<S extends LimitState>(options: AdaptiveLimiterOptions<S>): AdaptiveLimiter<S> {
  return new AdaptiveLimiter(options);
}
