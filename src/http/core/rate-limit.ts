import { InvalidOptionsError } from '../../core/errors.js';
import { EventEmitter } from '../../core/events.js';
import { fn } from '../../core/validate.js';
import { CompositeRateLimiter, type CompositeDecision, type LimitRule } from '../../ratelimit/composite.js';
import { MemoryRateLimiter } from '../../ratelimit/memory.js';
import type { AlgorithmKind, RateLimiter } from '../../ratelimit/types.js';
import type { Clock } from '../../core/clock.js';
import type { Protection, ProtectionVerdict } from './protection.js';
import { problemResponse, rateLimitedResponse, type HttpResponse } from './problem.js';
import { formatRetryAfter, rateLimitHeaders, type RateLimitHeaderFormat, type RateLimitInfo } from './rate-limit-headers.js';
import type { RequestContext } from './request-context.js';
import { compileRouteFilter, type RouteFilter } from './routes.js';

/**
 * Who a limit counts against:
 * - `'ip'`: the client IP (the socket peer, or the trusted `X-Forwarded-For` hop: see `trustProxy`);
 * - `'user'`: the authenticated user from the `user` option, falling back to the IP when anonymous;
 * - `'route'`: everyone together (one budget per route: protects the route, not fairness);
 * - a function of the request returning a key, or undefined to skip this limit for the request.
 */
export type HttpLimitKey = 'ip' | 'user' | 'route' | ((request: RequestContext) => string | undefined);

export interface HttpLimit {
  /** Names the limit in the `RateLimit-Policy` header, events and `decidedBy`. Unique. */
  name: string;
  key: HttpLimitKey;
  /**
   * Any limiter from `bulwark` / `bulwark/redis`: memory, Redis, hybrid. Without one, a memory
   * limiter is built from `limit` / `intervalMs` / `algorithm` / `capacity`.
   */
  limiter?: RateLimiter;
  limit?: number;
  /** Default 1000 (so `limit` is per second); 60_000 for per-minute quotas. */
  intervalMs?: number;
  /** Default 'token-bucket'. */
  algorithm?: AlgorithmKind;
  /** Token bucket / GCRA burst. Default `limit`. */
  capacity?: number;
  /**
   * `'route'` (default): each route has its own budget per key, so a client busy on one route is
   * not limited on another. `'server'`: one budget per key across every route it applies to.
   */
  scope?: 'route' | 'server';
  /**
   * Apply only to these routes, or where the predicate says. Default: every route. Entries are
   * written like route-table keys: `"POST /login"`, `"/admin/*"` (any method), `"GET /orders/:id"`
   * (`:param` matches one segment, a trailing `*` the rest), matched against the request's method
   * and path on every adapter; any other entry without spaces is a route's `name`. An entry that
   * can never match (not a string, empty, spaces that are not `"METHOD /path"`) fails the build
   * with INVALID_OPTIONS; the Fastify plugin also fails `ready()` on an entry no registered route matches.
   */
  routes?: readonly string[] | ((request: RequestContext) => boolean);
  /** Cost of a request. Default 1. */
  cost?: number | ((request: RequestContext) => number);
}

export interface RateLimitProtectionOptions {
  limits: readonly HttpLimit[];
  /**
   * The authenticated user for `key: 'user'` limits: a header (an API key), a claim your auth
   * hook put on the native request (`(r) => (r.native as FastifyRequest).user?.id`). Undefined or
   * null: anonymous, counted by IP. Runs before the handler, on every request.
   */
  user?: (request: RequestContext) => string | number | undefined | null;
  /** Which `RateLimit-*` draft to speak (default `'draft-6'`), or false to send none on allowed requests. */
  headers?: RateLimitHeaderFormat | false;
  /** Builds the 429 (default: problem+json, `Retry-After`, `RateLimit-*`). */
  respond?: (decision: CompositeDecision, request: RequestContext) => HttpResponse;
  /** Clock for the memory limiters built here (tests). */
  clock?: Clock;
  /** Most keys each memory limiter built here keeps. Default 100 000. */
  maxKeys?: number;
  name?: string;
}

export interface RateLimitedEvent {
  route: string;
  clientIp: string;
  /** The limit that denied the request. */
  limit: string | undefined;
  retryAfterMs: number;
  degraded: string | undefined;
}

interface CompiledLimit {
  name: string;
  limiter: RateLimiter;
  windowMs: number | undefined;
}

/**
 * Rate limiting as a step of the request pipeline: every applicable limit is consumed, the most
 * restrictive decision wins (`CompositeRateLimiter`: a denied request costs nothing on the other
 * limits). Allowed responses carry the `RateLimit-*` headers of the most restrictive limit;
 * denied requests get 429 problem+json with `Retry-After`. A limiter whose store is down and
 * configured to fail closed answers 503 `STORE_UNAVAILABLE` (not the client's fault).
 *
 * Synchronous with memory and hybrid limiters (no promise per request).
 */
export class RateLimitProtection implements Protection {
  readonly name: string;
  readonly capturesResponses = false;
  readonly composite: CompositeRateLimiter<RequestContext>;
  readonly #limits: ReadonlyMap<string, CompiledLimit>;
  readonly #format: RateLimitHeaderFormat | false;
  readonly #respond: ((decision: CompositeDecision, request: RequestContext) => HttpResponse) | undefined;
  readonly #onLimited = new EventEmitter<RateLimitedEvent>();
  /** Fires for every request denied (429) or failed closed (503). */
  readonly onLimited = this.#onLimited.event;
  /** The `routes` lists of the limits that have one (for startup checks against the app's routes). */
  readonly routeLists: readonly { limit: string; filters: readonly RouteFilter[] }[];

  constructor(options: RateLimitProtectionOptions) {
    const limits = options?.limits;
    if (!Array.isArray(limits) || limits.length === 0) throw new InvalidOptionsError('rateLimit: limits must be a non-empty array');
    const user = fn('rateLimit.user', options.user, undefined, 'of the request');
    const format = options.headers ?? 'draft-6';
    if (format !== false && format !== 'draft-6' && format !== 'draft-10') throw new InvalidOptionsError(`rateLimit.headers must be 'draft-6', 'draft-10' or false, got ${String(format)}`);
    this.#format = format;
    this.#respond = fn('rateLimit.respond', options.respond);
    this.name = options.name ?? 'rate-limit';

    const compiled = new Map<string, CompiledLimit>();
    const rules: LimitRule<RequestContext>[] = [];
    for (const limit of limits) {
      if (!limit || typeof limit.name !== 'string' || limit.name.length === 0) throw new InvalidOptionsError('rateLimit: every limit needs a name');
      const where = `rateLimit.limits[${JSON.stringify(limit.name)}]`;
      if (compiled.has(limit.name)) throw new InvalidOptionsError(`${where}: duplicate name`);
      const limiter = limit.limiter ?? memoryLimiter(limit, where, options);
      if (typeof limiter.consume !== 'function') throw new InvalidOptionsError(`${where}: limiter must be a RateLimiter`);
      if (limit.key === 'user' && user === undefined) throw new InvalidOptionsError(`${where}: key 'user' needs the rateLimit.user option`);
      const scope = limit.scope ?? 'route';
      if (scope !== 'route' && scope !== 'server') throw new InvalidOptionsError(`${where}: scope must be 'route' or 'server'`);
      const cost = limit.cost;
      if (cost !== undefined && typeof cost !== 'function' && !(typeof cost === 'number' && cost >= 0)) throw new InvalidOptionsError(`${where}: cost must be a number >= 0 or a function`);
      compiled.set(limit.name, { name: limit.name, limiter, windowMs: windowOf(limit, limiter) });
      rules.push({
        name: limit.name,
        limiter,
        key: keyFunction(limit, where, scope, user),
        ...(cost === undefined ? {} : { cost }),
      });
    }
    this.#limits = compiled;
    this.composite = new CompositeRateLimiter(rules);
    const lists: { limit: string; filters: readonly RouteFilter[] }[] = [];
    for (const limit of limits) {
      if (Array.isArray(limit.routes)) lists.push({ limit: limit.name, filters: routeFilters(limit.routes, `rateLimit.limits[${JSON.stringify(limit.name)}]`) });
    }
    this.routeLists = lists;
  }

  check(request: RequestContext): ProtectionVerdict | Promise<ProtectionVerdict> {
    const decision = this.composite.consume(request);
    if (decision instanceof Promise) return decision.then((d) => this.#verdict(d, request));
    return this.#verdict(decision, request);
  }

  #verdict(decision: CompositeDecision, request: RequestContext): ProtectionVerdict {
    if (decision.decidedBy === undefined) return undefined; // no limit applied to this request
    const info = this.#info(decision);
    if (decision.allowed) {
      if (this.#format !== false) {
        const headers = rateLimitHeaders(info, this.#format);
        for (const name in headers) request.setHeader(name, headers[name]!);
      }
      return undefined;
    }
    if (this.#onLimited.active) {
      this.#onLimited.emit({ route: request.route.name, clientIp: request.clientIp, limit: decision.decidedBy, retryAfterMs: decision.retryAfterMs, degraded: decision.degraded });
    }
    if (this.#respond !== undefined) return this.#respond(decision, request);
    const retryAfterMs = Number.isFinite(decision.retryAfterMs) ? decision.retryAfterMs : (info.windowMs ?? 1000);
    if (decision.degraded === 'fail-closed') {
      return problemResponse({
        status: 503,
        title: 'Rate limit store unavailable',
        detail: 'The rate limiter cannot reach its store and is configured to fail closed.',
        code: 'STORE_UNAVAILABLE',
        headers: { 'retry-after': formatRetryAfter(retryAfterMs) },
      });
    }
    return rateLimitedResponse(retryAfterMs, info, this.#format === false ? 'draft-6' : this.#format);
  }

  #info(decision: CompositeDecision): RateLimitInfo {
    const limit = this.#limits.get(decision.decidedBy!)!;
    const info: RateLimitInfo = {
      limit: decision.limit,
      remaining: decision.remaining,
      resetMs: decision.resetAt - limit.limiter.clock.now(),
      policy: limit.name,
    };
    if (limit.windowMs !== undefined) info.windowMs = limit.windowMs;
    return info;
  }
}

function memoryLimiter(limit: HttpLimit, where: string, options: RateLimitProtectionOptions): RateLimiter {
  if (limit.limit === undefined) throw new InvalidOptionsError(`${where}: give a limiter or a limit (requests per intervalMs)`);
  return new MemoryRateLimiter({
    limit: limit.limit,
    ...(limit.intervalMs === undefined ? {} : { intervalMs: limit.intervalMs }),
    ...(limit.algorithm === undefined ? {} : { algorithm: limit.algorithm }),
    ...(limit.capacity === undefined ? {} : { capacity: limit.capacity }),
    ...(options.maxKeys === undefined ? {} : { maxKeys: options.maxKeys }),
    ...(options.clock === undefined ? {} : { clock: options.clock }),
    name: limit.name,
  });
}

function windowOf(limit: HttpLimit, limiter: RateLimiter): number | undefined {
  if (limit.limiter === undefined) return limit.intervalMs ?? 1000;
  const intervalMs = (limiter as { options?: { intervalMs?: unknown } }).options?.intervalMs;
  return typeof intervalMs === 'number' ? intervalMs : undefined;
}

function keyFunction(
  limit: HttpLimit, where: string, scope: 'route' | 'server',
  user: RateLimitProtectionOptions['user'],
): (request: RequestContext) => string | undefined {
  let base: (request: RequestContext) => string | undefined;
  const key = limit.key;
  if (key === 'ip') base = (r) => `ip:${r.clientIp}`;
  else if (key === 'user') {
    base = (r) => {
      const id = user!(r);
      return id === undefined || id === null || id === '' ? `ip:${r.clientIp}` : `user:${String(id)}`;
    };
  } else if (key === 'route') base = () => 'all';
  else if (typeof key === 'function') base = key;
  else throw new InvalidOptionsError(`${where}: key must be 'ip', 'user', 'route' or a function of the request`);

  const withScope = scope === 'route' || key === 'route'
    ? (r: RequestContext) => {
      const k = base(r);
      return k === undefined ? undefined : `${routeKey(r)}|${k}`;
    }
    : base;

  const routes = limit.routes;
  if (routes === undefined) return withScope;
  if (typeof routes === 'function') return (r) => (routes(r) ? withScope(r) : undefined);
  const filters = routeFilters(routes, where);
  return (r) => {
    const method = r.method;
    const path = r.path;
    const name = r.route.name;
    for (let i = 0; i < filters.length; i++) if (filters[i]!.matchesRequest(method, path, name)) return withScope(r);
    return undefined;
  };
}

function routeFilters(routes: unknown, where: string): RouteFilter[] {
  if (!Array.isArray(routes)) throw new InvalidOptionsError(`${where}: routes must be a list of "METHOD /path" entries or a predicate`);
  return routes.map((entry) => compileRouteFilter(entry, `${where}.routes`));
}

/**
 * The route part of a route-scoped key: the method and the route, so that `GET /orders` and
 * `POST /orders` have separate budgets on every adapter. The route is its name (the framework
 * pattern such as Fastify's `/orders/:id`, a table key, or a name you gave it), or, for a route
 * Bulwark has no settings for (Express and node:http only know configured routes before
 * routing), the path. A name that already starts with the method (`"GET /orders"`) is used as is.
 */
function routeKey(request: RequestContext): string {
  const name = request.route.name;
  const method = request.method;
  if (name === 'default') return `${method} ${request.path}`;
  const named = name.length > method.length && name.charCodeAt(method.length) === 32 /* space */ && name.startsWith(method);
  return named ? name : `${method} ${name}`;
}

export function rateLimitProtection(options: RateLimitProtectionOptions): RateLimitProtection {
  return new RateLimitProtection(options);
}
