import type { Clock } from '../../core/clock.js';
import { systemClock } from '../../core/clock.js';
import { DeadlineExceededError } from '../../core/errors.js';

/** Relative budget, preferred on the wire: immune to clock skew between hosts. */
export const TIMEOUT_HEADER = 'x-request-timeout-ms';
/** Absolute deadline in Unix epoch milliseconds; only as good as the two hosts' clocks. */
export const DEADLINE_HEADER = 'x-request-deadline';

/** Longest budget a caller may ask for in a header (1 day): anything larger is a bug or an attack. */
export const MAX_HEADER_TIMEOUT_MS = 86_400_000;
/**
 * Epoch-ms values below this (2001-09-09) are rejected as malformed: they are almost always
 * epoch *seconds* (a Python `time.time()` sent as is), which would otherwise read as "expired
 * in 1970" and turn a unit bug into silent 504s.
 */
export const MIN_EPOCH_MS = 1_000_000_000_000;
/** Epoch-ms values above this (year 2286) are rejected as malformed. */
export const MAX_EPOCH_MS = 9_999_999_999_999;

export type HeaderValue = string | readonly string[] | undefined;

/** How a request's deadline was chosen (for logs, tests and the dashboard). */
export type DeadlineOrigin = 'timeout-header' | 'deadline-header' | 'route-default' | 'server-max' | 'none';

/** `'prefer-timeout'`: the relative header when present, else the absolute one. `'earliest'`: the earlier of both. */
export type DeadlineCombine = 'prefer-timeout' | 'earliest';

export type ParsedDeadline =
  | { ok: true; deadline: number; source: DeadlineOrigin; budgetMs: number }
  | { ok: false; header: string; reason: string };

const DIGITS = /^[0-9]+$/;

/**
 * Reads one header as a non-negative integer: digits only, optional surrounding spaces, no
 * sign, exponent, fraction or list. A header repeated with different values is malformed
 * (Node joins repeats with ", ", which the digits-only rule rejects).
 */
function parseInteger(value: HeaderValue, max: number): number | undefined | null {
  if (value === undefined) return undefined;
  let text: string;
  if (typeof value === 'string') text = value;
  else if (value.length === 1) text = value[0]!;
  else return null;
  text = text.trim();
  if (text.length === 0 || text.length > 16 || !DIGITS.test(text)) return null;
  const n = Number(text);
  return n <= max ? n : null;
}

export interface DeadlineInput {
  timeoutHeader: HeaderValue;
  deadlineHeader: HeaderValue;
  /** Route default budget when the request carries no deadline header. */
  defaultMs: number | undefined;
  /** Cap: no request may run longer than this, whatever its headers say. */
  maxMs: number | undefined;
  combine: DeadlineCombine;
  /** `false` ignores both headers (e.g. a public edge that does not let callers choose). */
  honorHeaders: boolean;
  /** Current time on the request's clock (epoch-aligned ms). */
  now: number;
  timeoutHeaderName?: string;
  deadlineHeaderName?: string;
}

/**
 * Decides a request's deadline from its headers and the route's settings. Pure: the guard
 * turns a malformed result into 400 and an expired one into 504.
 *
 * Rules: both headers are validated when present (garbage is rejected even if the other header
 * is fine). The relative header is preferred (`prefer-timeout`, the default) because clocks are
 * skewed; the absolute one is used when it is the only one. With `earliest`, the stricter of the
 * two wins. Without headers the route default applies; `maxMs` caps the result either way.
 */
export function resolveDeadline(input: DeadlineInput): ParsedDeadline {
  const now = input.now;
  let deadline = Infinity;
  let source: DeadlineOrigin = 'none';
  if (input.honorHeaders) {
    const timeoutMs = parseInteger(input.timeoutHeader, MAX_HEADER_TIMEOUT_MS);
    if (timeoutMs === null) {
      return {
        ok: false,
        header: input.timeoutHeaderName ?? TIMEOUT_HEADER,
        reason: `must be a non-negative integer number of milliseconds, at most ${MAX_HEADER_TIMEOUT_MS}`,
      };
    }
    const epochMs = parseInteger(input.deadlineHeader, MAX_EPOCH_MS);
    if (epochMs === null || (epochMs !== undefined && epochMs < MIN_EPOCH_MS)) {
      return {
        ok: false,
        header: input.deadlineHeaderName ?? DEADLINE_HEADER,
        reason: 'must be an integer Unix epoch time in milliseconds (13 digits; seconds are not accepted)',
      };
    }
    if (timeoutMs !== undefined) {
      deadline = now + timeoutMs;
      source = 'timeout-header';
    }
    if (epochMs !== undefined && (source === 'none' || (input.combine === 'earliest' && epochMs < deadline))) {
      deadline = epochMs;
      source = 'deadline-header';
    }
  }
  if (source === 'none' && input.defaultMs !== undefined) {
    deadline = now + input.defaultMs;
    source = 'route-default';
  }
  if (input.maxMs !== undefined && deadline > now + input.maxMs) {
    // A capped header keeps its source (the caller did ask for a deadline, just a shorter one).
    deadline = now + input.maxMs;
    if (source === 'none') source = 'server-max';
  }
  return { ok: true, deadline, source, budgetMs: deadline - now };
}

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
