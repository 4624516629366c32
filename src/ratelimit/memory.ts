import { systemClock, type Clock } from '../core/clock.js';
import { keyLimit } from '../core/validate.js';
import { algorithmFor, resolveAlgorithmOptions, type KernelResult, type RateAlgorithm, type ResolvedAlgorithmOptions } from './algorithms/registry.js';
import { acquireFrom, checkCost, checkKey } from './acquire.js';
import { KeyIndex, hashKey } from './key-index.js';
import type { AcquireOptions, AlgorithmOptions, Decision, RateLimiter } from './types.js';

export interface MemoryRateLimiterOptions extends AlgorithmOptions {
  /**
   * The most keys kept (default 100,000). Memory is bounded by this: when full, a new key takes
   * the slot of an old one, chosen by a clock sweep that takes keys whose state is equivalent to a
   * fresh key first and otherwise the least recently used. Evicting a key that was not fresh
   * (a depleted bucket) forgets its usage: that key can overshoot once. `stats()` counts both.
   */
  maxKeys?: number;
  clock?: Clock;
  name?: string;
}

export interface MemoryRateLimiterStats {
  keys: number;
  maxKeys: number;
  /** Evictions of keys whose state was equivalent to fresh (lossless). */
  evictedFresh: number;
  /** Evictions of keys still carrying usage (each a possible overshoot of that key). */
  evictedLive: number;
}

const INITIAL_SLOTS = 1024;
/** How far the sweep looks past a live victim for a fresh one (bounded: O(1) per eviction). */
const LOOKAHEAD = 8;
/** Live evictions to skip the look-ahead for after it found nothing. */
const LOOKAHEAD_COOLDOWN = 32;
/** The most returning keys remembered in the Map in front of the table (cleared when full). */
const RECENT_KEYS = 8192;

/**
 * A keyed rate limiter in process memory. Decisions are synchronous (no promise, no timer):
 * state of every key lives in one Float64Array, indexed through an open-addressing key table
 * (see KeyIndex: why not a Map); an idle key's state is brought up to date lazily when it is
 * next used, and memory is bounded by `maxKeys` with clock-sweep eviction. One instance serves
 * millions of keys.
 *
 * Keys that come back are also remembered in a small Map (at most 8,192, cleared when full): V8
 * hashes a key natively and caches the hash in the string, so a returning key costs one Map hit
 * whatever its length, where the table must hash it in JavaScript every time. A hint is only
 * trusted when its slot still holds that key (a slot is reused after an eviction or a reset), so
 * the Map never has to be told about evictions. New keys never enter it: a flood of one-off keys
 * costs the table's work only, with no Map churn.
 */
export class MemoryRateLimiter implements RateLimiter {
  readonly store = 'memory' as const;
  readonly limit: number;
  /** @internal */
  readonly algorithm: RateAlgorithm;
  readonly options: ResolvedAlgorithmOptions;
  readonly clock: Clock;
  readonly maxKeys: number;
  readonly name: string | undefined;

  readonly #size: number;
  /** Read on every decision: `clock`, or its cheaper twin when it is the system clock. */
  readonly #clock: Clock;
  readonly #keys: (string | undefined)[] = [];
  readonly #index: KeyIndex;
  #state: Float64Array;
  #referenced: Uint8Array;
  /** The hash of the key in each slot (eviction removes it from the index without rehashing). */
  #hashes: Int32Array;
  /** Returning key → its slot when last seen (a hint: checked against `#keys`). */
  readonly #recent = new Map<string, number>();
  readonly #recentMax: number;
  #slots = 0;
  #free: number[] = [];
  #hand = 0;
  #lookaheadCooldown = 0;
  #evictedFresh = 0;
  #evictedLive = 0;
  readonly #out: KernelResult = { allowed: false, remaining: 0, resetAfterMs: 0, retryAfterMs: 0 };
  readonly #scratch: Float64Array;

  constructor(options: MemoryRateLimiterOptions) {
    this.options = resolveAlgorithmOptions(options, 'memoryRateLimiter');
    this.algorithm = algorithmFor(this.options);
    this.limit = this.algorithm.limit;
    this.clock = options.clock ?? systemClock;
    this.#clock = this.clock;
    this.maxKeys = keyLimit('memoryRateLimiter.maxKeys', options.maxKeys, 100_000);
    this.name = options.name;
    this.#size = this.algorithm.stateSize;
    const initial = Math.min(INITIAL_SLOTS, this.maxKeys);
    this.#state = new Float64Array(initial * this.#size);
    this.#referenced = new Uint8Array(initial);
    this.#hashes = new Int32Array(initial);
    this.#recentMax = Math.min(RECENT_KEYS, this.maxKeys);
    this.#index = new KeyIndex(this.#keys, initial);
    this.#scratch = new Float64Array(this.#size);
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#index.size;
  }

  consume(key: string, cost = 1): Decision {
    checkKey(key);
    checkCost(cost);
    const now = this.#clock.now();
    const slot = this.#slotFor(key, now);
    this.algorithm.decide(this.#state, slot * this.#size, now, cost, this.#out);
    return this.#decision(now);
  }

  /** The decision a request of `cost` would get, without taking anything or tracking the key. */
  peek(key: string, cost = 1): Decision {
    checkKey(key);
    checkCost(cost);
    const now = this.#clock.now();
    const slot = this.#index.find(key, hashKey(key));
    const scratch = this.#scratch;
    if (slot === -1) this.algorithm.init(scratch, 0, now);
    else scratch.set(this.#state.subarray(slot * this.#size, (slot + 1) * this.#size));
    this.algorithm.decide(scratch, 0, now, cost, this.#out);
    return this.#decision(now);
  }

  refund(key: string, cost = 1): void {
    checkKey(key);
    checkCost(cost);
    const slot = this.#index.find(key, hashKey(key));
    if (slot === -1) return; // an unknown key is already full
    this.algorithm.adjust(this.#state, slot * this.#size, this.#clock.now(), cost);
  }

  penalty(key: string, cost = 1): void {
    checkKey(key);
    checkCost(cost);
    const now = this.#clock.now();
    this.algorithm.adjust(this.#state, this.#slotFor(key, now) * this.#size, now, -cost);
  }

  acquire(key: string, options?: AcquireOptions): Promise<Decision> {
    return acquireFrom(this.#consume, this.clock, key, options);
  }

  readonly #consume = (key: string, cost: number): Decision => this.consume(key, cost);

  reset(key: string): void {
    const slot = this.#index.remove(key, hashKey(key));
    if (slot === -1) return;
    this.#keys[slot] = undefined;
    this.#referenced[slot] = 0;
    this.#free.push(slot);
  }

  /** A copy of a key's raw algorithm state (see the algorithm's layout), for tests and debugging. */
  inspect(key: string): number[] | undefined {
    const slot = this.#index.find(key, hashKey(key));
    if (slot === -1) return undefined;
    return Array.from(this.#state.subarray(slot * this.#size, (slot + 1) * this.#size));
  }

  stats(): MemoryRateLimiterStats {
    return { keys: this.#index.size, maxKeys: this.maxKeys, evictedFresh: this.#evictedFresh, evictedLive: this.#evictedLive };
  }

  #decision(now: number): Decision {
    const out = this.#out;
    return {
      allowed: out.allowed,
      remaining: out.remaining,
      limit: this.limit,
      resetAt: now + out.resetAfterMs,
      retryAfterMs: out.retryAfterMs,
      store: 'memory',
      degraded: undefined,
    };
  }

  #slotFor(key: string, now: number): number {
    const hint = this.#recent.get(key);
    if (hint !== undefined && this.#keys[hint] === key) {
      this.#referenced[hint] = 1;
      return hint;
    }
    const h = hashKey(key);
    const known = this.#index.find(key, h);
    if (known !== -1) {
      this.#referenced[known] = 1;
      if (this.#recent.size >= this.#recentMax) this.#recent.clear();
      this.#recent.set(key, known);
      return known;
    }
    // A new key starts unreferenced: it earns protection from eviction only by coming back, so
    // a flood of one-off keys (a scan, random IPs) evicts its own kind before the hot keys.
    const slot = this.#allocate(now);
    this.#keys[slot] = key;
    this.#hashes[slot] = h;
    this.#index.insert(h, slot);
    this.algorithm.init(this.#state, slot * this.#size, now);
    return slot;
  }

  #allocate(now: number): number {
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#slots < this.maxKeys) {
      if (this.#slots === this.#referenced.length) this.#grow();
      return this.#slots++;
    }
    const victim = this.#sweep(now);
    this.#index.remove(this.#keys[victim]!, this.#hashes[victim]!);
    this.#referenced[victim] = 0;
    return victim;
  }

  /**
   * Clock (second-chance) sweep: a fresh key is taken at once; a recently used one loses its mark
   * and is passed over; the first unmarked one is taken. Amortised O(1): each pass clears marks.
   */
  #sweep(now: number): number {
    const size = this.#size;
    for (;;) {
      const slot = this.#hand;
      this.#hand = slot + 1 === this.#slots ? 0 : slot + 1;
      if (this.algorithm.isFresh(this.#state, slot * size, now)) {
        this.#evictedFresh++;
        return slot;
      }
      if (this.#referenced[slot] === 1) {
        this.#referenced[slot] = 0;
        continue;
      }
      // About to forget a key that still carries usage: look a little further for a fresh one
      // (unless recent looks found none: then the table holds no fresh keys worth the search).
      if (this.#lookaheadCooldown === 0) {
        const fresh = this.#freshNear(slot, now);
        if (fresh !== -1) {
          this.#evictedFresh++;
          return fresh;
        }
        this.#lookaheadCooldown = LOOKAHEAD_COOLDOWN;
      } else {
        this.#lookaheadCooldown--;
      }
      this.#evictedLive++;
      return slot;
    }
  }

  #freshNear(from: number, now: number): number {
    const n = Math.min(LOOKAHEAD, this.#slots - 1);
    let slot = from;
    for (let i = 0; i < n; i++) {
      slot = slot + 1 === this.#slots ? 0 : slot + 1;
      if (this.algorithm.isFresh(this.#state, slot * this.#size, now)) return slot;
    }
    return -1;
  }

  #grow(): void {
    const slots = Math.min(this.maxKeys, this.#referenced.length * 2);
    const state = new Float64Array(slots * this.#size);
    state.set(this.#state);
    this.#state = state;
    const referenced = new Uint8Array(slots);
    referenced.set(this.#referenced);
    this.#referenced = referenced;
    const hashes = new Int32Array(slots);
    hashes.set(this.#hashes);
    this.#hashes = hashes;
  }
}

/** A keyed in-memory rate limiter: `rateLimiter({ algorithm: 'token-bucket', limit: 2, intervalMs: 1000, capacity: 10 })`. */
export function memoryRateLimiter(options: MemoryRateLimiterOptions): MemoryRateLimiter {
  return new MemoryRateLimiter(options);
}
