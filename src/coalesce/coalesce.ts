import { abortedError, rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { CallContext, type CallOptions } from '../core/context.js';
import { AbortedError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { type Next, type PolicyDescription } from '../core/policy.js';
import { KeyedPolicy } from '../core/keyed-policy.js';
import { nonNegative, positiveInt } from '../core/validate.js';

export interface CoalesceOptions {
  /**
   * The key of a call in pipeline use: calls with the same key share one execution. Return
   * undefined to run a call on its own. Default: the call's `tags.key` (a call without one is
   * rejected with INVALID_INPUT, so a missing key is never silently uncoalesced).
   * `coalescer.execute(key, operation)` passes the key explicitly instead.
   */
  key?: (context: CallContext) => string | undefined;
  /**
   * Keeps a successful result this long (ms) so calls arriving just after it are served
   * without a new execution. Errors are never kept. Default 0 (share in-flight calls only).
   */
  resultTtlMs?: number;
  /** Bound on kept results (oldest evicted first). Default 1000. */
  maxResults?: number;
  clock?: Clock;
  name?: string;
}

export interface FlightAbandonedEvent {
  key: string;
}

/** One shared execution and the callers waiting on it. */
class Flight<T> {
  /** Waiters that can still leave (their call has an abort source). */
  waiters = 0;
  /** A waiter that can never leave joined: the flight must run to completion. */
  pinned = false;
  abandoned = false;
  /** The execution has ended (its outcome is on the way to the waiters). */
  landed = false;
  promise!: Promise<T>;
  constructor(
    readonly key: string,
    readonly context: CallContext,
  ) {}
}

interface KeptResult {
  value: unknown;
  expiresAt: number;
}

/**
 * Request coalescing (single-flight): concurrent calls with the same key share one
 * execution and its outcome. Each waiter can leave on its own (its signal aborts, it gets
 * ABORTED); the shared execution is aborted only when every waiter has left. Errors are
 * shared with the waiters of that execution but never kept: the next call starts afresh.
 *
 * The shared execution runs in its own context (first caller's priority and tags, no
 * deadline, aborted only when abandoned): put a timeout inside the coalescer to bound it,
 * and one outside to bound each caller's wait.
 *
 * Callers that cannot be aborted simply share the execution's promise: no allocation, no
 * listener per waiter.
 */
export class CoalescePolicy extends KeyedPolicy {
  readonly kind = 'coalesce';
  readonly #resultTtlMs: number;
  readonly #maxResults: number;
  readonly #flights = new Map<string, Flight<any>>();
  readonly #results = new Map<string, KeptResult>();
  #executions = 0;
  #shared = 0;
  readonly #onAbandoned = new EventEmitter<FlightAbandonedEvent>();
  /** Every waiter of an execution left, so it was aborted. */
  readonly onAbandoned = this.#onAbandoned.event;

  constructor(options: CoalesceOptions = {}) {
    super(options.clock, options.key, 'coalesce', options);
    this.#resultTtlMs = nonNegative('coalesce.resultTtlMs', options.resultTtlMs, 0);
    this.#maxResults = positiveInt('coalesce.maxResults', options.maxResults, 1000);
  }

  /** Keys with an execution in flight. */
  get inFlight(): number {
    return this.#flights.size;
  }

  /** Whether an execution for `key` is in flight. */
  has(key: string): boolean {
    return this.#flights.has(key);
  }

  /** Counters: executions started, calls served by sharing (in-flight or kept results). */
  stats(): { executions: number; shared: number; inFlight: number; kept: number } {
    return { executions: this.#executions, shared: this.#shared, inFlight: this.#flights.size, kept: this.#results.size };
  }

  /** Forgets `key`: the next call starts a new execution (the one in flight keeps its waiters). */
  forget(key: string): void {
    this.#flights.delete(key);
    this.#results.delete(key);
  }

  /**
   * `execute(key, operation)` on a hot key: a caller without a signal can never leave, so joining
   * an execution in flight needs no context at all, just its promise.
   */
  protected override answerAtOnce<T>(key: string, options: CallOptions | AbortSignal | undefined): Promise<T> | undefined {
    if (options !== undefined || this.#resultTtlMs !== 0) return undefined;
    const flight = this.#flights.get(key) as Flight<T> | undefined;
    if (flight === undefined) return undefined;
    this.#shared++;
    flight.pinned = true;
    return flight.promise;
  }

  /**
   * Joins the execution for `key`, starting it with `next` when there is none. The building
   * block for other policies (the stale cache coalesces its loads through this).
   */
  runKeyed<T>(key: string, context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context);
    if (this.#resultTtlMs > 0) {
      const kept = this.#results.get(key);
      if (kept !== undefined) {
        if (this.clock.now() < kept.expiresAt) {
          this.#shared++;
          return Promise.resolve(kept.value as T);
        }
        this.#results.delete(key);
      }
    }
    let flight = this.#flights.get(key) as Flight<T> | undefined;
    if (flight === undefined) flight = this.#start(key, context, next);
    else this.#shared++;
    return this.#wait(flight, context);
  }

  #start<T>(key: string, context: CallContext, next: Next<T>): Flight<T> {
    this.#executions++;
    // Its own context: the first caller leaving must not abort what the others wait for.
    const root = CallContext.root(this.clock, context.operation, { priority: context.priority, tags: context.tags });
    const flight = new Flight<T>(key, root.derive({ abortable: true }));
    this.#flights.set(key, flight);
    let work: Promise<T>;
    try {
      work = next(flight.context);
    } catch (error) {
      work = Promise.reject(error);
    }
    flight.promise = work.then(
      (value) => {
        this.#land(flight);
        if (this.#resultTtlMs > 0 && !flight.abandoned) this.#keep(key, value);
        return value;
      },
      (error) => {
        this.#land(flight);
        throw error;
      },
    );
    // Waiters that left may leave nobody to observe a failure: never an unhandled rejection.
    flight.promise.catch(noop);
    return flight;
  }

  #land(flight: Flight<unknown>): void {
    flight.landed = true;
    flight.context.release();
    if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
  }

  #keep(key: string, value: unknown): void {
    this.#results.delete(key);
    this.#results.set(key, { value, expiresAt: this.clock.now() + this.#resultTtlMs });
    if (this.#results.size > this.#maxResults) this.#results.delete(this.#results.keys().next().value!);
  }

  #wait<T>(flight: Flight<T>, context: CallContext): Promise<T> {
    if (!context.canAbort) {
      flight.pinned = true;
      return flight.promise;
    }
    const signal = context.signal;
    flight.waiters++;
    return new Promise<T>((resolve, reject) => {
      let left = false;
      const onAbort = (): void => {
        left = true;
        reject(abortedError(signal.reason));
        if (--flight.waiters === 0 && !flight.pinned) this.#abandon(flight);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      flight.promise.then(
        (value) => {
          if (left) return;
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (error) => {
          if (left) return;
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      );
    });
  }

  #abandon(flight: Flight<unknown>): void {
    if (flight.abandoned || flight.landed) return; // nothing left to cancel
    flight.abandoned = true;
    // New callers must not join an execution that is being cancelled.
    if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
    flight.context.abort(new AbortedError(new Error(`coalesce: every caller waiting for "${flight.key}" left`)));
    if (this.#onAbandoned.active) this.#onAbandoned.emit({ key: flight.key });
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { resultTtlMs: this.#resultTtlMs, maxResults: this.#maxResults, key: this.keySource },
    };
  }
}

const noop = (): void => {};

/** `tags.key` when it is a string; a call without a key is a usage error (INVALID_INPUT). */
export function coalesce(options?: CoalesceOptions): CoalescePolicy {
  return new CoalescePolicy(options);
}
