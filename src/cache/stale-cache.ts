import { rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import { CallContext, callSourceOf, isAbortSignal, type CallOptions } from '../core/context.js';
import { degradation, markDegraded } from '../core/degraded.js';
import { EventEmitter } from '../core/events.js';
import { type Next, type PolicyDescription } from '../core/policy.js';
import { KeyedPolicy } from '../core/keyed-policy.js';
import { REQUIRED, nonNegative, positive, positiveInt } from '../core/validate.js';
import { CoalescePolicy } from '../coalesce/coalesce.js';

export interface StaleCacheOptions {
  /** How long a stored result is fresh (served without calling), in ms. Required. */
  ttlMs: number;
  /**
   * After `ttlMs`, for this long a stale result is served at once (marked degraded) while one
   * background call refreshes it. Default 0 (stale results wait for a foreground load).
   */
  staleWhileRevalidateMs?: number;
  /**
   * After `ttlMs`, for this long a stale result is served (marked degraded) when loading a
   * fresh one fails. This is how long a dependency outage degrades to "slightly old data"
   * instead of errors. Default 0.
   */
  staleIfErrorMs?: number;
  /** Entries kept; the least recently used is evicted beyond it. Default 1000. */
  maxEntries?: number;
  /**
   * The key of a call in pipeline use; return undefined to bypass the cache for a call.
   * Default: the call's `tags.key` (a call without one is rejected with INVALID_INPUT).
   * `cache.execute(key, operation)` passes the key explicitly instead.
   */
  key?: (context: CallContext) => string | undefined;
  /**
   * Which successful results to store. Default: all except results already marked degraded
   * by another policy (a fallback value must not be cached as if it were real data).
   */
  shouldCache?: (value: unknown) => boolean;
  /**
   * Which load errors may be answered with a stale result (within `staleIfErrorMs`).
   * Default: every error, except that a caller who aborted gets their abort.
   */
  serveStaleOn?: (error: unknown) => boolean;
  clock?: Clock;
  name?: string;
}

export interface StaleServedEvent {
  key: string;
  ageMs: number;
  /** 'revalidating': within staleWhileRevalidate; 'error': the load failed within staleIfError. */
  reason: 'revalidating' | 'error';
  error?: unknown;
}

export interface RevalidateErrorEvent {
  key: string;
  error: unknown;
}

export interface CachePeek {
  value: unknown;
  ageMs: number;
  /** fresh: < ttl; stale: usable for revalidate or on error; expired: kept but not servable. */
  state: 'fresh' | 'stale' | 'expired';
}

class Entry {
  constructor(
    public value: unknown,
    public storedAt: number,
    /** Insertion counter when last (re)inserted: how far back it sits in LRU order. */
    public seq: number,
  ) {}
}

const DEGRADED = Symbol.for('bulwark.degraded');

/**
 * A read-through cache for graceful degradation (RFC 5861 semantics): fresh within `ttlMs`;
 * then stale-while-revalidate (serve stale, one background refresh per key) and
 * serve-stale-on-error (serve stale when the load fails), each within its own window after
 * the result went stale. Stale results are marked degraded with their age
 * (`degradation(value)`), and an event is emitted (primitives cannot carry the mark).
 *
 * Bounded by entry count with LRU eviction; expiry is computed on read from stored
 * timestamps, so there are no per-entry timers. Loads (foreground misses and background
 * refreshes) are coalesced per key. Only successful results are stored.
 */
export class StaleCachePolicy extends KeyedPolicy {
  readonly kind = 'stale-cache';
  readonly ttlMs: number;
  readonly staleWhileRevalidateMs: number;
  readonly staleIfErrorMs: number;
  readonly maxEntries: number;
  readonly #shouldCache: (value: unknown) => boolean;
  readonly #serveStaleOn: (error: unknown) => boolean;
  /** Beyond this age an entry can never be served again. */
  readonly #usableMs: number;
  /** Map iteration order is LRU order: oldest first. */
  readonly #entries = new Map<string, Entry>();
  readonly #loads: CoalescePolicy;
  #insertions = 0;
  readonly #counters = { hits: 0, misses: 0, staleServed: 0, staleOnError: 0, revalidations: 0, revalidateErrors: 0, evictions: 0 };

  readonly #onStale = new EventEmitter<StaleServedEvent>();
  readonly #onRevalidateError = new EventEmitter<RevalidateErrorEvent>();
  /** A stale result was served (degraded). */
  readonly onStale = this.#onStale.event;
  /** A background refresh failed (callers never see these errors). */
  readonly onRevalidateError = this.#onRevalidateError.event;

  constructor(options: StaleCacheOptions) {
    super(options?.clock, options?.key, 'staleCache', options);
    this.ttlMs = positive('staleCache.ttlMs', options?.ttlMs, REQUIRED);
    this.staleWhileRevalidateMs = nonNegative('staleCache.staleWhileRevalidateMs', options.staleWhileRevalidateMs, 0);
    this.staleIfErrorMs = nonNegative('staleCache.staleIfErrorMs', options.staleIfErrorMs, 0);
    this.maxEntries = positiveInt('staleCache.maxEntries', options.maxEntries, 1000);
    this.#shouldCache = options.shouldCache ?? notDegradedElsewhere;
    this.#serveStaleOn = options.serveStaleOn ?? always;
    this.#usableMs = this.ttlMs + Math.max(this.staleWhileRevalidateMs, this.staleIfErrorMs);
    this.#loads = new CoalescePolicy({ clock: this.clock, name: `${this.name ?? 'stale-cache'}.loads` });
  }

  get size(): number {
    return this.#entries.size;
  }

  stats(): { hits: number; misses: number; staleServed: number; staleOnError: number; revalidations: number; revalidateErrors: number; evictions: number; size: number } {
    return { ...this.#counters, size: this.#entries.size };
  }

  /** The fresh value for `key`, or undefined (never loads, never serves stale). */
  get(key: string): unknown {
    const entry = this.#entries.get(key);
    return entry !== undefined && this.clock.now() - entry.storedAt < this.ttlMs ? entry.value : undefined;
  }

  /** Looks at an entry without loading or reordering it. */
  peek(key: string): CachePeek | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const ageMs = this.clock.now() - entry.storedAt;
    const state = ageMs < this.ttlMs ? 'fresh' : ageMs < this.#usableMs ? 'stale' : 'expired';
    return { value: entry.value, ageMs, state };
  }

  /** Stores a value as fresh now (e.g. after a write, or to warm the cache). */
  set(key: string, value: unknown): void {
    this.#store(key, value);
  }

  delete(key: string): boolean {
    this.#loads.forget(key);
    return this.#entries.delete(key);
  }

  clear(): void {
    this.#entries.clear();
  }

  /** `execute(key, operation)`: a fresh hit needs no context, no closure, no allocation but the promise. */
  protected override answerAtOnce<T>(key: string, options: CallOptions | AbortSignal | undefined): Promise<T> | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined || this.clock.now() - entry.storedAt >= this.ttlMs || signalAborted(options)) return undefined;
    this.#counters.hits++;
    this.#touch(key, entry);
    return Promise.resolve(entry.value as T);
  }

  /** The cache around `next` for an explicit key (for other policies and adapters). */
  runKeyed<T>(key: string, context: CallContext, next: Next<T>): Promise<T> {
    // A caller that already left gets ABORTED, like every policy: no load, no background refresh.
    if (context.aborted) return rejectAborted(context);
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      const age = this.clock.now() - entry.storedAt;
      if (age < this.ttlMs) {
        this.#counters.hits++;
        this.#touch(key, entry);
        return Promise.resolve(entry.value as T);
      }
      if (age < this.ttlMs + this.staleWhileRevalidateMs) {
        this.#touch(key, entry);
        this.#revalidate(key, context, next);
        return Promise.resolve(this.#serveStale(key, entry, age, 'revalidating', undefined) as T);
      }
      if (age >= this.#usableMs) this.#entries.delete(key); // can never be served again
    }
    this.#counters.misses++;
    return this.#load(key, context, next);
  }

  #touch(key: string, entry: Entry): void {
    // Approximate LRU: re-insert only entries that drifted into the older half of the order,
    // so a hot key's hits cost no map writes and a recently used key is never the victim.
    if (this.#insertions - entry.seq > this.maxEntries >>> 1) {
      this.#entries.delete(key);
      entry.seq = ++this.#insertions;
      this.#entries.set(key, entry);
    }
  }

  #load<T>(key: string, context: CallContext, next: Next<T>): Promise<T> {
    const loaded = this.#loads.runKeyed(key, context, this.#loader(key, next));
    if (this.staleIfErrorMs === 0) return loaded;
    return loaded.catch((error: unknown) => {
      const entry = this.#entries.get(key);
      if (entry === undefined || context.aborted || !this.#serveStaleOn(error)) throw error;
      const age = this.clock.now() - entry.storedAt;
      if (age < this.ttlMs) return entry.value as T; // refreshed meanwhile by another load
      if (age >= this.ttlMs + this.staleIfErrorMs) throw error;
      this.#counters.staleOnError++;
      return this.#serveStale(key, entry, age, 'error', error) as T;
    });
  }

  /** Wraps a load so its result is stored once per execution, not once per waiter. */
  #loader<T>(key: string, next: Next<T>): Next<T> {
    return (context) => next(context).then((value) => {
      if (this.#shouldCache(value)) this.#store(key, value);
      return value;
    });
  }

  #revalidate<T>(key: string, context: CallContext, next: Next<T>): void {
    if (this.#loads.has(key)) return; // one refresh (or load) per key at a time
    this.#counters.revalidations++;
    // Detached from the caller, who already has their answer; nothing aborts it but its own
    // policies (put a timeout inside the cache).
    const background = CallContext.root(this.clock, context.operation, { priority: context.priority, tags: context.tags });
    this.#loads.runKeyed(key, background, this.#loader(key, next)).catch((error: unknown) => {
      this.#counters.revalidateErrors++;
      if (this.#onRevalidateError.active) this.#onRevalidateError.emit({ key, error });
    });
  }

  #serveStale(key: string, entry: Entry, ageMs: number, reason: 'revalidating' | 'error', error: unknown): unknown {
    this.#counters.staleServed++;
    if (this.#onStale.active) this.#onStale.emit(reason === 'error' ? { key, ageMs, reason, error } : { key, ageMs, reason });
    return markDegraded(entry.value, reason === 'error' ? { source: 'stale-cache', ageMs, reason: error } : { source: 'stale-cache', ageMs });
  }

  #store(key: string, value: unknown): void {
    unmarkStale(value);
    const now = this.clock.now();
    const existing = this.#entries.get(key);
    if (existing !== undefined) this.#entries.delete(key);
    this.#entries.set(key, new Entry(value, now, ++this.#insertions));
    if (this.#entries.size > this.maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
      this.#counters.evictions++;
    }
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        ttlMs: this.ttlMs,
        staleWhileRevalidateMs: this.staleWhileRevalidateMs,
        staleIfErrorMs: this.staleIfErrorMs,
        maxEntries: this.maxEntries,
        key: this.keySource,
      },
    };
  }
}

const always = (): boolean => true;

function notDegradedElsewhere(value: unknown): boolean {
  const mark = degradation(value);
  return mark === undefined || mark.source === 'stale-cache';
}

/** A value we once served stale may come back from the dependency as the same object: clear our mark. */
function unmarkStale(value: unknown): void {
  if (degradation(value)?.source === 'stale-cache') delete (value as Record<symbol, unknown>)[DEGRADED];
}

export function staleCache(options: StaleCacheOptions): StaleCachePolicy {
  return new StaleCachePolicy(options);
}

/** The fast hit path's look at the caller's signal (the full context is built only on a miss). */
function signalAborted(options: CallOptions | AbortSignal | undefined): boolean {
  if (options === undefined) return false;
  if (isAbortSignal(options)) return options.aborted;
  // A spread copy of a request context lost its signal getter but points back to its source.
  return (options.signal ?? callSourceOf(options)?.signal)?.aborted === true;
}
