/**
 * Response headers for rate-limited APIs. A limiter decides; these only format, so every
 * adapter and every limiter writes the same bytes.
 */

/** What a limiter knows after a decision (all durations in ms). */
export interface RateLimitInfo {
  /** The quota: requests allowed per window (or the bucket capacity). */
  limit: number;
  /** Requests still allowed now (never negative on the wire). */
  remaining: number;
  /** Time until the quota is fully (window limiters) or partly (token bucket: one token) restored. */
  resetMs: number;
  /** Length of the quota window, advertised in the policy field when known. */
  windowMs?: number;
  /** Policy name for the draft-10 fields (a token, e.g. "default", "per-ip"). */
  policy?: string;
}

/**
 * Which revision of the IETF draft (draft-ietf-httpapi-ratelimit-headers) to speak:
 * - `'draft-6'` (default): `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (delta
 *   seconds) and `RateLimit-Policy: 100;w=60`. The widely deployed form (GitHub-style clients,
 *   express-rate-limit's `draft-6`).
 * - `'draft-10'`: the current two-field form, `RateLimit-Policy: "default";q=100;w=60` and
 *   `RateLimit: "default";r=50;t=30`.
 */
export type RateLimitHeaderFormat = 'draft-6' | 'draft-10';

/** Whole seconds, rounded up, never negative: waiting a little longer is safe; less is not. */
export function ceilSeconds(ms: number): number {
  if (!(ms > 0)) return 0;
  return Math.ceil(ms / 1000);
}

/**
 * `Retry-After` as delta-seconds (RFC 9110 §10.2.3), rounded up so a client that honours it
 * is not rejected again for arriving a few ms early. Non-finite or negative input gives "0".
 */
export function formatRetryAfter(ms: number): string {
  return String(Number.isFinite(ms) ? ceilSeconds(ms) : 0);
}

/** Lower-case header names and values for a rate-limit decision. */
export function rateLimitHeaders(info: RateLimitInfo, format: RateLimitHeaderFormat = 'draft-6'): Record<string, string> {
  const limit = Math.max(0, Math.floor(info.limit));
  const remaining = Math.max(0, Math.floor(info.remaining));
  const reset = Number.isFinite(info.resetMs) ? ceilSeconds(info.resetMs) : 0;
  const window = info.windowMs !== undefined && info.windowMs > 0 ? ceilSeconds(info.windowMs) : undefined;
  if (format === 'draft-10') {
    const name = quoteToken(info.policy ?? 'default');
    return {
      'ratelimit-policy': `${name};q=${limit}${window === undefined ? '' : `;w=${window}`}`,
      ratelimit: `${name};r=${remaining};t=${reset}`,
    };
  }
  const headers: Record<string, string> = {
    'ratelimit-limit': String(limit),
    'ratelimit-remaining': String(remaining),
    'ratelimit-reset': String(reset),
  };
  if (window !== undefined) headers['ratelimit-policy'] = `${limit};w=${window}`;
  return headers;
}

/** A structured-field string (RFC 8941 §3.3.3): printable ASCII with `"` and `\` escaped. */
function quoteToken(value: string): string {
  const safe = value.replace(/[^\x20-\x7e]/g, '').replace(/[\\"]/g, (c) => `\\${c}`);
  return `"${safe}"`;
}

/** `rateLimitHeaders` plus `Retry-After` (what a 429 carries). */
export function rateLimitedHeaders(info: RateLimitInfo, retryAfterMs: number, format: RateLimitHeaderFormat = 'draft-6'): Record<string, string> {
  // Added to the fresh object, not `{ ...headers, 'retry-after': … }`: in Node 20 a spread
  // followed by more properties takes V8's generic copy path (docs/benchmarks.md), on every 429.
  const headers = rateLimitHeaders(info, format);
  headers['retry-after'] = formatRetryAfter(retryAfterMs);
  return headers;
}
