import { systemClock, type Clock } from '../../core/clock.js';
import { EventEmitter } from '../../core/events.js';
import { InvalidOptionsError } from '../../core/errors.js';
import { DeadlineQueue, type DeadlineEntry } from '../../core/deadline-queue.js';
import { fn } from '../../core/validate.js';
import { AdmissionControl, type AdmissionOptions } from './admission.js';
import { IdempotencyProtection, type IdempotencyProtectionOptions } from './idempotency.js';
import { RateLimitProtection, type RateLimitProtectionOptions } from './rate-limit.js';
import { clientIpResolver, type ClientIpResolver, type TrustProxy } from './client-ip.js';
import { DEADLINE_HEADER, TIMEOUT_HEADER } from '../../core/deadline-headers.js';
import { resolveDeadline, type DeadlineCombine } from './deadline.js';
import { problemForError, problemResponse, type HttpResponse } from './problem.js';
import type { Protection, ProtectionVerdict } from './protection.js';
import {
  ClientDisconnectedError, RequestContext, RequestDeadlineExceededError,
  type RequestDeadline, type RequestHeaders, type ResponseChannel,
} from './request-context.js';
import {
  compileRouteTable, resolveRoute, validateRouteConfig,
  type ResolvedRoute, type RouteConfig, type RouteResolver, type RouteTable,
} from './routes.js';

export interface DeadlineHeaderOptions {
  /** Relative budget header. Default `x-request-timeout-ms`. */
  timeout?: string;
  /** Absolute epoch-ms header. Default `x-request-deadline`. */
  deadline?: string;
  /** With both headers present: `'prefer-timeout'` (default; skew-proof) or `'earliest'`. */
  combine?: DeadlineCombine;
}

export interface HttpGuardOptions {
  /** Per-route settings: a table (`"GET /users/:id": {...}`) or a function of (method, path). */
  routes?: RouteTable | RouteResolver;
  /** Settings for every route (overridden per route). */
  defaults?: RouteConfig;
  /** Which `X-Forwarded-For` hops to believe. Default: none (the socket address is the client). */
  trustProxy?: TrustProxy;
  deadlineHeaders?: DeadlineHeaderOptions;
  /**
   * At the deadline, besides aborting the request's signal, answer 504 if the handler has not
   * started its response (the caller has given up; a proxy in between has not). Default true.
   */
  respondAtDeadline?: boolean;
  /**
   * Admission control / load shedding (first step: the cheapest rejection under overload).
   * `{ shedder: loadShedder({ capacity }) }`; critical routes are never shed.
   */
  admission?: AdmissionOptions | AdmissionControl;
  /** Rate limits per IP / user / route (second step). */
  rateLimit?: RateLimitProtectionOptions | RateLimitProtection;
  /** Idempotency keys (last step before the handler: it needs the body). */
  idempotency?: IdempotencyProtectionOptions | IdempotencyProtection;
  /**
   * Further steps, run after admission and rate limiting (steps with `needsBody` run once the
   * body is available, after the others).
   */
  protections?: readonly Protection[];
  clock?: Clock;
}

/** What the adapter knows about a request, framework-neutral. */
export interface RequestView {
  method: string | undefined;
  /** Request target as received (`req.url`). */
  url: string | undefined;
  /** Lower-case header names (Node's `req.headers`). */
  headers: RequestHeaders;
  /** `req.socket.remoteAddress` (undefined once the socket is gone). */
  socketAddress: string | undefined;
  /** Framework route config (Fastify `config.bulwark`), most specific. */
  route?: RouteConfig | undefined;
  /** Framework route pattern (`/users/:id`), used as the route's name. */
  routeName?: string | undefined;
  /** The framework's own request object, exposed as `RequestContext.native`. */
  native?: unknown;
}

/** What the guard decided about a request: run the handler with its context, answer with a response, or stay out of it. */
export type GuardDecision =
  | { kind: 'proceed'; context: RequestContext }
  | { kind: 'reject'; response: HttpResponse; context: RequestContext | undefined }
  | { kind: 'bypass' };

export type RejectReason = 'invalid-deadline' | 'deadline-expired' | 'protection' | 'client-gone';

export interface RejectEvent {
  reason: RejectReason;
  status: number;
  route: string;
  method: string;
  clientIp: string;
  /** The protection that answered (reason 'protection'). */
  protection?: string;
}

export interface DeadlineEvent {
  route: string;
  budgetMs: number;
  /** True when the server answered 504 (the handler had not started its response). */
  responded: boolean;
}

const DEFAULT_ROUTE_KEY: RouteConfig = Object.freeze({});

/**
 * The framework-neutral server core: turns a request view into a decision. Adapters call
 * `admit()` and act on the result; everything else (deadlines, client IP, route settings,
 * protections) lives here so Fastify, Express and node:http behave identically.
 */
export class HttpGuard {
  readonly clock: Clock;
  readonly respondAtDeadline: boolean;
  readonly #defaults: RouteConfig;
  readonly #routes: RouteResolver | undefined;
  readonly #clientIp: ClientIpResolver;
  readonly #timeoutHeader: string;
  readonly #deadlineHeader: string;
  readonly #combine: DeadlineCombine;
  readonly #protections: readonly Protection[];
  readonly #bodyProtections: readonly Protection[];
  readonly #queue: DeadlineQueue;
  /** Resolved settings per route-config object (the common case: one object per route). */
  readonly #resolved = new WeakMap<RouteConfig, ResolvedRoute>();
  readonly #validated = new WeakSet<RouteConfig>();
  readonly #onReject = new EventEmitter<RejectEvent>();
  readonly #onDeadline = new EventEmitter<DeadlineEvent>();
  /** Fires when a request is answered by the core or a protection instead of the handler. */
  readonly onReject = this.#onReject.event;
  /** Fires when a request reaches its deadline while being handled. */
  readonly onDeadline = this.#onDeadline.event;

  constructor(options: HttpGuardOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.respondAtDeadline = options.respondAtDeadline ?? true;
    validateRouteConfig('defaults', options.defaults);
    this.#defaults = options.defaults ?? {};
    const routes = options.routes;
    if (routes === undefined || typeof routes === 'function') this.#routes = routes;
    else if (typeof routes === 'object' && routes !== null) this.#routes = compileRouteTable(routes);
    else throw new InvalidOptionsError('routes must be a table or a function (method, path) => RouteConfig');
    this.#clientIp = clientIpResolver(options.trustProxy);
    const headers = options.deadlineHeaders ?? {};
    this.#timeoutHeader = (headers.timeout ?? TIMEOUT_HEADER).toLowerCase();
    this.#deadlineHeader = (headers.deadline ?? DEADLINE_HEADER).toLowerCase();
    this.#combine = headers.combine ?? 'prefer-timeout';
    if (this.#combine !== 'prefer-timeout' && this.#combine !== 'earliest') {
      throw new InvalidOptionsError(`deadlineHeaders.combine must be 'prefer-timeout' or 'earliest', got ${String(this.#combine)}`);
    }
    const protections: Protection[] = [];
    // Order: admission → rate limit → custom steps → (body) idempotency. Cheapest rejections
    // first: shedding costs a counter, a rate limit a bucket, idempotency a store round trip.
    if (options.admission !== undefined) {
      protections.push(options.admission instanceof AdmissionControl ? options.admission : new AdmissionControl(options.admission));
    }
    if (options.rateLimit !== undefined) {
      protections.push(options.rateLimit instanceof RateLimitProtection ? options.rateLimit : new RateLimitProtection(options.rateLimit));
    }
    for (const p of options.protections ?? []) {
      if (!p || typeof p.check !== 'function') throw new InvalidOptionsError('protections must be objects with a check(request) method');
      fn(`protection ${String(p.name)}: needsBody`, p.needsBody);
      protections.push(p);
    }
    if (options.idempotency !== undefined) {
      protections.push(options.idempotency instanceof IdempotencyProtection ? options.idempotency : new IdempotencyProtection(options.idempotency));
    }
    this.#protections = protections.filter((p) => p.needsBody === undefined);
    this.#bodyProtections = protections.filter((p) => p.needsBody !== undefined);
    this.#queue = new DeadlineQueue(this.clock);
  }

  /**
   * False when every step declares `capturesResponses: false` (the built-in ones do: admission
   * control, rate limiting, and idempotency, which holds the response through the adapter's
   * channel instead): adapters then skip their response-recording hook.
   */
  get mayCaptureResponses(): boolean {
    return this.#protections.some(mayCapture) || this.#bodyProtections.some(mayCapture);
  }

  /** True when some step needs request bodies (adapters then arrange a body phase). */
  get hasBodyPhase(): boolean {
    return this.#bodyProtections.length > 0;
  }

  /** True when a step needs this request's body before the handler runs: read it, `setBody`, then `admitBody`. */
  needsBody(context: RequestContext): boolean {
    const steps = this.#bodyProtections;
    for (let i = 0; i < steps.length; i++) if (steps[i]!.needsBody!(context)) return true;
    return false;
  }

  /**
   * The body phase: runs the steps that need the body (after `context.setBody(...)`). Call it
   * only for a context `admit` let proceed and `needsBody` said yes.
   */
  admitBody(context: RequestContext): GuardDecision | Promise<GuardDecision> {
    if (context.aborted || context.ended) return this.#afterWait(context, 0, this.#bodyProtections);
    return this.#protect(context, 0, this.#bodyProtections);
  }

  /**
   * Checks the steps' route lists (`rateLimit.limits[].routes`) against the routes an app
   * registered (`name`: the route's Bulwark name, or its pattern) and describes each entry that
   * matches none of them: such an entry never applies, which is almost always a typo. Adapters
   * that know their routes at startup (Fastify) call it once, when the app is ready.
   */
  unmatchedRouteEntries(routes: readonly { method: string; url: string; name: string }[]): string[] {
    const problems: string[] = [];
    for (const step of this.#protections) {
      if (!(step instanceof RateLimitProtection)) continue;
      for (const { limit, filters } of step.routeLists) {
        for (const filter of filters) {
          if (!routes.some((r) => filter.matchesRoute(r.method, r.url, r.name))) {
            problems.push(`rateLimit.limits[${JSON.stringify(limit)}].routes: ${JSON.stringify(filter.entry)} matches no route`);
          }
        }
      }
    }
    return problems;
  }

  /** Requests currently holding a deadline (for tests and telemetry; 0 when idle). */
  get pendingDeadlines(): number {
    return this.#queue.size;
  }

  /** The client IP for a socket address and `X-Forwarded-For` value, per `trustProxy`. */
  clientIp(socketAddress: string | undefined, forwardedFor: string | readonly string[] | undefined): string {
    return this.#clientIp(socketAddress, forwardedFor);
  }

  /** Route settings for a request (framework config > table > defaults). */
  route(method: string, path: string, framework?: RouteConfig, frameworkName?: string): ResolvedRoute {
    const table = this.#routes?.(method, path);
    if (table !== undefined && !this.#validated.has(table)) {
      validateRouteConfig(`route ${method} ${path}`, table);
      this.#validated.add(table);
    }
    if (framework !== undefined && !this.#validated.has(framework)) {
      validateRouteConfig(`route ${frameworkName ?? path}`, framework);
      this.#validated.add(framework);
    }
    const name = framework?.name ?? table?.name ?? frameworkName ?? 'default';
    // Cache per config object when only one is involved (the usual case); the name check keeps
    // one object shared by several routes correct.
    const key = framework === undefined ? (table ?? DEFAULT_ROUTE_KEY) : table === undefined ? framework : undefined;
    if (key !== undefined) {
      const cached = this.#resolved.get(key);
      if (cached !== undefined && cached.name === name) return cached;
    }
    const resolved = resolveRoute(name, this.#defaults, table, framework);
    if (key !== undefined) this.#resolved.set(key, resolved);
    return resolved;
  }

  /**
   * Decides what to do with a request. The adapter passes its response object (`target`) and a
   * channel through which the core can answer at the deadline and learn when the response ends.
   * Synchronous unless a protection is asynchronous.
   */
  admit<T>(view: RequestView, channel: ResponseChannel<T>, target: T): GuardDecision | Promise<GuardDecision> {
    const method = view.method ?? 'GET';
    const url = view.url ?? '/';
    const path = pathOf(url);
    let route: ResolvedRoute;
    try {
      route = this.route(method, path, view.route, view.routeName);
    } catch (error) {
      // A route resolver returned bad settings: a server bug, answered as one, never a crash.
      return { kind: 'reject', response: problemForError(error), context: undefined };
    }
    if (route.bypass) return BYPASS;
    const clientIp = this.#clientIp(view.socketAddress, view.headers['x-forwarded-for']);
    const now = this.clock.now();
    const parsed = resolveDeadline({
      timeoutHeader: view.headers[this.#timeoutHeader],
      deadlineHeader: view.headers[this.#deadlineHeader],
      defaultMs: route.deadlineMs,
      maxMs: route.maxDeadlineMs,
      combine: this.#combine,
      honorHeaders: route.honorDeadlineHeaders,
      now,
      timeoutHeaderName: this.#timeoutHeader,
      deadlineHeaderName: this.#deadlineHeader,
    });
    if (!parsed.ok) {
      return this.#reject('invalid-deadline', undefined, route, method, clientIp, problemResponse({
        status: 400,
        title: 'Invalid deadline header',
        detail: `${parsed.header} ${parsed.reason}`,
        code: 'INVALID_INPUT',
        extensions: { header: parsed.header },
      }));
    }
    if (parsed.deadline <= now) {
      return this.#reject('deadline-expired', undefined, route, method, clientIp, problemResponse({
        status: 504,
        title: 'Deadline exceeded',
        detail: `The request's deadline had passed when it arrived (from ${parsed.source}); the handler was not run.`,
        code: 'DEADLINE_EXCEEDED',
      }));
    }
    const context = new RequestContext({
      clock: this.clock,
      method,
      url,
      path,
      headers: view.headers,
      clientIp,
      route,
      startedAt: now,
      deadline: parsed.deadline,
      deadlineSource: parsed.source,
      channel: channel as ResponseChannel<unknown>,
      target,
      native: view.native,
    });
    context.armDeadline(this.#queue, this.#expire);
    context.watchResponse();
    return this.#protect(context, 0, this.#protections);
  }

  #protect(context: RequestContext, from: number, protections: readonly Protection[]): GuardDecision | Promise<GuardDecision> {
    for (let i = from; i < protections.length; i++) {
      const protection = protections[i]!;
      let verdict: ProtectionVerdict | PromiseLike<ProtectionVerdict>;
      try {
        verdict = protection.check(context);
      } catch (error) {
        return this.#protectionAnswer(context, protection, problemForError(error));
      }
      if (isPromiseLike(verdict)) {
        return Promise.resolve(verdict).then(
          (v) => (v ? this.#protectionAnswer(context, protection, v) : this.#afterWait(context, i + 1, protections)),
          (error: unknown) => this.#protectionAnswer(context, protection, problemForError(error)),
        );
      }
      if (verdict) return this.#protectionAnswer(context, protection, verdict);
    }
    context.markHandling();
    return { kind: 'proceed', context };
  }

  /** After an asynchronous step: the deadline may have passed or the client left meanwhile. */
  #afterWait(context: RequestContext, next: number, protections: readonly Protection[]): GuardDecision | Promise<GuardDecision> {
    if (context.aborted || context.ended) {
      const reason = context.abortReason;
      const gone = reason instanceof ClientDisconnectedError || (context.ended && !context.aborted);
      return this.#reject(gone ? 'client-gone' : 'deadline-expired', context, context.route, context.method, context.clientIp, problemForError(reason));
    }
    return this.#protect(context, next, protections);
  }

  #protectionAnswer(context: RequestContext, protection: Protection, response: HttpResponse): GuardDecision {
    return this.#reject('protection', context, context.route, context.method, context.clientIp, response, protection.name);
  }

  #reject(
    reason: RejectReason, context: RequestContext | undefined, route: ResolvedRoute, method: string, clientIp: string,
    response: HttpResponse, protection?: string,
  ): GuardDecision {
    if (this.#onReject.active) {
      this.#onReject.emit({ reason, status: response.status, route: route.name, method, clientIp, ...(protection ? { protection } : {}) });
    }
    return { kind: 'reject', response, context };
  }

  readonly #expire = (entry: DeadlineEntry): void => {
    const request = (entry as RequestDeadline).request;
    request.abort(new RequestDeadlineExceededError(request.deadline, request.budgetMs));
    const responded = this.respondAtDeadline && request.respondIfIdle(problemResponse({
      status: 504,
      title: 'Deadline exceeded',
      detail: `The request's deadline (budget ${Math.round(request.budgetMs)} ms, from ${request.deadlineSource}) passed before the response was ready.`,
      code: 'DEADLINE_EXCEEDED',
    }));
    if (this.#onDeadline.active) this.#onDeadline.emit({ route: request.route.name, budgetMs: request.budgetMs, responded });
  };
}

const BYPASS: GuardDecision = Object.freeze({ kind: 'bypass' });

/** The path part of a request target, without query or fragment (not decoded: no URIError). */
export function pathOf(url: string): string {
  let end = url.length;
  const q = url.indexOf('?');
  if (q >= 0) end = q;
  const h = url.indexOf('#');
  if (h >= 0 && h < end) end = h;
  return end === url.length ? url : url.slice(0, end);
}

function mayCapture(protection: Protection): boolean {
  return protection.capturesResponses !== false;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}

export function httpGuard(options: HttpGuardOptions = {}): HttpGuard {
  return new HttpGuard(options);
}
