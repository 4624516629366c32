import { PRIORITIES, type Priority } from '../../core/context.js';
import { InvalidOptionsError } from '../../core/errors.js';

/**
 * Per-route settings. Every field may also be set server-wide (`defaults`); the most specific
 * setting wins: framework route config (Fastify `config.bulwark`) > route table > defaults.
 */
export interface RouteConfig {
  /** Name used in tags, logs and telemetry (defaults to the matched pattern or the path). */
  name?: string;
  /** Deadline when the request carries no deadline header. No default: no deadline. */
  deadlineMs?: number;
  /** Cap on any deadline, from headers or not (protects the server from "take a day" callers). */
  maxDeadlineMs?: number;
  /** Whether to read `X-Request-Timeout-Ms` / `X-Request-Deadline`. Default true. */
  honorDeadlineHeaders?: boolean;
  /** Admission priority (phase 2 load shedding). Default 'normal'. */
  priority?: Priority;
  /** Critical routes (health, auth) are never shed. Default false. */
  critical?: boolean;
  /** Leave this route alone entirely (no deadline, no protections): metrics scrapes, static files. */
  bypass?: boolean;
}

/** `RouteConfig` with the defaults applied. */
export interface ResolvedRoute {
  name: string;
  deadlineMs: number | undefined;
  maxDeadlineMs: number | undefined;
  honorDeadlineHeaders: boolean;
  priority: Priority;
  critical: boolean;
  bypass: boolean;
}

/** Looks up a route's settings from the request's method and path (query string removed). */
export type RouteResolver = (method: string, path: string) => RouteConfig | undefined;

/**
 * A table keyed by `"METHOD /path"` or `"/path"` (any method). Path patterns: literal segments,
 * `:param` for one segment, and a trailing `*` for the rest, e.g. `"GET /users/:id"`,
 * `"/admin/*"`. Literal keys are found in O(1); patterns are tried in table order.
 */
export type RouteTable = Readonly<Record<string, RouteConfig>>;

/** Checks one config (at build time: bad values throw INVALID_OPTIONS). */
export function validateRouteConfig(where: string, config: RouteConfig | undefined): void {
  if (config === undefined) return;
  if (typeof config !== 'object' || config === null) throw new InvalidOptionsError(`${where}: route config must be an object`);
  for (const key of ['deadlineMs', 'maxDeadlineMs'] as const) {
    const v = config[key];
    if (v !== undefined && (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v))) {
      throw new InvalidOptionsError(`${where}: ${key} must be a finite number >= 0, got ${String(v)}`);
    }
  }
  if (config.priority !== undefined && !PRIORITIES.includes(config.priority)) {
    throw new InvalidOptionsError(`${where}: priority must be one of ${PRIORITIES.join(', ')}, got ${String(config.priority)}`);
  }
  for (const key of ['critical', 'bypass', 'honorDeadlineHeaders'] as const) {
    const v = config[key];
    if (v !== undefined && typeof v !== 'boolean') throw new InvalidOptionsError(`${where}: ${key} must be a boolean`);
  }
}

export function resolveRoute(
  name: string,
  defaults: RouteConfig,
  table: RouteConfig | undefined,
  framework: RouteConfig | undefined,
): ResolvedRoute {
  return {
    name: framework?.name ?? table?.name ?? name,
    deadlineMs: framework?.deadlineMs ?? table?.deadlineMs ?? defaults.deadlineMs,
    maxDeadlineMs: framework?.maxDeadlineMs ?? table?.maxDeadlineMs ?? defaults.maxDeadlineMs,
    honorDeadlineHeaders: framework?.honorDeadlineHeaders ?? table?.honorDeadlineHeaders ?? defaults.honorDeadlineHeaders ?? true,
    priority: framework?.priority ?? table?.priority ?? defaults.priority ?? 'normal',
    critical: framework?.critical ?? table?.critical ?? defaults.critical ?? false,
    bypass: framework?.bypass ?? table?.bypass ?? defaults.bypass ?? false,
  };
}

interface CompiledPattern {
  method: string | undefined;
  segments: string[];
  rest: boolean;
  config: RouteConfig;
}

interface LiteralEntry {
  any?: RouteConfig;
  methods?: Record<string, RouteConfig>;
}

const METHOD = /^[A-Z]+$/;

/** A `"METHOD /path"` or `"/path"` key, parsed (the shape of route-table keys). */
interface ParsedRouteKey {
  method: string | undefined;
  path: string;
  segments: string[];
  rest: boolean;
}

/** Parses a route key, or returns undefined when it is not `"METHOD /path"` / `"/path"`. */
function parseRouteKey(key: string): ParsedRouteKey | undefined {
  const space = key.indexOf(' ');
  const method = space > 0 ? key.slice(0, space).toUpperCase() : undefined;
  const path = (space > 0 ? key.slice(space + 1) : key).trim();
  if ((method !== undefined && !METHOD.test(method)) || !path.startsWith('/') || /\s/.test(path)) return undefined;
  const segments = path.split('/').slice(1);
  const rest = segments[segments.length - 1] === '*';
  if (rest) segments.pop();
  return { method, path, segments, rest };
}

/** Compiles a route table into a resolver; the matched key becomes the route's default name. */
export function compileRouteTable(table: RouteTable): RouteResolver {
  const literal = new Map<string, LiteralEntry>();
  const patterns: CompiledPattern[] = [];
  for (const [key, config] of Object.entries(table)) {
    validateRouteConfig(`routes[${JSON.stringify(key)}]`, config);
    const parsed = parseRouteKey(key);
    if (parsed === undefined) throw new InvalidOptionsError(`routes: ${JSON.stringify(key)} must look like "GET /path" or "/path"`);
    const { method, path, segments, rest } = parsed;
    // One stable object per entry, so the server can cache the resolved route per entry.
    const named: RouteConfig = Object.freeze({ ...config, name: config.name ?? key });
    if (!rest && segments.every((s) => !s.startsWith(':'))) {
      const entry = literal.get(path) ?? {};
      literal.set(path, entry);
      if (method === undefined) entry.any ??= named;
      else (entry.methods ??= {})[method] ??= named;
    } else {
      patterns.push({ method, segments, rest, config: named });
    }
  }
  // Hot path: one map lookup by path, then patterns matched in place (no string building or splitting).
  return (method, path) => {
    const exact = literal.get(path);
    if (exact !== undefined) {
      const config = exact.methods?.[method] ?? exact.any;
      if (config !== undefined) return config;
    }
    for (const p of patterns) {
      if (p.method !== undefined && p.method !== method) continue;
      if (matches(p, path)) return p.config;
    }
    return undefined;
  };
}

/** Matches `path` segment by segment against a compiled pattern without allocating. */
function matches(pattern: CompiledPattern, path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */) return false;
  let pos = 1;
  for (const want of pattern.segments) {
    if (pos > path.length) return false; // the path has fewer segments
    let end = path.indexOf('/', pos);
    if (end < 0) end = path.length;
    if (want.charCodeAt(0) === 58 /* : */) {
      if (end === pos) return false; // a parameter needs a non-empty segment
    } else if (end - pos !== want.length || !path.startsWith(want, pos)) {
      return false;
    }
    pos = end + 1;
  }
  return pattern.rest || pos === path.length + 1;
}

/**
 * One entry of a route list (`limits[].routes`): `"METHOD /path"` or `"/path"` in the route
 * table's syntax (`:param`, trailing `*`), or the name of a route (`RouteConfig.name`).
 */
export interface RouteFilter {
  readonly entry: string;
  /** Does this request belong to the entry? (`name` is the request's route name.) */
  matchesRequest(method: string, path: string, name: string): boolean;
  /** Could the entry match requests of a framework route (`url` its pattern)? For startup checks. */
  matchesRoute(method: string, url: string, name: string): boolean;
}

/**
 * Compiles a route-list entry; throws INVALID_OPTIONS for one that can never match: not a
 * string, empty, or with whitespace that is not the single space of `"METHOD /path"`.
 */
export function compileRouteFilter(entry: unknown, where: string): RouteFilter {
  if (typeof entry !== 'string' || entry.trim().length === 0) {
    throw new InvalidOptionsError(`${where}: route entries must be "METHOD /path", "/path" or a route name, got ${JSON.stringify(entry) ?? String(entry)}`);
  }
  const parsed = parseRouteKey(entry);
  if (parsed === undefined) {
    if (/\s/.test(entry)) throw new InvalidOptionsError(`${where}: ${JSON.stringify(entry)} is not "METHOD /path" (e.g. "POST /login"), "/path" or a route name`);
    // Any other string is a route's name (`RouteConfig.name`).
    return {
      entry,
      matchesRequest: (_method, _path, name) => name === entry,
      matchesRoute: (_method, _url, name) => name === entry,
    };
  }
  const pattern: CompiledPattern = { method: parsed.method, segments: parsed.segments, rest: parsed.rest, config: {} };
  const methodFits = (method: string): boolean => parsed.method === undefined || parsed.method === method;
  return {
    entry,
    // By the request's path (works before routing, on every adapter), or by the route's name
    // (a table key or framework pattern written exactly as in the entry).
    matchesRequest: (method, path, name) => methodFits(method) && (name === parsed.path || name === entry || matches(pattern, path)),
    matchesRoute: (method, url, name) => {
      if (!methodFits(method)) return false;
      if (name === entry || url === parsed.path || matches(pattern, url)) return true;
      // The entry names one concrete path of a parameterised route (`GET /orders/7` for `/orders/:id`).
      const route = parseRouteKey(url);
      return route !== undefined && matches({ method: undefined, segments: route.segments, rest: route.rest, config: {} }, parsed.path);
    },
  };
}
