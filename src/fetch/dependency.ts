import type { RetryBudget, RetryBudgetSnapshot } from '../core/budget.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { degradation, markDegraded } from '../core/degraded.js';
import { BulwarkError, InvalidInputError } from '../core/errors.js';
import { EventEmitter, type Event } from '../core/events.js';
import { BasePolicy, pipeline, type Next, type Pipeline, type Policy, type PolicyDescription } from '../core/policy.js';
import type { Random } from '../core/random.js';
import { BulkheadPolicy, type BulkheadStats } from '../bulkhead/bulkhead.js';
import type { BreakerStateChange, BreakerStats } from '../breaker/breaker.js';
import { isDependencyFailure } from '../breaker/classify.js';
import { KeyedCircuitBreaker, type KeyedBreakerStats } from '../breaker/keyed.js';
import type { CircuitStateKind } from '../breaker/snapshot.js';
import { StaleCachePolicy } from '../cache/stale-cache.js';
import { CoalescePolicy } from '../coalesce/coalesce.js';
import { HedgePolicy } from '../hedge/hedge.js';
import { deadlineHeaders } from '../core/deadline-headers.js';
import { RetryPolicy } from '../retry/retry.js';
import { MAX_TIMER_MS } from '../retry/backoff.js';
import { TimeoutPolicy } from '../timeout/timeout.js';
import type { Response } from 'undici';
import { SharedResponse, UpstreamStatusError, discardResult, shareResponse } from './body.js';
import { FETCH_CALL, FETCH_DEFAULTS, callOf, type FetchAnswer, type FetchCallTags, type ResolvedDependency } from './options.js';
import { shareKey, type FetchCall } from './request.js';

/** Stale answers carry this header: the answer's age in ms (as well as the `degradation()` mark). */
export const STALE_HEADER = 'bulwark-stale';

/** Sends one attempt: undici's fetch with the client's dispatcher. */
export type Transport = (call: FetchCall, headers: Readonly<Record<string, string>>, signal: AbortSignal) => Promise<Response>;

/** What every dependency of one client shares. */
export interface ClientShared {
  clock: Clock;
  random: Random | undefined;
  deadlineMarginMs: number;
  keyHeaders: readonly string[];
  /** The budget for a dependency whose retry options do not name one (undefined: none). */
  budgetFor(name: string): RetryBudget | undefined;
  transport: Transport;
}

export interface FetchDependencyStats {
  name: string;
  /** Calls made through this dependency (a coalesced or cached call counts once per caller). */
  requests: number;
  /** Retries started (attempts after the first). */
  retries: number;
  /** Breaker state per host that has one. */
  breakers: Record<string, CircuitStateKind>;
  breakerKeys?: KeyedBreakerStats;
  bulkhead?: BulkheadStats;
  hedge?: ReturnType<HedgePolicy['stats']>;
  coalesce?: ReturnType<CoalescePolicy['stats']>;
  cache?: ReturnType<StaleCachePolicy['stats']>;
  budget?: RetryBudgetSnapshot;
}

/** A state change of one host's breaker in a dependency. */
export interface FetchBreakerStateChange extends BreakerStateChange {
  /** The dependency whose breaker moved. */
  dependency: string;
  /** The host (`host:port`) the breaker guards. */
  host: string;
}

/** Runs a policy only for the calls `applies` picks; the others go straight to `next`. */
class When<In> extends BasePolicy<never, In> {
  readonly kind: string;
  constructor(
    readonly policy: Policy<never, In>,
    readonly applies: (call: FetchCall, context: CallContext) => boolean,
    readonly condition: string,
  ) {
    super(policy.clock);
    this.kind = policy.kind;
  }

  run<T extends In>(context: CallContext, next: Next<T>): Promise<T> {
    return this.applies(callOf(context.tags), context) ? this.policy.run(context, next) : next(context);
  }

  stats(): object {
    return this.policy.stats();
  }

  describe(): PolicyDescription {
    const inner = this.policy.describe();
    return { ...inner, options: { ...inner.options, when: this.condition } };
  }
}

/** Inside the stale cache: a shared 5xx answer becomes an error, so serve-stale-on-error applies to it. */
class ServerErrorsThrow extends BasePolicy {
  readonly kind = 'server-errors-throw';
  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    return next(context).then(throwServerError);
  }
  stats(): object {
    return {};
  }
  describe(): PolicyDescription {
    return { kind: this.kind, options: {} };
  }
}

function throwServerError<T>(value: T): T {
  if (value instanceof SharedResponse && value.status >= 500) throw new UpstreamStatusError(value);
  return value;
}

const isServerError = (result: { status: number }): boolean => result.status >= 500;

/** What the stale cache keeps: whole bodies of chosen statuses, never `no-store`, never another policy's fallback. */
function isStorable(value: unknown, statuses: ReadonlySet<number>): boolean {
  if (!(value instanceof SharedResponse) || !value.complete || !statuses.has(value.status)) return false;
  if (/(^|,)\s*no-store\s*(,|$)/i.test(value.headers.get('cache-control') ?? '')) return false;
  const mark = degradation(value);
  return mark === undefined || mark.source === 'stale-cache';
}
const TOO_LARGE_KEYS = 1000;

/**
 * One dependency's pipeline, built once:
 *
 *   [caller-deadline guard] → [stale cache] → [coalesce] → total timeout → retry → breaker (per host)
 *   → bulkhead → [hedge] → attempt timeout → undici fetch
 *
 * Retry runs only for calls that may be sent twice (idempotent method or Idempotency-Key, and
 * a replayable body); hedge, coalescing and the cache only for GETs. The guard bounds a
 * caller's wait for a shared answer by that caller's deadline.
 */
export class FetchDependency {
  readonly name: string;
  /** @internal */
  readonly settings: ResolvedDependency;
  readonly breakers: KeyedCircuitBreaker<string, FetchAnswer> | undefined;
  readonly bulkhead: BulkheadPolicy | undefined;
  readonly retry: RetryPolicy<FetchAnswer> | undefined;
  readonly hedge: HedgePolicy | undefined;
  readonly coalescer: CoalescePolicy | undefined;
  readonly cache: StaleCachePolicy | undefined;
  readonly budget: RetryBudget | undefined;
  readonly attemptTimeout: TimeoutPolicy | undefined;
  readonly totalTimeout: TimeoutPolicy;
  readonly pipeline: Pipeline<never, FetchAnswer>;
  readonly #shared: ClientShared;
  /** Keys whose answers were too large to share: such GETs are sent one per caller. */
  readonly #tooLarge = new Set<string>();
  #requests = 0;
  #retries = 0;
  readonly #onBreakerStateChange = new EventEmitter<FetchBreakerStateChange>();
  /** State changes of this dependency's breakers (one per host): opened, half-open, closed again. */
  readonly onBreakerStateChange: Event<FetchBreakerStateChange> = this.#onBreakerStateChange.event;

  /** @internal Dependencies are made by `createFetch`. */
  constructor(settings: ResolvedDependency, shared: ClientShared) {
    this.name = settings.name;
    this.settings = settings;
    this.#shared = shared;
    const clock = shared.clock;
    const label = `fetch:${settings.name}`;

    const retry = settings.retry;
    const needsBudget = retry !== undefined || settings.hedge !== undefined;
    this.budget = !needsBudget || retry?.budget === false ? undefined : retry?.budget ?? shared.budgetFor(settings.name);

    const policies: Policy<never, FetchAnswer>[] = [];
    if (settings.cache !== undefined || settings.coalesce) {
      const guard = new TimeoutPolicy({ ms: MAX_TIMER_MS, safetyMarginMs: 0, clock, name: `${label}.caller-deadline` });
      policies.push(new When(guard, (call, context) => call.shared && context.deadline !== Infinity, 'shared answer, caller has a deadline'));
    }
    if (settings.cache !== undefined) {
      const options = settings.cache;
      const statuses = options.statuses;
      this.cache = new StaleCachePolicy({
        ttlMs: options.ttlMs,
        staleWhileRevalidateMs: options.staleWhileRevalidateMs,
        staleIfErrorMs: options.staleIfErrorMs,
        maxEntries: options.maxEntries,
        key: (context) => callOf(context.tags).cacheKey,
        shouldCache: (value) => isStorable(value, statuses),
        clock,
        name: `${label}.cache`,
      });
      policies.push(this.cache, new ServerErrorsThrow(clock));
    }
    if (settings.coalesce) {
      this.coalescer = new CoalescePolicy({ key: (context) => callOf(context.tags).coalesceKey, clock, name: `${label}.coalesce` });
      policies.push(this.coalescer);
    }

    this.totalTimeout = new TimeoutPolicy({ ms: settings.totalTimeoutMs ?? MAX_TIMER_MS, safetyMarginMs: 0, clock, name: `${label}.total` });
    // The caller's deadline is honoured even when no total timeout is configured.
    policies.push(settings.totalTimeoutMs !== undefined
      ? this.totalTimeout
      : new When(this.totalTimeout, (_call, context) => context.deadline !== Infinity, 'caller has a deadline'));

    if (retry !== undefined) {
      const statuses = retry.statuses;
      this.retry = new RetryPolicy({
        maxAttempts: retry.maxAttempts ?? FETCH_DEFAULTS.maxAttempts,
        backoff: retry.backoff,
        maxElapsedMs: retry.maxElapsedMs,
        maxRetryAfterMs: retry.maxRetryAfterMs,
        shouldRetry: retry.shouldRetry,
        budget: this.budget,
        handleResult: (result: { status: number }) => statuses.has(result.status),
        clock,
        random: shared.random,
        name: `${label}.retry`,
      });
      // A retried response is thrown away: free its connection (see body.ts).
      this.retry.onRetry((event) => {
        this.#retries++;
        if (event.result !== undefined) discardResult(event.result);
      });
      policies.push(new When(this.retry, (call) => call.retryable, 'idempotent request, replayable body'));
    }

    if (settings.breaker !== undefined) {
      const { maxHosts, ...options } = settings.breaker;
      this.breakers = new KeyedCircuitBreaker<string, FetchAnswer>({
        name: label,
        maxKeys: maxHosts,
        clock,
        options: { isFailure: isDependencyFailure, isResultFailure: isServerError, ...options },
      });
      policies.push(this.breakers.policy((context) => callOf(context.tags).host));
      this.breakers.onStateChange(({ key, ...change }) => {
        if (this.#onBreakerStateChange.active) this.#onBreakerStateChange.emit({ ...change, dependency: this.name, host: key });
      });
    }

    if (settings.bulkhead !== undefined) {
      this.bulkhead = new BulkheadPolicy({ ...settings.bulkhead, clock, name: `${label}.bulkhead` });
      policies.push(this.bulkhead);
    }

    if (settings.hedge !== undefined) {
      this.hedge = new HedgePolicy({
        ...settings.hedge,
        idempotent: true, // only GETs reach it (see When below)
        budget: this.budget,
        recordRequests: this.retry === undefined,
        clock,
        name: `${label}.hedge`,
      });
      policies.push(new When(this.hedge, (call) => call.hedgeable, 'GET'));
    }

    if (settings.timeoutMs !== undefined) {
      this.attemptTimeout = new TimeoutPolicy({ ms: settings.timeoutMs, clock, name: `${label}.attempt` });
      policies.push(this.attemptTimeout);
    }
    this.pipeline = pipeline(...policies);
  }

  /** @internal Runs one prepared call through the pipeline. */
  run(call: FetchCall): Promise<Response> {
    this.#requests++;
    call.dependency = this.name;
    const tags: FetchCallTags = { dependency: this.name, method: call.method, host: call.host, idempotent: call.idempotent, [FETCH_CALL]: call };
    call.tags = tags as unknown as Record<string, unknown>;
    this.#classify(call);
    return this.#execute(call);
  }

  #execute(call: FetchCall): Promise<Response> {
    return this.pipeline.execute(this.#send, {
      signal: call.callerSignal,
      deadline: call.deadline,
      priority: call.priority,
      tags: call.tags,
    }).then(
      (value) => this.#deliver(value as Response | SharedResponse, call),
      (error: unknown) => {
        if (error instanceof UpstreamStatusError) return this.#deliver(error.response, call);
        throw error;
      },
    );
  }

  /** Decides which policies apply to this call. */
  #classify(call: FetchCall): void {
    const options = call.options;
    call.retryable = this.retry !== undefined && call.idempotent && call.replayable;
    const get = call.method === 'GET' && call.idempotent;
    call.hedgeable = this.hedge !== undefined && get && options?.hedge !== false;
    if (!get || (this.cache === undefined && this.coalescer === undefined)) return;
    const key = shareKey(call, this.#shared.keyHeaders);
    if (this.#tooLarge.has(key)) return;
    if (this.cache !== undefined && options?.cache !== false && !call.noCache) {
      const custom = this.settings.cache?.key;
      call.cacheKey = custom === undefined ? key : custom({ url: call.url, method: call.method, headers: call.headers });
    }
    if (this.coalescer !== undefined && options?.coalesce !== false) call.coalesceKey = key;
    call.shared = call.cacheKey !== undefined || call.coalesceKey !== undefined;
  }

  /** Gives one caller its own Response; a stale one says so in a header and a degradation mark. */
  #deliver(value: Response | SharedResponse, call: FetchCall): Response | Promise<Response> {
    if (!(value instanceof SharedResponse)) return value;
    if (!value.complete) this.#rememberTooLarge(call);
    const response = value.take();
    if (response === undefined) {
      // Too large to share, and another caller took the one stream: send our own request.
      call.shared = false;
      call.cacheKey = undefined;
      call.coalesceKey = undefined;
      return this.#execute(call);
    }
    const mark = degradation(value);
    if (mark !== undefined) {
      if (mark.source === 'stale-cache') response.headers.set(STALE_HEADER, String(Math.max(0, Math.round(mark.ageMs ?? 0))));
      markDegraded(response, mark);
    }
    return response;
  }

  #rememberTooLarge(call: FetchCall): void {
    const key = shareKey(call, this.#shared.keyHeaders);
    if (this.#tooLarge.size >= TOO_LARGE_KEYS) this.#tooLarge.delete(this.#tooLarge.values().next().value!);
    this.#tooLarge.add(key);
  }

  /** The innermost operation: one HTTP attempt. */
  readonly #send = async (context: CallContext): Promise<Response | SharedResponse> => {
    const call = callOf(context.tags);
    const shared = call.shared; // read once: a caller may unshare its call while a flight runs
    let headers = call.headers;
    // The remaining budget travels with each attempt, recomputed each time, through every layer.
    // Without a deadline there is no header at all (never a placeholder such as `X-Deadline: None`).
    // (Object.assign, not `{ ...a, ...b }`: in Node 20 that takes V8's generic copy path; docs/benchmarks.md.)
    if (call.deadline !== Infinity) {
      const budget = shared ? this.#sharedBudget(call, context) : context;
      if (budget !== undefined) headers = Object.assign({}, headers, deadlineHeaders(budget, { marginMs: this.#shared.deadlineMarginMs }));
    }
    // The caller's signal also covers reading the body after the attempt's policies let go.
    const signal = shared || call.callerSignal === undefined ? context.signal : AbortSignal.any([call.callerSignal, context.signal]);
    let response: Response;
    try {
      response = await this.#shared.transport(call, headers, signal);
    } catch (error) {
      throw transportError(error, signal);
    }
    return shared ? shareResponse(response, this.settings.maxSharedBodyBytes) : response;
  };

  /**
   * The budget a shared attempt (a coalesced or cached GET) announces. The flight runs in its
   * own context, detached from any one caller so that the first caller leaving does not cancel
   * it for the others; its attempts still carry the remaining budget of the caller that started
   * it (`call` is that caller's), bounded by the flight's own timeouts: later callers joined an
   * answer already on its way, and a downstream told nothing would work on unbounded. Once that
   * caller's budget is spent, only the flight's own timeouts are announced (none without them).
   */
  #sharedBudget(call: FetchCall, context: CallContext): { deadline: number; clock: Clock } | CallContext | undefined {
    const clock = context.clock;
    const deadline = Math.min(call.deadline, context.deadline);
    if (deadline - clock.now() - this.#shared.deadlineMarginMs > 0) return { deadline, clock };
    return context.deadline === Infinity ? undefined : context;
  }

  describe(): PolicyDescription {
    return { ...this.pipeline.describe(), name: this.name };
  }

  /** Each host's breaker statistics (state, trips, failures, rejections, window); empty without a breaker. */
  breakerStats(): Record<string, BreakerStats> {
    const out: Record<string, BreakerStats> = {};
    if (this.breakers === undefined) return out;
    for (const host of this.breakers.keys()) {
      const breaker = this.breakers.peek(host);
      if (breaker !== undefined) out[host] = breaker.stats();
    }
    return out;
  }

  stats(): FetchDependencyStats {
    const breakers: Record<string, CircuitStateKind> = {};
    if (this.breakers !== undefined) {
      for (const host of this.breakers.keys()) {
        const breaker = this.breakers.peek(host);
        if (breaker !== undefined) breakers[host] = breaker.state.kind;
      }
    }
    return {
      name: this.name,
      requests: this.#requests,
      retries: this.#retries,
      breakers,
      ...(this.breakers ? { breakerKeys: this.breakers.stats() } : {}),
      ...(this.bulkhead ? { bulkhead: this.bulkhead.stats() } : {}),
      ...(this.hedge ? { hedge: this.hedge.stats() } : {}),
      ...(this.coalescer ? { coalesce: this.coalescer.stats() } : {}),
      ...(this.cache ? { cache: this.cache.stats() } : {}),
      ...(this.budget ? { budget: this.budget.snapshot() } : {}),
    };
  }
}

/**
 * undici rejects with `TypeError('fetch failed', { cause })` when the network failed (the
 * cause carries ECONNREFUSED, UND_ERR_SOCKET...: retried, counted by the breaker) and with a
 * cause-less TypeError when the request itself is malformed: that one becomes INVALID_INPUT,
 * neither retried nor held against the dependency. Aborts pass through as they are.
 */
function transportError(error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted || error instanceof BulwarkError) return error;
  if (error instanceof TypeError && error.cause === undefined) {
    return new InvalidInputError(`fetch: ${error.message}`, { cause: error });
  }
  return error;
}
