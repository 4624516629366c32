import type { CallContext } from '../core/context.js';
import { BulwarkError, type ErrorCode } from '../core/errors.js';

/**
 * Which errors say something about the dependency's health. Only the error path runs these,
 * so they may read a few properties; the success path never does.
 */

/**
 * Bulwark rejections that happened before the dependency was reached (a bulkhead, limiter
 * or shedder inside the breaker, an expired deadline, another breaker) and caller aborts.
 * They are neither successes nor failures: the breaker ignores them, and a probe that ends
 * this way frees its slot without deciding anything.
 */
const NOT_REACHED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ABORTED',
  'BULKHEAD_FULL',
  'BULKHEAD_QUEUE_TIMEOUT',
  'RATE_LIMITED',
  'SHED',
  'CIRCUIT_OPEN',
  'DEADLINE_EXCEEDED',
]);

/** True for outcomes the breaker must not judge: local rejections, and calls the caller gave up on. */
export function isIgnoredOutcome(error: unknown, context?: CallContext): boolean {
  if (error instanceof BulwarkError && NOT_REACHED.has(error.code)) return true;
  // The caller aborted (client gone, request cancelled): not the dependency's fault. A
  // timeout that aborted the call from outside still counts, as every timeout does.
  if (context !== undefined && context.aborted) {
    const reason = context.abortReason;
    return !(reason instanceof BulwarkError && reason.code === 'TIMEOUT');
  }
  return false;
}

/**
 * The HTTP status an error carries, if any: `status` (undici/fetch wrappers, http-errors),
 * `statusCode` (Fastify, got) or `response.status` (axios).
 */
export function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { status?: unknown; statusCode?: unknown; response?: { status?: unknown } | null };
  const status = e.status ?? e.statusCode ?? (typeof e.response === 'object' && e.response !== null ? e.response.status : undefined);
  return typeof status === 'number' && Number.isInteger(status) ? status : undefined;
}

/** 4xx other than 408 (request timeout) and 429 (too many requests): the caller's mistake, not an outage. */
export function isClientError(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status <= 499 && status !== 408 && status !== 429;
}

/**
 * The default `isFailure`: every error counts against the dependency except local Bulwark
 * rejections and aborts (see `isIgnoredOutcome`) and client errors (HTTP 4xx other than
 * 408/429), which prove the dependency is up and answering. `TIMEOUT` is a failure.
 */
export function isDependencyFailure(error: unknown): boolean {
  if (error instanceof BulwarkError && NOT_REACHED.has(error.code)) return false;
  return !isClientError(httpStatusOf(error));
}
