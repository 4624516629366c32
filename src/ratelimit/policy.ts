import { abortedError } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import { KeyedPolicy } from '../core/keyed-policy.js';
import type { Next, PolicyDescription } from '../core/policy.js';
import { InvalidOptionsError, RateLimitedError, StoreUnavailableError } from '../core/errors.js';
import type { PolicyIdentity } from '../core/telemetry.js';
import { fn, nonNegative } from '../core/validate.js';
import type { Decision, RateLimiter } from './types.js';

export interface RateLimitPolicyOptions extends PolicyIdentity {
  limiter: RateLimiter;
  /** The key for a call (e.g. from `context.tags`). Default: one key for every call; `execute(key, operation)` names it. */
  key?: (context: CallContext) => string;
  /** Cost of a call. Default 1. */
  cost?: number;
  /** Wait up to this long for the limit instead of failing at once. Default 0 (no wait). */
  maxWaitMs?: number;
}

export interface RateLimitRejection {
  key: string;
  decision: Decision;
}

/** A rate-limit policy's counts since it was built. */
export interface RateLimitStats {
  /** Calls the limiter let through. */
  allowed: number;
  /** Of those, calls the limiter decided without its store (failing open, or on stale state). */
  allowedDegraded: number;
  /** Calls refused with RATE_LIMITED (over the limit, or the store down and failing closed). */
  rejected: number;
  /** Of those, calls refused because the store could not be reached (failing closed). */
  rejectedStoreDown: number;
}

/**
 * A rate limit inside an outbound pipeline (e.g. a partner API allows 50 calls/s): calls over the
 * limit fail fast with RateLimitedError (code RATE_LIMITED, with retryAfterMs), or wait up to
 * `maxWaitMs` for their turn. A fail-closed decision (the limiter's store is down) is rejected
 * with StoreUnavailableError (code STORE_UNAVAILABLE, with retryAfterMs): the caller did
 * nothing wrong, so it is not RATE_LIMITED.
 */
export class RateLimitPolicy extends KeyedPolicy {
  readonly kind = 'rate-limit';
  readonly limiter: RateLimiter;
  readonly #cost: number;
  readonly #maxWaitMs: number;
  #allowed = 0;
  #allowedDegraded = 0;
  #rejected = 0;
  #rejectedStoreDown = 0;
  // Per policy, never per key: the key stays in the typed event only.
  readonly #onRejected = this.telemetry.emitter<RateLimitRejection>('reject', ({ decision }) => ({
    outcome: 'rejected',
    attributes: { store: decision.store, degraded: decision.degraded, retryAfterMs: decision.retryAfterMs },
  }));
  /** Fires when a call is rejected (uniform event `reject`). */
  readonly onRejected = this.#onRejected.event;

  constructor(options: RateLimitPolicyOptions) {
    super(options?.limiter?.clock, fn('rateLimit.key', options?.key, globalKey, 'of the call context'), 'rateLimit', options);
    if (typeof options?.limiter?.consume !== 'function') throw new InvalidOptionsError('rateLimit: a limiter is required');
    this.limiter = options.limiter;
    this.#cost = nonNegative('rateLimit.cost', options.cost, 1);
    this.#maxWaitMs = nonNegative('rateLimit.maxWaitMs', options.maxWaitMs, 0);
  }

  async runKeyed<T>(key: string, context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) throw abortedError(context.abortReason); // before taking a token
    const decision = this.#maxWaitMs > 0
      ? await this.limiter.acquire(key, { cost: this.#cost, maxWaitMs: Math.min(this.#maxWaitMs, context.remaining()), signal: context.signal })
      : await this.limiter.consume(key, this.#cost);
    if (!decision.allowed) {
      this.#rejected++;
      if (decision.degraded === 'fail-closed') this.#rejectedStoreDown++;
      if (this.#onRejected.active) this.#onRejected.emit({ key, decision });
      // Failing closed is the store's outage, not the caller's excess: STORE_UNAVAILABLE (503 at
      // the edge, as the HTTP rate-limit step answers), never RATE_LIMITED (429).
      if (decision.degraded === 'fail-closed') {
        throw new StoreUnavailableError(decision.store, 'the rate limiter is failing closed', decision.retryAfterMs);
      }
      throw new RateLimitedError(decision.retryAfterMs);
    }
    this.#allowed++;
    if (decision.degraded !== undefined) this.#allowedDegraded++;
    return next(context);
  }

  stats(): RateLimitStats {
    return { allowed: this.#allowed, allowedDegraded: this.#allowedDegraded, rejected: this.#rejected, rejectedStoreDown: this.#rejectedStoreDown };
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { store: this.limiter.store, limit: this.limiter.limit, cost: this.#cost, maxWaitMs: this.#maxWaitMs },
    };
  }
}

function globalKey(): string {
  return 'global';
}

export function rateLimit(options: RateLimitPolicyOptions): RateLimitPolicy {
  return new RateLimitPolicy(options);
}
