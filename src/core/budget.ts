/**
 * A shared allowance for extra load: retries and hedges both draw from it, so that under an
 * outage neither can multiply traffic (the Google SRE book, "Handling Overload", on retry
 * budgets). Implementations live in `src/retry/budget.ts`; hedging and the HTTP client only use
 * this interface.
 */
export interface RetryBudget {
  /** An original call (not a retry or a hedge) is starting. */
  recordRequest(): void;
  /** An attempt ended; token-bucket budgets (gRPC retry throttling) refill or drain on this. */
  recordOutcome(success: boolean): void;
  /** Asks to send one extra attempt (retry or hedge). True spends it; false means stop. */
  tryAcquire(): boolean;
  /**
   * The original call recorded by `recordRequest` has ended, all its attempts included. Only
   * budgets that count calls in flight (`concurrencyBudget()`) need it; retry and hedge call it.
   */
  requestEnded?(): void;
  /** An extra attempt that `tryAcquire` granted has ended (or was never sent). As `requestEnded`. */
  retryEnded?(): void;
  /** Current state for telemetry and tests. */
  snapshot(): RetryBudgetSnapshot;
}

export interface RetryBudgetSnapshot {
  kind: string;
  /** Original requests counted in the current window (ratio budgets). */
  requests?: number;
  /** Retries and hedges granted in the current window (ratio budgets), or in flight now (concurrency budgets). */
  retries?: number;
  /** Original calls in flight now (concurrency budgets). */
  active?: number;
  /** Tokens left (token budgets). */
  tokens?: number;
  /** Whether a retry would be granted right now. */
  available: boolean;
}
