import type { RetryBudget } from '../core/budget.js';
import type { Clock } from '../core/clock.js';
import { InvalidOptionsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { fn, positive, positiveInt } from '../core/validate.js';
import type { BulkheadOptions } from '../bulkhead/bulkhead.js';
import type { CircuitBreakerOptions } from '../breaker/breaker.js';
import type { HedgeOptions } from '../hedge/hedge.js';
import type { RetryOptions } from '../retry/retry.js';
import { RETRYABLE_STATUSES } from '../retry/classify.js';
import type { FetchCall } from './request.js';
import type { SharedResponse } from './body.js';

export interface FetchRetryOptions extends Pick<RetryOptions, 'maxAttempts' | 'backoff' | 'maxElapsedMs' | 'maxRetryAfterMs' | 'shouldRetry'> {
  /**
   * Response statuses retried (after their Retry-After, if any). Default 429, 500, 502, 503, 504.
   * A response carrying `Bulwark-Retry: no` is never retried, whatever its status.
   */
  statuses?: readonly number[];
  /**
   * The retry budget this dependency's retries and hedges draw from. Default: the client's
   * `budget`; `false` for none (retries limited by `maxAttempts` only).
   */
  budget?: RetryBudget | false;
}

/** What a dependency's result predicates (the breaker's `isResultFailure`) read: the upstream's answer. */
export type FetchAnswer = Response | SharedResponse;

export interface FetchBreakerOptions extends Omit<CircuitBreakerOptions<FetchAnswer>, 'clock' | 'name' | 'initialState'> {
  /** Hosts with a breaker of their own at most (least recently used closed ones are evicted). Default 1000. */
  maxHosts?: number;
}

export type FetchBulkheadOptions = Omit<BulkheadOptions, 'clock' | 'name'>;

export type FetchHedgeOptions = Omit<HedgeOptions, 'clock' | 'name' | 'budget' | 'recordRequests' | 'idempotent'>;

/** What a cache `key` function sees of a call. */
export interface FetchKeyInput {
  readonly url: URL;
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
}

export interface FetchCacheOptions {
  /** Fresh for this long (ms): served without a request. Required. */
  ttlMs: number;
  /** After `ttlMs`, serve the stale answer at once and refresh it in the background, this long. Default 0. */
  staleWhileRevalidateMs?: number;
  /** After `ttlMs`, serve the stale answer when the request fails (error, 5xx, breaker open), this long. Default 0. */
  staleIfErrorMs?: number;
  /** Entries kept (LRU). Default 1000. */
  maxEntries?: number;
  /** Statuses stored. Default [200]. Responses with `Cache-Control: no-store` are never stored. */
  statuses?: readonly number[];
  /**
   * The cache key of a GET, or undefined to bypass the cache for it. Default: method, URL and
   * the key headers (`Accept*`, `Range`, and a hash of `Authorization`/`Cookie`).
   */
  key?: (request: FetchKeyInput) => string | undefined;
}

export interface DependencyOptions {
  /** Hosts served by this dependency: `host` (any port) or `host:port`. Default: the dependency's name. */
  hosts?: readonly string[];
  /** Matches URLs to this dependency (checked after `hosts`, in declaration order). */
  match?: (url: URL) => boolean;
  /** Per-attempt timeout, ms (to response headers; buffered shared bodies included). Default 10 000; `false` for none. */
  timeoutMs?: number | false;
  /** Whole-call timeout across retries, ms. Default 30 000; `false` for none. */
  totalTimeoutMs?: number | false;
  /** Retries for idempotent requests. Default `{ maxAttempts: 3 }` (exponential backoff, full jitter). */
  retry?: FetchRetryOptions | false;
  /** One breaker per host. Default: 5 consecutive failures open it for 30 s. */
  breaker?: FetchBreakerOptions | false;
  /** Concurrency limit for the whole dependency. Default `{ maxConcurrent: 100, maxQueue: 100 }`. */
  bulkhead?: FetchBulkheadOptions | false;
  /** Hedged GETs. Off by default. */
  hedge?: FetchHedgeOptions | false;
  /** Coalesce concurrent identical GETs into one request. Off by default. */
  coalesce?: boolean;
  /** Stale cache for this dependency's GETs. Off by default. */
  cache?: FetchCacheOptions | false;
  /** Largest body buffered for a shared (coalesced or cached) answer. Default 1 MiB. */
  maxSharedBodyBytes?: number;
}

export interface CreateFetchOptions {
  /** Named dependencies. A call goes to the first whose `hosts` or `match` fit its URL. */
  dependencies?: Readonly<Record<string, DependencyOptions>>;
  /**
   * Settings for URLs no dependency matches (they share one pipeline, with a breaker per
   * host). `false` rejects such calls with INVALID_INPUT. Default: the built-in defaults.
   */
  defaults?: DependencyOptions | false;
  /**
   * The undici Dispatcher (e.g. an `Agent`) to send through. Default: an Agent the client owns
   * (128 connections per origin, 10 s connect timeout), closed by `close()`.
   */
  dispatcher?: unknown;
  /**
   * Subtracted from the remaining budget in `X-Request-Timeout-Ms`, so the callee gives up
   * (and answers) before we stop waiting. Default 50.
   */
  deadlineMarginMs?: number;
  /** A retry budget shared by every dependency. Default: one `ratioBudget()` per dependency; `false` for none. */
  budget?: RetryBudget | false;
  /** The header that makes a non-idempotent request retryable. Default 'idempotency-key'. */
  idempotencyKeyHeader?: string;
  /** Request headers that tell two GETs of one URL apart for coalescing and caching. */
  keyHeaders?: readonly string[];
  clock?: Clock;
  random?: Random;
}

/** A dependency's settings with every default applied. */
export interface ResolvedDependency {
  name: string;
  hosts: readonly string[];
  match: ((url: URL) => boolean) | undefined;
  timeoutMs: number | undefined;
  totalTimeoutMs: number | undefined;
  retry: (Omit<FetchRetryOptions, 'statuses'> & { statuses: ReadonlySet<number> }) | undefined;
  breaker: FetchBreakerOptions | undefined;
  bulkhead: FetchBulkheadOptions | undefined;
  hedge: FetchHedgeOptions | undefined;
  coalesce: boolean;
  cache: (Omit<FetchCacheOptions, 'statuses'> & { statuses: ReadonlySet<number> }) | undefined;
  maxSharedBodyBytes: number;
}

export const FETCH_DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  totalTimeoutMs: 30_000,
  maxAttempts: 3,
  bulkhead: Object.freeze({ maxConcurrent: 100, maxQueue: 100 }),
  deadlineMarginMs: 50,
  maxSharedBodyBytes: 1024 * 1024,
  connectionsPerOrigin: 128,
  connectTimeoutMs: 10_000,
});

/** The name of the catch-all dependency for URLs no named dependency matches. */
export const DEFAULT_DEPENDENCY = 'default';

export function resolveDependency(name: string, options: DependencyOptions | undefined): ResolvedDependency {
  const o = options ?? {};
  const where = `fetch dependency "${name}"`;
  if (typeof o !== 'object' || o === null) throw new InvalidOptionsError(`${where}: options must be an object`);
  if (o.hosts !== undefined && (!Array.isArray(o.hosts) || o.hosts.some((h) => typeof h !== 'string' || h.length === 0))) {
    throw new InvalidOptionsError(`${where}: hosts must be an array of host names (host or host:port)`);
  }
  fn(`${where}: match`, o.match, undefined, 'of the URL');
  const retry = o.retry === false ? undefined : { ...o.retry };
  const cache = o.cache === undefined || o.cache === false ? undefined : o.cache;
  if (cache !== undefined && (typeof cache !== 'object' || cache === null)) throw new InvalidOptionsError(`${where}: cache must be { ttlMs, ... } or false`);
  fn(`${where}: cache.key`, cache?.key);
  if (o.coalesce !== undefined && typeof o.coalesce !== 'boolean') throw new InvalidOptionsError(`${where}: coalesce must be a boolean`);
  return {
    name,
    hosts: (o.hosts ?? (o.match === undefined ? [name] : [])).map((h) => h.toLowerCase()),
    match: o.match,
    timeoutMs: timeoutOption(`${where}: timeoutMs`, o.timeoutMs, FETCH_DEFAULTS.timeoutMs),
    totalTimeoutMs: timeoutOption(`${where}: totalTimeoutMs`, o.totalTimeoutMs, FETCH_DEFAULTS.totalTimeoutMs),
    retry: retry === undefined ? undefined : { ...retry, statuses: statusSet(`${where}: retry.statuses`, retry.statuses, [...RETRYABLE_STATUSES]) },
    breaker: o.breaker === false ? undefined : { ...o.breaker },
    bulkhead: o.bulkhead === false ? undefined : { ...FETCH_DEFAULTS.bulkhead, ...o.bulkhead },
    hedge: o.hedge === undefined || o.hedge === false ? undefined : o.hedge,
    coalesce: o.coalesce ?? false,
    cache: cache === undefined ? undefined : { ...cache, statuses: statusSet(`${where}: cache.statuses`, cache.statuses, [200]) },
    maxSharedBodyBytes: positiveInt(`${where}: maxSharedBodyBytes`, o.maxSharedBodyBytes, FETCH_DEFAULTS.maxSharedBodyBytes),
  };
}

function timeoutOption(name: string, value: number | false | undefined, fallback: number): number | undefined {
  if (value === false) return undefined;
  return positive(name, value, fallback);
}

function statusSet(name: string, value: readonly number[] | undefined, fallback: number[]): ReadonlySet<number> {
  const list = value ?? fallback;
  if (!Array.isArray(list) || list.some((s) => !Number.isInteger(s) || s < 100 || s > 599)) {
    throw new InvalidOptionsError(`${name} must be an array of HTTP status codes`);
  }
  return new Set(list);
}

/**
 * Where a call's tags keep its `FetchCall`. A symbol key: tags are for telemetry too, and
 * whatever lists or logs them must not see the call's headers (Authorization) or body.
 */
export const FETCH_CALL: unique symbol = Symbol('bulwark.fetch.call');

/** The tags of a fetch call: what telemetry may see, plus the call itself under `FETCH_CALL`. */
export interface FetchCallTags {
  readonly dependency: string;
  readonly method: string;
  readonly host: string;
  /** Read by the hedge policy. */
  readonly idempotent: boolean;
  readonly [FETCH_CALL]: FetchCall;
}

/** The call a policy is running. */
export function callOf(tags: Readonly<Record<string, unknown>>): FetchCall {
  return (tags as unknown as FetchCallTags)[FETCH_CALL];
}
