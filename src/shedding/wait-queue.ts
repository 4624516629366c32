import type { Clock } from '../core/clock.js';
import { CallContext, type Priority } from '../core/context.js';
import { onSignalAbort } from '../core/abort.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';
import { StandingQueueDetector } from './codel.js';
import type { ShedQueueMode, ShedReason, ShedRejection } from './types.js';

/** The validated queue options of a load shedder. */
export interface ShedQueueConfig {
  maxSize: number;
  maxQueueTimeMs: number;
  mode: ShedQueueMode;
  targetMs: number;
  intervalMs: number;
}

/** A request waiting for a slot: a node of the wait list and an entry of the shared expiry queue. */
export class Waiter<Permit> extends DeadlineEntry {
  older: Waiter<Permit> | undefined;
  newer: Waiter<Permit> | undefined;
  unlisten: (() => void) | undefined;
  waiting = true;
  resolve!: (decision: Permit | ShedRejection) => void;

  constructor(
    expiresAt: number,
    onExpire: (entry: DeadlineEntry) => void,
    readonly priority: Priority,
    readonly enqueuedAt: number,
    /** The request's own deadline less minRemainingMs (Infinity without one). */
    readonly lastUsefulAt: number,
  ) {
    super(expiresAt, onExpire);
  }
}

/**
 * The load shedder's wait queue: who waits for a slot and in what order they get one. FIFO;
 * under 'codel', once the queue is standing (CoDel's detection, see ./codel.ts) whoever waited
 * past the target is dropped at dequeue; under 'lifo-under-overload', newest first while it is
 * standing, and a full queue evicts its oldest. Waits end at `maxQueueTimeMs` or the request's
 * last useful moment, on one shared timer. The shedder decides admission and hands out slots.
 */
export class ShedWaitQueue<Permit> {
  readonly config: ShedQueueConfig;
  readonly #clock: Clock;
  readonly #detector: StandingQueueDetector;
  readonly #deadlines: DeadlineQueue;
  /** Answers a waiter that leaves without a slot (the shedder counts and reports it). */
  readonly #reject: (reason: ShedReason, priority: Priority) => ShedRejection;
  /** Told when the queue becomes standing and when it recovers. */
  readonly #onOverload: (overloaded: boolean) => void;
  #size = 0;
  /** Oldest waiter (head) and newest (tail). */
  #oldest: Waiter<Permit> | undefined;
  #newest: Waiter<Permit> | undefined;
  /** Last overload state told to #onOverload. */
  #overloadedReported = false;

  constructor(
    config: ShedQueueConfig,
    clock: Clock,
    reject: (reason: ShedReason, priority: Priority) => ShedRejection,
    onOverload: (overloaded: boolean) => void,
  ) {
    this.config = config;
    this.#clock = clock;
    this.#reject = reject;
    this.#onOverload = onOverload;
    this.#detector = new StandingQueueDetector(config.targetMs, config.intervalMs);
    this.#deadlines = new DeadlineQueue(clock);
  }

  /** Requests waiting. */
  get size(): number {
    return this.#size;
  }

  /** True while the queue is standing (CoDel). */
  get overloaded(): boolean {
    return this.#detector.overloaded;
  }

  /** How long the oldest waiter has waited at `now` (0 when nobody waits). */
  oldestWaitMs(now: number): number {
    return this.#oldest === undefined ? 0 : now - this.#oldest.enqueuedAt;
  }

  /**
   * Queues a request until `take` hands it a slot, or it is shed: 'queue-full', 'queue-timeout',
   * 'deadline' at `lastUsefulAt`, 'codel', or 'aborted' by `abort`.
   */
  enqueue(priority: Priority, lastUsefulAt: number, abort: AbortSignal | CallContext | undefined): Promise<Permit | ShedRejection> {
    const config = this.config;
    const now = this.#clock.now();
    if (this.#size >= config.maxSize) {
      // Adaptive LIFO under overload: the oldest waiter is the least likely to still be wanted.
      if (config.mode === 'lifo-under-overload' && this.#detector.overloaded) this.#shed(this.#oldest!, 'queue-full');
      else return Promise.resolve(this.#reject('queue-full', priority));
    }
    const waiter = new Waiter<Permit>(Math.min(now + config.maxQueueTimeMs, lastUsefulAt), this.#expire, priority, now, lastUsefulAt);
    waiter.older = this.#newest;
    if (this.#newest) this.#newest.newer = waiter;
    else this.#oldest = waiter;
    this.#newest = waiter;
    this.#size++;
    this.#deadlines.add(waiter);
    return new Promise<Permit | ShedRejection>((resolve) => {
      waiter.resolve = resolve;
      if (abort !== undefined) waiter.unlisten = listenAbort(abort, () => this.#shed(waiter, 'aborted'));
    });
  }

  /**
   * The waiter to get the free slot now, in the order the mode says, out of the queue (CoDel's
   * drops on the way are shed); undefined when none is left. Call only when size > 0.
   */
  take(now: number): Waiter<Permit> | undefined {
    const waiter = this.#next(now);
    if (waiter !== undefined) this.#unlink(waiter);
    return waiter;
  }

  #next(now: number): Waiter<Permit> | undefined {
    const config = this.config;
    const oldest = this.#oldest!;
    const overloaded = this.#detector.observe(now, now - oldest.enqueuedAt);
    this.#reportOverload(overloaded);
    if (!overloaded || config.mode === 'fifo') return oldest;
    if (config.mode === 'lifo-under-overload') return this.#newest;
    // CoDel: in a standing queue, whatever has waited past the target is dropped, not served.
    let waiter: Waiter<Permit> | undefined = oldest;
    while (waiter !== undefined && now - waiter.enqueuedAt >= config.targetMs) {
      const newer: Waiter<Permit> | undefined = waiter.newer;
      this.#shed(waiter, 'codel');
      waiter = newer;
    }
    return waiter;
  }

  /** Takes a waiter out of the wait list and the expiry queue; detaches its abort listener. */
  #unlink(waiter: Waiter<Permit>): void {
    if (waiter.older) waiter.older.newer = waiter.newer;
    else this.#oldest = waiter.newer;
    if (waiter.newer) waiter.newer.older = waiter.older;
    else this.#newest = waiter.older;
    waiter.older = waiter.newer = undefined;
    waiter.waiting = false;
    this.#size--;
    this.#deadlines.remove(waiter);
    waiter.unlisten?.();
    waiter.unlisten = undefined;
    if (this.#size === 0) {
      // An empty queue is a good queue (CoDel): detection starts over.
      this.#detector.reset();
      this.#reportOverload(false);
    }
  }

  #shed(waiter: Waiter<Permit>, reason: ShedReason): void {
    if (!waiter.waiting) return;
    this.#unlink(waiter);
    waiter.resolve(this.#reject(reason, waiter.priority));
  }

  readonly #expire = (entry: DeadlineEntry): void => {
    const waiter = entry as Waiter<Permit>;
    this.#shed(waiter, this.#clock.now() >= waiter.lastUsefulAt ? 'deadline' : 'queue-timeout');
  };

  #reportOverload(overloaded: boolean): void {
    if (overloaded === this.#overloadedReported) return;
    this.#overloadedReported = overloaded;
    this.#onOverload(overloaded);
  }
}

function listenAbort(source: AbortSignal | CallContext, onAbort: () => void): () => void {
  return source instanceof CallContext ? source.onAbort(onAbort) : onSignalAbort(source, onAbort);
}
