import { rejectAborted } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import type { Clock } from '../core/clock.js';
import type { RetryBudget } from '../core/budget.js';
import { InvalidOptionsError } from '../core/errors.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import type { PolicyIdentity } from '../core/telemetry.js';
import { nonNegative, positiveInt } from '../core/validate.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';
import { isNeverRetried, isRetryableError } from '../retry/classify.js';
import { HedgeLostError, NotIdempotentError } from './errors.js';
import { LatencyTracker } from './latency-tracker.js';

export interface HedgeOptions extends PolicyIdentity {
  /**
   * Fixed hedge delay in ms: a hedge starts when an attempt has been outstanding this long.
   * With `percentile`, the delay used until `minSamples` latencies have been observed
   * (default then: no hedging until the distribution is known). 0 sends all attempts at once.
   */
  delayMs?: number;
  /**
   * Adaptive delay: the p-th percentile (e.g. 95) of recently observed attempt latency,
   * clamped to [minDelayMs, maxDelayMs]. "The Tail at Scale": hedging after p95 costs ~5%
   * extra load and cuts the tail.
   */
  percentile?: number;
  /** Lower clamp of the adaptive delay. Default 0. */
  minDelayMs?: number;
  /** Upper clamp of the adaptive delay. Default Infinity. */
  maxDelayMs?: number;
  /** Samples needed before the percentile is trusted. Default 100. */
  minSamples?: number;
  /** Samples per half-window of the latency tracker (see LatencyTracker). Default 1000. */
  windowSize?: number;
  /**
   * Most attempts one call may have, the primary included, all possibly in flight at once.
   * Default 2 (one hedge). A new hedge starts `delay` after the previous attempt started.
   */
  maxOutstanding?: number;
  /**
   * Hedges draw from this budget (`tryAcquire()` before each hedge), the same one retries
   * use, so under an outage hedging adds no load. Without a budget, hedges are limited only by
   * `maxOutstanding`.
   */
  budget?: RetryBudget;
  /**
   * Whether this policy records each call as a request (`recordRequest`) and attempt outcomes
   * (`recordOutcome`) in the budget. Default true; set false when a retry policy sharing the
   * same budget already records them for these calls.
   */
  recordRequests?: boolean;
  /**
   * Declares the operations safe to send more than once. Without it, each call must carry
   * `tags: { idempotent: true }`, or it is refused with `NOT_IDEMPOTENT`. A call tagged
   * `idempotent: false` is always refused.
   */
  idempotent?: boolean;
  clock?: Clock;
}

export interface HedgeStartedEvent {
  /** The attempt just started (2 = the first hedge). */
  attempt: number;
  /** The delay after which it started, in ms. */
  delayMs: number;
}

export interface HedgeWonEvent {
  /** The hedge that succeeded first (>= 2). */
  attempt: number;
  /** Call latency, in ms. */
  latencyMs: number;
  /** Attempts that were still running and got cancelled. */
  cancelled: number;
}

export interface HedgeDeniedEvent {
  attempt: number;
  reason: 'budget';
}

/** A hedge policy's counters since it was built (`stats()`). */
export interface HedgeStats {
  /** Calls run. */
  calls: number;
  /** Hedge attempts started (one per `hedge` event). */
  hedges: number;
  /** Calls a hedge won (one per `hedge-won` event); `hedgeWins / hedges` says whether hedging pays. */
  hedgeWins: number;
  /** Hedges the retry budget refused (one per `hedge-denied` event). */
  denied: number;
  /** Calls waiting for their hedge delay now. */
  scheduled: number;
}

/** One hedged call: its attempts and the pending "start the next hedge" deadline. */
class HedgedCall<T> extends DeadlineEntry {
  readonly attempts: (CallContext | undefined)[] = [];
  readonly startTimes: number[] = [];
  started = 0;
  failed = 0;
  settled = false;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  constructor(
    onExpire: (entry: DeadlineEntry) => void,
    readonly context: CallContext,
    readonly continuation: Next<T>, // not `next`: DeadlineEntry uses that name for its list link
    readonly startedAt: number,
  ) {
    super(Infinity, onExpire);
  }
}

/**
 * Hedged requests (Dean & Barroso, "The Tail at Scale"): when an attempt is slower than
 * `delay`, start another; the first success wins and the others are aborted through their
 * signals. Each attempt runs in its own abortable child context. Hedge deadlines share one
 * timer (no per-call setTimeout).
 *
 * Failures do not start hedges (that is a retry policy's job, outside this one): a failed
 * attempt leaves the others running, and the call fails when every started attempt failed,
 * with the last error.
 */
export class HedgePolicy extends BasePolicy {
  readonly kind = 'hedge';
  readonly maxOutstanding: number;
  readonly #delayMs: number | undefined;
  readonly #percentile: number | undefined;
  readonly #minDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #minSamples: number;
  readonly #budget: RetryBudget | undefined;
  readonly #recordRequests: boolean;
  readonly #idempotent: boolean;
  readonly #tracker: LatencyTracker;
  readonly #queue: DeadlineQueue;
  #calls = 0;
  #hedges = 0;
  #hedgeWins = 0;
  #denied = 0;

  readonly #onHedge = this.telemetry.emitter<HedgeStartedEvent>('hedge', (e) => ({ attributes: { attempt: e.attempt, delayMs: e.delayMs } }));
  readonly #onWon = this.telemetry.emitter<HedgeWonEvent>('hedge-won', (e) => ({
    outcome: 'success',
    durationMs: e.latencyMs,
    attributes: { attempt: e.attempt, cancelled: e.cancelled },
  }));
  readonly #onDenied = this.telemetry.emitter<HedgeDeniedEvent>('hedge-denied', (e) => ({ attributes: { attempt: e.attempt, reason: e.reason } }));
  /** A hedge attempt started. */
  readonly onHedge = this.#onHedge.event;
  /** A hedge (not the primary) succeeded first. */
  readonly onHedgeWon = this.#onWon.event;
  /** The retry budget refused a hedge. */
  readonly onHedgeDenied = this.#onDenied.event;

  constructor(options: HedgeOptions) {
    super(options.clock, options);
    if (options.delayMs === undefined && options.percentile === undefined) {
      throw new InvalidOptionsError('hedge needs delayMs (fixed delay) or percentile (adaptive delay)');
    }
    this.#delayMs = options.delayMs === undefined ? undefined : nonNegative('hedge.delayMs', options.delayMs, 0);
    if (options.percentile !== undefined && !(options.percentile > 0 && options.percentile <= 100)) {
      throw new InvalidOptionsError(`hedge.percentile must be in (0, 100], got ${String(options.percentile)}`);
    }
    this.#percentile = options.percentile;
    this.#minDelayMs = nonNegative('hedge.minDelayMs', options.minDelayMs, 0);
    this.#maxDelayMs = nonNegative('hedge.maxDelayMs', options.maxDelayMs, Infinity);
    if (this.#maxDelayMs < this.#minDelayMs) throw new InvalidOptionsError('hedge.maxDelayMs must be >= minDelayMs');
    this.#minSamples = positiveInt('hedge.minSamples', options.minSamples, 100);
    this.maxOutstanding = positiveInt('hedge.maxOutstanding', options.maxOutstanding, 2);
    this.#budget = options.budget;
    if (this.#budget !== undefined && typeof this.#budget.tryAcquire !== 'function') {
      throw new InvalidOptionsError('hedge.budget must implement RetryBudget (tryAcquire, recordRequest, recordOutcome)');
    }
    this.#recordRequests = options.recordRequests ?? true;
    this.#idempotent = options.idempotent ?? false;
    this.#tracker = new LatencyTracker({ windowSize: options.windowSize ?? 1000 });
    this.#queue = new DeadlineQueue(this.clock);
  }

  /** The delay a hedge would wait right now, in ms (Infinity: no hedging yet). */
  currentDelayMs(): number {
    if (this.#percentile === undefined || this.#tracker.count < this.#minSamples) return this.#delayMs ?? Infinity;
    const p = this.#tracker.percentile(this.#percentile);
    return Math.min(this.#maxDelayMs, Math.max(this.#minDelayMs, p));
  }

  /** The latency tracker behind the adaptive delay (attempt latencies of this policy). */
  get latency(): LatencyTracker {
    return this.#tracker;
  }

  stats(): HedgeStats {
    return { calls: this.#calls, hedges: this.#hedges, hedgeWins: this.#hedgeWins, denied: this.#denied, scheduled: this.#queue.size };
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context);
    const tagged = context.tags.idempotent;
    if (tagged === false || (tagged !== true && !this.#idempotent)) {
      return Promise.reject(new NotIdempotentError(this.name ?? 'hedge'));
    }
    this.#calls++;
    if (this.#budget && this.#recordRequests) this.#budget.recordRequest();
    const now = this.clock.now();
    const call = new HedgedCall<T>(this.#expire, context, next, now);
    const promise = new Promise<T>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    this.#launch(call, now);
    if (!call.settled && this.maxOutstanding > 1) this.#schedule(call, now);
    return promise;
  }

  #schedule<T>(call: HedgedCall<T>, now: number): void {
    const delay = this.currentDelayMs();
    if (delay === Infinity) return;
    call.deadline = now + delay;
    this.#queue.add(call);
  }

  #launch<T>(call: HedgedCall<T>, now: number): void {
    const index = call.started++;
    const child = call.context.derive({ abortable: true, attempt: call.context.attempt + index });
    call.attempts[index] = child;
    call.startTimes[index] = now;
    let work: Promise<T>;
    try {
      work = call.continuation(child);
    } catch (error) {
      work = Promise.reject(error);
    }
    work.then(
      (value) => this.#succeeded(call, index, value),
      (error) => this.#failed(call, index, error),
    );
    // Every hedge was granted by the budget (in #expire): tell it when the attempt has really
    // ended (a cancelled loser included), for budgets that count retries in flight.
    const budget = this.#budget;
    if (index > 0 && budget?.retryEnded !== undefined) work.then(() => budget.retryEnded!(), () => budget.retryEnded!());
  }

  /** The call has settled: budgets that count calls in flight release it. */
  #ended<T>(call: HedgedCall<T>): void {
    this.#unschedule(call);
    if (this.#budget && this.#recordRequests) this.#budget.requestEnded?.();
  }

  /**
   * Takes a settled call's pending hedge off the shared timer. The timer stays armed for the
   * next call, but an idle queue's timer no longer reaches the queue or this policy.
   */
  #unschedule<T>(call: HedgedCall<T>): void {
    this.#queue.remove(call);
  }

  #succeeded<T>(call: HedgedCall<T>, index: number, value: T): void {
    const child = call.attempts[index];
    if (child === undefined) return; // a loser that finished after being cancelled
    call.attempts[index] = undefined;
    child.release();
    if (call.settled) return;
    call.settled = true;
    this.#ended(call);
    const now = this.clock.now();
    this.#tracker.record(now - call.startTimes[index]!);
    let cancelled = 0;
    for (let i = 0; i < call.attempts.length; i++) {
      const loser = call.attempts[i];
      if (loser === undefined) continue;
      call.attempts[i] = undefined;
      // A loser's latency is censored: it was at least this long. Recording the lower bound
      // keeps the percentile from sliding down as hedging hides the slow tail.
      this.#tracker.record(now - call.startTimes[i]!);
      loser.abort(new HedgeLostError(i + 1, index + 1));
      cancelled++;
    }
    if (this.#budget && this.#recordRequests) this.#budget.recordOutcome(true);
    if (index > 0) {
      this.#hedgeWins++;
      if (this.#onWon.active) this.#onWon.emit({ attempt: index + 1, latencyMs: now - call.startedAt, cancelled });
    }
    call.resolve(value);
  }

  #failed<T>(call: HedgedCall<T>, index: number, error: unknown): void {
    const child = call.attempts[index];
    if (child === undefined) return;
    call.attempts[index] = undefined;
    child.release();
    if (call.settled) return;
    // As the retry policy does: only failures that speak about the dependency's health (the
    // retryable ones) drain token budgets; a 400 or a local rejection does not.
    if (this.#budget && this.#recordRequests && !isNeverRetried(error) && isRetryableError(error)) this.#budget.recordOutcome(false);
    if (++call.failed < call.started) return; // others are still running; one may succeed
    call.settled = true; // no hedge may start after the call failed
    this.#ended(call);
    call.reject(error);
  }

  readonly #expire = (entry: DeadlineEntry): void => {
    const call = entry as HedgedCall<unknown>;
    if (call.settled || call.context.aborted || call.context.remaining() <= 0) return;
    const attempt = call.started + 1;
    if (this.#budget && !this.#budget.tryAcquire()) {
      this.#denied++;
      if (this.#onDenied.active) this.#onDenied.emit({ attempt, reason: 'budget' });
      return;
    }
    this.#hedges++;
    if (this.#onHedge.active) this.#onHedge.emit({ attempt, delayMs: call.deadline - call.startTimes[call.started - 1]! });
    const now = this.clock.now();
    this.#launch(call, now);
    if (!call.settled && call.started < this.maxOutstanding) this.#schedule(call, now);
  };

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        delayMs: this.#delayMs,
        percentile: this.#percentile,
        minDelayMs: this.#minDelayMs,
        maxDelayMs: this.#maxDelayMs,
        minSamples: this.#minSamples,
        maxOutstanding: this.maxOutstanding,
        budget: this.#budget ? this.#budget.snapshot().kind : undefined,
        idempotent: this.#idempotent,
      },
    };
  }
}

export function hedge(options: HedgeOptions): HedgePolicy {
  return new HedgePolicy(options);
}
