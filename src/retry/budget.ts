import type { RetryBudget, RetryBudgetSnapshot } from '../core/budget.js';
import { systemClock, type Clock } from '../core/clock.js';
import { InvalidOptionsError } from '../core/errors.js';
import { nonNegative, nonNegativeInt, positive, positiveInt } from '../core/validate.js';

/**
 * Retry budgets bound the extra load retries (and hedges) add during an outage: with one
 * shared budget, three tiers × three attempts stays near 1.1× instead of 27× (the Google SRE book,
 * "Handling Overload", on per-client retry budgets; Finagle's `RetryBudget`). One budget object is
 * meant to be shared by every retry policy (and hedge) that calls the same dependency.
 */

export interface RatioBudgetOptions {
  /** Retries allowed per original request in the window. Default 0.1 (10%). */
  ratio?: number;
  /** The sliding window. Default 10 000 ms. */
  windowMs?: number;
  /**
   * Retries always allowed regardless of traffic, per second of window, so a quiet client can
   * still retry. Default 1 (10 retries per 10 s window).
   */
  minRetriesPerSecond?: number;
  /** Buckets the window is cut into (the window slides one bucket at a time). Default 10. */
  buckets?: number;
  clock?: Clock;
}

export interface RatioBudgetSnapshot extends RetryBudgetSnapshot {
  kind: 'ratio';
  requests: number;
  retries: number;
  /** Retries the window allows in total right now: ratio × requests + the minimum. */
  allowance: number;
}

/**
 * Finagle's `RetryBudget` (percentCanRetry, minRetriesPerSec, ttl): a retry is granted while
 * retries-in-window < ratio × requests-in-window + minRetriesPerSecond × windowSeconds.
 * The window is a ring of buckets rotated lazily by clock time: O(1) per call, no timer.
 */
export class RatioRetryBudget implements RetryBudget {
  readonly kind = 'ratio';
  readonly ratio: number;
  readonly windowMs: number;
  readonly minRetriesPerSecond: number;
  readonly buckets: number;
  readonly #clock: Clock;
  readonly #bucketMs: number;
  readonly #minRetries: number;
  readonly #requests: Float64Array;
  readonly #retries: Float64Array;
  #requestsInWindow = 0;
  #retriesInWindow = 0;
  /** Absolute number (now / bucketMs) of the newest bucket. */
  #head: number;

  constructor(options: RatioBudgetOptions = {}) {
    this.ratio = nonNegative('ratioBudget.ratio', options.ratio, 0.1);
    this.windowMs = positive('ratioBudget.windowMs', options.windowMs, 10_000);
    this.minRetriesPerSecond = nonNegative('ratioBudget.minRetriesPerSecond', options.minRetriesPerSecond, 1);
    this.buckets = positiveInt('ratioBudget.buckets', options.buckets, 10);
    if (!Number.isFinite(this.ratio) || !Number.isFinite(this.windowMs) || !Number.isFinite(this.minRetriesPerSecond)) {
      throw new InvalidOptionsError('ratioBudget: ratio, windowMs and minRetriesPerSecond must be finite');
    }
    this.#clock = options.clock ?? systemClock;
    this.#bucketMs = this.windowMs / this.buckets;
    this.#minRetries = this.minRetriesPerSecond * (this.windowMs / 1000);
    this.#requests = new Float64Array(this.buckets);
    this.#retries = new Float64Array(this.buckets);
    this.#head = Math.floor(this.#clock.now() / this.#bucketMs);
  }

  recordRequest(): void {
    const slot = this.#rotate();
    this.#requests[slot]!++;
    this.#requestsInWindow++;
  }

  /** Ratio budgets count requests and retries, not outcomes. */
  recordOutcome(_success: boolean): void {}

  tryAcquire(): boolean {
    const slot = this.#rotate();
    if (!(this.#retriesInWindow < this.#allowance())) return false;
    this.#retries[slot]!++;
    this.#retriesInWindow++;
    return true;
  }

  snapshot(): RatioBudgetSnapshot {
    this.#rotate();
    const allowance = this.#allowance();
    return {
      kind: 'ratio',
      requests: this.#requestsInWindow,
      retries: this.#retriesInWindow,
      allowance,
      available: this.#retriesInWindow < allowance,
    };
  }

  #allowance(): number {
    return this.ratio * this.#requestsInWindow + this.#minRetries;
  }

  /** Moves the window to the current bucket, zeroing only the buckets that fell out; returns its slot. */
  #rotate(): number {
    const current = Math.floor(this.#clock.now() / this.#bucketMs);
    const n = this.buckets;
    if (current > this.#head) {
      const stale = Math.min(current - this.#head, n);
      for (let i = 1; i <= stale; i++) {
        const slot = mod(this.#head + i, n);
        this.#requestsInWindow -= this.#requests[slot]!;
        this.#retriesInWindow -= this.#retries[slot]!;
        this.#requests[slot] = 0;
        this.#retries[slot] = 0;
      }
      this.#head = current;
    }
    return mod(this.#head, n);
  }
}

export interface TokenBudgetOptions {
  /** Bucket size; tokens start full. Default 10 (the gRPC documentation's example). */
  maxTokens?: number;
  /** Tokens a successful attempt puts back. Default 0.1. */
  tokenRatio?: number;
}

export interface TokenBudgetSnapshot extends RetryBudgetSnapshot {
  kind: 'token';
  tokens: number;
  maxTokens: number;
}

/**
 * gRPC retry throttling (gRFC A6): tokens start at maxTokens; each failed attempt takes 1
 * (floor 0), each success puts back tokenRatio (cap maxTokens); retries (and hedges) are
 * allowed only while tokens > maxTokens / 2. Granting a retry spends nothing by itself: the
 * retry's own failure will. Counted in thousandths, as gRPC does, so 0.1 steps stay exact.
 */
export class TokenRetryBudget implements RetryBudget {
  readonly kind = 'token';
  readonly maxTokens: number;
  readonly tokenRatio: number;
  readonly #max: number;
  readonly #refill: number;
  #milliTokens: number;

  constructor(options: TokenBudgetOptions = {}) {
    this.maxTokens = positive('tokenBudget.maxTokens', options.maxTokens, 10);
    this.tokenRatio = positive('tokenBudget.tokenRatio', options.tokenRatio, 0.1);
    if (!Number.isFinite(this.maxTokens) || !Number.isFinite(this.tokenRatio)) {
      throw new InvalidOptionsError('tokenBudget: maxTokens and tokenRatio must be finite');
    }
    this.#max = Math.round(this.maxTokens * 1000);
    this.#refill = Math.round(this.tokenRatio * 1000);
    if (this.#refill === 0) throw new InvalidOptionsError(`tokenBudget.tokenRatio must be >= 0.001, got ${this.tokenRatio}`);
    this.#milliTokens = this.#max;
  }

  /** Token budgets count outcomes, not requests. */
  recordRequest(): void {}

  recordOutcome(success: boolean): void {
    this.#milliTokens = success ? Math.min(this.#max, this.#milliTokens + this.#refill) : Math.max(0, this.#milliTokens - 1000);
  }

  tryAcquire(): boolean {
    return this.#milliTokens * 2 > this.#max;
  }

  get tokens(): number {
    return this.#milliTokens / 1000;
  }

  snapshot(): TokenBudgetSnapshot {
    return { kind: 'token', tokens: this.tokens, maxTokens: this.maxTokens, available: this.tryAcquire() };
  }
}

export interface ConcurrencyBudgetOptions {
  /** Retries in flight allowed, as a percentage (0 to 100) of the original calls in flight. Default 20. */
  percent?: number;
  /** Retries in flight always allowed, however few calls are in flight. Default 3. */
  minConcurrency?: number;
}

export interface ConcurrencyBudgetSnapshot extends RetryBudgetSnapshot {
  kind: 'concurrency';
  /** Original calls in flight. */
  active: number;
  /** Retries and hedges in flight. */
  retries: number;
  /** Retries allowed in flight right now: max(minConcurrency, ⌊percent % × active⌋). */
  allowance: number;
}

/**
 * Envoy's retry budget (cluster circuit breakers, `retry_budget`): retries in flight may be at
 * most `percent` % of the calls in flight, and never fewer than `minConcurrency`. Unlike the
 * ratio budget it has no memory: it bounds how many retries hit the dependency at once, now,
 * relative to the load now. Needs the `requestEnded` / `retryEnded` signals (retry and hedge
 * send them); every operation is a counter update.
 */
export class ConcurrencyRetryBudget implements RetryBudget {
  readonly kind = 'concurrency';
  readonly percent: number;
  readonly minConcurrency: number;
  #active = 0;
  #retries = 0;

  constructor(options: ConcurrencyBudgetOptions = {}) {
    this.percent = nonNegative('concurrencyBudget.percent', options.percent, 20);
    if (this.percent > 100) throw new InvalidOptionsError(`concurrencyBudget.percent must be between 0 and 100, got ${this.percent}`);
    this.minConcurrency = nonNegativeInt('concurrencyBudget.minConcurrency', options.minConcurrency, 3);
    if (!Number.isFinite(this.minConcurrency)) throw new InvalidOptionsError('concurrencyBudget.minConcurrency must be finite');
  }

  recordRequest(): void {
    this.#active++;
  }

  requestEnded(): void {
    if (this.#active > 0) this.#active--;
  }

  /** Concurrency budgets count calls and retries in flight, not outcomes. */
  recordOutcome(_success: boolean): void {}

  tryAcquire(): boolean {
    if (!(this.#retries < this.#allowance())) return false;
    this.#retries++;
    return true;
  }

  retryEnded(): void {
    if (this.#retries > 0) this.#retries--;
  }

  snapshot(): ConcurrencyBudgetSnapshot {
    const allowance = this.#allowance();
    return { kind: 'concurrency', active: this.#active, retries: this.#retries, allowance, available: this.#retries < allowance };
  }

  #allowance(): number {
    return Math.max(this.minConcurrency, Math.floor((this.percent / 100) * this.#active));
  }
}

/** Retries ≤ ratio × requests (+ a minimum rate) over a sliding window. Defaults: 10% over 10 s, 1/s. */
export function ratioBudget(options: RatioBudgetOptions = {}): RatioRetryBudget {
  return new RatioRetryBudget(options);
}

/** gRPC-style token budget. Defaults: maxTokens 10, tokenRatio 0.1. */
export function tokenBudget(options: TokenBudgetOptions = {}): TokenRetryBudget {
  return new TokenRetryBudget(options);
}

/** Envoy-style budget: retries in flight ≤ max(minConcurrency, percent % of calls in flight). Defaults: 20 %, 3. */
export function concurrencyBudget(options: ConcurrencyBudgetOptions = {}): ConcurrencyRetryBudget {
  return new ConcurrencyRetryBudget(options);
}

function mod(a: number, n: number): number {
  const r = a % n;
  return r < 0 ? r + n : r;
}
