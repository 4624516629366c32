import { abortedError } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import { RateLimitedError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { KeyedPolicy } from '../core/keyed-policy.js';
import type { Next, PolicyDescription } from '../core/policy.js';
import { InvalidOptionsError } from '../core/errors.js';
import { fn, nonNegative } from '../core/validate.js';
import type { Decision, RateLimiter } from './types.js';

export interface RateLimitPolicyOptions {
  limiter: RateLimiter;
  /** The key for a call (e.g. from `context.tags`). Default: one key for every call; `execute(key, operation)` names it. */
  key?: (context: CallContext) => string;
  /** Cost of a call. Default 1. */
  cost?: number;
  /** Wait up to this long for the limit instead of failing at once. Default 0 (no wait). */
  maxWaitMs?: number;
  name?: string;
}

export interface RateLimitRejection {
  key: string;
  decision: Decision;
}

/**
 * A rate limit inside an outbound pipeline (e.g. a partner API allows 50 calls/s): calls over the
 * limit fail fast with RateLimitedError (code RATE_LIMITED, with retryAfterMs), or wait up to
 * `maxWaitMs` for their turn. A fail-closed decision (store down) is a rejection too.
 */
export class RateLimitPolicy extends KeyedPolicy {
  readonly kind = 'rate-limit';
  readonly limiter: RateLimiter;
  readonly #cost: number;
  readonly #maxWaitMs: number;
  readonly #onRejected = new EventEmitter<RateLimitRejection>();
  /** Fires when a call is rejected. */
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
      if (this.#onRejected.active) this.#onRejected.emit({ key, decision });
      throw new RateLimitedError(decision.retryAfterMs, decision.degraded === 'fail-closed'
        ? `rate limit store unavailable (failing closed); retry after ${Math.ceil(decision.retryAfterMs)} ms`
        : undefined);
    }
    return next(context);
  }

  /** Filled in with the policy's counters when its events are wired (below). */
  stats(): object {
    return {};
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
