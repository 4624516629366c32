import { createHash } from 'node:crypto';
import type { Clock } from '../core/clock.js';
import { deadlineOnClock, PRIORITIES, type CallContextSource, type Priority } from '../core/context.js';
import { DeadlineExceededError, InvalidInputError } from '../core/errors.js';

/**
 * Turning a `fetch(input, init)` call into the plain facts the pipeline decides on: URL,
 * method, headers, whether the body can be sent twice, the caller's deadline and signal.
 * Pure apart from reading a `Request` input's body; no undici here.
 */

/** Methods RFC 9110 §9.2.2 defines as idempotent: sending one twice has the effect of sending it once. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

/** The fetch standard upper-cases these method names (and only these). */
const NORMALIZED_METHODS: ReadonlySet<string> = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/** Request headers that make two GETs of one URL different answers (part of the coalescing/cache key). */
export const DEFAULT_KEY_HEADERS: readonly string[] = ['accept', 'accept-encoding', 'accept-language', 'authorization', 'cookie', 'range'];

/** Key headers whose values are secrets: only a hash of them goes into a key. */
const SECRET_HEADERS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization']);

/** Bulwark's per-call options, passed as `init.bulwark`. */
export interface BulwarkCallOptions {
  /** Absolute deadline on the client's clock (epoch ms with the system clock). */
  deadline?: number;
  /** Relative deadline in ms; with `deadline` and `context`, the earliest wins. */
  timeoutMs?: number;
  /**
   * The inbound request this call serves (a `RequestContext` from bulwark/http, fastify,
   * express) or any `{ deadline, clock?, signal? }`: its remaining budget becomes this call's
   * deadline and its signal aborts the call.
   */
  context?: CallContextSource;
  /** Bulkhead queue priority. Default 'normal'. */
  priority?: Priority;
  /**
   * Overrides the method-based rule: `true` declares this call safe to retry (a POST you know
   * is idempotent); `false` forbids retrying and hedging it (a GET with side effects).
   */
  idempotent?: boolean;
  /** Routes the call through this named dependency instead of matching its URL. */
  dependency?: string;
  /** `false` bypasses the stale cache for this call. */
  cache?: boolean;
  /** `false` sends this call on its own, not coalesced. */
  coalesce?: boolean;
  /** `false` never hedges this call. */
  hedge?: boolean;
}

export type HeadersLike =
  | { forEach(callback: (value: string, name: string) => void): void }
  | ReadonlyArray<readonly [string, string]>
  | Readonly<Record<string, string | readonly string[] | undefined>>;

/** What `fetch` accepts as a `Request` (undici's, Node's global one, or a look-alike). */
export interface RequestLike {
  readonly url: string;
  readonly method: string;
  readonly headers: HeadersLike;
  readonly body: unknown;
  readonly signal?: AbortSignal;
  readonly redirect?: string;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export type FetchInput = string | URL | RequestLike;

/** The subset of `RequestInit` the client reads; other members are ignored. */
export interface FetchInitLike {
  method?: string;
  headers?: HeadersLike;
  body?: unknown;
  signal?: AbortSignal | null;
  redirect?: string;
  /** `'no-store'`, `'no-cache'` and `'reload'` bypass the stale cache. */
  cache?: string;
  duplex?: string;
  /** An undici Dispatcher for this call only. */
  dispatcher?: unknown;
  bulwark?: BulwarkCallOptions;
}

/** One call as the pipeline sees it (policies reach it through the call's tags, see `callOf`). */
export class FetchCall {
  /** Set by the dependency that runs the call. */
  dependency = '';
  /** The call's tags, made by the dependency that runs it. */
  tags: Readonly<Record<string, unknown>> | undefined = undefined;
  /** Retry allowed: an idempotent method, an Idempotency-Key, or `bulwark.idempotent: true`; and a replayable body. */
  retryable = false;
  hedgeable = false;
  /** Cache and coalescing keys; undefined when the call is not cached / not coalesced. */
  cacheKey: string | undefined = undefined;
  coalesceKey: string | undefined = undefined;
  /**
   * The response may be handed to several callers (coalesced or cached): its body is buffered
   * and the call carries no caller's deadline or signal (it belongs to no one caller).
   */
  shared = false;

  constructor(
    readonly url: URL,
    readonly href: string,
    readonly host: string,
    readonly method: string,
    /** Lower-case names; values of repeated headers joined with ", " (as `Headers` does). */
    readonly headers: Readonly<Record<string, string>>,
    readonly body: unknown,
    /** The body can be sent again (retry, hedge): absent, or held in memory. */
    readonly replayable: boolean,
    /** Safe to send twice by its method, its Idempotency-Key, or the caller's say-so. */
    readonly idempotent: boolean,
    readonly callerSignal: AbortSignal | undefined,
    /** The caller's deadline on the client's clock; Infinity without one. */
    readonly deadline: number,
    readonly priority: Priority,
    readonly redirect: string | undefined,
    readonly duplex: string | undefined,
    readonly dispatcher: unknown,
    readonly options: BulwarkCallOptions | undefined,
    /** `init.cache` asked to bypass caches. */
    readonly noCache: boolean,
  ) {}
}

export interface PrepareOptions {
  clock: Clock;
  idempotencyKeyHeader: string;
}

/**
 * Validates and normalises one call. Bad input becomes `INVALID_INPUT` (never a crash deeper
 * down, never a retried "network error"); an already expired deadline `DEADLINE_EXCEEDED`,
 * before any I/O.
 */
export async function prepareCall(input: FetchInput, init: FetchInitLike | undefined, options: PrepareOptions): Promise<FetchCall> {
  if (init !== undefined && init !== null && typeof init !== 'object') throw invalid('init must be an object');
  let url: URL;
  let method = 'GET';
  let headers: Record<string, string> = {};
  let body: unknown = null;
  let signal: AbortSignal | undefined;
  let redirect: string | undefined;
  if (typeof input === 'string' || input instanceof URL) {
    url = parseUrl(input);
  } else if (isRequestLike(input)) {
    url = parseUrl(input.url);
    method = input.method;
    headers = normalizeHeaders(input.headers);
    signal = input.signal ?? undefined;
    redirect = input.redirect;
    // A Request's body is a one-shot stream; read it once so every attempt can send it. Pass a
    // stream as `init.body` instead to send it once, unbuffered (and unretried).
    if (input.body !== null && input.body !== undefined && init?.body === undefined) body = new Uint8Array(await input.arrayBuffer());
  } else {
    throw invalid('input must be a URL string, a URL or a Request');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`only http: and https: URLs are supported, got ${url.protocol}`);

  if (init) {
    if (init.method !== undefined) {
      if (typeof init.method !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(init.method)) throw invalid(`invalid method ${String(init.method)}`);
      method = init.method;
    }
    if (init.headers !== undefined) headers = normalizeHeaders(init.headers);
    if (init.body !== undefined) body = init.body;
    if (init.signal !== undefined) signal = init.signal ?? undefined;
    if (init.redirect !== undefined) redirect = init.redirect;
  }
  const upper = method.toUpperCase();
  if (NORMALIZED_METHODS.has(upper)) method = upper;
  if ((method === 'GET' || method === 'HEAD') && body !== null && body !== undefined) throw invalid(`a ${method} request cannot have a body`);
  if (body === undefined) body = null;

  const bulwark = init?.bulwark;
  if (bulwark !== undefined && (typeof bulwark !== 'object' || bulwark === null)) throw invalid('init.bulwark must be an object');
  const clock = options.clock;
  const now = clock.now();
  let deadline = Infinity;
  let priority: Priority = 'normal';
  if (bulwark) {
    if (bulwark.deadline !== undefined) {
      if (typeof bulwark.deadline !== 'number' || Number.isNaN(bulwark.deadline)) throw invalid('bulwark.deadline must be a number of milliseconds');
      deadline = bulwark.deadline;
    }
    if (bulwark.timeoutMs !== undefined) {
      if (typeof bulwark.timeoutMs !== 'number' || !(bulwark.timeoutMs >= 0)) throw invalid(`bulwark.timeoutMs must be a number >= 0, got ${String(bulwark.timeoutMs)}`);
      deadline = Math.min(deadline, now + bulwark.timeoutMs);
    }
    const context = bulwark.context;
    if (context !== undefined) {
      if (typeof context !== 'object' || context === null || typeof context.deadline !== 'number' || Number.isNaN(context.deadline)) {
        throw invalid('bulwark.context must carry a numeric deadline (a RequestContext, a CallContext or { deadline, clock? })');
      }
      deadline = Math.min(deadline, deadlineOnClock(context, clock, now));
      const contextSignal = context.signal;
      if (contextSignal !== undefined) signal = signal === undefined ? contextSignal : AbortSignal.any([signal, contextSignal]);
      if (context.priority !== undefined && PRIORITIES.includes(context.priority)) priority = context.priority;
    }
    if (bulwark.priority !== undefined) {
      if (!PRIORITIES.includes(bulwark.priority)) throw invalid(`bulwark.priority must be one of ${PRIORITIES.join(', ')}`);
      priority = bulwark.priority;
    }
  }
  if (deadline <= now) throw new DeadlineExceededError(deadline);
  if (signal?.aborted) throw signal.reason;

  const replayable = isReplayableBody(body);
  const idempotent = bulwark?.idempotent ?? (IDEMPOTENT_METHODS.has(method) || headers[options.idempotencyKeyHeader] !== undefined);
  const duplex = init?.duplex ?? (replayable ? undefined : 'half');
  const noCache = init?.cache === 'no-store' || init?.cache === 'no-cache' || init?.cache === 'reload';
  return new FetchCall(
    url, url.href, url.host, method, headers, body, replayable, idempotent, signal, deadline, priority,
    redirect, duplex, init?.dispatcher, bulwark, noCache,
  );
}

/** The key under which GETs share an answer: method, URL and the key headers (secrets hashed). */
export function shareKey(call: FetchCall, keyHeaders: readonly string[]): string {
  let key = `${call.method} ${call.href}`;
  for (const name of keyHeaders) {
    const value = call.headers[name];
    if (value === undefined) continue;
    key += `\n${name}: ${SECRET_HEADERS.has(name) ? digest(value) : value}`;
  }
  return key;
}

function digest(value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('base64url').slice(0, 22)}`;
}

/** Bodies held in memory can be sent again; streams (and anything unknown) only once. */
export function isReplayableBody(body: unknown): boolean {
  if (body === null || body === undefined || typeof body === 'string') return true;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return true;
  const tag = Object.prototype.toString.call(body);
  return tag === '[object URLSearchParams]' || tag === '[object Blob]' || tag === '[object File]' || tag === '[object FormData]';
}

/** Lower-cased header record from a `Headers`, an array of pairs, or a plain object. */
export function normalizeHeaders(headers: HeadersLike | undefined | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers === undefined || headers === null) return out;
  const add = (name: unknown, value: unknown): void => {
    if (typeof name !== 'string' || name.length === 0) throw invalid(`invalid header name ${String(name)}`);
    if (value === undefined) return;
    const text = String(value);
    const lower = name.toLowerCase();
    const previous = out[lower];
    out[lower] = previous === undefined ? text : `${previous}, ${text}`;
  };
  if (typeof headers !== 'object') throw invalid('headers must be a Headers, an array of [name, value] pairs or an object');
  if (typeof (headers as { forEach?: unknown }).forEach === 'function' && !Array.isArray(headers)) {
    (headers as { forEach(cb: (value: string, name: string) => void): void }).forEach((value, name) => add(name, value));
  } else if (Array.isArray(headers)) {
    for (const pair of headers as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2) throw invalid('header pairs must be [name, value]');
      add(pair[0], pair[1]);
    }
  } else {
    for (const [name, value] of Object.entries(headers as Record<string, unknown>)) {
      if (Array.isArray(value)) for (const v of value) add(name, v);
      else add(name, value);
    }
  }
  return out;
}

function parseUrl(input: string | URL): URL {
  if (input instanceof URL) return input;
  try {
    return new URL(input);
  } catch {
    throw invalid(`invalid URL ${JSON.stringify(String(input).slice(0, 200))} (the client needs absolute URLs)`);
  }
}

function isRequestLike(input: unknown): input is RequestLike {
  return typeof input === 'object' && input !== null
    && typeof (input as RequestLike).url === 'string' && typeof (input as RequestLike).method === 'string'
    && typeof (input as RequestLike).arrayBuffer === 'function';
}

function invalid(message: string): InvalidInputError {
  return new InvalidInputError(`fetch: ${message}`);
}
