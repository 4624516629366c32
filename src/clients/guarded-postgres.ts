/**
 * A guarded `pg` Pool (entry point `bulwark/postgres`): every query runs under
 * `retry (safe calls only) → circuit breaker → bulkhead → timeout`, and a timeout really
 * stops the query on the server (a protocol CancelRequest, see `pg-cancel.ts`), then discards
 * the connection. Only types are imported from `pg`: you pass your own Pool.
 *
 *   const db = guardPool(new pg.Pool({ max: 10 }), { name: 'orders-db', timeoutMs: 2000 });
 *   const { rows } = await db.query('SELECT * FROM orders WHERE id = $1', [id], { safe: true });
 */
import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { TimerHandle } from '../core/clock.js';
import { abortedError } from '../core/abort.js';
import type { CallContext, CallOptions } from '../core/context.js';
import { InvalidInputError, InvalidOptionsError, TimeoutError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import type { PolicyDescription } from '../core/policy.js';
import { nonNegative, positive } from '../core/validate.js';
import type { BreakerStats, CircuitBreakerPolicy } from '../breaker/breaker.js';
import type { BulkheadPolicy, BulkheadStats } from '../bulkhead/bulkhead.js';
import type { RetryPolicy } from '../retry/retry.js';
import type { TimeoutPolicy } from '../timeout/timeout.js';
import { buildGuard, callOptionsOf, describeGuard, executeGuarded, pipelineFor, type Guard, type GuardOptions, type GuardedCallOptions } from './dependency-pipeline.js';
import { cancelTargetOf, sendCancelRequest } from './pg-cancel.js';
import { isConnectionFatal, isPostgresFailure, isPostgresTransient } from './postgres-errors.js';


/** What the guard needs of a pooled client (a `pg` PoolClient has all of it). */
export interface PgClientLike {
  query(text: string | QueryConfig, values?: any[]): Promise<QueryResult<any>>;
  /** `release(true)` discards the connection instead of returning it to the pool. */
  release(destroy?: boolean | Error): void;
}

/** What the guard needs of a pool (a `pg` Pool has all of it). */
export interface PgPoolLike<C extends PgClientLike = PgClientLike> {
  connect(): Promise<C>;
  readonly options?: { max?: number };
  readonly totalCount?: number;
  readonly idleCount?: number;
  readonly waitingCount?: number;
}

/** How a timed-out or aborted query is stopped on the server. */
export type CancelMode =
  /** A protocol CancelRequest (no pool slot, no authentication needed). Default. */
  | 'request'
  /**
   * Only close the connection. The server keeps running the statement until it notices
   * (or `statement_timeout` fires): use it only where CancelRequests cannot reach the server.
   */
  | 'destroy'
  /** Your own cancellation, e.g. `pg_cancel_backend(pid)` through a separate admin pool. */
  | ((client: PgClientLike) => Promise<void>);

export interface GuardPoolOptions extends GuardOptions {
  /** Default 'postgres'. */
  name?: string;
  /** Timeout of one attempt (checkout + statement), ms. Default 5000. */
  timeoutMs?: number;
  /**
   * Default `{ maxConcurrent: pool.options.max, maxQueue: maxConcurrent, queueTimeoutMs:
   * min(1000, timeoutMs) }`. `maxConcurrent` may not exceed the pool's `max`, so calls wait
   * in the bulkhead's bounded, prioritised queue, never in pg's unbounded one.
   */
  bulkhead?: GuardOptions['bulkhead'];
  /** Default 'request'. */
  cancel?: CancelMode;
  /**
   * After a cancel, how long to wait for the statement to end before closing its connection
   * (the backstop when the CancelRequest cannot reach the server). Default 500.
   */
  cancelTimeoutMs?: number;
}

export interface QueryCancelEvent {
  name: string;
  /** The backend's process id, when known. */
  pid: number | undefined;
  /** What stopped the statement: a CancelRequest, your cancel function, or closing the connection. */
  method: 'request' | 'custom' | 'destroy';
  /** Why: the attempt timed out, or the caller aborted. */
  reason: 'timeout' | 'aborted';
  /** False when the cancel could not be delivered (the connection was then closed). */
  ok: boolean;
  error?: unknown;
}

export interface GuardedPoolStats {
  name: string;
  breaker: BreakerStats;
  bulkhead: BulkheadStats;
  /** Attempts running under the timeout now. */
  inFlight: number;
  /** pg's own view, when the pool exposes it. */
  pool: { total: number | undefined; idle: number | undefined; waiting: number | undefined };
  /** Statements cancelled after a timeout or an abort, and cancels that could not be delivered. */
  cancels: { requested: number; failed: number };
  /** Connections discarded instead of returned: after a cancel, or left inside a transaction. */
  connectionsDiscarded: number;
}

export interface TransactionOptions extends GuardedCallOptions {
  /** The statement that opens the transaction, e.g. 'BEGIN ISOLATION LEVEL SERIALIZABLE'. Default 'BEGIN'. */
  begin?: string;
}

type Phase = 'checkout' | 'running' | 'done';

/** One attempt's hold on a connection. */
interface Lease<C> {
  readonly context: CallContext;
  phase: Phase;
  client: C | undefined;
  rejectCheckout: ((error: unknown) => void) | undefined;
  released: boolean;
  cancelled: boolean;
  backstop: TimerHandle | undefined;
}

const CLIENTS_WITH_ERROR_LISTENER = new WeakSet<object>();
const ignoreError = (): void => {};

export class GuardedPool<C extends PgClientLike = PoolClient> {
  readonly kind = 'guarded-postgres';
  readonly name: string;
  readonly pool: PgPoolLike<C>;
  readonly breaker: CircuitBreakerPolicy;
  readonly bulkhead: BulkheadPolicy;
  readonly timeout: TimeoutPolicy;
  /** Applied to calls marked `safe` only; undefined with `retry: false`. */
  readonly retry: RetryPolicy | undefined;
  readonly cancelTimeoutMs: number;
  readonly #guard: Guard;
  readonly #cancel: CancelMode;
  #cancelsRequested = 0;
  #cancelsFailed = 0;
  #discarded = 0;
  /** Attempts in flight (checking out or running): what a timeout may have to cancel. */
  readonly #leases = new Set<Lease<C>>();

  readonly #onCancel = new EventEmitter<QueryCancelEvent>();
  /** A statement was cancelled (timeout or abort). */
  readonly onCancel = this.#onCancel.event;

  constructor(pool: PgPoolLike<C>, options: GuardPoolOptions = {}) {
    if (typeof pool !== 'object' || pool === null || typeof pool.connect !== 'function') {
      throw new InvalidOptionsError('guardPool() needs a pg Pool (an object with connect())');
    }
    const poolMax = pool.options?.max;
    const timeoutMs = positive('guardPool.timeoutMs', options.timeoutMs, 5000);
    const cancel = options.cancel ?? 'request';
    if (cancel !== 'request' && cancel !== 'destroy' && typeof cancel !== 'function') {
      throw new InvalidOptionsError(`guardPool.cancel must be 'request', 'destroy' or a function, got ${String(cancel)}`);
    }
    const cancelTimeoutMs = nonNegative('guardPool.cancelTimeoutMs', options.cancelTimeoutMs, 500);
    this.#guard = buildGuard({ ...options, timeoutMs }, {
      kind: 'guardPool',
      name: 'postgres',
      timeoutMs,
      // The CancelRequest ends a statement within milliseconds; the grace covers the backstop.
      graceMs: Math.max(1000, 2 * cancelTimeoutMs),
      maxConcurrent: 10,
      ...(typeof poolMax === 'number' && poolMax >= 1 ? { maxConcurrentLimit: { value: poolMax, what: 'the pool size (pool.options.max)' } } : {}),
      isFailure: isPostgresFailure,
      isTransient: isPostgresTransient,
    });
    this.#cancel = cancel;
    this.cancelTimeoutMs = cancelTimeoutMs;
    this.pool = pool;
    this.name = this.#guard.name;
    this.breaker = this.#guard.breaker;
    this.bulkhead = this.#guard.bulkhead;
    this.timeout = this.#guard.timeout;
    this.retry = this.#guard.retry;
    // How a timeout reaches the running statement without a per-call abort listener (adding and
    // removing one costs too much per call, see docs/benchmarks.md): the timeout aborts the attempt's
    // context and then emits onTimeout synchronously; one subscription per guard then finds the
    // aborted attempts among the few in flight (at most the pool size).
    this.timeout.onTimeout(() => {
      for (const lease of this.#leases) {
        if (lease.context.aborted) this.#abort(lease, lease.context.abortReason);
      }
    });
  }

  /**
   * One statement on a pooled connection. `safe: true` allows retries after transient errors
   * (mark only idempotent statements). Rejects with TIMEOUT (the statement was cancelled on the
   * server), CIRCUIT_OPEN, BULKHEAD_FULL / BULKHEAD_QUEUE_TIMEOUT, DEADLINE_EXCEEDED, or the
   * database's own error unchanged (e.g. code '23505').
   */
  query<R extends QueryResultRow = any>(
    text: string | QueryConfig,
    values?: readonly unknown[],
    options?: GuardedCallOptions,
  ): Promise<QueryResult<R>> {
    const params = values as unknown[] | undefined;
    return this.#guarded((client) => client.query(text, params) as Promise<QueryResult<R>>, options);
  }

  /**
   * Checks out one connection for several statements under the same guard (one bulkhead
   * slot, one timeout for the whole callback). On timeout or abort the running statement is
   * cancelled and the connection discarded; it is always released, and discarded too when the
   * callback leaves a transaction open. Mark `safe` only if the whole callback may run again.
   */
  withClient<T>(fn: (client: C, context: CallContext) => Promise<T> | T, options?: GuardedCallOptions): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidInputError('withClient(fn): fn must be a function'));
    return this.#guarded(fn, options);
  }

  /** Runs `fn` on a checked-out connection under the guard, with the caller's options (signal, deadline, safe). */
  #guarded<T>(fn: (client: C, context: CallContext) => Promise<T> | T, options: GuardedCallOptions | undefined): Promise<T> {
    let call: CallOptions | undefined;
    try {
      call = callOptionsOf(this.#guard.timeout.clock, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const signal = call?.signal;
    return executeGuarded(pipelineFor(this.#guard, options), (ctx) => this.#onClient(ctx, signal, fn), call);
  }

  /**
   * `withClient` inside BEGIN … COMMIT (ROLLBACK on error). With `safe: true` a transaction
   * that failed on a serialization failure (40001) or a deadlock (40P01) is replayed whole.
   */
  transaction<T>(fn: (client: C, context: CallContext) => Promise<T> | T, options?: TransactionOptions): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidInputError('transaction(fn): fn must be a function'));
    const begin = options?.begin ?? 'BEGIN';
    return this.withClient(async (client, ctx) => {
      await client.query(begin);
      let result: T;
      try {
        result = await fn(client, ctx);
      } catch (error) {
        // A failed ROLLBACK leaves the transaction open: the lease then discards the connection.
        await client.query('ROLLBACK').catch(ignoreError);
        throw error;
      }
      await client.query('COMMIT');
      return result;
    }, options);
  }

  stats(): GuardedPoolStats {
    return {
      name: this.name,
      breaker: this.breaker.stats(),
      bulkhead: this.bulkhead.stats(),
      inFlight: this.timeout.inFlight,
      pool: { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount },
      cancels: { requested: this.#cancelsRequested, failed: this.#cancelsFailed },
      connectionsDiscarded: this.#discarded,
    };
  }

  describe(): PolicyDescription {
    return describeGuard(this.#guard, this.kind, {
      timeoutMs: this.#guard.timeoutMs,
      poolMax: this.pool.options?.max,
      cancel: typeof this.#cancel === 'function' ? 'custom' : this.#cancel,
      cancelTimeoutMs: this.cancelTimeoutMs,
    });
  }

  // ----------------------------------------------------------------------------- one attempt

  /**
   * Checks out a connection, runs `work` on it, and releases it when the work has ended.
   * Timeouts reach the attempt through the onTimeout sweep (constructor); a caller's own
   * signal, when there is one, through a listener the caller chose to pay for.
   */
  async #onClient<T>(ctx: CallContext, signal: AbortSignal | undefined, work: (client: C, ctx: CallContext) => Promise<T> | T): Promise<T> {
    if (ctx.aborted) throw abortedError(ctx.abortReason);
    const lease: Lease<C> = { context: ctx, phase: 'checkout', client: undefined, rejectCheckout: undefined, released: false, cancelled: false, backstop: undefined };
    this.#leases.add(lease);
    const onCallerAbort = signal === undefined ? undefined : () => this.#abort(lease, ctx.abortReason);
    if (onCallerAbort !== undefined) signal!.addEventListener('abort', onCallerAbort, { once: true });
    try {
      const client = await this.#checkout(lease);
      if (ctx.aborted) {
        // Aborted while the connection was being handed over: nothing ran on it, give it back.
        this.#release(lease, false);
        throw abortedError(ctx.abortReason);
      }
      lease.phase = 'running';
      let failed = false;
      let error: unknown;
      let result!: T;
      try {
        result = await work(client, ctx);
      } catch (caught) {
        failed = true;
        error = caught;
      }
      lease.phase = 'done';
      if (lease.backstop !== undefined) ctx.clock.clearTimeout(lease.backstop);
      this.#release(lease, lease.cancelled || leftInTransaction(client) || (failed && isConnectionFatal(error)));
      if (!failed) return result;
      throw this.#errorAfter(ctx, error);
    } finally {
      lease.phase = 'done';
      this.#leases.delete(lease);
      if (onCallerAbort !== undefined) signal!.removeEventListener('abort', onCallerAbort);
    }
  }

  /** `pool.connect()`, abandonable: an abort rejects at once and a connection arriving later goes straight back. */
  #checkout(lease: Lease<C>): Promise<C> {
    return new Promise<C>((resolve, reject) => {
      lease.rejectCheckout = reject;
      let pending: Promise<C>;
      try {
        pending = Promise.resolve(this.pool.connect());
      } catch (error) {
        reject(error);
        return;
      }
      pending.then(
        (client) => {
          listenForErrors(client);
          if (lease.phase !== 'checkout') {
            safeRelease(client, false); // the attempt was abandoned while waiting: nothing ran on it
            return;
          }
          lease.client = client;
          resolve(client);
        },
        (error: unknown) => {
          if (lease.phase === 'checkout') reject(error);
        },
      );
    });
  }

  #abort(lease: Lease<C>, reason: unknown): void {
    if (lease.phase === 'checkout') {
      lease.phase = 'done';
      lease.rejectCheckout?.(abortedError(reason));
      return;
    }
    if (lease.phase !== 'running' || lease.cancelled) return;
    lease.cancelled = true;
    this.#cancelsRequested++;
    const client = lease.client!;
    const why: QueryCancelEvent['reason'] = reason instanceof TimeoutError ? 'timeout' : 'aborted';
    const target = cancelTargetOf(client);
    const mode = this.#cancel;
    if (mode === 'destroy' || (mode === 'request' && target === undefined)) {
      this.#emitCancel(target?.processID, 'destroy', why, true);
      this.#release(lease, true); // closing the socket fails the running statement on our side at once
      return;
    }
    const method: QueryCancelEvent['method'] = mode === 'request' ? 'request' : 'custom';
    let sent: Promise<void>;
    try {
      sent = mode === 'request' ? sendCancelRequest(target!, this.cancelTimeoutMs) : Promise.resolve(mode(client));
    } catch (error) {
      sent = Promise.reject(error);
    }
    // Backstop: a statement still running `cancelTimeoutMs` after the abort loses its connection.
    const clock = this.timeout.clock;
    lease.backstop = clock.setTimeout(() => {
      lease.backstop = undefined;
      if (lease.phase === 'running') this.#release(lease, true);
    }, this.cancelTimeoutMs);
    lease.backstop.unref?.();
    sent.then(
      () => this.#emitCancel(target?.processID, method, why, true),
      (error: unknown) => {
        this.#cancelsFailed++;
        this.#emitCancel(target?.processID, method, why, false, error);
        if (lease.phase === 'running') this.#release(lease, true);
      },
    );
  }

  #emitCancel(pid: number | undefined, method: QueryCancelEvent['method'], reason: QueryCancelEvent['reason'], ok: boolean, error?: unknown): void {
    if (this.#onCancel.active) this.#onCancel.emit({ name: this.name, pid, method, reason, ok, ...(error === undefined ? {} : { error }) });
  }

  /** Releases once; `destroy` discards the connection (pg closes it, failing any statement still running). */
  #release(lease: Lease<C>, destroy: boolean): void {
    if (lease.released || lease.client === undefined) return;
    lease.released = true;
    if (destroy) this.#discarded++;
    safeRelease(lease.client, destroy);
  }

  /**
   * The error an attempt ends with. After the timeout's abort, the statement's own error
   * (57014 "canceling statement") goes up and the timeout wraps it as the TimeoutError's
   * cause; after the caller's abort, ABORTED with the abort reason as cause.
   */
  #errorAfter(ctx: CallContext, error: unknown): unknown {
    if (!ctx.aborted) return error;
    const reason = ctx.abortReason;
    if (reason instanceof TimeoutError) return error;
    return abortedError(reason);
  }
}

/** Wraps a `pg` Pool (or anything shaped like one). See `GuardPoolOptions` for the defaults. */
export function guardPool<C extends PgClientLike = PoolClient>(pool: PgPoolLike<C>, options?: GuardPoolOptions): GuardedPool<C> {
  return new GuardedPool<C>(pool, options);
}

function safeRelease(client: PgClientLike, destroy: boolean): void {
  try {
    client.release(destroy ? true : undefined);
  } catch (error) {
    process.emitWarning(`bulwark: releasing a pg client failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * pg emits 'error' on a checked-out client whose connection dies between statements; with no
 * listener that crashes the process. One listener per client, for its lifetime (the pool
 * removes the broken client on release).
 */
function listenForErrors(client: object): void {
  if (CLIENTS_WITH_ERROR_LISTENER.has(client)) return;
  const on = (client as { on?: (event: string, listener: () => void) => unknown }).on;
  if (typeof on !== 'function') return;
  CLIENTS_WITH_ERROR_LISTENER.add(client);
  on.call(client, 'error', ignoreError);
}

/** True when the connection is inside a transaction ('T') or a failed one ('E'): never hand it to the next caller. */
function leftInTransaction(client: PgClientLike): boolean {
  const status = (client as { getTransactionStatus?: () => string | null }).getTransactionStatus;
  if (typeof status !== 'function') return false;
  const s = status.call(client);
  return s === 'T' || s === 'E';
}
