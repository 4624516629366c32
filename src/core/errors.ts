/** Stable error codes, part of the public API. Code on these, never on messages. */
export type ErrorCode =
  | 'TIMEOUT'
  | 'DEADLINE_EXCEEDED'
  | 'CIRCUIT_OPEN'
  | 'BULKHEAD_FULL'
  | 'BULKHEAD_QUEUE_TIMEOUT'
  | 'RATE_LIMITED'
  | 'SHED'
  | 'RETRY_BUDGET_EXHAUSTED'
  | 'RETRIES_EXHAUSTED'
  | 'ABORTED'
  | 'IDEMPOTENCY_CONFLICT'
  | 'IDEMPOTENCY_MISMATCH'
  | 'IDEMPOTENCY_KEY_INVALID'
  | 'STORE_UNAVAILABLE'
  | 'INVALID_OPTIONS'
  | 'INVALID_INPUT'
  | 'FAULT_INJECTED'
  | 'NOT_IDEMPOTENT'
  | 'LEASE_LOST'
  | 'QUEUE_FULL';

export interface BulwarkErrorOptions {
  cause?: unknown;
  /**
   * Rejections (breaker open, bulkhead full, limit hit, shed) are expected, frequent and
   * carry no useful stack; skipping stack capture keeps the rejection path cheap.
   */
  captureStack?: boolean;
}

export class BulwarkError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options: BulwarkErrorOptions = {}) {
    const limit = Error.stackTraceLimit;
    if (options.captureStack === false) Error.stackTraceLimit = 0;
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    if (options.captureStack === false) Error.stackTraceLimit = limit;
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** Options were wrong when a policy was built. Thrown synchronously, never at call time. */
export class InvalidOptionsError extends BulwarkError {
  constructor(message: string) {
    super('INVALID_OPTIONS', message);
  }
}

/**
 * A call's input was wrong (a malformed argument, key or request), found at call time: the
 * caller's mistake, not the dependency's, so it is neither retried nor counted by a breaker.
 * Wrong options found when a policy is built are InvalidOptionsError instead.
 */
export class InvalidInputError extends BulwarkError {
  constructor(message: string, options?: BulwarkErrorOptions) {
    super('INVALID_INPUT', message, options);
  }
}

export class TimeoutError extends BulwarkError {
  constructor(
    readonly timeoutMs: number,
    /** True when the work ignored its abort signal and was still running when we gave up on it. */
    readonly abandoned = false,
    cause?: unknown,
  ) {
    super('TIMEOUT', `operation timed out after ${timeoutMs} ms${abandoned ? ' (work abandoned: it ignored the abort signal)' : ''}`, { cause, captureStack: false });
  }
}

export class DeadlineExceededError extends BulwarkError {
  constructor(readonly deadline: number, message = 'deadline exceeded before the call was made') {
    super('DEADLINE_EXCEEDED', message, { captureStack: false });
  }
}

export class CircuitOpenError extends BulwarkError {
  constructor(
    readonly breaker: string,
    /** Milliseconds until the breaker lets a probe through; in half-open, a jittered wait for the probe's verdict (never 0). */
    readonly retryAfterMs: number,
    readonly state: 'open' | 'half-open' | 'isolated',
  ) {
    super('CIRCUIT_OPEN', `circuit breaker ${breaker} is ${state}; retry after ${Math.ceil(retryAfterMs)} ms`, { captureStack: false });
  }
}

export class BulkheadFullError extends BulwarkError {
  constructor(readonly maxConcurrent: number, readonly maxQueue: number) {
    super('BULKHEAD_FULL', `bulkhead full (${maxConcurrent} active, ${maxQueue} queued)`, { captureStack: false });
  }
}

export class BulkheadQueueTimeoutError extends BulwarkError {
  constructor(readonly waitedMs: number) {
    super('BULKHEAD_QUEUE_TIMEOUT', `waited ${waitedMs} ms for a bulkhead slot`, { captureStack: false });
  }
}

export class RateLimitedError extends BulwarkError {
  constructor(readonly retryAfterMs: number, message = `rate limited; retry after ${Math.ceil(retryAfterMs)} ms`) {
    super('RATE_LIMITED', message, { captureStack: false });
  }
}

export class ShedError extends BulwarkError {
  constructor(readonly reason: string, readonly retryAfterMs = 0) {
    super('SHED', `request shed: ${reason}`, { captureStack: false });
  }
}

/** Retries stopped because the attempt limit (or the elapsed-time limit) was reached. */
export class RetriesExhaustedError extends BulwarkError {
  constructor(readonly attempts: number, cause: unknown, readonly reason: 'max-attempts' | 'max-elapsed' | 'deadline' = 'max-attempts') {
    super('RETRIES_EXHAUSTED', `gave up after ${attempts} attempt${attempts === 1 ? '' : 's'} (${reason}): ${describeCause(cause)}`, { cause });
  }
}

/** Retries stopped because the shared retry budget was spent. */
export class RetryBudgetExhaustedError extends BulwarkError {
  constructor(readonly attempts: number, cause: unknown) {
    super('RETRY_BUDGET_EXHAUSTED', `retry budget exhausted after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${describeCause(cause)}`, { cause });
  }
}

export class AbortedError extends BulwarkError {
  constructor(reason?: unknown) {
    super('ABORTED', `operation aborted${reason instanceof Error ? `: ${reason.message}` : ''}`, { cause: reason, captureStack: false });
  }
}

export class StoreUnavailableError extends BulwarkError {
  constructor(readonly store: string, cause?: unknown, readonly retryAfterMs = 1000) {
    super('STORE_UNAVAILABLE', `store ${store} unavailable: ${describeCause(cause)}`, { cause, captureStack: false });
  }
}

function describeCause(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}

/** True when `error` is a BulwarkError with one of the given codes. */
export function hasCode(error: unknown, ...codes: ErrorCode[]): error is BulwarkError {
  return error instanceof BulwarkError && codes.includes(error.code);
}

/** Follows `cause` links to the innermost error (what actually failed). */
export function rootCause(error: unknown): unknown {
  let current = error;
  for (let i = 0; i < 32 && current instanceof Error && current.cause !== undefined; i++) current = current.cause;
  return current;
}
