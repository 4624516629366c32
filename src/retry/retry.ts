import { abortedError, rejectAborted } from '../core/abort.js';
import type { RetryBudget } from '../core/budget.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { InvalidOptionsError, RetriesExhaustedError, RetryBudgetExhaustedError } from '../core/errors.js';
import { BasePolicy, NOT_FUSED, type Next, type PolicyDescription } from '../core/policy.js';
import { systemRandom, type Random } from '../core/random.js';
import { errorCode, type PolicyIdentity } from '../core/telemetry.js';
import { fn, nonNegative } from '../core/validate.js';
import { MAX_TIMER_MS, toBackoff, type Backoff, type BackoffKind, type BackoffOptions } from './backoff.js';
import { decideRetry, type RetryOutcome } from './classify.js';
import { ConcurrencyRetryBudget } from './budget.js';

/** `In`: the results `handleResult` reads (the operation must return one); inferred from its parameter. */
export interface RetryOptions<In = unknown> extends PolicyIdentity {
  /**
   * Total calls including the first, not retries after it: 3 means one call and at most two
   * retries; 1 means no retry. Default 3. `Infinity` only together with `maxElapsedMs` or
   * a `budget`, so something always ends the loop.
   */
  maxAttempts?: number;
  /**
   * A Backoff value (shareable, immutable), backoff options, or a kind name. Default:
   * exponential from 100 ms, factor 2, full jitter, capped at 30 s (AWS SDK "standard" mode).
   */
  backoff?: Backoff | BackoffOptions | BackoffKind;
  /**
   * Longest time from the start of the first attempt to the start of the last one: a retry
   * whose wait would end past it is not started (the running attempt is not cut short; that
   * is a timeout's job). Default Infinity.
   */
  maxElapsedMs?: number;
  /** Cap on a server's Retry-After: a longer one waits this long. Default 60 000 ms. */
  maxRetryAfterMs?: number;
  /** A retry budget shared with other pipelines (`ratioBudget()`, `tokenBudget()` or `concurrencyBudget()`). */
  budget?: RetryBudget;
  /**
   * Replaces or extends the default classification: true/false decides, undefined defers
   * to the default. Bulwark's local rejections (CIRCUIT_OPEN, BULKHEAD_FULL, RATE_LIMITED, SHED,
   * ...), `Bulwark-Retry: no` and `retryable: false` are never retried, whatever this returns.
   */
  shouldRetry?: (outcome: RetryOutcome) => boolean | undefined;
  /**
   * Retries on results, e.g. `(r: Response) => r.status >= 500`. Retry-After is then read from
   * the result's headers. When retries run out the last result is returned, not an error.
   * The parameter's type is the policy's `In`: the operations it runs must return that type.
   */
  handleResult?: (result: In) => boolean;
  clock?: Clock;
  random?: Random;
}

/** Why the policy stopped retrying a failure it would have retried. */
export type GiveUpReason = 'max-attempts' | 'max-elapsed' | 'deadline' | 'budget' | 'aborted';

export interface RetryEvent {
  /** The attempt that failed (1 = the first call); the next one is `attempt + 1`. */
  attempt: number;
  /** The wait before the next attempt. */
  delayMs: number;
  error?: unknown;
  result?: unknown;
  /** Set when the wait came from a Retry-After instead of the backoff. */
  retryAfterMs?: number;
}

export interface GiveUpEvent {
  attempts: number;
  reason: GiveUpReason;
  error?: unknown;
  result?: unknown;
}

export interface RetrySuccessEvent {
  /** Calls made, the successful one included. */
  attempts: number;
}

/** A retry policy's counters since it was built (`stats()`). */
export interface RetryStats {
  /** Calls started. */
  calls: number;
  /** Attempts made, first attempts included. */
  attempts: number;
  /** Retries decided (one per `retry` event); the wait before one may still be cut short by an abort. */
  retries: number;
  /** Calls that succeeded, on any attempt. */
  successes: number;
  /** Retryable failures surfaced because a limit stopped the retries (one per `give-up` event). */
  giveUps: number;
  /** The part of `giveUps` the retry budget refused. */
  budgetDenials: number;
}

export const RETRY_DEFAULTS = Object.freeze({
  maxAttempts: 3,
  maxElapsedMs: Infinity,
  maxRetryAfterMs: 60_000,
});

export class RetryPolicy<In = unknown> extends BasePolicy<never, In> {
  readonly kind = 'retry';
  readonly maxAttempts: number;
  readonly backoff: Backoff;
  readonly maxElapsedMs: number;
  readonly maxRetryAfterMs: number;
  readonly budget: RetryBudget | undefined;
  readonly random: Random;
  readonly #shouldRetry: RetryOptions['shouldRetry'];
  /** Typed by `In` in the options; `run` only takes operations whose results are `In`. */
  readonly #handleResult: ((result: unknown) => boolean) | undefined;

  #calls = 0;
  #attempts = 0;
  #retries = 0;
  #successes = 0;
  #giveUps = 0;
  #budgetDenials = 0;

  readonly #onRetry = this.telemetry.emitter<RetryEvent>('retry', (e) => ({
    outcome: 'failure',
    attributes: { attempt: e.attempt, delayMs: e.delayMs, retryAfterMs: e.retryAfterMs, code: errorCode(e.error) },
  }));
  readonly #onGiveUp = this.telemetry.emitter<GiveUpEvent>('give-up', (e) => ({
    outcome: 'failure',
    attributes: { attempts: e.attempts, reason: e.reason, code: errorCode(e.error) },
  }));
  readonly #onSuccess = this.telemetry.emitter<RetrySuccessEvent>('success', (e) => ({ outcome: 'success', attributes: { attempts: e.attempts } }));
  /** Fires before each wait-then-retry. */
  readonly onRetry = this.#onRetry.event;
  /** Fires when a retryable failure is surfaced because a limit stopped the retries. */
  readonly onGiveUp = this.#onGiveUp.event;
  /** Fires when a call succeeds (on any attempt). */
  readonly onSuccess = this.#onSuccess.event;

  constructor(options: RetryOptions<In> = {}) {
    super(options.clock, options);
    this.maxElapsedMs = nonNegative('retry.maxElapsedMs', options.maxElapsedMs, RETRY_DEFAULTS.maxElapsedMs);
    this.maxRetryAfterMs = nonNegative('retry.maxRetryAfterMs', options.maxRetryAfterMs, RETRY_DEFAULTS.maxRetryAfterMs);
    if (this.maxRetryAfterMs > MAX_TIMER_MS) throw new InvalidOptionsError(`retry.maxRetryAfterMs must be <= ${MAX_TIMER_MS} ms, got ${options.maxRetryAfterMs}`);
    this.budget = checkBudget(options.budget);
    this.maxAttempts = checkMaxAttempts(options.maxAttempts, this.maxElapsedMs, this.budget);
    this.backoff = toBackoff(options.backoff);
    this.#shouldRetry = fn('retry.shouldRetry', options.shouldRetry);
    this.#handleResult = fn('retry.handleResult', options.handleResult) as ((result: unknown) => boolean) | undefined;
    this.random = fn('retry.random', options.random, systemRandom, 'returning [0, 1)');
  }

  run<T extends In>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context);
    const startedAt = this.#begin();
    const firstContext = context.attempt === 1 ? context : context.derive({ attempt: 1 });
    let first: Promise<T>;
    try {
      first = next(firstContext);
    } catch (error) {
      first = Promise.reject(error);
    }
    if (this.#handleResult !== undefined) {
      // Results must be inspected too: the general loop from the first outcome on.
      return first.then(
        (result) => this.#continue(context, next, startedAt, false, undefined, result),
        (error) => this.#continue<T>(context, next, startedAt, true, error, undefined),
      );
    }
    // The common case, a first attempt that succeeds, costs one `then` and no async frame.
    return first.then(this.#firstSucceeded as (value: T) => T, (error) => this.#continue<T>(context, next, startedAt, true, error, undefined));
  }

  /** @internal Pipeline fast path: the first attempt (see FusablePolicy). The ticket is `startedAt`. */
  fusedEnter(context: CallContext): unknown {
    if (context.aborted || context.attempt !== 1 || this.#handleResult !== undefined) return NOT_FUSED;
    return this.#begin();
  }

  /** A call starts: counted by the budget; returns its start time (0 when no limit needs it). */
  #begin(): number {
    this.#calls++;
    this.#attempts++;
    this.budget?.recordRequest();
    // Read the clock only when a limit needs it: the success path stays one branch cheaper.
    return this.maxElapsedMs === Infinity ? 0 : this.clock.now();
  }

  /** @internal */
  fusedExitValue(_startedAt: unknown, value: unknown): void {
    this.#firstSucceeded(value);
  }

  /** @internal The first attempt failed: the retries from here are the ordinary loop. */
  fusedExitError(startedAt: unknown, error: unknown, context: CallContext, inner: Next<unknown>): Promise<unknown> {
    return this.#continue(context, inner, startedAt as number, true, error, undefined);
  }

  readonly #firstSucceeded = (value: unknown): unknown => {
    const budget = this.budget;
    if (budget !== undefined) {
      budget.recordOutcome(true);
      budget.requestEnded?.();
    }
    this.#successes++;
    if (this.#onSuccess.active) this.#onSuccess.emit({ attempts: 1 });
    return value;
  };

  /** From the outcome of attempt 1 on: the loop, then the call's end told to the budget. */
  async #continue<T>(context: CallContext, next: Next<T>, startedAt: number, failed: boolean, error: unknown, result: T | undefined): Promise<T> {
    const budget = this.budget;
    if (budget === undefined) return this.#retryLoop(context, next, startedAt, failed, error, result, undefined);
    const granted = { inFlight: false };
    try {
      return await this.#retryLoop(context, next, startedAt, failed, error, result, granted);
    } finally {
      // Concurrency budgets count calls and retries in flight: whatever ended the loop, release both.
      if (granted.inFlight) budget.retryEnded?.();
      budget.requestEnded?.();
    }
  }

  /** Decide, wait, try again, until success or a limit. `granted` tracks a budget-granted retry not yet ended. */
  async #retryLoop<T>(
    context: CallContext, next: Next<T>, startedAt: number, failed: boolean, error: unknown, result: T | undefined,
    granted: { inFlight: boolean } | undefined,
  ): Promise<T> {
    const clock = this.clock;
    const budget = this.budget;
    let previousDelay = 0;

    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) {
        if (context.aborted) throw abortedError(context.abortReason);
        this.#attempts++;
        try {
          result = await next(context.derive({ attempt }));
          failed = false;
        } catch (caught) {
          failed = true;
          error = caught;
        }
        if (granted !== undefined && granted.inFlight) {
          granted.inFlight = false;
          budget!.retryEnded?.();
        }
      }
      if (!failed && (this.#handleResult === undefined || !this.#handleResult(result))) {
        budget?.recordOutcome(true);
        this.#successes++;
        if (this.#onSuccess.active) this.#onSuccess.emit({ attempts: attempt });
        return result as T;
      }

      const outcome: RetryOutcome = failed ? { kind: 'error', error, attempt } : { kind: 'result', result, attempt };
      const decision = decideRetry(outcome, this.#shouldRetry, clock.now(), this.maxRetryAfterMs);
      if (!decision.retry) {
        // Not ours to retry (a 400, a breaker-open rejection, ...): the original surfaces unchanged.
        // Client errors and local rejections say nothing about the dependency's health, so
        // they leave token budgets alone (gRPC retry throttling counts retryable failures only).
        if (failed) throw error;
        return result as T;
      }
      budget?.recordOutcome(false);

      let reason: GiveUpReason | undefined;
      let delay = 0;
      if (attempt >= this.maxAttempts) {
        reason = 'max-attempts';
      } else if (context.aborted) {
        reason = 'aborted';
      } else {
        const computed = checkDelay(this.backoff.delay(attempt, previousDelay, this.random));
        previousDelay = computed;
        delay = decision.retryAfterMs ?? computed; // Retry-After replaces the backoff, no jitter on top
        const resumeAt = clock.now() + delay;
        if (resumeAt - startedAt > this.maxElapsedMs) reason = 'max-elapsed';
        else if (resumeAt >= context.deadline) reason = 'deadline';
        else if (budget !== undefined) {
          if (budget.tryAcquire()) granted!.inFlight = true; // asked last: granting spends it
          else reason = 'budget';
        }
      }
      if (reason !== undefined) return this.#giveUp(reason, attempt, failed, error, result as T);

      this.#retries++;
      if (this.#onRetry.active) {
        this.#onRetry.emit({
          attempt,
          delayMs: delay,
          ...(failed ? { error } : { result }),
          ...(decision.retryAfterMs === undefined ? {} : { retryAfterMs: decision.retryAfterMs }),
        });
      }
      if (delay > 0) {
        try {
          await this.#wait(delay, context);
        } catch (abortError) {
          this.#giveUps++;
          if (this.#onGiveUp.active) this.#onGiveUp.emit({ attempts: attempt, reason: 'aborted', ...(failed ? { error } : { result }) });
          throw abortError;
        }
      }
    }
  }

  /** Surfaces a retryable failure that a limit stopped: an error for errors, the last result for results. */
  #giveUp<T>(reason: GiveUpReason, attempts: number, failed: boolean, error: unknown, result: T): T {
    this.#giveUps++;
    if (reason === 'budget') this.#budgetDenials++;
    if (this.#onGiveUp.active) this.#onGiveUp.emit({ attempts, reason, ...(failed ? { error } : { result }) });
    if (!failed) return result;
    if (reason === 'aborted') throw error;
    if (reason === 'budget') throw new RetryBudgetExhaustedError(attempts, error);
    throw new RetriesExhaustedError(attempts, error, reason);
  }

  /** The delay wait: one timer, cleared (and the listener removed) on abort. */
  #wait(ms: number, context: CallContext): Promise<void> {
    const clock = this.clock;
    return new Promise<void>((resolve, reject) => {
      const timer = clock.setTimeout(() => {
        stopListening(); // assigned below, before any timer can fire
        resolve();
      }, ms);
      const stopListening = context.onAbort((reason) => {
        clock.clearTimeout(timer);
        reject(abortedError(reason));
      });
    });
  }

  stats(): RetryStats {
    return {
      calls: this.#calls,
      attempts: this.#attempts,
      retries: this.#retries,
      successes: this.#successes,
      giveUps: this.#giveUps,
      budgetDenials: this.#budgetDenials,
    };
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        maxAttempts: this.maxAttempts,
        backoff: this.backoff.describe(),
        maxElapsedMs: this.maxElapsedMs,
        maxRetryAfterMs: this.maxRetryAfterMs,
        budget: this.budget?.snapshot().kind,
        shouldRetry: this.#shouldRetry !== undefined,
        handleResult: this.#handleResult !== undefined,
      },
    };
  }
}

/** Builds a retry policy. */
export function retry<In = unknown>(options: RetryOptions<In> = {}): RetryPolicy<In> {
  return new RetryPolicy<In>(options);
}

function checkMaxAttempts(value: number | undefined, maxElapsedMs: number, budget: RetryBudget | undefined): number {
  const v = value ?? RETRY_DEFAULTS.maxAttempts;
  if (v === Infinity) {
    if (maxElapsedMs === Infinity && budget instanceof ConcurrencyRetryBudget) {
      throw new InvalidOptionsError('retry.maxAttempts may not be Infinity with only a concurrencyBudget(): it always lets minConcurrency calls retry, so it never ends a retry loop; set maxElapsedMs');
    }
    if (maxElapsedMs === Infinity && budget === undefined) {
      throw new InvalidOptionsError('retry.maxAttempts may be Infinity only with a finite maxElapsedMs or a budget (something must end the retry loop)');
    }
    return v;
  }
  if (!Number.isInteger(v) || v < 1) throw new InvalidOptionsError(`retry.maxAttempts counts total calls including the first and must be an integer >= 1, got ${String(value)}`);
  return v;
}

function checkBudget(budget: RetryBudget | undefined): RetryBudget | undefined {
  if (budget === undefined) return undefined;
  if (typeof budget !== 'object' || budget === null || typeof budget.tryAcquire !== 'function'
    || typeof budget.recordRequest !== 'function' || typeof budget.recordOutcome !== 'function') {
    throw new InvalidOptionsError('retry.budget must be a RetryBudget (ratioBudget(), tokenBudget() or concurrencyBudget())');
  }
  return budget;
}

/** A user-defined Backoff can return anything; a bad value is a clear error, not a hang. */
function checkDelay(ms: number): number {
  if (typeof ms !== 'number' || !(ms >= 0)) {
    throw new InvalidOptionsError(`backoff.delay() must return a number of milliseconds >= 0, got ${String(ms)}`);
  }
  return ms > MAX_TIMER_MS ? MAX_TIMER_MS : ms;
}

