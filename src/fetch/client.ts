import { Agent, fetch as undiciFetch, type Dispatcher, type RequestInit, type Response } from 'undici';
import type { RetryBudget } from '../core/budget.js';
import { systemClock } from '../core/clock.js';
import { InvalidInputError, InvalidOptionsError } from '../core/errors.js';
import { fn, nonNegative } from '../core/validate.js';
import { ratioBudget } from '../retry/budget.js';
import { EventEmitter, type Event } from '../core/events.js';
import type { BreakerStats } from '../breaker/breaker.js';
import { FetchDependency, type ClientShared, type FetchBreakerStateChange, type FetchDependencyStats, type Transport } from './dependency.js';
import { DEFAULT_DEPENDENCY, FETCH_DEFAULTS, resolveDependency, type CreateFetchOptions } from './options.js';
import { DEFAULT_KEY_HEADERS, prepareCall, type BulwarkCallOptions, type FetchInitLike, type FetchInput } from './request.js';

/** `RequestInit` plus Bulwark's per-call options. */
export type BulwarkRequestInit = RequestInit & { bulwark?: BulwarkCallOptions };

/** A named dependency as the client exposes it: its policies, stats, and a fetch bound to it. */
export interface FetchDependencyHandle {
  readonly name: string;
  readonly dependency: FetchDependency;
  /** Sends through this dependency whatever the URL's host. */
  fetch(input: FetchInput, init?: BulwarkRequestInit): Promise<Response>;
  stats(): FetchDependencyStats;
  /** State changes of this dependency's per-host breakers; the returned Disposable unsubscribes. */
  readonly onBreakerStateChange: Event<FetchBreakerStateChange>;
  /** Each host's breaker statistics (state, trips, failures, rejections, window), by `host:port`. */
  breakers(): Record<string, BreakerStats>;
}

export interface FetchClientStats {
  dependencies: Record<string, FetchDependencyStats>;
  /** undici's connection counts per origin (when the dispatcher reports them). */
  connections?: Record<string, unknown>;
}

/** A `fetch`-compatible function with a resilience pipeline per dependency. */
export interface BulwarkFetch {
  (input: FetchInput, init?: BulwarkRequestInit): Promise<Response>;
  /** A dependency by name (`'default'` for URLs no named dependency matches). */
  dependency(name: string): FetchDependencyHandle;
  /** Names of the configured dependencies (the default one included when enabled). */
  readonly dependencies: readonly string[];
  stats(): FetchClientStats;
  /**
   * State changes of every dependency's per-host breakers (`{ dependency, host, from, to,
   * reason, at, state }`): for alerts and logs. The returned Disposable unsubscribes.
   */
  readonly onBreakerStateChange: Event<FetchBreakerStateChange>;
  /** Closes the dispatcher if the client created it; later calls fail with INVALID_INPUT. */
  close(): Promise<void>;
  readonly dispatcher: Dispatcher;
}

/**
 * Creates a resilient `fetch` (undici underneath):
 *
 * ```ts
 * const fetch = createFetch({
 *   dependencies: {
 *     inventory: { hosts: ['inventory.internal'], timeoutMs: 500, retry: { maxAttempts: 3 } },
 *     catalog: { hosts: ['catalog.internal'], hedge: { percentile: 95 }, coalesce: true,
 *                cache: { ttlMs: 5_000, staleIfErrorMs: 300_000 } },
 *   },
 * });
 * const res = await fetch('http://inventory.internal/stock/42', { bulwark: { context: request } });
 * ```
 *
 * HTTP errors are responses (fetch semantics); network errors, timeouts and local rejections
 * (breaker open, bulkhead full) reject with a Bulwark error carrying a stable `code`.
 */
export function createFetch(options: CreateFetchOptions = {}): BulwarkFetch {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('createFetch(options): options must be an object');
  const clock = options.clock ?? systemClock;
  fn('createFetch: random', options.random, undefined, 'returning [0, 1)');
  const deadlineMarginMs = nonNegative('createFetch: deadlineMarginMs', options.deadlineMarginMs, FETCH_DEFAULTS.deadlineMarginMs);
  const idempotencyKeyHeader = (options.idempotencyKeyHeader ?? 'idempotency-key').toLowerCase();
  const keyHeaders = (options.keyHeaders ?? DEFAULT_KEY_HEADERS).map((h) => h.toLowerCase());
  const clientBudget = checkBudget(options.budget);

  const ownsDispatcher = options.dispatcher === undefined;
  if (!ownsDispatcher && typeof (options.dispatcher as Dispatcher).dispatch !== 'function') {
    throw new InvalidOptionsError('createFetch: dispatcher must be an undici Dispatcher (e.g. new Agent())');
  }
  const dispatcher = (options.dispatcher as Dispatcher | undefined)
    ?? new Agent({ connections: FETCH_DEFAULTS.connectionsPerOrigin, connectTimeout: FETCH_DEFAULTS.connectTimeoutMs });

  const transport: Transport = (call, headers, signal) => undiciFetch(call.href, {
    method: call.method,
    headers,
    body: call.body as RequestInit['body'],
    signal,
    ...(call.redirect === undefined ? {} : { redirect: call.redirect as RequestInit['redirect'] }),
    ...(call.duplex === undefined ? {} : { duplex: call.duplex as RequestInit['duplex'] }),
    dispatcher: (call.dispatcher as Dispatcher | undefined) ?? dispatcher,
  });

  const shared: ClientShared = {
    clock,
    random: options.random,
    deadlineMarginMs,
    keyHeaders,
    budgetFor: () => (clientBudget === false ? undefined : clientBudget ?? ratioBudget({ clock })),
    transport,
  };

  const byName = new Map<string, FetchDependency>();
  const router = new Router();
  const configured = options.dependencies ?? {};
  if (typeof configured !== 'object' || configured === null) throw new InvalidOptionsError('createFetch: dependencies must be an object of name → options');
  for (const [name, dependencyOptions] of Object.entries(configured)) {
    if (name === DEFAULT_DEPENDENCY) throw new InvalidOptionsError(`createFetch: "${DEFAULT_DEPENDENCY}" is reserved; configure it with the defaults option`);
    const dependency = new FetchDependency(resolveDependency(name, dependencyOptions), shared);
    byName.set(name, dependency);
    router.add(dependency);
  }
  if (options.defaults !== false) {
    const settings = { ...resolveDependency(DEFAULT_DEPENDENCY, { ...options.defaults, match: undefined }), hosts: [] };
    const fallback = new FetchDependency(settings, shared);
    byName.set(DEFAULT_DEPENDENCY, fallback);
    router.fallback = fallback;
  }

  const prepareOptions = { clock, idempotencyKeyHeader };
  let closed = false;

  const send = async (input: FetchInput, init: BulwarkRequestInit | undefined, forced: FetchDependency | undefined): Promise<Response> => {
    if (closed) throw new InvalidInputError('fetch: the client is closed');
    const call = await prepareCall(input, init as FetchInitLike | undefined, prepareOptions);
    let dependency = forced;
    const named = call.options?.dependency;
    if (dependency === undefined && named !== undefined) {
      dependency = byName.get(named);
      if (dependency === undefined) throw new InvalidInputError(`fetch: no dependency named "${String(named)}"`);
    }
    dependency ??= router.resolve(call.url);
    if (dependency === undefined) throw new InvalidInputError(`fetch: no dependency matches ${call.url.host} and defaults are disabled`);
    return dependency.run(call);
  };

  const onBreakerStateChange = new EventEmitter<FetchBreakerStateChange>();
  for (const dependency of byName.values()) {
    dependency.onBreakerStateChange((change) => {
      if (onBreakerStateChange.active) onBreakerStateChange.emit(change);
    });
  }

  const handles = new Map<string, FetchDependencyHandle>();
  const client = ((input: FetchInput, init?: BulwarkRequestInit) => send(input, init, undefined)) as BulwarkFetch;
  Object.defineProperties(client, {
    dispatcher: { value: dispatcher, enumerable: true },
    dependencies: { value: Object.freeze([...byName.keys()]), enumerable: true },
    onBreakerStateChange: { value: onBreakerStateChange.event, enumerable: true },
  });
  client.dependency = (name: string): FetchDependencyHandle => {
    const dependency = byName.get(name);
    if (dependency === undefined) throw new InvalidInputError(`fetch: no dependency named "${String(name)}"`);
    let handle = handles.get(name);
    if (handle === undefined) {
      handle = {
        name,
        dependency,
        fetch: (input, init) => send(input, init, dependency),
        stats: () => dependency.stats(),
        onBreakerStateChange: dependency.onBreakerStateChange,
        breakers: () => dependency.breakerStats(),
      };
      handles.set(name, handle);
    }
    return handle;
  };
  client.stats = (): FetchClientStats => {
    const dependencies: Record<string, FetchDependencyStats> = {};
    for (const [name, dependency] of byName) dependencies[name] = dependency.stats();
    const connections = (dispatcher as { stats?: Record<string, unknown> }).stats;
    return connections === undefined ? { dependencies } : { dependencies, connections: { ...connections } };
  };
  client.close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (ownsDispatcher) await dispatcher.close();
  };
  return client;
}

function checkBudget(budget: RetryBudget | false | undefined): RetryBudget | false | undefined {
  if (budget === undefined || budget === false) return budget;
  if (typeof budget !== 'object' || budget === null || typeof budget.tryAcquire !== 'function') {
    throw new InvalidOptionsError('createFetch: budget must be a RetryBudget (ratioBudget(), tokenBudget()) or false');
  }
  return budget;
}

/** URL → dependency: exact host (`host:port`, then `host`), then `match` functions in order, then the fallback. */
class Router {
  readonly #byHost = new Map<string, FetchDependency>();
  readonly #matchers: FetchDependency[] = [];
  fallback: FetchDependency | undefined;

  add(dependency: FetchDependency): void {
    for (const host of dependency.settings.hosts) {
      const other = this.#byHost.get(host);
      if (other !== undefined) throw new InvalidOptionsError(`createFetch: host ${host} is claimed by both "${other.name}" and "${dependency.name}"`);
      this.#byHost.set(host, dependency);
    }
    if (dependency.settings.match !== undefined) this.#matchers.push(dependency);
  }

  resolve(url: URL): FetchDependency | undefined {
    const exact = this.#byHost.get(url.host) ?? this.#byHost.get(url.hostname);
    if (exact !== undefined) return exact;
    for (const dependency of this.#matchers) {
      if (dependency.settings.match!(url)) return dependency;
    }
    return this.fallback;
  }
}
