import { rejectAborted } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import { DeadlineExceededError, TimeoutError } from '../core/errors.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { REQUIRED, nonNegative, positive, ratio } from '../core/validate.js';
import type { Event } from '../core/events.js';
import { subscribeAll, type PolicyIdentity } from '../core/telemetry.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';

export interface TimeoutOptions extends PolicyIdentity {
  /** The configured timeout in ms. Placed inside a retry it bounds each attempt; outside, the whole call. */
  ms: number;
  /**
   * With a deadline on the call, the effective timeout is min(ms, remaining × deadlineRatio),
   * leaving the rest of the budget for the caller to handle the failure. Default 0.9.
   */
  deadlineRatio?: number;
  /** Alternative to the ratio: min(ms, remaining − safetyMarginMs). */
  safetyMarginMs?: number;
  /**
   * After the timeout aborts the work, how long to wait for it to actually end before giving
   * up on it (the TimeoutError then says `abandoned: true`). Policies outside (a bulkhead) keep
   * their permit until then, so "released" means "the work really ended". Default 1000; 0 gives
   * up at once.
   */
  graceMs?: number;
  clock?: Clock;
}

export interface TimeoutEvent {
  timeoutMs: number;
  abandoned: boolean;
}

/** A timeout's counters since it was built (`stats()`). */
export interface TimeoutStats {
  /** Calls run under the timeout. */
  calls: number;
  /** Calls whose time ran out (their work was aborted). */
  timeouts: number;
  /** The part of `timeouts` whose work had not ended `graceMs` after the abort: answered without waiting for it. */
  abandoned: number;
  /** Calls refused at once because their deadline left no time (`DEADLINE_EXCEEDED`). */
  deadlineExceeded: number;
  /** Calls guarded now. */
  inFlight: number;
}

/** One in-flight call under a timeout. */
class TimeoutRun<T> extends DeadlineEntry {
  timedOut = false;
  settled = false;
  grace: TimerHandle | undefined;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  constructor(
    deadline: number,
    onExpire: (entry: DeadlineEntry) => void,
    readonly context: CallContext,
    readonly timeoutMs: number,
  ) {
    super(deadline, onExpire);
  }
}

export class TimeoutPolicy extends BasePolicy {
  readonly kind = 'timeout';
  readonly ms: number;
  readonly #ratio: number;
  readonly #margin: number | undefined;
  readonly #graceMs: number;
  readonly #queue: DeadlineQueue;
  #calls = 0;
  #timeouts = 0;
  #abandoned = 0;
  #deadlineExceeded = 0;
  // Two uniform events ('timeout', then 'abandon' when the work outlives the grace period) behind
  // one typed event, so that counting 'timeout' events counts each timed-out call once.
  readonly #onTimeout = this.telemetry.emitter<TimeoutEvent>('timeout', (e) => ({
    outcome: 'failure',
    durationMs: e.timeoutMs,
    attributes: { byDeadline: e.timeoutMs < this.ms },
  }));
  readonly #onAbandon = this.telemetry.emitter<TimeoutEvent>('abandon', (e) => ({
    durationMs: e.timeoutMs + this.#graceMs,
    attributes: { byDeadline: e.timeoutMs < this.ms },
  }));
  /** Fires when an operation times out, and again (`abandoned: true`) when its work has not ended `graceMs` later. */
  readonly onTimeout: Event<TimeoutEvent> = (listener) => subscribeAll([this.#onTimeout.event, this.#onAbandon.event], listener);

  constructor(options: TimeoutOptions) {
    super(options.clock, options);
    this.ms = positive('timeout.ms', options.ms, REQUIRED);
    this.#ratio = ratio('timeout.deadlineRatio', options.deadlineRatio, 0.9);
    this.#margin = options.safetyMarginMs === undefined ? undefined : nonNegative('timeout.safetyMarginMs', options.safetyMarginMs, 0);
    this.#graceMs = nonNegative('timeout.graceMs', options.graceMs, 1000);
    this.#queue = new DeadlineQueue(this.clock);
  }

  /** Calls currently guarded (for tests and telemetry). */
  get inFlight(): number {
    return this.#queue.size;
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context);
    const now = this.clock.now();
    let budget = this.ms;
    if (context.deadline !== Infinity) {
      const remaining = context.deadline - now;
      const allowed = this.#margin === undefined ? remaining * this.#ratio : remaining - this.#margin;
      if (remaining <= 0 || allowed <= 0) {
        this.#deadlineExceeded++;
        return Promise.reject(new DeadlineExceededError(context.deadline));
      }
      if (allowed < budget) budget = allowed;
    }
    this.#calls++;
    const child = context.derive({ deadline: now + budget, abortable: true });
    const run = new TimeoutRun<T>(now + budget, this.#expire, child, budget);
    let work: Promise<T>;
    try {
      work = next(child);
    } catch (error) {
      child.release();
      return Promise.reject(error);
    }
    this.#queue.add(run);
    return new Promise<T>((resolve, reject) => {
      run.resolve = resolve;
      run.reject = reject;
      work.then(
        (value) => this.#settle(run, value, undefined, true),
        (error) => this.#settle(run, undefined, error, false),
      );
    });
  }

  #settle<T>(run: TimeoutRun<T>, value: T | undefined, error: unknown, ok: boolean): void {
    this.#queue.remove(run);
    run.context.release();
    if (run.grace !== undefined) this.clock.clearTimeout(run.grace);
    if (run.settled) return; // already abandoned
    run.settled = true;
    if (run.timedOut) run.reject(error instanceof TimeoutError ? error : new TimeoutError(round(run.timeoutMs), false, ok ? undefined : error));
    else if (ok) run.resolve(value as T);
    else run.reject(error);
  }

  readonly #expire = (entry: DeadlineEntry): void => {
    const run = entry as TimeoutRun<unknown>;
    run.timedOut = true;
    this.#timeouts++;
    run.context.abort(new TimeoutError(round(run.timeoutMs)));
    // Before giving up on the work: with graceMs 0 that is now, and 'abandon' must follow 'timeout'.
    if (this.#onTimeout.active) this.#onTimeout.emit({ timeoutMs: run.timeoutMs, abandoned: false });
    if (this.#graceMs === 0) this.#abandon(run);
    else run.grace = this.clock.setTimeout(() => this.#abandon(run), this.#graceMs);
  };

  #abandon(run: TimeoutRun<unknown>): void {
    run.grace = undefined;
    if (run.settled) return;
    run.settled = true;
    this.#abandoned++;
    if (this.#onAbandon.active) this.#onAbandon.emit({ timeoutMs: run.timeoutMs, abandoned: true });
    run.reject(new TimeoutError(round(run.timeoutMs), true));
  }

  stats(): TimeoutStats {
    return { calls: this.#calls, timeouts: this.#timeouts, abandoned: this.#abandoned, deadlineExceeded: this.#deadlineExceeded, inFlight: this.#queue.size };
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { ms: this.ms, deadlineRatio: this.#ratio, safetyMarginMs: this.#margin, graceMs: this.#graceMs },
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export function timeout(options: TimeoutOptions | number): TimeoutPolicy {
  return new TimeoutPolicy(typeof options === 'number' ? { ms: options } : options);
}
