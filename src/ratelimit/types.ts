import type { Clock } from '../core/clock.js';
import { InvalidInputError } from '../core/errors.js';

/** Where a decision was made. */
export type DecisionStore = 'memory' | 'redis' | 'hybrid';

/**
 * Why a decision is not the store's normal answer:
 * - `fail-open`: the store was unreachable and the request was judged by a local fallback (or allowed);
 * - `fail-closed`: the store was unreachable and the request was denied because the limiter is configured so;
 * - `stale`: the hybrid limiter decided on last-known global state because Redis could not be reached.
 */
export type Degraded = 'fail-open' | 'fail-closed' | 'stale';

/**
 * The answer to "may this request go ahead?". A denial is a value, never a rejected promise or a
 * thrown error: being over a limit is an expected outcome, and rejecting must stay cheap.
 */
export interface Decision {
  allowed: boolean;
  /** Whole units left after this decision (what `RateLimit-Remaining` shows). */
  remaining: number;
  /** The most a key can ever have available (bucket capacity or window limit). */
  limit: number;
  /** Clock time (ms) at which the key is back to its full limit (`RateLimit-Reset`). */
  resetAt: number;
  /**
   * 0 when allowed. When denied: how long until the same request could pass if nothing else
   * consumed meanwhile (`Retry-After`). `Infinity` when it can never pass (cost above the limit).
   */
  retryAfterMs: number;
  /**
   * Where the decision was made: 'memory' also for a fail-open decision judged by the local
   * fallback. A denial failing closed (or a fail-open `fallback: 'allow'`) says the limiter's own
   * store, which did not decide: only a decision with no `degraded` came from that store.
   */
  store: DecisionStore;
  /** Set only when the decision is not the store's normal answer. */
  degraded?: Degraded | undefined;
}

export type AlgorithmKind = 'token-bucket' | 'gcra' | 'fixed-window' | 'sliding-window-log' | 'sliding-window-counter';

/**
 * What a limit is. Every algorithm takes `limit` per `intervalMs`:
 * - `token-bucket`: refills `limit` tokens per `intervalMs` continuously (fractional tokens) and holds
 *   at most `capacity` (default `limit`); a request of cost n takes n tokens.
 * - `gcra`: the same admission as the token bucket (rate `limit`/`intervalMs`, burst `capacity`), kept
 *   as one number per key (the theoretical arrival time).
 * - `fixed-window`: at most `limit` per aligned window of `intervalMs`.
 * - `sliding-window-log`: at most `limit` in any window of `intervalMs` (exact; one timestamp per unit).
 * - `sliding-window-counter`: `limit` per sliding `intervalMs`, estimated from two fixed windows.
 */
export interface AlgorithmOptions {
  /** Default 'token-bucket'. */
  algorithm?: AlgorithmKind;
  limit: number;
  /** Default 1000. */
  intervalMs?: number;
  /** Token bucket and GCRA only: the burst size. Default `limit`. */
  capacity?: number;
}

/** Options of a blocking acquire. */
export interface AcquireOptions {
  /** Default 1. */
  cost?: number;
  /** Longest acceptable wait. When the computed wait is longer, resolves denied at once. Default Infinity. */
  maxWaitMs?: number;
  signal?: AbortSignal;
}

/** What every keyed limiter (memory, Redis, hybrid) offers. Memory and hybrid answer synchronously. */
export interface RateLimiter {
  readonly store: DecisionStore;
  readonly clock: Clock;
  /** The limit decisions report (capacity for buckets). */
  readonly limit: number;
  /** Takes `cost` (default 1) from `key` if available. Cost 0 asks without taking. */
  consume(key: string, cost?: number): Decision | Promise<Decision>;
  /** Gives back `cost` units (e.g. a login succeeded); never above the limit. */
  refund(key: string, cost?: number): void | Promise<void>;
  /** Takes `cost` units regardless of the limit (e.g. a failed login costs more); never below empty. */
  penalty(key: string, cost?: number): void | Promise<void>;
  /** Waits (abortably) until `cost` units are available, or resolves denied if that would take longer than `maxWaitMs`. */
  acquire(key: string, options?: AcquireOptions): Promise<Decision>;
  /** Forgets `key` (it becomes fresh). */
  reset(key: string): void | Promise<void>;
}

/** Bad input at call time (a negative cost, a non-string key): a clear error with a stable code. */
export class RateLimitInputError extends InvalidInputError {
  constructor(message: string) {
    super(message, { captureStack: false });
  }
}
