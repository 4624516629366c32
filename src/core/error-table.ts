import type { ErrorCode } from './errors.js';

/**
 * What each stable error code means to every layer that reacts to it: the HTTP adapters (the
 * status they answer), retry (may another attempt help?) and the circuit breaker (does this
 * say the dependency is unhealthy?). One row per code, so the layers cannot drift apart.
 */
export interface ErrorMeaning {
  /** The HTTP status a server adapter answers for this error. */
  readonly status: number;
  /**
   * - `retryable`: the dependency was slow or briefly unavailable; retried by default.
   * - `not-retryable`: a replay fails the same way (the request itself is wrong); `shouldRetry`
   *   may still opt in.
   * - `never`: a local guard said no, or retrying already stopped; nothing retries it, anywhere
   *   in a cause chain, whatever `shouldRetry` says (retries at every layer multiply load).
   */
  readonly retry: 'retryable' | 'not-retryable' | 'never';
  /**
   * - `dependency`: counts against the dependency (a circuit breaker failure).
   * - `local`: rejected here before the dependency was reached (or the caller gave up, or the
   *   call was malformed): a breaker counts it neither as a failure nor as a success.
   */
  readonly origin: 'dependency' | 'local';
}

/** Every ErrorCode has a row: adding a code without one does not compile. */
export const ERROR_TABLE = Object.freeze({
  TIMEOUT: { status: 504, retry: 'retryable', origin: 'dependency' },
  DEADLINE_EXCEEDED: { status: 504, retry: 'never', origin: 'local' },
  CIRCUIT_OPEN: { status: 503, retry: 'never', origin: 'local' },
  BULKHEAD_FULL: { status: 503, retry: 'never', origin: 'local' },
  BULKHEAD_QUEUE_TIMEOUT: { status: 503, retry: 'never', origin: 'local' },
  RATE_LIMITED: { status: 429, retry: 'never', origin: 'local' },
  SHED: { status: 503, retry: 'never', origin: 'local' },
  QUEUE_FULL: { status: 503, retry: 'never', origin: 'local' },
  ABORTED: { status: 503, retry: 'never', origin: 'local' },
  // Both wrap the last attempt's failure: the dependency did fail, so a breaker outside the
  // retry counts it once (were they ignored, a spent budget would hide an outage from it).
  RETRY_BUDGET_EXHAUSTED: { status: 503, retry: 'never', origin: 'dependency' },
  RETRIES_EXHAUSTED: { status: 503, retry: 'never', origin: 'dependency' },
  IDEMPOTENCY_CONFLICT: { status: 409, retry: 'not-retryable', origin: 'local' },
  IDEMPOTENCY_MISMATCH: { status: 422, retry: 'not-retryable', origin: 'local' },
  IDEMPOTENCY_KEY_INVALID: { status: 400, retry: 'not-retryable', origin: 'local' },
  LEASE_LOST: { status: 500, retry: 'not-retryable', origin: 'local' },
  NOT_IDEMPOTENT: { status: 500, retry: 'not-retryable', origin: 'local' },
  INVALID_INPUT: { status: 400, retry: 'not-retryable', origin: 'local' },
  INVALID_OPTIONS: { status: 500, retry: 'never', origin: 'local' },
  STORE_UNAVAILABLE: { status: 503, retry: 'retryable', origin: 'dependency' },
  FAULT_INJECTED: { status: 500, retry: 'retryable', origin: 'dependency' },
} as const satisfies Record<ErrorCode, ErrorMeaning>);

/**
 * The row for a code read off any error (a plain `code` string works across copies of the
 * library), or undefined for codes that are not Bulwark's (`ECONNRESET`...). A property read,
 * no allocation: runs on every failed call.
 */
export function meaningOf(error: unknown): ErrorMeaning | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && Object.hasOwn(ERROR_TABLE, code) ? ERROR_TABLE[code as ErrorCode] : undefined;
}

/**
 * The HTTP status an error (or a response) carries: its own (see `ownStatusOf`), else its
 * `response`'s (axios and the like wrap the answer that failed).
 */
export function statusOf(source: unknown): number | undefined {
  if (typeof source !== 'object' || source === null) return undefined;
  return ownStatusOf(source) ?? ownStatusOf((source as { response?: unknown }).response);
}

/**
 * The status a value carries itself, not one of a wrapped response: `status` (fetch, undici
 * wrappers, http-errors) or `statusCode` (Fastify, got, Node's IncomingMessage). Numeric
 * strings (`'503'`) count; anything that is not a three-digit status does not. A server answers
 * with this one: an upstream's status inside a thrown error is not its own client's business.
 */
export function ownStatusOf(source: unknown): number | undefined {
  if (typeof source !== 'object' || source === null) return undefined;
  const s = source as { status?: unknown; statusCode?: unknown };
  return toStatus(s.status) ?? toStatus(s.statusCode);
}

function toStatus(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 100 && value <= 999 ? value : undefined;
  if (typeof value === 'string' && /^\d{3}$/.test(value)) return Number(value);
  return undefined;
}

/**
 * 4xx other than 408 (request timeout) and 429 (too many requests): the caller's mistake. The
 * dependency answered, so it is up (RFC 9110 §15.5 on client error statuses).
 */
export function isClientErrorStatus(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status <= 499 && status !== 408 && status !== 429;
}
