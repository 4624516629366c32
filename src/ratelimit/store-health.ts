import { errorCode, type PolicyEventFields } from '../core/telemetry.js';

/** What `storeHealth` reports: whether the store answers now, and the counts an alert does not need as events. */
export interface StoreHealthSnapshot {
  /** False from the first failed store call until the next one that succeeds. */
  available: boolean;
  /** Failed store calls (timeouts, errors, breaker rejections), lifetime. */
  failures: number;
  /** Times the store went from available to unavailable, lifetime. */
  outages: number;
}

/** The outage that a successful store call just ended. */
export interface StoreRecoveredEvent {
  store: 'redis' | 'hybrid';
  /** Store calls that failed during the outage (breaker rejections included). */
  failedCalls: number;
  /** From the first failure to the first success, in clock milliseconds. */
  downMs: number;
}

/**
 * Turns per-call store outcomes into state changes, so that the limiter's events say "the store
 * went down" and "it is back" once each, which is what an alert wants, rather than once per
 * call while a breaker answers for the store (hundreds a second). Every failure is still counted.
 */
export class StoreHealth {
  #down = false;
  #downSince = 0;
  #failuresInOutage = 0;
  #failures = 0;
  #outages = 0;

  /** Counts a failed store call; true when it is the one that made the store unavailable. */
  failed(now: number): boolean {
    this.#failures++;
    this.#failuresInOutage++;
    if (this.#down) return false;
    this.#down = true;
    this.#downSince = now;
    this.#outages++;
    return true;
  }

  /** A store call succeeded: the outage it ended, if the store was down. Cheap when it was not. */
  succeeded(now: number, store: StoreRecoveredEvent['store']): StoreRecoveredEvent | undefined {
    if (!this.#down) return undefined;
    this.#down = false;
    const ended: StoreRecoveredEvent = { store, failedCalls: this.#failuresInOutage, downMs: now - this.#downSince };
    this.#failuresInOutage = 0;
    return ended;
  }

  snapshot(): StoreHealthSnapshot {
    return { available: !this.#down, failures: this.#failures, outages: this.#outages };
  }
}

/** The uniform fields of a limiter's `store-error` event (Redis and hybrid): the error as a code, never a key. */
export function storeErrorFields(e: { error: unknown; failMode?: string; affected?: number; keys?: number; breakerOpen?: boolean }): PolicyEventFields {
  return { outcome: 'failure', attributes: { code: errorCode(e.error), failMode: e.failMode, affected: e.affected, keys: e.keys, breakerOpen: e.breakerOpen } };
}

/** The uniform fields of a limiter's `store-recovered` event: the outage's length as its duration. */
export function storeRecoveredFields(e: StoreRecoveredEvent): PolicyEventFields {
  return { outcome: 'success', durationMs: e.downMs, attributes: { failedCalls: e.failedCalls } };
}
