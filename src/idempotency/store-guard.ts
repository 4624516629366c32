import type { Clock } from '../core/clock.js';
import { CircuitOpenError, StoreUnavailableError } from '../core/errors.js';
import { pipeline, type Policy } from '../core/policy.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { consecutive } from '../breaker/strategies.js';
import { timeout } from '../timeout/timeout.js';
import type { IdempotencyStore } from './types.js';

export interface StoreGuardOptions {
  /** Per store call. Default 1000 ms. */
  timeoutMs?: number;
  /** Consecutive store failures (errors or timeouts) that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long the breaker stays open before probing the store again. Default 5000 ms. */
  openMs?: number;
  clock?: Clock;
}

/**
 * The default protection around a network store: a breaker outside a short timeout, so a hung
 * Redis/PostgreSQL costs at most `timeoutMs` per call, and after a few failures requests are
 * answered at once (503 + Retry-After) instead of piling up. The timeout answers at once
 * (graceMs 0) and aborts the signal a `cancellable` store's call was given: that store stops
 * its work in the background (PostgreSQL cancels the statement); for one that cannot, fencing
 * makes a late write harmless, and the engine releases a claim that lands late.
 */
export function defaultStoreGuard(store: IdempotencyStore, options: StoreGuardOptions = {}): Policy {
  return pipeline(
    circuitBreaker({
      name: `idempotency-store:${store.name}`,
      strategy: consecutive({ threshold: options.failureThreshold ?? 5 }),
      openMs: options.openMs ?? 5000,
      clock: options.clock,
    }),
    timeout({ ms: options.timeoutMs ?? 1000, graceMs: 0, clock: options.clock }),
  );
}

/** Every store failure surfaces as STORE_UNAVAILABLE, with a Retry-After hint when a breaker gave one. */
export function toStoreUnavailable(store: IdempotencyStore, error: unknown): StoreUnavailableError {
  if (error instanceof StoreUnavailableError) return error;
  const retryAfterMs = error instanceof CircuitOpenError ? Math.max(1000, error.retryAfterMs) : 1000;
  return new StoreUnavailableError(store.name, error, retryAfterMs);
}
