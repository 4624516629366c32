// Public API of the retry policy and retry budgets (re-exported from the core entry point).
export {
  RetryPolicy,
  retry,
  RETRY_DEFAULTS,
  type RetryOptions,
  type GiveUpReason,
  type RetryEvent,
  type GiveUpEvent,
  type RetrySuccessEvent,
  type RetryStats,
} from './retry.js';
export {
  ScheduleBackoff,
  backoff,
  constantBackoff,
  linearBackoff,
  exponentialBackoff,
  fibonacciBackoff,
  decorrelatedBackoff,
  BACKOFF_DEFAULTS,
  type Backoff,
  type BackoffOptions,
  type BackoffKind,
  type JitterKind,
} from './backoff.js';
export {
  RatioRetryBudget,
  TokenRetryBudget,
  ConcurrencyRetryBudget,
  ratioBudget,
  tokenBudget,
  concurrencyBudget,
  type ConcurrencyBudgetOptions,
  type ConcurrencyBudgetSnapshot,
  type RatioBudgetOptions,
  type RatioBudgetSnapshot,
  type TokenBudgetOptions,
  type TokenBudgetSnapshot,
} from './budget.js';
export {
  isRetryableError,
  isNeverRetried,
  parseRetryAfter,
  RETRYABLE_NETWORK_CODES,
  RETRYABLE_STATUSES,
  NO_RETRY_HEADER,
  type RetryOutcome,
} from './classify.js';
