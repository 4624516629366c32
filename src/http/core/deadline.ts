import { DEADLINE_HEADER, MAX_HEADER_TIMEOUT_MS, TIMEOUT_HEADER } from '../../core/deadline-headers.js';

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
