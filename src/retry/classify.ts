/**
 * Which failures are worth another call: a permanent error or a malformed request never succeeds
 * however often it is sent, and retrying a local rejection only adds load (the Google SRE book,
 * "Addressing Cascading Failures", on separating retriable from non-retriable errors).
 *
 * Retried by default: network errors, HTTP 500/502/503/504 and 429 (after its Retry-After),
 * the Bulwark codes ERROR_TABLE marks `retryable` (TIMEOUT, STORE_UNAVAILABLE, FAULT_INJECTED),
 * and unknown errors (a plain Error with neither code nor status is usually transient in
 * practice). Never retried: other 4xx, and the codes ERROR_TABLE marks `never` (Bulwark's own
 * local rejections: breaker open, bulkhead or queue full, rate limited, shed, ...): retrying
 * those multiplies load at one layer on top of another.
 */

import { meaningOf, statusOf } from '../core/error-table.js';

/** What one attempt produced that the policy is deciding about. */
export type RetryOutcome =
  | { readonly kind: 'error'; readonly error: unknown; readonly attempt: number }
  | { readonly kind: 'result'; readonly result: unknown; readonly attempt: number };

/** Node and undici error codes of a failed connection or exchange: transient by nature. */
export const RETRYABLE_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

/** HTTP statuses that are retried by default. Every other 4xx/5xx is not. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);

/** Servers that shed load say "do not retry at any layer" with this header set to `no`. */
export const NO_RETRY_HEADER = 'bulwark-retry';

const MAX_CAUSE_DEPTH = 8;

/**
 * True when nothing may retry `source` (an error, or a result flagged by `handleResult`):
 * a Bulwark local rejection anywhere in its cause chain, a `Bulwark-Retry: no` header, or
 * `retryable === false`. `shouldRetry` cannot override this.
 */
export function isNeverRetried(source: unknown): boolean {
  if (typeof source !== 'object' || source === null) return false;
  if ((source as { retryable?: unknown }).retryable === false) return true;
  const noRetry = getHeader(headersOf(source), NO_RETRY_HEADER);
  if (noRetry !== undefined && noRetry.trim().toLowerCase() === 'no') return true;
  let current: unknown = source;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && typeof current === 'object' && current !== null; depth++) {
    if (meaningOf(current)?.retry === 'never') return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The default classification of a thrown value (after `isNeverRetried` said it may be retried).
 * Walks the cause chain to the first error it recognises (`fetch failed` → its ECONNREFUSED
 * cause); errors it does not recognise are retried.
 */
export function isRetryableError(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH; depth++) {
    if (typeof current !== 'object' || current === null) return true; // thrown strings, undefined: unknown
    const verdict = classifyOne(current);
    if (verdict !== undefined) return verdict;
    current = (current as { cause?: unknown }).cause;
    if (current === undefined) break;
  }
  return true;
}

function classifyOne(error: object): boolean | undefined {
  const retryable = (error as { retryable?: unknown }).retryable;
  if (typeof retryable === 'boolean') return retryable;
  const meaning = meaningOf(error);
  if (meaning !== undefined) return meaning.retry === 'retryable';
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)) return true;
  const status = statusOf(error);
  if (status !== undefined && status >= 400) return RETRYABLE_STATUSES.has(status);
  // Someone aborted on purpose (a DOMException 'AbortError' from their own signal).
  if ((error as { name?: unknown }).name === 'AbortError') return false;
  return undefined;
}

/** The headers an error (or response) carries: `headers` or `response.headers`. */
export function headersOf(source: unknown): unknown {
  if (typeof source !== 'object' || source === null) return undefined;
  const s = source as { headers?: unknown; response?: { headers?: unknown } };
  if (s.headers !== undefined && s.headers !== null) return s.headers;
  const response = s.response;
  return typeof response === 'object' && response !== null ? response.headers : undefined;
}

/**
 * One header from a WHATWG `Headers` (or anything with a `get`), or a plain object such as
 * Node's `IncomingHttpHeaders`, case-insensitively. Arrays give their first value.
 */
export function getHeader(headers: unknown, name: string): string | undefined {
  if (typeof headers !== 'object' || headers === null) return undefined;
  const lower = name.toLowerCase();
  const getter = (headers as { get?: unknown }).get;
  if (typeof getter === 'function') {
    const value: unknown = getter.call(headers, lower) ?? getter.call(headers, name);
    return headerValue(value);
  }
  const record = headers as Record<string, unknown>;
  let value = record[lower] ?? record[name];
  if (value === undefined) {
    for (const key of Object.keys(record)) {
      if (key.toLowerCase() === lower) {
        value = record[key];
        break;
      }
    }
  }
  return headerValue(value);
}

function headerValue(value: unknown): string | undefined {
  if (Array.isArray(value)) value = value[0];
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

/**
 * Milliseconds to wait according to a Retry-After value: delay-seconds (`120`, decimals
 * tolerated) or an HTTP date, relative to `now` (epoch ms). Negative, past or unreadable
 * values give undefined (the computed backoff is used instead).
 */
export function parseRetryAfter(value: unknown, now: number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  // All three HTTP-date forms (IMF-fixdate, RFC 850, asctime) start with the day name.
  if (!/^[A-Za-z]{3}/.test(text)) return undefined;
  // asctime carries no zone; HTTP dates are always GMT.
  const at = Date.parse(/(GMT|UTC|[+-]\d{4})$/i.test(text) ? text : `${text} GMT`);
  if (Number.isNaN(at)) return undefined;
  const delta = at - now;
  return delta >= 0 ? delta : undefined;
}

/**
 * How long `source` (an error, or a result) asks us to wait: its `Retry-After` header, else
 * a numeric `retryAfterMs` property (Bulwark's STORE_UNAVAILABLE, and others' errors alike).
 * Capped at `maxMs`: a longer request waits `maxMs`.
 */
export function retryAfterOf(source: unknown, now: number, maxMs: number): number | undefined {
  if (typeof source !== 'object' || source === null) return undefined;
  let ms = parseRetryAfter(getHeader(headersOf(source), 'retry-after'), now);
  if (ms === undefined) {
    const own = (source as { retryAfterMs?: unknown }).retryAfterMs;
    if (typeof own === 'number' && Number.isFinite(own) && own >= 0) ms = own;
  }
  return ms === undefined ? undefined : Math.min(ms, maxMs);
}

/** What the policy does with a failure: retry (after `retryAfterMs` when the server said so) or not. */
export interface RetryDecision {
  retry: boolean;
  retryAfterMs?: number;
}

const DO_NOT_RETRY: RetryDecision = Object.freeze({ retry: false });

/**
 * The full decision for one outcome: hard "never" rules first, then the user's `shouldRetry`
 * (undefined = no opinion), then the default classification (errors) or "retry" (results
 * that `handleResult` flagged), then Retry-After.
 */
export function decideRetry(
  outcome: RetryOutcome,
  shouldRetry: ((outcome: RetryOutcome) => boolean | undefined) | undefined,
  now: number,
  maxRetryAfterMs: number,
): RetryDecision {
  const source = outcome.kind === 'error' ? outcome.error : outcome.result;
  if (isNeverRetried(source)) return DO_NOT_RETRY;
  const custom = shouldRetry?.(outcome);
  const retry = custom ?? (outcome.kind === 'error' ? isRetryableError(outcome.error) : true);
  if (!retry) return DO_NOT_RETRY;
  const retryAfterMs = retryAfterOf(source, now, maxRetryAfterMs);
  return retryAfterMs === undefined ? { retry: true } : { retry: true, retryAfterMs };
}
