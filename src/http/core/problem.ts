import { ERROR_TABLE, ownStatusOf } from '../../core/error-table.js';
import { BulwarkError, type ErrorCode, InvalidInputError } from '../../core/errors.js';
import { formatRetryAfter, rateLimitedHeaders, type RateLimitHeaderFormat, type RateLimitInfo } from './rate-limit-headers.js';
import { NO_RETRY_HEADER } from '../../retry/classify.js';

/** What a server answers instead of running the handler (a rejection, a health report, a replay). */
export interface HttpResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string>;
  body: string | Uint8Array;
}

/** RFC 9457 "Problem Details for HTTP APIs", plus Bulwark's stable `code`. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail?: string;
  /** The stable Bulwark error code, so clients can branch without parsing text. */
  code?: string;
  instance?: string;
  [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/**
 * Servers add `Bulwark-Retry: no` to overload responses (shed, retry budget spent, retries
 * already made here) so that a client, a proxy or another Bulwark layer does not retry them:
 * retries belong to one layer only, or they multiply (3 tiers × 3 attempts = 27×).
 */
export const RETRY_HINT_HEADER = NO_RETRY_HEADER; // one definition, shared with the retry classifier
export const RETRY_HINT_NO = 'no';

/** The problem `type` URI for a Bulwark code: `urn:bulwark:problem:deadline-exceeded`. */
export function problemType(code: string): string {
  return `urn:bulwark:problem:${code.toLowerCase().replace(/_/g, '-')}`;
}

export interface ProblemInput {
  status: number;
  title: string;
  detail?: string;
  code?: ErrorCode | string;
  /** Defaults to `problemType(code)`, or `about:blank` without a code (RFC 9457 §4.2.1). */
  type?: string;
  instance?: string;
  /** Extra response headers (lower-case names), e.g. `retry-after`. */
  headers?: Record<string, string>;
  /** Extension members added to the body. */
  extensions?: Record<string, unknown>;
}

/** Builds an `application/problem+json` response. */
export function problemResponse(input: ProblemInput): HttpResponse {
  const body: ProblemDetails = {
    ...input.extensions,
    type: input.type ?? (input.code === undefined ? 'about:blank' : problemType(input.code)),
    title: input.title,
    status: input.status,
  };
  if (input.detail !== undefined) body.detail = input.detail;
  if (input.code !== undefined) body.code = input.code;
  if (input.instance !== undefined) body.instance = input.instance;
  return {
    status: input.status,
    headers: { 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store', ...input.headers },
    body: JSON.stringify(body),
  };
}

interface CodeMapping {
  title: string;
  /** Overload answers carry `Bulwark-Retry: no` (see RETRY_HINT_HEADER). */
  noRetry?: boolean;
  /** `Retry-After` for an error that carries no positive `retryAfterMs` of its own. */
  retryAfterMs?: number;
}

/**
 * `Retry-After` for a local "too busy" rejection that carries no hint of its own: a full
 * bulkhead (`BULKHEAD_FULL`), a queue wait that ran out (`BULKHEAD_QUEUE_TIMEOUT`), a full
 * queue (`QUEUE_FULL`), a shed without an estimate. Such a place frees as soon as one call in
 * flight ends, typically well under a second, but the server cannot know when; the queue
 * timeout is how long one caller waited, not when room comes back. The hint's job is only to
 * keep a rejected client from returning in the same instant (its own backoff adds the jitter),
 * and 1 s is the smallest positive wait the header's whole seconds can say (RFC 9110 §10.2.3).
 * A longer fixed wait (5 s) would leave freed capacity idle and only add latency.
 */
export const BUSY_RETRY_AFTER_MS = 1000;

/** The title of each stable error code's answer; its status comes from ERROR_TABLE. */
const CODE_TITLES: Record<ErrorCode, CodeMapping> = {
  TIMEOUT: { title: 'Upstream timeout' },
  DEADLINE_EXCEEDED: { title: 'Deadline exceeded' },
  CIRCUIT_OPEN: { title: 'Dependency unavailable (circuit open)' },
  BULKHEAD_FULL: { title: 'Too busy', noRetry: true, retryAfterMs: BUSY_RETRY_AFTER_MS },
  BULKHEAD_QUEUE_TIMEOUT: { title: 'Too busy', noRetry: true, retryAfterMs: BUSY_RETRY_AFTER_MS },
  RATE_LIMITED: { title: 'Too many requests' },
  SHED: { title: 'Overloaded: request shed', noRetry: true, retryAfterMs: BUSY_RETRY_AFTER_MS },
  RETRY_BUDGET_EXHAUSTED: { title: 'Dependency failing (retry budget exhausted)', noRetry: true },
  RETRIES_EXHAUSTED: { title: 'Dependency failing (retries exhausted)', noRetry: true },
  ABORTED: { title: 'Request aborted' },
  IDEMPOTENCY_CONFLICT: { title: 'A request with this idempotency key is in progress' },
  IDEMPOTENCY_MISMATCH: { title: 'Idempotency key reused with a different request' },
  IDEMPOTENCY_KEY_INVALID: { title: 'Invalid idempotency key' },
  STORE_UNAVAILABLE: { title: 'Store unavailable' },
  INVALID_INPUT: { title: 'Invalid request' },
  QUEUE_FULL: { title: 'Too busy', noRetry: true, retryAfterMs: BUSY_RETRY_AFTER_MS },
  INVALID_OPTIONS: { title: 'Internal server error' },
  FAULT_INJECTED: { title: 'Internal server error (injected fault)' },
  NOT_IDEMPOTENT: { title: 'Internal server error' },
  LEASE_LOST: { title: 'Internal server error' },
};

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not found', 405: 'Method not allowed',
  408: 'Request timeout', 409: 'Conflict', 411: 'Length required', 413: 'Content too large', 415: 'Unsupported media type',
  422: 'Unprocessable content', 429: 'Too many requests', 431: 'Request header fields too large',
  500: 'Internal server error', 502: 'Bad gateway', 503: 'Service unavailable', 504: 'Gateway timeout',
};

/**
 * The HTTP answer for an error a handler threw (or a protection produced):
 * Bulwark errors by their stable code (504, 503 + Retry-After, 429, 409, 422, 400...);
 * framework errors carrying a 4xx/5xx `status`/`statusCode` (body-parser, http-errors) keep it;
 * anything else is a 500 whose message is not disclosed.
 */
export function problemForError(error: unknown): HttpResponse {
  if (error instanceof InvalidRequestError) {
    return problemResponse({ status: error.status, title: STATUS_TITLES[error.status] ?? 'Bad request', code: error.code, detail: error.message });
  }
  if (error instanceof BulwarkError) {
    const mapping = CODE_TITLES[error.code] ?? { title: 'Internal server error' };
    const status = ERROR_TABLE[error.code]?.status ?? 500;
    const headers: Record<string, string> = {};
    const own = (error as { retryAfterMs?: unknown }).retryAfterMs;
    const retryAfterMs = typeof own === 'number' && Number.isFinite(own) && (own > 0 || mapping.retryAfterMs === undefined)
      ? own
      : mapping.retryAfterMs;
    if (retryAfterMs !== undefined && status !== 500) headers['retry-after'] = formatRetryAfter(retryAfterMs);
    if (mapping.noRetry) headers[RETRY_HINT_HEADER] = RETRY_HINT_NO;
    return problemResponse({
      status,
      title: mapping.title,
      code: error.code,
      // 5xx messages from our own policies are safe to show (no user data); 500s are not.
      ...(status === 500 ? {} : { detail: error.message }),
      headers,
    });
  }
  const status = ownStatusOf(error);
  if (status !== undefined && status >= 400 && status <= 599) {
    const exposed = status < 500 || (error as { expose?: unknown }).expose === true;
    return problemResponse({
      status,
      title: STATUS_TITLES[status] ?? (status < 500 ? 'Bad request' : 'Server error'),
      ...(exposed && error instanceof Error && error.message ? { detail: truncate(error.message, 300) } : {}),
    });
  }
  return problemResponse({ status: 500, title: 'Internal server error' });
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Bad request input (malformed body, too large, wrong media type): code INVALID_INPUT, a 4xx status. */
export class InvalidRequestError extends InvalidInputError {
  constructor(message: string, readonly status: 400 | 408 | 411 | 413 | 415 | 422 | 431 = 400, cause?: unknown) {
    super(message, { cause, captureStack: false });
  }
}

/** The 429 a rate limiter answers: problem+json, `Retry-After`, and `RateLimit-*` when the quota is known. */
export function rateLimitedResponse(retryAfterMs: number, info?: RateLimitInfo, format: RateLimitHeaderFormat = 'draft-6'): HttpResponse {
  return problemResponse({
    status: 429,
    title: 'Too many requests',
    detail: `Rate limit exceeded; retry after ${formatRetryAfter(retryAfterMs)} s.`,
    code: 'RATE_LIMITED',
    headers: info ? rateLimitedHeaders(info, retryAfterMs, format) : { 'retry-after': formatRetryAfter(retryAfterMs) },
  });
}

/**
 * The 503 an overloaded server answers when it sheds a request: `Retry-After` and
 * `Bulwark-Retry: no` (retry later, from the original caller, not at every layer).
 */
export function overloadedResponse(retryAfterMs: number, detail = 'The server is overloaded and shed this request.'): HttpResponse {
  return problemResponse({
    status: 503,
    title: 'Overloaded: request shed',
    detail,
    code: 'SHED',
    headers: { 'retry-after': formatRetryAfter(retryAfterMs), [RETRY_HINT_HEADER]: RETRY_HINT_NO },
  });
}
