import type { CallContext } from '../core/context.js';
import { isClientErrorStatus, meaningOf, statusOf } from '../core/error-table.js';
import { BulwarkError } from '../core/errors.js';

/**
 * Which errors say something about the dependency's health. Only the error path runs these,
 * so they may read a few properties; the success path never does.
 */

/**
 * True for outcomes the breaker must not judge: the codes ERROR_TABLE marks `local` (a
 * bulkhead, queue, limiter or shedder inside the breaker, an expired deadline, another breaker,
 * a malformed call) and calls the caller gave up on. They are neither successes nor failures:
 * the breaker ignores them, and a probe that ends this way frees its slot without deciding
 * anything.
 */
export function isIgnoredOutcome(error: unknown, context?: CallContext): boolean {
  if (meaningOf(error)?.origin === 'local') return true;
  // The caller aborted (client gone, request cancelled): not the dependency's fault. A
  // timeout that aborted the call from outside still counts, as every timeout does.
  if (context !== undefined && context.aborted) {
    const reason = context.abortReason;
    return !(reason instanceof BulwarkError && reason.code === 'TIMEOUT');
  }
  return false;
}

/**
 * The default `isFailure`: every error counts against the dependency except the codes
 * ERROR_TABLE marks `local` (see `isIgnoredOutcome`) and client errors (HTTP 4xx other than
 * 408/429), which prove the dependency is up and answering. `TIMEOUT` is a failure.
 */
export function isDependencyFailure(error: unknown): boolean {
  if (meaningOf(error)?.origin === 'local') return false;
  // An injected fault that carries a status stands for that answer: an injected 404 is not an outage.
  return !isClientErrorStatus(statusOf(error));
}
