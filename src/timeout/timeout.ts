import { rejectAborted } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import { DeadlineExceededError, TimeoutError } from '../core/errors.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { REQUIRED, nonNegative, positive, ratio } from '../core/validate.js';
import { EventEmitter } from '../core/events.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';

export interface TimeoutOptions {
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
  name?: string;
}

export interface TimeoutEvent {
  timeoutMs: number;
  abandoned: boolean;
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
  readonly #onTimeout = new EventEmitter<TimeoutEvent>();
  /** Fires when an operation times out. */
  readonly onTimeout = this.#onTimeout.event;

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
      if (remaining <= 0) return Promise.reject(new DeadlineExceededError(context.deadline));
      const allowed = this.#margin === undefined ? remaining * this.#ratio : remaining - this.#margin;
      if (allowed <= 0) return Promise.reject(new DeadlineExceededError(context.deadline));
      if (allowed < budget) budget = allowed;
    }
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
    run.context.abort(new TimeoutError(round(run.timeoutMs)));
    if (this.#graceMs === 0) this.#abandon(run);
    else run.grace = this.clock.setTimeout(() => this.#abandon(run), this.#graceMs);
    if (this.#onTimeout.active) this.#onTimeout.emit({ timeoutMs: run.timeoutMs, abandoned: false });
  };

  #abandon(run: TimeoutRun<unknown>): void {
    run.grace = undefined;
    if (run.settled) return;
    run.settled = true;
    if (this.#onTimeout.active) this.#onTimeout.emit({ timeoutMs: run.timeoutMs, abandoned: true });
    run.reject(new TimeoutError(round(run.timeoutMs), true));
  }

  /** Filled in with the policy's counters when its events are wired (below). */
  stats(): object {
    return {};
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
