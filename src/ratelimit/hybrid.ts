import { randomUUID } from 'node:crypto';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../core/clock.js';
import { InvalidOptionsError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { keyLimit, positive, positiveInt } from '../core/validate.js';
import { clusterKey, toRedisScriptClient, type RedisScriptClient } from '../redis-client/script-client.js';
import { resolveAlgorithmOptions, type ResolvedAlgorithmOptions } from './algorithms/registry.js';
import { EPSILON, roundWait, wholeUnits } from './algorithms/kernel.js';
import { refillTokens } from './algorithms/token-bucket.js';
import { acquireFrom, checkCost, checkKey } from './acquire.js';
import { HYBRID_SYNC_SCRIPT } from './lua-scripts.js';
import { admitStoreCall, isClusterClient, isStorePermit, storeBatches, storeBreaker, withinStoreTimeout, type StoreBreaker } from './store-calls.js';
import type { AcquireOptions, Decision, RateLimiter } from './types.js';
import { StoreHealth, type StoreHealthSnapshot, type StoreRecoveredEvent } from './store-health.js';

/**
 * Where the hybrid limiter keeps the global balance. `redisHybridRemote` is the real one; tests
 * and the simulator use `memoryHybridRemote` on a virtual clock (same arithmetic).
 */
export interface HybridRemote {
  /**
   * Charges `used[i]` to `keys[i]` (refilled to now) on behalf of `instance`, and returns per key
   * the new balance (may be < 0: debt) and how many instances synced the key within the last
   * 3 × `syncIntervalMs` (itself included).
   */
  sync(keys: readonly string[], used: readonly number[], options: { instance: string; syncIntervalMs: number }): Promise<{ balance: number; sharers: number }[]>;
}

export interface HybridRateLimiterOptions {
  /** Global limit: `limit` tokens per `intervalMs` for the whole fleet, at most `capacity` at once (token-bucket semantics). */
  limit: number;
  intervalMs?: number;
  capacity?: number;
  /**
   * How many instances to assume share a key before its first sync says how many really do.
   * Each instance admits at most 1/sharers of what it last knew to be globally available (plus
   * that share of the refill) between two syncs, which is what bounds the overshoot; the sharer
   * count of a key is measured by Redis (instances that synced it in the last interval). This
   * guess only matters for keys an instance has not synced yet: set it to the fleet size when a
   * load balancer spreads each key over the fleet (a burst then admits capacity/N per instance),
   * leave 1 (default) for sticky routing (the first instance may take the whole burst).
   */
  instances?: number;
  /** Background reconcile period, ms. One timer for the whole limiter. Default 100. */
  syncIntervalMs?: number;
  /** Timeout of each sync call, ms. Default 20 (a sync failing is not an outage: decisions go on). */
  timeoutMs?: number;
  /** Keys tracked locally (bounded memory). Default 100,000. */
  maxKeys?: number;
  /** Keys per sync script call. Default 256. */
  maxBatch?: number;
  /** Where the global balance lives: an ioredis/node-redis client, or any HybridRemote. */
  client?: unknown;
  remote?: HybridRemote;
  /** Redis key prefix. Default 'bulwark:rlh'. */
  prefix?: string;
  /** Group sync calls by cluster hash slot. Default: detected from the client. */
  cluster?: boolean;
  /** Guards sync calls. Default: a breaker opening after 5 consecutive failures for 1 s. `false` disables. */
  breaker?: StoreBreaker | false;
  clock?: Clock;
  name?: string;
}

export interface HybridSyncEvent {
  keys: number;
  calls: number;
  ok: boolean;
  error?: unknown;
}

/**
 * Local bookkeeping of one key: this instance's share of the global bucket, run as a local
 * token bucket (capacity/S, refilled at rate/S, S = instances sharing the key) and re-based on
 * the global balance at every sync.
 */
class HybridEntry {
  /** Tokens of this instance's share; below zero only after a penalty or a sync reporting debt. */
  tokens: number;
  /** Local clock time `tokens` was last brought up to date. */
  updated: number;
  /** Instances sharing this key, as the remote last counted them. */
  sharers: number;
  /** Admitted locally since the last push (negative after refunds). */
  used = 0;
  /** Queued for the next sync. */
  dirty = false;
  constructor(tokens: number, updated: number, sharers: number) {
    this.tokens = tokens;
    this.updated = updated;
    this.sharers = sharers;
  }
}

/**
 * Local-first global rate limiting (one limit shared by the fleet, without a Redis round trip per
 * request): every decision is made locally and synchronously from the last-known global state, and
 * a single background timer reconciles with Redis every `syncIntervalMs`, sending each key's local
 * consumption in one batched script call and receiving the global balance. Redis being slow or down
 * never slows a request: the limiter keeps deciding on last-known state (decisions say
 * `degraded: 'stale'`).
 *
 * Overshoot bound (per key): an instance admits, between syncs, at most 1/S of the global
 * availability it last saw (S = instances that synced the key in the last 3 intervals, counted by Redis) plus 1/S of the
 * refill, so while S is right the un-synced admissions of the whole fleet never exceed the
 * capacity; every admission is then charged to the global balance, which records overshoot as
 * debt (down to −capacity) that the refill repays, so it never accumulates. Hence over any period
 * P the fleet admits at most 3 × capacity + rate × P (a single bucket: capacity + rate × P), and
 * over long periods the average rate is the limit; measured under saturation, the total stays
 * within 1% (docs/patterns/rate-limiting-stores.md). A key never seen by an instance is assumed
 * full ("if no data, permissive") with S = `instances`, until its first sync (≤ syncIntervalMs).
 */
export class HybridRateLimiter implements RateLimiter {
  readonly store = 'hybrid' as const;
  readonly limit: number;
  readonly options: ResolvedAlgorithmOptions;
  readonly clock: Clock;
  readonly instances: number;
  readonly syncIntervalMs: number;
  readonly timeoutMs: number;
  readonly maxKeys: number;
  readonly name: string | undefined;
  readonly prefix: string;

  readonly #remote: HybridRemote;
  readonly #clock: Clock;
  readonly #capacity: number;
  readonly #perInterval: number;
  readonly #intervalMs: number;
  readonly #maxBatch: number;
  readonly #cluster: boolean;
  readonly #breaker: StoreBreaker | undefined;
  readonly #entries = new Map<string, HybridEntry>();
  /** Identifies this instance to the remote, which counts the instances sharing each key. */
  readonly #syncOptions: { instance: string; syncIntervalMs: number };
  /** Entries whose push is in flight. */
  readonly #inflight = new Set<HybridEntry>();
  #dirty: string[] = [];
  #timer: TimerHandle | undefined;
  #syncing = false;
  #stale = false;
  #closed = false;
  #calls = 0;
  #evictedPending = 0;
  readonly #onSync = new EventEmitter<HybridSyncEvent>();
  /** Fires after each background sync (ok or not). */
  readonly onSync = this.#onSync.event;
  readonly #health = new StoreHealth();
  readonly #onStoreError = new EventEmitter<{ store: 'hybrid'; error: unknown; keys: number }>();
  readonly #onStoreRecovered = new EventEmitter<StoreRecoveredEvent>();
  /**
   * Fires when the remote becomes unavailable: the first failed sync after a good one (the
   * limiter goes on deciding on last-known state), not every failed sync (see `storeHealth`).
   */
  readonly onStoreError = this.#onStoreError.event;
  /** Fires when a sync succeeds again after an outage. */
  readonly onStoreRecovered = this.#onStoreRecovered.event;

  constructor(options: HybridRateLimiterOptions) {
    this.options = resolveAlgorithmOptions({ ...options, algorithm: 'token-bucket' }, 'hybridRateLimiter');
    this.limit = this.options.capacity;
    this.#capacity = this.options.capacity;
    this.#perInterval = this.options.limit;
    this.#intervalMs = this.options.intervalMs;
    this.clock = options.clock ?? systemClock;
    this.#clock = this.clock;
    this.instances = positive('hybridRateLimiter.instances', options.instances, 1);
    this.syncIntervalMs = positive('hybridRateLimiter.syncIntervalMs', options.syncIntervalMs, 100);
    this.timeoutMs = positive('hybridRateLimiter.timeoutMs', options.timeoutMs, 20);
    this.maxKeys = keyLimit('hybridRateLimiter.maxKeys', options.maxKeys, 100_000);
    this.#maxBatch = positiveInt('hybridRateLimiter.maxBatch', options.maxBatch, 256);
    this.name = options.name;
    this.prefix = options.prefix ?? 'bulwark:rlh';
    this.#syncOptions = { instance: randomUUID(), syncIntervalMs: this.syncIntervalMs };
    if (options.remote !== undefined) {
      if (typeof options.remote?.sync !== 'function') throw new InvalidOptionsError('hybridRateLimiter.remote must have sync(keys, used)');
      this.#remote = options.remote;
    } else if (options.client !== undefined) {
      let client: RedisScriptClient;
      try {
        client = toRedisScriptClient(options.client);
      } catch (error) {
        throw new InvalidOptionsError(`hybridRateLimiter: ${(error as Error).message}`);
      }
      this.#remote = redisHybridRemote(client, this.options);
    } else {
      throw new InvalidOptionsError('hybridRateLimiter: a Redis client (or a remote) is required');
    }
    this.#cluster = options.cluster ?? isClusterClient(options.client);
    this.#breaker = storeBreaker(options.breaker, 'hybridRateLimiter', `${this.name ?? 'ratelimit'}-hybrid`, this.clock);
  }

  /** Sync script calls made so far. */
  get redisCalls(): number {
    return this.#calls;
  }

  /** Whether the remote answers now, failed sync calls and outages so far. */
  get storeHealth(): StoreHealthSnapshot {
    return this.#health.snapshot();
  }

  /** True while the last sync failed: decisions are made on last-known state. */
  get stale(): boolean {
    return this.#stale;
  }

  get size(): number {
    return this.#entries.size;
  }

  consume(key: string, cost = 1): Decision {
    checkKey(key);
    checkCost(cost);
    return this.#decide(key, cost, true);
  }

  /** What a request of `cost` would get now, without taking anything. */
  peek(key: string, cost = 1): Decision {
    checkKey(key);
    checkCost(cost);
    return this.#decide(key, cost, false);
  }

  refund(key: string, cost = 1): void {
    checkKey(key);
    checkCost(cost);
    const entry = this.#entries.get(key);
    if (entry === undefined) return;
    // A negative charge: the next sync gives the tokens back to the global bucket.
    const now = this.#clock.now();
    entry.tokens = Math.min(this.#capacity / entry.sharers, this.#refill(entry, now) + cost);
    entry.used -= cost;
    this.#markDirty(key, entry);
  }

  penalty(key: string, cost = 1): void {
    checkKey(key);
    checkCost(cost);
    const now = this.#clock.now();
    const entry = this.#entry(key, now);
    entry.tokens = Math.max(-this.#capacity / entry.sharers, this.#refill(entry, now) - cost);
    entry.used += cost;
    this.#markDirty(key, entry);
  }

  acquire(key: string, options?: AcquireOptions): Promise<Decision> {
    return acquireFrom(this.#consume, this.clock, key, options);
  }

  readonly #consume = (key: string, cost: number): Decision => this.consume(key, cost);

  /** Forgets the key locally (the global balance refills on its own). */
  reset(key: string): void {
    this.#entries.delete(key);
  }

  /** Runs a sync now (tests, shutdown). Resolves when it has ended. */
  async syncNow(): Promise<void> {
    await this.#sync();
  }

  /** Stops the background timer after a final sync of pending usage. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#sync();
  }

  stats(): { keys: number; dirty: number; stale: boolean; redisCalls: number; evictedPending: number } {
    return { keys: this.#entries.size, dirty: this.#dirty.length, stale: this.#stale, redisCalls: this.#calls, evictedPending: this.#evictedPending };
  }

  #decide(key: string, cost: number, take: boolean): Decision {
    const now = this.#clock.now();
    const entry = take ? this.#entry(key, now) : this.#entries.get(key) ?? this.#fresh(now);
    const sharers = entry.sharers;
    const full = this.#capacity / sharers;
    let tokens = this.#refill(entry, now);
    let allowed = false;
    let retryAfterMs = 0;
    // A request larger than this instance's share may still pass on a full share (it then runs
    // the share into debt), else it could never pass anywhere.
    if (cost <= tokens + EPSILON || (cost <= this.#capacity + EPSILON && tokens >= full - EPSILON)) {
      allowed = true;
      tokens -= cost;
      if (take) {
        entry.tokens = tokens;
        entry.used += cost;
      }
    } else if (cost > this.#capacity + EPSILON) {
      retryAfterMs = Infinity;
    } else {
      retryAfterMs = Math.max(roundWait(this.#msFor((Math.min(cost, full) - tokens) * sharers)), 0.001);
    }
    // Every key in use is synced, denied or not: that is how Redis counts the instances sharing it.
    if (take) this.#markDirty(key, entry);
    return {
      allowed,
      remaining: wholeUnits(tokens),
      limit: this.limit,
      resetAt: now + roundWait(this.#msFor((full - tokens) * sharers)),
      retryAfterMs,
      store: 'hybrid',
      degraded: this.#stale ? 'stale' : undefined,
    };
  }

  /** Brings the share's tokens up to `now`: refill at rate/S, up to capacity/S. */
  #refill(entry: HybridEntry, now: number): number {
    const elapsed = now - entry.updated;
    if (elapsed > 0) {
      entry.tokens = refillTokens(entry.tokens, elapsed, this.#perInterval, this.#intervalMs, this.#capacity, entry.sharers);
      entry.updated = now;
    }
    return entry.tokens;
  }

  #msFor(tokens: number): number {
    return (tokens * this.#intervalMs) / this.#perInterval;
  }

  /** A key never synced here: assume a full bucket shared by `instances` ("if no data, permissive"). */
  #fresh(now: number): HybridEntry {
    return new HybridEntry(this.#capacity / this.instances, now, this.instances);
  }

  #entry(key: string, now: number): HybridEntry {
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      if (this.#entries.size >= this.maxKeys) this.#evict();
      entry = this.#fresh(now);
      this.#entries.set(key, entry);
    }
    return entry;
  }

  /** Drops the oldest entry with nothing waiting to be synced (bounded look; else the oldest). */
  #evict(): void {
    let steps = 0;
    let first: string | undefined;
    for (const [key, entry] of this.#entries) {
      first ??= key;
      if (!entry.dirty && !this.#inflight.has(entry)) {
        this.#entries.delete(key);
        return;
      }
      if (++steps >= 32) break;
    }
    if (first !== undefined) {
      this.#evictedPending++;
      this.#entries.delete(first);
    }
  }

  #markDirty(key: string, entry: HybridEntry): void {
    if (entry.dirty) return;
    entry.dirty = true;
    this.#dirty.push(key);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    // One unref'd timer for the whole limiter, armed only while something waits to be synced.
    this.#timer = unrefTimer(this.clock.setTimeout(this.#tick, this.syncIntervalMs));
  }

  readonly #tick = (): void => {
    this.#timer = undefined;
    void this.#sync().finally(() => {
      if (this.#dirty.length > 0) this.#schedule();
    });
  };

  async #sync(): Promise<void> {
    if (this.#syncing || this.#dirty.length === 0) return;
    this.#syncing = true;
    const keys = this.#dirty;
    this.#dirty = [];
    const batch: { key: string; entry: HybridEntry; sent: number }[] = [];
    for (const key of keys) {
      const entry = this.#entries.get(key);
      if (entry === undefined) continue; // evicted or reset meanwhile
      entry.dirty = false;
      const sent = entry.used;
      entry.used = 0;
      this.#inflight.add(entry);
      batch.push({ key, entry, sent });
    }
    const groups = storeBatches(batch, this.#maxBatch, this.#cluster, this.#redisKeyOf);
    let failures = 0;
    let lastError: unknown;
    await Promise.all(groups.map(async (group) => {
      try {
        await this.#syncGroup(group);
      } catch (error) {
        failures++;
        lastError = error;
        for (const item of group) {
          // Keep the usage: it is pushed again with the next successful sync.
          this.#inflight.delete(item.entry);
          item.entry.used += item.sent;
          this.#markDirty(item.key, item.entry);
        }
      }
    }));
    this.#syncing = false;
    this.#stale = failures > 0;
    const now = this.#clock.now();
    if (failures > 0) {
      let wentDown = false;
      for (let i = 0; i < failures; i++) wentDown = this.#health.failed(now) || wentDown;
      if (wentDown && this.#onStoreError.active) this.#onStoreError.emit({ store: 'hybrid', error: lastError, keys: batch.length });
    } else if (groups.length > 0) {
      const recovered = this.#health.succeeded(now, 'hybrid');
      if (recovered !== undefined && this.#onStoreRecovered.active) this.#onStoreRecovered.emit(recovered);
    }
    if (this.#onSync.active) this.#onSync.emit({ keys: batch.length, calls: groups.length, ok: failures === 0, ...(failures > 0 ? { error: lastError } : {}) });
  }

  readonly #redisKeyOf = (item: { key: string }): string => clusterKey(this.prefix, item.key);

  async #syncGroup(group: { key: string; entry: HybridEntry; sent: number }[]): Promise<void> {
    const permit = admitStoreCall(this.#breaker);
    if (!isStorePermit(permit)) throw permit;
    this.#calls++;
    try {
      const balances = await withinStoreTimeout(
        this.#remote.sync(group.map(this.#redisKeyOf), group.map((g) => g.sent), this.#syncOptions),
        this.clock,
        this.timeoutMs,
      );
      if (!Array.isArray(balances) || balances.length !== group.length) throw new Error('unexpected reply from the hybrid sync');
      permit.success();
      const now = this.#clock.now();
      group.forEach((item, i) => {
        const entry = item.entry;
        this.#inflight.delete(entry);
        // Re-base the local share on the global balance, minus what was admitted here since the push.
        entry.sharers = Math.max(1, balances[i]!.sharers);
        entry.tokens = Math.min(this.#capacity / entry.sharers, balances[i]!.balance / entry.sharers - entry.used);
        entry.updated = now;
      });
    } catch (error) {
      permit.failure(error);
      throw error;
    }
  }
}

/** The Redis side of the hybrid limiter: one script call charges and reads a batch of keys. */
export function redisHybridRemote(client: unknown, options: { limit: number; intervalMs: number; capacity: number }): HybridRemote {
  const redis = toRedisScriptClient(client);
  const config = [String(options.limit), String(options.intervalMs), String(options.capacity), ''];
  return {
    async sync(keys, used, { instance, syncIntervalMs }) {
      const redisKeys = keys.flatMap((k) => [k, `${k}:i`]);
      const reply = (await redis.run(HYBRID_SYNC_SCRIPT, redisKeys, [...config, String(syncIntervalMs), instance, ...used.map(String)])) as unknown[];
      return keys.map((_, i) => ({ balance: Number(reply[2 * i]), sharers: Number(reply[2 * i + 1]) }));
    },
  };
}

/**
 * An in-process remote with the same arithmetic as the Redis script, on an injected clock: for
 * tests and the simulator (several limiters sharing it behave like a fleet sharing Redis).
 */
export function memoryHybridRemote(options: { limit: number; intervalMs?: number; capacity?: number; clock: Clock; latencyMs?: number }): HybridRemote & { balances: Map<string, { tokens: number; at: number }>; down: boolean } {
  const capacity = options.capacity ?? options.limit;
  const interval = options.intervalMs ?? 1000;
  const balances = new Map<string, { tokens: number; at: number; seen: Map<string, number> }>();
  const remote = {
    balances,
    down: false,
    sync(keys: readonly string[], used: readonly number[], { instance, syncIntervalMs }: { instance: string; syncIntervalMs: number }): Promise<{ balance: number; sharers: number }[]> {
      const apply = (): { balance: number; sharers: number }[] => {
        if (remote.down) throw new Error('remote down');
        const now = options.clock.now();
        return keys.map((key, i) => {
          const b = balances.get(key) ?? { tokens: capacity, at: now, seen: new Map<string, number>() };
          if (now > b.at) {
            b.tokens = refillTokens(b.tokens, now - b.at, options.limit, interval, capacity);
            b.at = now;
          }
          b.tokens = Math.max(-capacity, b.tokens - used[i]!);
          b.seen.set(instance, now);
          for (const [id, at] of b.seen) if (at <= now - 3 * syncIntervalMs) b.seen.delete(id);
          balances.set(key, b);
          return { balance: b.tokens, sharers: Math.max(1, b.seen.size) };
        });
      };
      if (!options.latencyMs) return new Promise((resolve) => resolve(apply()));
      return new Promise((resolve, reject) => options.clock.setTimeout(() => { try { resolve(apply()); } catch (e) { reject(e); } }, options.latencyMs!));
    },
  };
  return remote;
}

export function hybridRateLimiter(options: HybridRateLimiterOptions): HybridRateLimiter {
  return new HybridRateLimiter(options);
}
