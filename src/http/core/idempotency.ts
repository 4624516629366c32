import { InvalidInputError, InvalidOptionsError } from '../../core/errors.js';
import { EventEmitter } from '../../core/events.js';
import { REQUIRED, fn, positiveInt } from '../../core/validate.js';
import type { ResponseInput } from '../../idempotency/codec.js';
import type { Lease } from '../../idempotency/engine.js';
import type { FingerprintBody } from '../../idempotency/fingerprint.js';
import {
  IdempotencyHttp, type BeginRun, type IdempotencyHttpOptions, type IdempotencyHttpResponse,
} from '../../idempotency/http.js';
import type { IdempotencyStore } from '../../idempotency/types.js';
import type { Protection, ProtectionVerdict } from './protection.js';
import type { HttpResponse } from './problem.js';
import type { IdempotentRun, ProducedResponse, RequestContext } from './request-context.js';
import { compileRouteFilter } from './routes.js';

// The handler's view of a first execution lives with the request it hangs on; exported here too.
export type { IdempotentRun } from './request-context.js';

export interface IdempotencyProtectionOptions extends IdempotencyHttpOptions {
  /** A prebuilt handler from `idempotencyHttp(...)` (its options then replace the ones here). */
  http?: IdempotencyHttp;
  /**
   * Whose key space a request's key lives in: the authenticated user or tenant. Required, on
   * purpose: one client must never replay another's response. Return null for anonymous
   * endpoints (all anonymous callers then share one key space).
   */
  principal: (request: RequestContext) => string | number | null | undefined;
  /**
   * Only these routes or where the predicate says. Entries as in a rate limit's `routes`:
   * `"POST /orders"`, `"/orders/*"` (route-table syntax) or a route's name; one that can never
   * match fails at build. Default: every route (with a guarded method).
   */
  routes?: readonly string[] | ((request: RequestContext) => boolean);
  /** Largest response body recorded for replay (bytes); a larger one is not stored (the key is released). Default 1 MiB. */
  maxResponseBytes?: number;
  name?: string;
}

/**
 * What became of a first execution's key:
 * - `stored`: the handler's response was stored (duplicates replay it), then sent.
 * - `released`: a 5xx (or another unstorable status) or a thrown error; a retry runs again.
 * - `not-stored-too-large`: over `maxResponseBytes` (or a stream): sent, key released.
 * - `store-error`: the completion could not be stored after a few attempts; the response was
 *   sent anyway and the key stays in progress until its lease runs out.
 * - `lease-lost`: another worker took the key over; the client got 409 and retries.
 * - `detached`: the response closed before the handler settled (the 504 at the deadline, with
 *   `status`, or a client that left): the key stays held, renewed, until the handler settles;
 *   one of the outcomes above follows.
 */
export type IdempotencyOutcomeKind = 'stored' | 'released' | 'not-stored-too-large' | 'store-error' | 'lease-lost' | 'detached';

export interface IdempotencyOutcomeEvent {
  route: string;
  key: string | undefined;
  kind: IdempotencyOutcomeKind;
  status: number | undefined;
  error?: unknown;
}

const DEFAULT_METHODS = ['POST', 'PATCH'];

/** `request.idempotency` for a first execution the protection holds. */
class FirstExecution implements IdempotentRun {
  /** True once the handler's transactional completion succeeded (its commit is the handler's). */
  completed = false;

  constructor(readonly key: string, readonly lease: Lease, readonly store: IdempotencyStore) {}

  complete(client: unknown, response: ResponseInput): Promise<void> | void {
    const store = this.store;
    if (typeof store.completeWithin !== 'function') {
      throw new InvalidInputError(`idempotency: the ${store.name} store cannot write a completion inside your transaction (PostgreSQL and SQLite can); answer normally and the response is stored for you`);
    }
    const written = store.completeWithin(client, this.lease, response);
    if (written === undefined) {
      this.completed = true;
      return;
    }
    return written.then(() => { this.completed = true; });
  }
}

/**
 * Idempotency keys as the last step before the handler (it needs the request body for the
 * fingerprint, so adapters run it once the body is available). A duplicate is answered from
 * the store through the framework's own reply path, with `Idempotent-Replayed: true`; a
 * duplicate in progress gets 409 + Retry-After, a reused key with another body 422, a bad key
 * 400. The first request runs the handler; the response it produces (status, allow-listed
 * headers, body) is held by the adapter, stored, and only then sent, even if the client has
 * already gone or the core has answered 504 at the deadline meanwhile: the key stays held
 * until the handler settles. 5xx answers and thrown errors release the key.
 */
export class IdempotencyProtection implements Protection {
  readonly name: string;
  /** It holds the handler's response through the adapter's channel rather than capturing it. */
  readonly capturesResponses = false;
  readonly http: IdempotencyHttp;
  readonly #principal: IdempotencyProtectionOptions['principal'];
  readonly #methods: ReadonlySet<string>;
  readonly #header: string;
  readonly #required: boolean;
  readonly #routes: ((request: RequestContext) => boolean) | undefined;
  readonly #maxBytes: number;
  readonly #wait: boolean;
  readonly #onOutcome = new EventEmitter<IdempotencyOutcomeEvent>();
  /** Fires when a first execution's outcome is recorded (stored, released, or could not be). */
  readonly onOutcome = this.#onOutcome.event;

  constructor(options: IdempotencyProtectionOptions) {
    this.#principal = fn('idempotency.principal', options?.principal, REQUIRED, '(request) => user or tenant id (null for anonymous endpoints)');
    this.http = options.http ?? new IdempotencyHttp(options);
    this.#header = this.http.headerName.toLowerCase();
    this.#required = options.required ?? false;
    const methods = options.methods ?? DEFAULT_METHODS;
    this.#methods = new Set(methods.map((m) => m.toUpperCase()));
    const routes = options.routes;
    if (routes === undefined || typeof routes === 'function') {
      this.#routes = routes;
    } else if (Array.isArray(routes)) {
      // The same entries as a rate limit's `routes` ("POST /orders", "/orders/*", a route name).
      const filters = routes.map((entry: unknown) => compileRouteFilter(entry, 'idempotency.routes'));
      this.#routes = (r) => {
        for (let i = 0; i < filters.length; i++) if (filters[i]!.matchesRequest(r.method, r.path, r.route.name)) return true;
        return false;
      };
    } else {
      throw new InvalidOptionsError('idempotency.routes must be a list of "METHOD /path" entries (or route names) or a predicate');
    }
    this.#maxBytes = positiveInt('idempotency.maxResponseBytes', options.maxResponseBytes, 1_048_576);
    this.#wait = options.onInProgress === 'wait';
    this.name = options.name ?? 'idempotency';
  }

  /** Adapters read (or let the framework parse) the body first when this says so. */
  needsBody(request: RequestContext): boolean {
    if (!this.#methods.has(request.method)) return false;
    // The header first: most requests carry no key, and then the routes need not be matched.
    if (!this.#required && request.headers[this.#header] === undefined) return false;
    return this.#routes === undefined || this.#routes(request);
  }

  async check(request: RequestContext): Promise<ProtectionVerdict> {
    if (!this.needsBody(request)) return undefined;
    const principal = this.#principal(request);
    const begun = await this.http.begin({
      method: request.method,
      path: request.url,
      route: request.route.name === 'default' ? request.path : request.route.name,
      headers: request.headers,
      body: fingerprintBody(request),
      principal: principal === undefined || principal === null || principal === '' ? null : String(principal),
      ...(this.#wait ? { signal: request.signal } : {}),
    });
    if (begun.action === 'respond') return toHttpResponse(begun.response);
    if (begun.lease === undefined) return undefined; // no key, or the store is down and failing open
    if (request.ended || request.aborted) {
      // The client left (or the deadline passed) while we claimed: nothing will run, give the key back.
      await this.http.abort(begun);
      return undefined;
    }
    // Held until the completion is stored: a client must never see an answer that a retry
    // could execute again. Only the handler settling decides the key; an answer the core gave
    // (the 504 at the deadline) or a client that left does not.
    let settled = false;
    const run = new FirstExecution(begun.key!, begun.lease, this.http.engine.store);
    request.idempotency = run;
    request.holdResponse(this.#maxBytes, {
      produced: (response) => {
        settled = true;
        return run.completed ? this.#completedByHandler(begun, response, request) : this.#record(begun, response, request);
      },
      failed: async () => {
        settled = true;
        // The error page waits for this, and the outcome is reported once the key is free: a
        // client or listener that retries at once must find it free.
        await this.http.abort(begun).catch(() => {});
        this.#emit(request, begun, 'released', undefined);
      },
    });
    request.onEnd((outcome) => {
      if (!settled) this.#emit(request, begun, 'detached', outcome.completed ? outcome.status : undefined);
    });
    return undefined;
  }

  /**
   * The handler wrote the completion in its own transaction: its answer is not stored again.
   * A 5xx says the transaction rolled back: the key is released (a no-op, fenced by the owner
   * token, if the completion committed after all).
   */
  async #completedByHandler(begun: BeginRun, response: ProducedResponse, request: RequestContext): Promise<undefined> {
    if (response.status >= 500) {
      await this.http.abort(begun).catch(() => {});
      this.#emit(request, begun, 'released', response.status);
      return undefined;
    }
    begun.lease!.markCompleted();
    this.#emit(request, begun, 'stored', response.status);
    return undefined;
  }

  /**
   * The handler's complete response: store it (or release the key for 5xx, as the module
   * decides), then let the adapter send it (or the 409 when this owner was fenced off).
   */
  async #record(begun: BeginRun, response: ProducedResponse, request: RequestContext): Promise<HttpResponse | undefined> {
    if (response.body === undefined) {
      // Larger than maxResponseBytes, or a stream the adapter does not buffer: it is already
      // on its way to the client and cannot be replayed.
      await this.http.abort(begun).catch(() => {});
      this.#emit(request, begun, 'not-stored-too-large', response.status);
      return undefined;
    }
    const headers: Record<string, string> = {};
    for (const name in response.headers) {
      const value = response.headers[name]!;
      headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
    }
    const input = { status: response.status, headers, body: response.body };
    let sent: IdempotencyHttpResponse;
    try {
      // finish() retries a failing store a few times (each call under the store's timeout).
      sent = await this.http.finish(begun, input);
    } catch (error) {
      this.#emit(request, begun, 'store-error', response.status, error);
      return undefined;
    }
    const status = begun.lease!.status;
    if (status === 'lost') {
      // Another worker owns the key now: the client retries and gets the canonical answer.
      this.#emit(request, begun, 'lease-lost', response.status);
      return sent === input ? undefined : toHttpResponse(sent);
    }
    // 'abandoned': the store kept failing. The work has run, so the key is not given back;
    // the client still gets the answer.
    this.#emit(request, begun, status === 'completed' ? 'stored' : status === 'released' ? 'released' : 'store-error', response.status);
    return undefined;
  }

  #emit(request: RequestContext, begun: BeginRun, kind: IdempotencyOutcomeKind, status: number | undefined, error?: unknown): void {
    if (!this.#onOutcome.active) return;
    this.#onOutcome.emit({ route: request.route.name, key: begun.key, kind, status, ...(error === undefined ? {} : { error }) });
  }
}

/**
 * The body as the fingerprint should see it: a framework-parsed value as is (canonical JSON,
 * key order does not matter); raw JSON bytes parsed first so node:http behaves the same.
 */
function fingerprintBody(request: RequestContext): FingerprintBody {
  const body = request.body;
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const type = request.headers['content-type'];
    if (typeof type === 'string' && /[/+]json\b/i.test(type) && body.length > 0) {
      try {
        return JSON.parse(typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as FingerprintBody;
      } catch {
        return body; // not JSON after all: the bytes are the fingerprint
      }
    }
    return body;
  }
  return body as FingerprintBody;
}

/** The idempotency module's response as the HTTP core's (string or bytes body). */
export function toHttpResponse(response: IdempotencyHttpResponse): HttpResponse {
  // A copy by Object.assign: a spread copy that then gains a name takes V8's slow path in Node 20 (docs/benchmarks.md).
  const headers: Record<string, string> = Object.assign({}, response.headers);
  const body = response.body;
  if (typeof body === 'string' || body instanceof Uint8Array) return { status: response.status, headers, body };
  if (body === undefined || body === null) return { status: response.status, headers, body: '' };
  headers['content-type'] ??= 'application/json; charset=utf-8';
  return { status: response.status, headers, body: JSON.stringify(body) };
}

export function idempotencyProtection(options: IdempotencyProtectionOptions): IdempotencyProtection {
  return new IdempotencyProtection(options);
}
