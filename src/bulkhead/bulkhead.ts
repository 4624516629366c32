import { abortedError } from '../core/abort.js';
import { PRIORITIES, type CallContext, type Priority } from '../core/context.js';
import type { Clock } from '../core/clock.js';
import {
  BulkheadFullError, BulkheadQueueTimeoutError, DeadlineExceededError, InvalidInputError, InvalidOptionsError,
} from '../core/errors.js';
import { BasePolicy, NOT_FUSED, type Next, type PolicyDescription } from '../core/policy.js';
import type { PolicyIdentity } from '../core/telemetry.js';
import { REQUIRED, nonNegative, nonNegativeInt, positiveInt } from '../core/validate.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';
import { PriorityWaitQueue, priorityIndex, type PriorityNode } from './priority-queue.js';

export interface BulkheadOptions extends PolicyIdentity {
  /** Calls allowed to run at once. Required, an integer >= 1. */
  maxConcurrent: number;
  /**
   * Calls allowed to wait for a slot when all are busy. Default 0: no queue, a call that finds
   * the bulkhead full is rejected at once (`BULKHEAD_FULL`). `Infinity` is allowed but unwise.
   */
  maxQueue?: number;
  /**
   * Longest wait in the queue, in ms, before `BULKHEAD_QUEUE_TIMEOUT`. Default Infinity (the
   * call's deadline, if any, still bounds the wait). 0 means "never wait": a call that finds
   * every slot busy is rejected at once with `BULKHEAD_QUEUE_TIMEOUT`.
   */
  queueTimeoutMs?: number;
  clock?: Clock;
}

/** Why a call did not get a slot. */
export type BulkheadRejectReason = 'full' | 'queue-timeout' | 'deadline' | 'aborted' | 'evicted';

export interface BulkheadRejectEvent {
  reason: BulkheadRejectReason;
  priority: Priority;
  /** Time spent in the queue before the rejection (0 when rejected on arrival). */
  waitedMs: number;
}

export interface BulkheadQueuedEvent {
  priority: Priority;
  /** Queue length including this call. */
  queued: number;
}

export interface BulkheadStats {
  active: number;
  queued: number;
  maxConcurrent: number;
  maxQueue: number;
  peakActive: number;
  peakQueued: number;
  /** Calls that got a slot (at once or after waiting). */
  admitted: number;
  /** Calls that did not get a slot, for any reason (full, evicted, queue timeout, deadline, abort). */
  rejected: number;
  /** The part of `rejected` that waited `queueTimeoutMs` in vain. */
  queueTimeouts: number;
  /** rejected / (admitted + rejected), 0 before the first call: the saturation rate to alert on. */
  rejectionRate: number;
  /** Time spent queued by every call that waited, whatever ended the wait. */
  waitMs: { count: number; mean: number; max: number };
}

/** A call waiting for a slot: a node of both the priority queue and the shared-timer deadline list. */
class Waiter extends DeadlineEntry implements PriorityNode {
  queuePrev: PriorityNode | undefined = undefined;
  queueNext: PriorityNode | undefined = undefined;
  inQueue = false;
  resolve!: () => void;
  reject!: (error: unknown) => void;
  disposeAbort: (() => void) | undefined = undefined;

  constructor(
    waitUntil: number,
    onExpire: (entry: DeadlineEntry) => void,
    readonly priority: Priority,
    public classIndex: number,
    readonly enqueuedAt: number,
    /** The wait ends at the call's deadline (DEADLINE_EXCEEDED) rather than at the queue timeout. */
    readonly byDeadline: boolean,
  ) {
    super(waitUntil, onExpire);
  }
}

/**
 * Limits concurrent calls to one dependency so that, when it slows down, it can only tie up its
 * own slots: a slow recommendations service fills its own pool and the database pool is untouched
 * (the bulkhead pattern, Michael Nygard, *Release It!*, 2nd ed., 2018).
 *
 * Invariants: `active <= maxConcurrent` and `queued <= maxQueue` at every instant; a waiter
 * exists only while every slot is busy; a freed slot is handed directly to the next waiter
 * (`active` unchanged), so a newcomer arriving in between can never take it; every way out of
 * the queue (slot, timeout, deadline, abort, eviction) removes the waiter exactly once.
 */
export class BulkheadPolicy extends BasePolicy {
  readonly kind = 'bulkhead';
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly queueTimeoutMs: number;

  #active = 0;
  #peakActive = 0;
  #peakQueued = 0;
  #admitted = 0;
  #rejected = 0;
  #queueTimeouts = 0;
  #waitCount = 0;
  #waitSum = 0;
  #waitMax = 0;
  readonly #waiters = new PriorityWaitQueue<Waiter>();
  /** One shared timer for every queue timeout (no per-waiter setTimeout). */
  readonly #timers: DeadlineQueue;

  readonly #onReject = this.telemetry.emitter<BulkheadRejectEvent>('reject', (e) => ({
    outcome: 'rejected',
    durationMs: e.waitedMs,
    attributes: { reason: e.reason, priority: e.priority },
  }));
  readonly #onQueued = this.telemetry.emitter<BulkheadQueuedEvent>('queued', (e) => ({ attributes: { priority: e.priority, queued: e.queued } }));
  /** Fires when a call does not get a slot, with the reason. */
  readonly onReject = this.#onReject.event;
  /** Fires when a call starts waiting in the queue. */
  readonly onQueued = this.#onQueued.event;

  constructor(options: BulkheadOptions) {
    super(options?.clock, options);
    if (typeof options !== 'object' || options === null) {
      throw new InvalidOptionsError('bulkhead() needs options: { maxConcurrent }');
    }
    this.maxConcurrent = positiveInt('bulkhead.maxConcurrent', options.maxConcurrent, REQUIRED);
    this.maxQueue = nonNegativeInt('bulkhead.maxQueue', options.maxQueue, 0);
    this.queueTimeoutMs = nonNegative('bulkhead.queueTimeoutMs', options.queueTimeoutMs, Infinity);
    this.#timers = new DeadlineQueue(this.clock);
  }

  /** Calls running now. */
  get active(): number {
    return this.#active;
  }

  /** Calls waiting for a slot now. */
  get queued(): number {
    return this.#waiters.size;
  }

  /** Waiting calls per priority class. */
  queuedByPriority(): Record<Priority, number> {
    return this.#waiters.sizes();
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    // An aborted call takes no slot, free or queued: nobody waits for its answer.
    if (context.aborted) return this.#rejectOnArrival('aborted', context.priority, abortedError(context.abortReason));
    // Uncontended path: a counter and one `then`, no timer, no listener, no closure.
    if (this.#tryAdmit()) return this.#runHolding(context, next);
    return this.#waitThenRun(context, next);
  }

  /** Takes a free slot, if there is one. */
  #tryAdmit(): boolean {
    if (this.#active >= this.maxConcurrent) return false;
    const active = ++this.#active;
    if (active > this.#peakActive) this.#peakActive = active;
    this.#admitted++;
    return true;
  }

  /** @internal Pipeline fast path (see FusablePolicy): a free slot is taken at once. */
  fusedEnter(context: CallContext): unknown {
    return !context.aborted && this.#tryAdmit() ? undefined : NOT_FUSED;
  }

  /** @internal */
  fusedExitValue(): void {
    this.#release();
  }

  /** @internal */
  fusedExitError(): undefined {
    this.#release();
    return undefined;
  }

  /** Runs `next` while holding a slot; the slot is released when the work has ended. */
  #runHolding<T>(context: CallContext, next: Next<T>): Promise<T> {
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      this.#release();
      return Promise.reject(error);
    }
    return work.then(this.#releaseAfterValue, this.#releaseAfterError) as Promise<T>;
  }

  readonly #releaseAfterValue = (value: unknown): unknown => {
    this.#release();
    return value;
  };

  readonly #releaseAfterError = (error: unknown): never => {
    this.#release();
    throw error;
  };

  /** Frees a slot, or hands it straight to the next waiter so no newcomer can slip in. */
  #release(): void {
    const waiter = this.#waiters.shift();
    if (waiter === undefined) {
      this.#active--;
      return;
    }
    this.#leave(waiter);
    this.#admitted++;
    waiter.resolve(); // the permit moves to the waiter: `active` is unchanged
  }

  #waitThenRun<T>(context: CallContext, next: Next<T>): Promise<T> {
    const priority = context.priority;
    const classIndex = priorityIndex(priority);
    if (classIndex < 0) {
      return Promise.reject(new InvalidInputError(`unknown priority ${JSON.stringify(priority)}; use one of ${PRIORITIES.join(', ')}`, { captureStack: false }));
    }
    if (this.maxQueue === 0) return this.#rejectOnArrival('full', priority, this.#fullError());
    const remaining = context.remaining();
    if (remaining <= 0) return this.#rejectOnArrival('deadline', priority, new DeadlineExceededError(context.deadline));
    if (this.queueTimeoutMs === 0) {
      this.#queueTimeouts++;
      return this.#rejectOnArrival('queue-timeout', priority, new BulkheadQueueTimeoutError(0));
    }

    const now = this.clock.now();
    if (this.#waiters.size >= this.maxQueue) {
      // Full queue: a more important newcomer takes the place of the newest least important waiter.
      const lowest = this.#waiters.lowestClass();
      if (lowest <= classIndex) return this.#rejectOnArrival('full', priority, this.#fullError());
      const evicted = this.#waiters.popNewest(lowest)!;
      this.#leave(evicted, now);
      this.#rejectWaiter(evicted, 'evicted', this.#fullError(), now);
    }

    const byDeadline = remaining <= this.queueTimeoutMs;
    const waitUntil = byDeadline ? context.deadline : now + this.queueTimeoutMs;
    const waiter = new Waiter(waitUntil, this.#expire, priority, classIndex, now, byDeadline);
    const granted = new Promise<void>((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
    });
    this.#waiters.push(waiter);
    if (waitUntil !== Infinity) this.#timers.add(waiter);
    waiter.disposeAbort = context.onAbort((reason) => {
      if (!waiter.inQueue) return;
      this.#waiters.remove(waiter);
      const at = this.clock.now();
      this.#leave(waiter, at);
      this.#rejectWaiter(waiter, 'aborted', abortedError(reason), at);
    });
    const queued = this.#waiters.size;
    if (queued > this.#peakQueued) this.#peakQueued = queued;
    if (this.#onQueued.active) this.#onQueued.emit({ priority, queued });

    return granted.then(() => {
      if (context.aborted) {
        // Aborted in the instant between the hand-over and now: pass the slot on unused.
        this.#release();
        throw abortedError(context.abortReason);
      }
      return this.#runHolding(context, next);
    });
  }

  /** Queue timeout or deadline reached (called by the shared timer, already off the timer list). */
  readonly #expire = (entry: DeadlineEntry): void => {
    const waiter = entry as Waiter;
    if (!waiter.inQueue) return;
    this.#waiters.remove(waiter);
    const now = this.clock.now();
    this.#leave(waiter, now);
    if (waiter.byDeadline) {
      this.#rejectWaiter(waiter, 'deadline', new DeadlineExceededError(waiter.deadline), now);
    } else {
      this.#queueTimeouts++;
      this.#rejectWaiter(waiter, 'queue-timeout', new BulkheadQueueTimeoutError(now - waiter.enqueuedAt), now);
    }
  };

  /** Detaches a waiter that has left the priority queue from its timer and abort listener. */
  #leave(waiter: Waiter, now = this.clock.now()): void {
    this.#timers.remove(waiter);
    if (waiter.disposeAbort !== undefined) {
      waiter.disposeAbort();
      waiter.disposeAbort = undefined;
    }
    const waited = now - waiter.enqueuedAt;
    this.#waitCount++;
    this.#waitSum += waited;
    if (waited > this.#waitMax) this.#waitMax = waited;
  }

  #rejectWaiter(waiter: Waiter, reason: BulkheadRejectReason, error: unknown, now: number): void {
    this.#rejected++;
    if (this.#onReject.active) this.#onReject.emit({ reason, priority: waiter.priority, waitedMs: now - waiter.enqueuedAt });
    waiter.reject(error);
  }

  #rejectOnArrival<T>(reason: BulkheadRejectReason, priority: Priority, error: unknown): Promise<T> {
    this.#rejected++;
    if (this.#onReject.active) this.#onReject.emit({ reason, priority, waitedMs: 0 });
    return Promise.reject(error);
  }

  #fullError(): BulkheadFullError {
    return new BulkheadFullError(this.maxConcurrent, this.maxQueue);
  }

  stats(): BulkheadStats {
    return {
      active: this.#active,
      queued: this.#waiters.size,
      maxConcurrent: this.maxConcurrent,
      maxQueue: this.maxQueue,
      peakActive: this.#peakActive,
      peakQueued: this.#peakQueued,
      admitted: this.#admitted,
      rejected: this.#rejected,
      queueTimeouts: this.#queueTimeouts,
      rejectionRate: this.#rejected / Math.max(1, this.#admitted + this.#rejected),
      waitMs: {
        count: this.#waitCount,
        mean: this.#waitCount === 0 ? 0 : this.#waitSum / this.#waitCount,
        max: this.#waitMax,
      },
    };
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { maxConcurrent: this.maxConcurrent, maxQueue: this.maxQueue, queueTimeoutMs: this.queueTimeoutMs },
    };
  }
}

/** `bulkhead({ maxConcurrent: 10, maxQueue: 20, queueTimeoutMs: 50 })`, or `bulkhead(10)`. */
export function bulkhead(options: BulkheadOptions | number): BulkheadPolicy {
  return new BulkheadPolicy(typeof options === 'number' ? { maxConcurrent: options } : options);
}
