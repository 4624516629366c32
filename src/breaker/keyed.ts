import { rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import type { CallContext, CallOptions, Operation } from '../core/context.js';
import { InvalidOptionsError } from '../core/errors.js';
import { EventEmitter, type Disposable, type Event } from '../core/events.js';
import { BasePolicy, type Next, type Policy, type PolicyDescription } from '../core/policy.js';
import { PolicyTelemetry, type Instrumented, type PolicyEvent, type PolicyRegistry } from '../core/telemetry.js';
import { REQUIRED, fn, positiveInt } from '../core/validate.js';
import { CircuitBreakerPolicy } from './breaker.js';
import type { BreakerStateChange, BreakerStats, CircuitBreakerOptions } from './types.js';

/** `In`: the results the breakers' `isResultFailure` reads (see CircuitBreakerOptions). */
export interface KeyedCircuitBreakerOptions<K, In = unknown> {
  /**
   * Prefix of each breaker's name (`<name>:<key>`), and the keyed breaker's name in its events,
   * its stats and the policy registry (a named keyed breaker registers, its breakers never do).
   * Default: the options' name, else 'circuit-breaker'.
   */
  name?: string;
  /** Where a named keyed breaker registers. Default: the process-wide `policyRegistry`; `null` keeps it out. */
  registry?: PolicyRegistry | null;
  /** Breakers kept at most (plus one shared overflow breaker). Default 1000. */
  maxKeys?: number;
  /** Options for every key, or a function giving each key its own (called once, when the key's breaker is made). */
  options?: CircuitBreakerOptions<In> | ((key: K) => CircuitBreakerOptions<In>);
  /** Default clock for the breakers (options may override). */
  clock?: Clock;
}

export interface KeyedStateChange<K> extends BreakerStateChange {
  key: K;
}

export interface KeyedBreakerStats {
  size: number;
  maxKeys: number;
  /** Breakers not closed (open, half-open, isolated): never evicted. */
  notClosed: number;
  /** Closed breakers evicted to make room. */
  evictions: number;
  /** New keys routed to the shared overflow breaker because every slot held a breaker that was not closed. */
  overflowed: number;
  // Lifetime counters summed over every key's breaker (evicted and deleted ones included) and the overflow breaker.
  /** Times a breaker opened. */
  trips: number;
  /** Calls that counted as successes. */
  successes: number;
  /** Calls that counted as failures. */
  failures: number;
  /** Calls that ended without counting (local rejections, caller aborts). */
  ignored: number;
  /** Calls refused by an open, half-open or isolated breaker. */
  rejections: number;
}

/** The lifetime counters a keyed breaker sums over its breakers. */
type BreakerCounters = Pick<BreakerStats, 'trips' | 'successes' | 'failures' | 'ignored' | 'rejections'>;

interface Entry<In> {
  readonly breaker: CircuitBreakerPolicy<In>;
  readonly subscription: Disposable;
}

/**
 * One breaker per key (host, tenant, shard), bounded in number, with no timers per key.
 *
 * Memory is bounded by `maxKeys`. When a new key arrives and the map is full, the least
 * recently used CLOSED breaker is evicted: a closed breaker holds only recent statistics,
 * so losing it costs at most a slightly later trip. Open, half-open and isolated breakers
 * are never evicted, because forgetting one would silently send traffic to a dependency
 * known to be failing. If every slot holds such a breaker, new keys share one overflow
 * breaker (`<name>:overflow`) until a slot frees up: unknown keys stay protected (and if
 * they fail too, the overflow breaker trips for all of them), and memory stays bounded.
 *
 * Closed and not-closed breakers live in two maps (the closed one in LRU order), moved on
 * state changes, so finding a victim is O(1) instead of a scan past open breakers.
 */
export class KeyedCircuitBreaker<K = string, In = unknown> implements Instrumented {
  readonly kind = 'keyed-circuit-breaker';
  readonly name: string;
  readonly maxKeys: number;
  readonly clock: Clock | undefined;
  readonly #options: CircuitBreakerOptions<In> | ((key: K) => CircuitBreakerOptions<In>);
  /** Closed breakers, least recently used first. */
  readonly #closed = new Map<K, Entry<In>>();
  readonly #notClosed = new Map<K, Entry<In>>();
  #overflow: CircuitBreakerPolicy<In> | undefined;
  #evictions = 0;
  #overflowed = 0;
  /** The counters of breakers no longer held (evicted, deleted, cleared). */
  readonly #retired: BreakerCounters = { trips: 0, successes: 0, failures: 0, ignored: 0, rejections: 0 };
  /** Every breaker of this keyed breaker reports here, as the keyed breaker: one series, not one per key. */
  readonly #telemetry: PolicyTelemetry;
  /**
   * The events of every key's breaker in the uniform shape (kind 'keyed-circuit-breaker', this
   * breaker's name, never the key): 'state-change', 'reject', 'success', 'failure'.
   */
  readonly onEvent: Event<PolicyEvent>;
  readonly #onStateChange = new EventEmitter<KeyedStateChange<K>>();
  /** State changes of every key's breaker (not the overflow breaker's: it has no key). */
  readonly onStateChange = this.#onStateChange.event;

  constructor(options: KeyedCircuitBreakerOptions<K, In> = {}) {
    this.maxKeys = positiveInt('keyedBreaker.maxKeys', options.maxKeys, 1000);
    const perKey = options.options ?? {};
    if (typeof perKey !== 'function' && (typeof perKey !== 'object' || perKey === null)) {
      throw new InvalidOptionsError('keyedBreaker.options must be breaker options or a function of the key');
    }
    this.#options = perKey;
    this.clock = options.clock;
    const named = options.name ?? (typeof perKey === 'object' ? perKey.name : undefined);
    if (named !== undefined && (typeof named !== 'string' || named === '')) {
      throw new InvalidOptionsError(`keyedBreaker.name must be a non-empty string, got ${String(named)}`);
    }
    this.name = named ?? 'circuit-breaker';
    this.#telemetry = new PolicyTelemetry(this, { name: named, registry: options.registry });
    this.onEvent = this.#telemetry.onEvent;
    // Fixed options are checked now, not at the first call (the check's breaker reports nowhere, registers nowhere).
    if (typeof perKey === 'object') new CircuitBreakerPolicy({ clock: this.clock, ...perKey, registry: null });
  }

  get size(): number {
    return this.#closed.size + this.#notClosed.size;
  }

  /** The key's breaker, made on first use (or the overflow breaker when full of open ones). */
  get(key: K): CircuitBreakerPolicy<In> {
    const closed = this.#closed.get(key);
    if (closed !== undefined) {
      // Most recently used goes last (Map keeps insertion order).
      this.#closed.delete(key);
      this.#closed.set(key, closed);
      return closed.breaker;
    }
    return this.#notClosed.get(key)?.breaker ?? this.#create(key);
  }

  /** The key's breaker if one exists; does not create one or change the LRU order. */
  peek(key: K): CircuitBreakerPolicy<In> | undefined {
    return (this.#closed.get(key) ?? this.#notClosed.get(key))?.breaker;
  }

  has(key: K): boolean {
    return this.#closed.has(key) || this.#notClosed.has(key);
  }

  keys(): K[] {
    return [...this.#notClosed.keys(), ...this.#closed.keys()];
  }

  /** Runs `operation` through the key's breaker. */
  execute<T extends In>(key: K, operation: Operation<T>, options?: CallOptions | AbortSignal): Promise<T> {
    let breaker: CircuitBreakerPolicy<In>;
    try {
      breaker = this.get(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return breaker.execute(operation, options);
  }

  /** A pipeline policy that picks the breaker by a key read from the call (e.g. `ctx.tags.host`). */
  policy(keyOf: (context: CallContext) => K): Policy<never, In> {
    return new KeyedBreakerPolicy(this, fn('keyedBreaker.policy(keyOf)', keyOf, REQUIRED, 'of the call context'), this.#telemetry);
  }

  /** Forgets a key's breaker (whatever its state). */
  delete(key: K): boolean {
    const entry = this.#closed.get(key) ?? this.#notClosed.get(key);
    if (entry === undefined) return false;
    this.#retire(entry);
    this.#closed.delete(key);
    this.#notClosed.delete(key);
    return true;
  }

  clear(): void {
    for (const key of this.keys()) this.delete(key);
    if (this.#overflow !== undefined) addCounters(this.#retired, this.#overflow.stats());
    this.#overflow = undefined;
  }

  stats(): KeyedBreakerStats {
    const totals = { ...this.#retired };
    for (const map of [this.#closed, this.#notClosed]) for (const entry of map.values()) addCounters(totals, entry.breaker.stats());
    if (this.#overflow !== undefined) addCounters(totals, this.#overflow.stats());
    return {
      size: this.size, maxKeys: this.maxKeys, notClosed: this.#notClosed.size, evictions: this.#evictions, overflowed: this.#overflowed, ...totals,
    };
  }

  /** A breaker leaves the map: its counters stay in the totals. */
  #retire(entry: Entry<In>): void {
    entry.subscription.dispose();
    addCounters(this.#retired, entry.breaker.stats());
  }

  #create(key: K): CircuitBreakerPolicy<In> {
    if (this.size >= this.maxKeys && !this.#evictOldestClosed()) {
      this.#overflowed++;
      return (this.#overflow ??= new CircuitBreakerPolicy({ clock: this.clock, ...this.#resolve(key), name: `${this.name}:overflow` }, this.#telemetry));
    }
    const options = this.#resolve(key);
    const breaker = new CircuitBreakerPolicy({ clock: this.clock, ...options, name: this.#nameFor(key, options) }, this.#telemetry);
    const subscription = breaker.onStateChange((change) => this.#moved(key, change));
    const entry: Entry<In> = { breaker, subscription };
    if (breaker.state.kind === 'closed') this.#closed.set(key, entry);
    else this.#notClosed.set(key, entry); // hydrated from an open snapshot
    return breaker;
  }

  #resolve(key: K): CircuitBreakerOptions<In> {
    return typeof this.#options === 'function' ? this.#options(key) : this.#options;
  }

  #nameFor(key: K, options: CircuitBreakerOptions<In>): string {
    if (typeof this.#options === 'function' && options.name !== undefined) return options.name;
    return `${this.name}:${String(key)}`;
  }

  #evictOldestClosed(): boolean {
    for (const [key, entry] of this.#closed) {
      this.#retire(entry);
      this.#closed.delete(key);
      this.#evictions++;
      return true;
    }
    return false;
  }

  #moved(key: K, change: BreakerStateChange): void {
    if (change.to === 'closed') {
      const entry = this.#notClosed.get(key);
      if (entry !== undefined) {
        this.#notClosed.delete(key);
        this.#closed.set(key, entry);
      }
    } else if (change.from === 'closed') {
      const entry = this.#closed.get(key);
      if (entry !== undefined) {
        this.#closed.delete(key);
        this.#notClosed.set(key, entry);
      }
    }
    if (this.#onStateChange.active) this.#onStateChange.emit({ ...change, key });
  }
}

/** A keyed breaker in a pipeline: it reports through the keyed breaker (same events, same stats). */
class KeyedBreakerPolicy<K, In> extends BasePolicy<never, In> {
  readonly kind = 'keyed-circuit-breaker';
  constructor(private readonly keyed: KeyedCircuitBreaker<K, In>, private readonly keyOf: (context: CallContext) => K, telemetry: PolicyTelemetry) {
    super(keyed.clock, { name: keyed.name }, telemetry);
  }

  run<T extends In>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context); // before making (or evicting) a breaker
    let breaker: CircuitBreakerPolicy<In>;
    try {
      breaker = this.keyed.get(this.keyOf(context));
    } catch (error) {
      return Promise.reject(error);
    }
    return breaker.run(context, next);
  }

  stats(): KeyedBreakerStats {
    return this.keyed.stats();
  }

  describe(): PolicyDescription {
    return { kind: this.kind, name: this.keyed.name, options: { maxKeys: this.keyed.maxKeys } };
  }
}

/** One circuit breaker per key, at most `maxKeys` of them (LRU eviction of closed breakers). */
export function keyedBreaker<K = string, In = unknown>(options: KeyedCircuitBreakerOptions<K, In> = {}): KeyedCircuitBreaker<K, In> {
  return new KeyedCircuitBreaker<K, In>(options);
}

function addCounters(totals: BreakerCounters, stats: BreakerCounters): void {
  totals.trips += stats.trips;
  totals.successes += stats.successes;
  totals.failures += stats.failures;
  totals.ignored += stats.ignored;
  totals.rejections += stats.rejections;
}
