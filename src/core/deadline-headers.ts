// The deadline headers Bulwark speaks on the wire, and the outbound half of propagation: turning
// a caller's remaining budget into headers for the next hop. Inbound parsing (which needs the
// HTTP server's view of a request) lives in the HTTP core; both use the names defined here.
import { systemClock, type Clock } from './clock.js';
import { DeadlineExceededError } from './errors.js';

/** Relative budget, preferred on the wire: immune to clock skew between hosts. */
export const TIMEOUT_HEADER = 'x-request-timeout-ms';
/** Absolute deadline in Unix epoch milliseconds; only as good as the two hosts' clocks. */
export const DEADLINE_HEADER = 'x-request-deadline';

/** Longest budget a caller may ask for in a header (1 day): anything larger is a bug or an attack. */
export const MAX_HEADER_TIMEOUT_MS = 86_400_000;

/** Anything that knows a deadline: a Bulwark `CallContext`, a `RequestContext`, or a plain pair. */
export interface DeadlineCarrier {
  /** Absolute deadline on `clock` (Infinity without one). */
  readonly deadline: number;
  readonly clock?: Clock;
}

export interface DeadlineHeadersOptions {
  /**
   * Subtracted from the remaining budget so the callee gives up (and answers) before we do:
   * network transit plus our own time to handle its answer. Default 10 ms.
   */
  marginMs?: number;
  /**
   * Also send `X-Request-Deadline` (absolute epoch ms). Off by default: with skewed clocks the
   * relative header is the honest one; turn it on for callees that only read the absolute one.
   */
  includeAbsolute?: boolean;
  timeoutHeader?: string;
  deadlineHeader?: string;
}

/**
 * Headers that propagate the caller's remaining budget to a downstream HTTP call:
 * `X-Request-Timeout-Ms: floor(remaining − margin)`. With no deadline it returns `{}`: never a
 * placeholder such as `X-Deadline: None`, which a downstream could parse as anything. When nothing is left
 * after the margin it throws `DeadlineExceededError` (code DEADLINE_EXCEEDED) so the call is
 * not made at all (an expired deadline fails before any I/O).
 */
export function deadlineHeaders(carrier: DeadlineCarrier | undefined, options: DeadlineHeadersOptions = {}): Record<string, string> {
  if (carrier === undefined) return {};
  const deadline = carrier.deadline;
  if (typeof deadline !== 'number' || Number.isNaN(deadline) || deadline === Infinity) return {};
  const clock = carrier.clock ?? systemClock;
  const margin = options.marginMs ?? 10;
  const remaining = Math.floor(deadline - clock.now() - margin);
  if (!(remaining > 0)) throw new DeadlineExceededError(deadline);
  const headers: Record<string, string> = { [options.timeoutHeader ?? TIMEOUT_HEADER]: String(Math.min(remaining, MAX_HEADER_TIMEOUT_MS)) };
  if (options.includeAbsolute) headers[options.deadlineHeader ?? DEADLINE_HEADER] = String(Math.floor(deadline - margin));
  return headers;
}
