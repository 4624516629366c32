import { BulwarkError, InvalidOptionsError, StoreUnavailableError, type ErrorCode } from '../core/errors.js';
import { fn, nonNegative, oneOf, positiveInt } from '../core/validate.js';
import type { StoredResponse } from './codec.js';
import { IdempotencyEngine, type IdempotencyEngineOptions, type Lease } from './engine.js';
import { IdempotencyKeyInvalidError, LeaseLostError } from './errors.js';
import { fingerprintRequest, fingerprintStream, type BodyChunk, type FingerprintBody } from './fingerprint.js';
import { DEFAULT_MAX_KEY_LENGTH, parseIdempotencyKey } from './scope.js';

/**
 * HTTP semantics of idempotency keys (IETF "The Idempotency-Key HTTP Header Field" draft,
 * Stripe's behaviour), framework-neutral. An adapter (Fastify, Express, node:http) does:
 *
 *   const begun = await idem.begin(request);
 *   if (begun.action === 'respond') return send(begun.response);
 *   try { response = await handler(begun.lease) } catch (e) { const r = await idem.abort(begun, e); if (r) return send(r); throw e }
 *   send(await idem.finish(begun, response));
 *
 * or simply `send(await idem.handle(request, handler))`.
 */

export interface IdempotentRequest {
  method: string;
  /** The request path as the client sent it (with the query string if it matters); part of the fingerprint. */
  path: string;
  /** The route template (`/orders/:id`) the key is scoped to. Default: `path`. */
  route?: string;
  /** Request headers with lower-case names (what node:http, Fastify and Express give you). */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The body when the framework already has it: parsed JSON (canonicalized), bytes or a string. */
  body?: FingerprintBody;
  /** Or the raw body as a stream: hashed chunk by chunk and kept once for the handler (see `BeginRun.body`). */
  bodyStream?: AsyncIterable<BodyChunk>;
  /**
   * The authenticated principal/tenant the record belongs to. Required on purpose: pass `null`
   * for anonymous endpoints (all anonymous callers then share one key space).
   */
  principal: string | null;
  /** Client went away: stops waiting for an in-progress duplicate. */
  signal?: AbortSignal;
}

/** A response as the adapter should send it. Header names are lower case. */
export interface IdempotencyHttpResponse {
  status: number;
  headers: Record<string, string>;
  /** Replays keep the stored body's type: JSON value, string or bytes (Buffer). Problems are JSON strings. */
  body: unknown;
}

/** A body read from `bodyStream`: kept once, as the chunks that arrived. */
export interface BufferedBody {
  readonly chunks: readonly BodyChunk[];
  readonly byteLength: number;
  /** The whole body as one Buffer (concatenated on first call, then cached). */
  toBuffer(): Buffer;
}

export type BeginRun = {
  action: 'run';
  /** Held while the handler runs; undefined when idempotency does not apply (see `mode`). */
  lease: Lease | undefined;
  /**
   * - `idempotent`: first execution for this key (or a takeover after a crash): run it.
   * - `no-key`: the request has no key and the route does not require one.
   * - `not-applicable`: the method is not guarded (GET, PUT, ... by default).
   * - `fail-open`: the store is down and `storeUnavailable: 'fail-open'`; runs unprotected.
   */
  mode: 'idempotent' | 'no-key' | 'not-applicable' | 'fail-open';
  /** The key, when there is one. */
  key: string | undefined;
  /** The body, when it came from `bodyStream` and `retainBody` is on. */
  body: BufferedBody | undefined;
};

export type BeginRespond = {
  action: 'respond';
  response: IdempotencyHttpResponse;
  reason: 'replay' | 'conflict' | 'mismatch' | 'invalid-key' | 'missing-key' | 'store-unavailable';
};

export type BeginOutcome = BeginRun | BeginRespond;

export interface IdempotencyHttpOptions extends Partial<IdempotencyEngineOptions> {
  /** An engine to use; otherwise one is built from the engine options here (`store` required). */
  engine?: IdempotencyEngine;
  /** Default 'Idempotency-Key'. */
  headerName?: string;
  /** Missing key → 400 IDEMPOTENCY_KEY_INVALID. Default false (requests without a key run unprotected). Per request: `begin(request, { required })`. */
  required?: boolean;
  /** Methods that get idempotency. Default POST and PATCH (GET, PUT, DELETE are idempotent by definition). */
  methods?: readonly string[];
  /** Default 255. */
  maxKeyLength?: number;
  /**
   * Which responses are stored for replay. Default: 2xx, 3xx and 4xx except 408, 409, 425 and
   * 429 (those say "try again", so the key must stay usable). Everything else (5xx) releases the
   * record so a retry runs again, as do thrown errors.
   */
  shouldStore?: (status: number) => boolean;
  /** Response headers kept and replayed (case-insensitive). Never store Set-Cookie or auth headers. */
  replayHeaders?: readonly string[];
  /** A duplicate while the first is running: 409 at once ('reject', default) or wait for the first and replay it ('wait'). */
  onInProgress?: 'reject' | 'wait';
  /** With onInProgress 'wait': how long to wait before answering 409. Default 10 000. */
  waitMs?: number;
  /** Retry-After (seconds) on a 409. Default 1. */
  conflictRetryAfterSeconds?: number;
  /** The store failed: 503 + Retry-After ('fail-closed', default) or run without idempotency ('fail-open'). */
  storeUnavailable?: 'fail-closed' | 'fail-open';
  /** Replace the fingerprint (default: method, path and canonical body). */
  fingerprint?: (request: IdempotentRequest) => string | Promise<string>;
  /** Keep a streamed body for the handler (`outcome.body`). Default true. */
  retainBody?: boolean;
}

export const DEFAULT_REPLAY_HEADERS: readonly string[] = [
  'content-type', 'content-language', 'content-location', 'location', 'etag', 'last-modified', 'link',
];

export const REPLAYED_HEADER = 'idempotent-replayed';
/** The original completion time of a replayed response (HTTP date). */
export const ORIGINAL_DATE_HEADER = 'idempotent-original-date';

const NEVER_STORED = new Set([408, 409, 425, 429]);

export function defaultShouldStore(status: number): boolean {
  if (status >= 200 && status < 400) return true;
  return status >= 400 && status < 500 && !NEVER_STORED.has(status);
}

export class IdempotencyHttp {
  readonly engine: IdempotencyEngine;
  readonly headerName: string;
  readonly #header: string;
  readonly #required: boolean;
  readonly #methods: ReadonlySet<string>;
  readonly #maxKeyLength: number;
  readonly #shouldStore: (status: number) => boolean;
  readonly #replayHeaders: ReadonlySet<string>;
  readonly #wait: boolean;
  readonly #waitMs: number;
  readonly #conflictRetryAfter: string;
  readonly #failOpen: boolean;
  readonly #fingerprint: ((request: IdempotentRequest) => string | Promise<string>) | undefined;
  readonly #retainBody: boolean;

  constructor(options: IdempotencyHttpOptions) {
    if (options?.engine !== undefined) {
      if (!(options.engine instanceof IdempotencyEngine)) throw new InvalidOptionsError('idempotency.engine must be an IdempotencyEngine');
      this.engine = options.engine;
    } else {
      this.engine = new IdempotencyEngine(options as IdempotencyEngineOptions);
    }
    this.headerName = options.headerName ?? 'Idempotency-Key';
    if (typeof this.headerName !== 'string' || !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(this.headerName)) {
      throw new InvalidOptionsError(`idempotency.headerName must be an HTTP header name, got ${String(options.headerName)}`);
    }
    this.#header = this.headerName.toLowerCase();
    this.#required = options.required ?? false;
    const methods = options.methods ?? ['POST', 'PATCH'];
    if (!Array.isArray(methods) || methods.some((m) => typeof m !== 'string')) throw new InvalidOptionsError('idempotency.methods must be an array of method names');
    this.#methods = new Set(methods.map((m) => m.toUpperCase()));
    this.#maxKeyLength = positiveInt('idempotency.maxKeyLength', options.maxKeyLength, DEFAULT_MAX_KEY_LENGTH);
    this.#shouldStore = fn('idempotency.shouldStore', options.shouldStore, defaultShouldStore);
    const replay = options.replayHeaders ?? DEFAULT_REPLAY_HEADERS;
    if (!Array.isArray(replay)) throw new InvalidOptionsError('idempotency.replayHeaders must be an array of header names');
    this.#replayHeaders = new Set(replay.map((h) => h.toLowerCase()));
    for (const forbidden of ['set-cookie', 'authorization', REPLAYED_HEADER]) {
      if (this.#replayHeaders.has(forbidden)) throw new InvalidOptionsError(`idempotency.replayHeaders must not include ${forbidden}`);
    }
    this.#wait = oneOf('idempotency.onInProgress', options.onInProgress, ['reject', 'wait'], 'reject') === 'wait';
    this.#waitMs = nonNegative('idempotency.waitMs', options.waitMs, 10_000);
    this.#conflictRetryAfter = String(positiveInt('idempotency.conflictRetryAfterSeconds', options.conflictRetryAfterSeconds, 1));
    this.#failOpen = oneOf('idempotency.storeUnavailable', options.storeUnavailable, ['fail-closed', 'fail-open'], 'fail-closed') === 'fail-open';
    this.#fingerprint = fn('idempotency.fingerprint', options.fingerprint);
    this.#retainBody = options.retainBody ?? true;
  }

  /** Phase 1: validate the key, fingerprint the request and claim it. */
  async begin(request: IdempotentRequest, options?: { required?: boolean }): Promise<BeginOutcome> {
    const method = typeof request.method === 'string' ? request.method.toUpperCase() : '';
    if (!this.#methods.has(method)) return run(undefined, 'not-applicable', undefined, undefined);
    let key: string | undefined;
    try {
      key = parseIdempotencyKey(request.headers[this.#header], this.#maxKeyLength);
    } catch (error) {
      if (error instanceof IdempotencyKeyInvalidError) return respond(idempotencyProblem(400, 'IDEMPOTENCY_KEY_INVALID', 'Bad Request', error.message), 'invalid-key');
      throw error;
    }
    if (key === undefined) {
      if (options?.required ?? this.#required) {
        return respond(idempotencyProblem(400, 'IDEMPOTENCY_KEY_INVALID', 'Bad Request', `this endpoint requires an ${this.headerName} header`), 'missing-key');
      }
      return run(undefined, 'no-key', undefined, undefined);
    }

    let body: BufferedBody | undefined;
    let fingerprint: string;
    if (this.#fingerprint !== undefined) {
      fingerprint = await this.#fingerprint(request);
    } else if (request.bodyStream !== undefined) {
      const chunks: BodyChunk[] = [];
      const streamed = await fingerprintStream(method, request.path, request.bodyStream, this.#retainBody ? (c) => chunks.push(c) : undefined);
      fingerprint = streamed.fingerprint;
      if (this.#retainBody) body = bufferedBody(chunks, streamed.byteLength);
    } else {
      fingerprint = fingerprintRequest(method, request.path, request.body);
    }

    const scope = { principal: request.principal, method, route: request.route ?? request.path, key };
    let outcome;
    try {
      outcome = await this.engine.claim(scope, fingerprint, this.#wait ? { waitMs: this.#waitMs, signal: request.signal } : undefined);
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      if (this.#failOpen) return run(undefined, 'fail-open', key, body);
      return respond(idempotencyProblem(503, 'STORE_UNAVAILABLE', 'Service Unavailable', 'the idempotency store is unavailable; retry later', {
        'retry-after': String(Math.max(1, Math.ceil(error.retryAfterMs / 1000))),
      }), 'store-unavailable');
    }
    switch (outcome.kind) {
      case 'new':
        return run(outcome.lease, 'idempotent', key, body);
      case 'completed':
        return respond(replay(outcome.response, outcome.completedAt), 'replay');
      case 'in-progress':
        return respond(this.#conflict(), 'conflict');
      case 'mismatch':
        return respond(idempotencyProblem(422, 'IDEMPOTENCY_MISMATCH', 'Unprocessable Content', `this ${this.headerName} was already used with a different request`), 'mismatch');
    }
  }

  /**
   * Phase 2, the handler returned a response: store it (or release the key if it is not a
   * storable outcome) and return what to send. If the store rejected this owner (its lease
   * was taken over), answers 409 so the client retries and receives the canonical result.
   */
  async finish(begun: BeginRun, response: IdempotencyHttpResponse): Promise<IdempotencyHttpResponse> {
    const lease = begun.lease;
    if (lease === undefined) return response;
    if (!this.#shouldStore(response.status)) {
      await this.engine.release(lease).catch(() => {}); // best effort: the lease expires anyway
      return response;
    }
    try {
      await this.engine.complete(lease, { status: response.status, headers: this.#pickHeaders(response.headers), body: response.body });
    } catch (error) {
      if (error instanceof LeaseLostError) return this.#conflict();
      // STORE_UNAVAILABLE: the work is done; hiding its result would be worse than not storing it.
      if (error instanceof StoreUnavailableError) return response;
      throw error;
    }
    return response;
  }

  /**
   * Phase 2, the handler threw: release the key so a retry runs again (saved steps are kept).
   * Returns a response to send instead of your error handling when the error is this module's
   * business: LEASE_LOST (a transactional completion was fenced off: another worker owns the
   * request now) → 409, so the client retries and receives the canonical result.
   */
  async abort(begun: BeginRun, error?: unknown): Promise<IdempotencyHttpResponse | undefined> {
    if (begun.lease !== undefined) await this.engine.release(begun.lease).catch(() => {});
    return error instanceof LeaseLostError ? this.#conflict() : undefined;
  }

  /** begin → handler → finish/abort, in one call. The handler's errors propagate after the release (LEASE_LOST becomes 409). */
  async handle(request: IdempotentRequest, handler: (run: BeginRun) => Promise<IdempotencyHttpResponse> | IdempotencyHttpResponse, options?: { required?: boolean }): Promise<IdempotencyHttpResponse> {
    const begun = await this.begin(request, options);
    if (begun.action === 'respond') return begun.response;
    let response: IdempotencyHttpResponse;
    try {
      response = await handler(begun);
    } catch (error) {
      const replacement = await this.abort(begun, error);
      if (replacement !== undefined) return replacement;
      throw error;
    }
    return this.finish(begun, response);
  }

  #conflict(): IdempotencyHttpResponse {
    return idempotencyProblem(409, 'IDEMPOTENCY_CONFLICT', 'Conflict', `a request with this ${this.headerName} is still in progress; retry later`, {
      'retry-after': this.#conflictRetryAfter,
    });
  }

  #pickHeaders(headers: Readonly<Record<string, string>> | undefined): Record<string, string> {
    const out: Record<string, string> = {};
    if (headers === undefined) return out;
    for (const name in headers) {
      const lower = name.toLowerCase();
      if (this.#replayHeaders.has(lower)) out[lower] = String(headers[name]);
    }
    return out;
  }
}

function run(lease: Lease | undefined, mode: BeginRun['mode'], key: string | undefined, body: BufferedBody | undefined): BeginRun {
  return { action: 'run', lease, mode, key, body };
}

function respond(response: IdempotencyHttpResponse, reason: BeginRespond['reason']): BeginRespond {
  return { action: 'respond', response, reason };
}

function replay(stored: StoredResponse, completedAt: number): IdempotencyHttpResponse {
  // Copied name by name into a fresh object: `{ ...parsed, extra }` keeps the JSON.parse'd
  // object's map and each added name then takes V8's slow path (a large share of a replay from
  // memory; a fresh object costs next to nothing, see docs/benchmarks.md).
  const headers: Record<string, string> = {};
  for (const name of Object.keys(stored.headers)) headers[name] = stored.headers[name]!;
  headers[REPLAYED_HEADER] = 'true';
  headers[ORIGINAL_DATE_HEADER] = httpDate(completedAt);
  return { status: stored.status, headers, body: stored.body };
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
let lastSecond = NaN;
let lastDate = '';

/** IMF-fixdate (what toUTCString gives), cheaper than it (docs/benchmarks.md), and free for repeats within a second (replay storms). */
export function httpDate(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second === lastSecond) return lastDate;
  const d = new Date(second * 1000);
  const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  lastDate = `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`;
  lastSecond = second;
  return lastDate;
}

/**
 * An RFC 9457 problem response with Bulwark's stable `code`, in the same shape as the HTTP
 * integration's problems (`type: urn:bulwark:problem:<code>`, not cacheable).
 */
export function idempotencyProblem(status: number, code: ErrorCode, title: string, detail: string, headers: Record<string, string> = {}): IdempotencyHttpResponse {
  const type = `urn:bulwark:problem:${code.toLowerCase().replace(/_/g, '-')}`;
  return {
    status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify({ type, title, status, detail, code }),
  };
}

function bufferedBody(chunks: BodyChunk[], byteLength: number): BufferedBody {
  let whole: Buffer | undefined;
  return {
    chunks,
    byteLength,
    toBuffer() {
      whole ??= Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)), byteLength);
      return whole;
    },
  };
}

export function idempotencyHttp(options: IdempotencyHttpOptions): IdempotencyHttp {
  return new IdempotencyHttp(options);
}

/** True for errors this module answers with a status of its own (for adapters mapping errors). */
export function isIdempotencyRejection(error: unknown): error is BulwarkError {
  return error instanceof BulwarkError && (error.code === 'IDEMPOTENCY_CONFLICT' || error.code === 'IDEMPOTENCY_MISMATCH' || error.code === 'IDEMPOTENCY_KEY_INVALID' || error.code === 'STORE_UNAVAILABLE');
}
