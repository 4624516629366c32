import type { Clock } from '../core/clock.js';
import { PRIORITIES, type CallContext, type Priority } from '../core/context.js';
import { AbortedError, DeadlineExceededError, InvalidOptionsError, ShedError } from '../core/errors.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { systemRandom, type Random } from '../core/random.js';
import type { PolicyIdentity } from '../core/telemetry.js';
import { nonNegative, oneOf, positive, positiveInt, ratio, REQUIRED, fn } from '../core/validate.js';
import { InvalidAdmissionError } from './errors.js';
import { redDropProbability, resolveThresholds } from './priority.js';
import { eventLoopDelayMonitor, type DelaySource, type EventLoopDelayOptions } from './signals.js';
import { ShedWaitQueue } from './wait-queue.js';
import type { ShedQueueMode, ShedReason, ShedRejection } from './types.js';

export type { ShedQueueMode, ShedReason, ShedRejection } from './types.js';

export interface ShedQueueOptions {
  /** Most requests waiting for a slot. */
  maxSize: number;
  /** Longest wait for a slot before shedding ('queue-timeout'). */
  maxQueueTimeMs: number;
  /** Default 'codel'. */
  mode?: ShedQueueMode;
  /** CoDel target wait. Default 5 ms (Nichols & Jacobson; Facebook's RPC queues). */
  targetMs?: number;
  /** CoDel interval. Default 100 ms. */
  intervalMs?: number;
}

export interface LoadShedderOptions extends PolicyIdentity {
  /** Requests that may run at once (critical work may exceed it: it is never shed). */
  capacity: number;
  /** Utilisation thresholds per class. Default critical 1.0 / high 0.9 / normal 0.75 / low 0.5 / best-effort 0.25. */
  thresholds?: Partial<Record<Priority, number>>;
  /** Random early drop between `min` and `max` utilisation (seed: 0.5 / 0.9). Off by default. */
  red?: { min: number; max: number; priorities?: readonly Priority[] };
  /** Let admitted requests wait for a slot instead of being shed at once. Off by default. */
  queue?: ShedQueueOptions;
  /** Utilisation signal: event-loop delay / targetMs. `source` defaults to perf_hooks' monitor. */
  eventLoopDelay?: EventLoopDelayOptions & { targetMs: number; source?: DelaySource };
  /** Utilisation signal: the oldest queued request's wait / targetMs. */
  queueTime?: { targetMs: number };
  /**
   * Count occupancy — (running + queued) / (capacity + queue.maxSize) — as a utilisation signal.
   * Default true. Turn it off to shed by event-loop delay / queue time only, with `capacity` and
   * `queue.maxSize` as hard limits.
   */
  occupancy?: boolean;
  /** Shed a request whose deadline leaves less than this. Default 0 (only already-expired ones). */
  minRemainingMs?: number;
  /** Retry-After hint. Default 1000 ms (0 for 'deadline' and 'aborted': nothing to retry into). */
  retryAfterMs?: number | ((reason: ShedReason, utilisation: number) => number);
  clock?: Clock;
  random?: Random;
}

export interface ShedEvent {
  reason: ShedReason;
  priority: Priority;
  utilisation: number;
}

export interface OverloadEvent {
  /** True when the wait queue became standing (CoDel), false when it recovered. */
  overloaded: boolean;
}

export interface LoadShedderStats {
  capacity: number;
  inflight: number;
  queued: number;
  utilisation: number;
  overloaded: boolean;
  admitted: number;
  shed: Record<ShedReason, number>;
}

const RELEASE = Symbol('release');

/** An admitted request's slot. Call `release()` when the request has finished (idempotent). */
export class ShedPermit {
  readonly admitted = true as const;
  #shedder: LoadShedder | undefined;

  constructor(shedder: LoadShedder, readonly priority: Priority) {
    this.#shedder = shedder;
  }

  release(): void {
    const shedder = this.#shedder;
    if (shedder === undefined) return;
    this.#shedder = undefined;
    shedder[RELEASE]();
  }
}

/** What the shedder decided about one request: a permit to run, or why not. */
export type ShedDecision = ShedPermit | ShedRejection;

const QUEUE = Symbol('queue');
type Decision = ShedDecision | typeof QUEUE;

const SHED_REASONS: readonly ShedReason[] = ['deadline', 'priority', 'red', 'capacity', 'queue-full', 'queue-timeout', 'codel', 'aborted'];

/**
 * Priority load shedding for inbound work (the Google SRE book, "Handling Overload"; David Yanacek,
 * "Using load shedding to avoid overload", Amazon Builders' Library): admits or sheds each request
 * from its priority class, the current utilisation and its deadline, optionally holding it briefly
 * in a CoDel / adaptive-LIFO queue when every slot is busy. Usable three ways:
 *
 * - `tryAdmit(priority, deadline?)`: synchronous, never waits → a permit or a rejection value;
 * - `admit(priority, deadline?, signal?)`: may wait in the queue → Promise of the same;
 * - as a policy: `shedder.execute(fn, { priority, deadline })`, throwing a stack-less
 *   `ShedError` (code `SHED`, `reason`, `retryAfterMs`).
 *
 * Utilisation = max of the configured signals: occupancy (running + queued) / (capacity +
 * queue.maxSize), which is in-flight / capacity without a queue; the oldest wait / queueTime
 * target; event-loop delay / its target. Decision order: expired deadline → shed; critical →
 * admit (even beyond capacity); utilisation ≥ class threshold → shed; RED; free slot → run; else
 * queue or shed. O(1) per decision; one shared (unref'd) timer for queue expiries, none when idle.
 */
export class LoadShedder extends BasePolicy {
  readonly kind = 'load-shedder';
  readonly capacity: number;
  readonly thresholds: Readonly<Record<Priority, number>>;
  readonly #room: number;
  readonly #red: { min: number; max: number; applies: Readonly<Record<Priority, boolean>> } | undefined;
  /** Where admitted requests wait for a slot, and in what order they get one (./wait-queue.ts). */
  readonly #waiting: ShedWaitQueue<ShedPermit> | undefined;
  readonly #queueTimeTargetMs: number | undefined;
  readonly #eld: { source: DelaySource; targetMs: number; owned: boolean } | undefined;
  readonly #minRemainingMs: number;
  readonly #occupancy: boolean;
  readonly #retryAfter: number | ((reason: ShedReason, utilisation: number) => number);
  readonly #random: Random;

  #inflight = 0;
  #admitted = 0;
  readonly #shed: Record<ShedReason, number> = Object.fromEntries(SHED_REASONS.map((r) => [r, 0])) as Record<ShedReason, number>;

  readonly #onShed = this.telemetry.emitter<ShedEvent>('shed', (e) => ({
    outcome: 'rejected',
    attributes: { reason: e.reason, priority: e.priority, utilisation: Number.isNaN(e.utilisation) ? undefined : e.utilisation },
  }));
  readonly #onOverload = this.telemetry.emitter<OverloadEvent>('overload', (e) => ({ attributes: { overloaded: e.overloaded } }));
  /** Fires for every shed request. */
  readonly onShed = this.#onShed.event;
  /** Fires when the wait queue becomes standing (CoDel detection) and when it recovers. */
  readonly onOverload = this.#onOverload.event;

  constructor(options: LoadShedderOptions) {
    super(options?.clock, options);
    if (!options || typeof options !== 'object') throw new InvalidOptionsError('loadShedder needs options with a capacity');
    this.capacity = positiveInt('loadShedder.capacity', options.capacity, REQUIRED);
    this.thresholds = resolveThresholds(options.thresholds);
    this.#random = fn('loadShedder.random', options.random, systemRandom, 'returning [0, 1)');
    this.#minRemainingMs = nonNegative('loadShedder.minRemainingMs', options.minRemainingMs, 0);
    this.#occupancy = options.occupancy ?? true;

    if (options.red !== undefined) {
      const min = ratio('loadShedder.red.min', options.red.min, REQUIRED);
      const max = ratio('loadShedder.red.max', options.red.max, REQUIRED);
      if (!(min < max)) throw new InvalidOptionsError(`loadShedder.red.min (${min}) must be < red.max (${max})`);
      const priorities = options.red.priorities ?? PRIORITIES.filter((p) => p !== 'critical');
      const applies = Object.fromEntries(PRIORITIES.map((p) => [p, false])) as Record<Priority, boolean>;
      for (const p of priorities) {
        if (p === 'critical') throw new InvalidOptionsError('loadShedder.red.priorities cannot include critical: critical work is never shed');
        if (!(PRIORITIES as readonly string[]).includes(p)) throw new InvalidOptionsError(`loadShedder.red.priorities: unknown priority '${String(p)}'`);
        applies[p] = true;
      }
      this.#red = { min, max, applies };
    }

    if (options.queue !== undefined) {
      const q = options.queue;
      const config = {
        maxSize: positiveInt('loadShedder.queue.maxSize', q.maxSize, REQUIRED),
        maxQueueTimeMs: positive('loadShedder.queue.maxQueueTimeMs', q.maxQueueTimeMs, REQUIRED),
        mode: oneOf<ShedQueueMode>('loadShedder.queue.mode', q.mode, ['codel', 'lifo-under-overload', 'fifo'], 'codel'),
        targetMs: positive('loadShedder.queue.targetMs', q.targetMs, 5),
        intervalMs: positive('loadShedder.queue.intervalMs', q.intervalMs, 100),
      };
      this.#waiting = new ShedWaitQueue(config, this.clock, this.#shedWaiter, this.#reportOverload);
    }
    this.#room = this.capacity + (this.#waiting?.config.maxSize ?? 0);

    if (options.queueTime !== undefined) {
      if (this.#waiting === undefined) throw new InvalidOptionsError('loadShedder.queueTime needs a queue');
      this.#queueTimeTargetMs = positive('loadShedder.queueTime.targetMs', options.queueTime.targetMs, REQUIRED);
    }
    const retryAfter = options.retryAfterMs;
    this.#retryAfter = typeof retryAfter === 'function' ? retryAfter : nonNegative('loadShedder.retryAfterMs', retryAfter, 1000);

    // Last, so a bad option elsewhere never leaves a monitor running.
    if (options.eventLoopDelay !== undefined) {
      const e = options.eventLoopDelay;
      const targetMs = positive('loadShedder.eventLoopDelay.targetMs', e.targetMs, REQUIRED);
      if (e.source !== undefined && typeof e.source.read !== 'function') throw new InvalidOptionsError('loadShedder.eventLoopDelay.source must have read()');
      this.#eld = { source: e.source ?? eventLoopDelayMonitor(e), targetMs, owned: e.source === undefined };
    }
  }

  /** Requests running now (critical ones included). */
  get inflight(): number {
    return this.#inflight;
  }

  /** Requests waiting for a slot. */
  get queued(): number {
    return this.#waiting?.size ?? 0;
  }

  /** True while the wait queue is standing (CoDel). */
  get overloaded(): boolean {
    return this.#waiting?.overloaded ?? false;
  }

  /** The load signal the thresholds are compared with: max of the configured signals. */
  utilisation(): number {
    const waiting = this.#waiting;
    let u = this.#occupancy ? (this.#inflight + (waiting?.size ?? 0)) / this.#room : 0;
    if (this.#queueTimeTargetMs !== undefined && waiting !== undefined && waiting.size > 0) {
      const q = waiting.oldestWaitMs(this.clock.now()) / this.#queueTimeTargetMs;
      if (q > u) u = q;
    }
    if (this.#eld !== undefined) {
      const e = this.#eld.source.read() / this.#eld.targetMs;
      if (e > u) u = e;
    }
    return u;
  }

  stats(): LoadShedderStats {
    return {
      capacity: this.capacity,
      inflight: this.#inflight,
      queued: this.queued,
      utilisation: this.utilisation(),
      overloaded: this.overloaded,
      admitted: this.#admitted,
      shed: { ...this.#shed },
    };
  }

  /** Decides now, never waits: a permit, or a rejection ('capacity' where `admit` would queue). */
  tryAdmit(priority: Priority = 'normal', deadline?: number): ShedDecision {
    const decision = this.#decide(priority, deadline ?? Infinity);
    return decision === QUEUE ? this.#reject('capacity', priority, this.utilisation()) : decision;
  }

  /**
   * The framework-neutral admission: resolves to a permit (call `release()` when done) or to a
   * rejection value with `reason` and `retryAfterMs`. Waits in the queue when one is configured
   * and every slot is busy; `signal` abandons the wait ('aborted'). Rejects only on bad input
   * (`INVALID_INPUT`).
   */
  admit(priority: Priority = 'normal', deadline?: number, signal?: AbortSignal): Promise<ShedDecision> {
    let decision: Decision;
    try {
      decision = this.#decide(priority, deadline ?? Infinity);
    } catch (error) {
      return Promise.reject(error);
    }
    if (decision !== QUEUE) return Promise.resolve(decision);
    if (signal?.aborted) return Promise.resolve(this.#reject('aborted', priority, NaN));
    return this.#waiting!.enqueue(priority, (deadline ?? Infinity) - this.#minRemainingMs, signal);
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    let decision: Decision;
    try {
      decision = this.#decide(context.priority, context.deadline);
    } catch (error) {
      return Promise.reject(error);
    }
    if (decision !== QUEUE) return this.#runAdmitted(decision, context, next);
    if (context.aborted) return Promise.reject(new AbortedError(context.abortReason));
    return this.#waiting!.enqueue(context.priority, context.deadline - this.#minRemainingMs, context).then((admission) => this.#runAdmitted(admission, context, next));
  }

  /** Stops the event-loop delay monitor this shedder created (a supplied source is left alone). */
  close(): void {
    if (this.#eld?.owned) this.#eld.source.close?.();
  }

  /**
   * The error a refused call rejects with. Two reasons are not overload and keep the meaning the
   * other policies give them: a caller that gave up is ABORTED, and a deadline that leaves too
   * little time is DEADLINE_EXCEEDED (504 at the edge, as the timeout and the bulkhead refuse
   * such calls), since no retry of that request can succeed.
   */
  #rejection(admission: ShedRejection, context: CallContext): Error {
    if (admission.reason === 'aborted') return new AbortedError(context.abortReason);
    if (admission.reason === 'deadline') {
      return new DeadlineExceededError(context.deadline, `shed: the call's deadline left ${this.#minRemainingMs} ms or less (minRemainingMs)`);
    }
    return new ShedError(admission.reason, admission.retryAfterMs);
  }

  #runAdmitted<T>(admission: ShedDecision, context: CallContext, next: Next<T>): Promise<T> {
    if (!admission.admitted) return Promise.reject(this.#rejection(admission, context));
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      admission.release();
      return Promise.reject(error);
    }
    return work.then(
      (value) => {
        admission.release();
        return value;
      },
      (error: unknown) => {
        admission.release();
        throw error;
      },
    );
  }

  #decide(priority: Priority, deadline: number): Decision {
    const threshold = this.thresholds[priority];
    if (threshold === undefined) throw new InvalidAdmissionError(`unknown priority ${JSON.stringify(priority)}; expected one of ${PRIORITIES.join(', ')}`);
    if (deadline !== Infinity) {
      if (typeof deadline !== 'number' || Number.isNaN(deadline)) throw new InvalidAdmissionError(`deadline must be a number of clock milliseconds, got ${String(deadline)}`);
      if (deadline - this.clock.now() <= this.#minRemainingMs) return this.#reject('deadline', priority, NaN);
    }
    if (priority === 'critical') return this.#grant(priority);
    const u = this.utilisation();
    if (u >= threshold) return this.#reject('priority', priority, u);
    const red = this.#red;
    if (red !== undefined && red.applies[priority]) {
      const p = redDropProbability(u, red.min, red.max);
      if (p > 0 && this.#random() < p) return this.#reject('red', priority, u);
    }
    if (this.#inflight < this.capacity) return this.#grant(priority);
    if (this.#waiting === undefined) return this.#reject('capacity', priority, u);
    return QUEUE;
  }

  #grant(priority: Priority): ShedPermit {
    this.#inflight++;
    this.#admitted++;
    return new ShedPermit(this, priority);
  }

  #reject(reason: ShedReason, priority: Priority, utilisation: number): ShedRejection {
    this.#shed[reason]++;
    if (this.#onShed.active) this.#onShed.emit({ reason, priority, utilisation });
    const r = this.#retryAfter;
    const retryAfterMs = typeof r === 'function' ? r(reason, utilisation) : reason === 'deadline' || reason === 'aborted' ? 0 : r;
    return { admitted: false, reason, retryAfterMs, priority, utilisation };
  }

  /** A waiter leaves the queue without a slot (or a request finds it full). */
  readonly #shedWaiter = (reason: ShedReason, priority: Priority): ShedRejection =>
    this.#reject(reason, priority, reason === 'aborted' ? NaN : this.utilisation());

  /** @internal A permit was released. */
  [RELEASE](): void {
    this.#inflight--;
    if (this.#waiting !== undefined && this.#waiting.size > 0) this.#drain(this.#waiting);
  }

  /** Hands free slots to waiters, in the order the queue mode says. */
  #drain(waiting: ShedWaitQueue<ShedPermit>): void {
    while (waiting.size > 0 && this.#inflight < this.capacity) {
      const waiter = waiting.take(this.clock.now());
      if (waiter === undefined) return;
      this.#inflight++;
      this.#admitted++;
      waiter.resolve(new ShedPermit(this, waiter.priority));
    }
  }

  readonly #reportOverload = (overloaded: boolean): void => {
    if (this.#onOverload.active) this.#onOverload.emit({ overloaded });
  };

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        capacity: this.capacity,
        thresholds: { ...this.thresholds },
        red: this.#red ? { min: this.#red.min, max: this.#red.max } : undefined,
        queue: this.#waiting ? { ...this.#waiting.config } : undefined,
        queueTime: this.#queueTimeTargetMs === undefined ? undefined : { targetMs: this.#queueTimeTargetMs },
        eventLoopDelay: this.#eld ? { targetMs: this.#eld.targetMs } : undefined,
        minRemainingMs: this.#minRemainingMs,
        occupancy: this.#occupancy,
      },
    };
  }
}

export function loadShedder(options: LoadShedderOptions): LoadShedder {
  return new LoadShedder(options);
}
