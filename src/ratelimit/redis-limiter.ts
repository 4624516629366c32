import { systemClock, type Clock } from '../core/clock.js';
import { InvalidOptionsError, StoreUnavailableError, TimeoutError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { nonNegative, oneOf, positive, positiveInt } from '../core/validate.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';
import { clusterKey, toRedisScriptClient, type RedisScript, type RedisScriptClient } from '../redis-client/script-client.js';
import { resolveAlgorithmOptions, type ResolvedAlgorithmOptions } from './algorithms/registry.js';
import { acquireFrom, checkCost, checkKey } from './acquire.js';
import { MemoryRateLimiter } from './memory.js';
import { DELETE_SCRIPT, RATE_LIMIT_SCRIPTS, keysPerEntry } from './lua-scripts.js';
import type { AcquireOptions, AlgorithmOptions, Decision, RateLimiter } from './types.js';
import { StoreHealth, type StoreHealthSnapshot, type StoreRecoveredEvent } from './store-health.js';
import {
  admitStoreCall, isClusterClient, isStorePermit, storeBatches, storeBreaker, withinStoreTimeout,
  type StoreBreaker, type StorePermit,
} from './store-calls.js';

export type { StoreBreaker, StorePermit } from './store-calls.js';

export type FailMode = 'open' | 'closed';

export interface RedisRateLimiterOptions extends AlgorithmOptions {
  /** An ioredis `Redis`/`Cluster`, a node-redis client, or a RedisScriptClient. */
  client: unknown;
  /**
   * Key prefix. Keys are `<prefix>:{<key>}` (the key is the hash tag, so everything of one key
   * lives in one Redis Cluster slot). Limiters with different limits need different prefixes.
   * Default 'bulwark:rl'.
   */
  prefix?: string;
  /** Timeout of each Redis call, ms. Default 20. */
  timeoutMs?: number;
  /** When Redis cannot answer: 'open' (default) judges locally, 'closed' denies. */
  failMode?: FailMode;
  /** Failing open: 'local' (default) uses a per-process memory limiter with the same limit; 'allow' lets everything through. */
  fallback?: 'local' | 'allow';
  /** Keys kept by the local fallback limiter. Default 10,000. */
  fallbackMaxKeys?: number;
  /** Failing closed: the Retry-After given when the breaker cannot say. Default 1000 ms. */
  failClosedRetryAfterMs?: number;
  /**
   * Guards Redis calls: after repeated failures, calls stop for a while and decisions fail
   * open/closed at once instead of each waiting for a timeout. Default: a circuit breaker
   * opening after 5 consecutive failed calls, for 1 s. `false` disables it.
   */
  breaker?: StoreBreaker | false;
  /**
   * 'tick' (default): decisions asked in the same event-loop tick go to Redis in one script
   * call (per hash slot on a cluster). 'none': one script call per decision.
   */
  batch?: 'tick' | 'none';
  /** Most decisions in one script call. Default 128. */
  maxBatch?: number;
  /** Group batches by cluster hash slot. Default: detected (ioredis `Cluster`, node-redis cluster). */
  cluster?: boolean;
  clock?: Clock;
  name?: string;
}

export interface StoreErrorEvent {
  store: 'redis';
  error: unknown;
  failMode: FailMode;
  /** Decisions (and refunds) answered without Redis because of this failure. */
  affected: number;
  /** True when the breaker rejected the call without trying Redis. */
  breakerOpen: boolean;
}

type Op = 'c' | 'a' | 'p';

/** One decision (or adjustment) waiting for its batch. */
class Pending {
  constructor(
    readonly key: string,
    readonly op: Op,
    readonly amount: number,
    readonly resolve: (value: any) => void,
  ) {}
}

/** One script call in flight, guarded by the shared deadline queue. */
class BatchCall extends DeadlineEntry {
  done = false;
  constructor(
    deadline: number,
    onExpire: (entry: DeadlineEntry) => void,
    readonly entries: Pending[],
    readonly permit: StorePermit,
  ) {
    super(deadline, onExpire);
  }
}

/**
 * A keyed rate limiter whose state lives in Redis, shared by every instance: one atomic Lua
 * script per decision batch (server time, lazy PEXPIRE cleanup, Cluster-safe keys), EVALSHA with
 * a NOSCRIPT fallback. Every call has a short timeout (one shared timer) and a breaker; when
 * Redis cannot answer the limiter fails open (default: judged by a local memory limiter) or
 * closed, says so in `decision.degraded` and in `onStoreError`, and never hangs.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly store = 'redis' as const;
  readonly limit: number;
  readonly options: ResolvedAlgorithmOptions;
  readonly clock: Clock;
  readonly name: string | undefined;
  readonly prefix: string;
  readonly timeoutMs: number;
  readonly failMode: FailMode;
  readonly client: RedisScriptClient;

  readonly #script: RedisScript;
  readonly #keysPerEntry: number;
  readonly #configArgs: string[];
  readonly #fallback: 'local' | 'allow';
  readonly #fallbackMaxKeys: number;
  #local: MemoryRateLimiter | undefined;
  readonly #failClosedRetryAfterMs: number;
  readonly #breaker: StoreBreaker | undefined;
  readonly #batch: boolean;
  readonly #maxBatch: number;
  readonly #cluster: boolean;
  readonly #deadlines: DeadlineQueue;
  #queue: Pending[] = [];
  #scheduled = false;
  #calls = 0;
  readonly #health = new StoreHealth();
  readonly #onStoreError = new EventEmitter<StoreErrorEvent>();
  readonly #onStoreRecovered = new EventEmitter<StoreRecoveredEvent>();
  /**
   * Fires when Redis becomes unavailable: the first failed call (timeout, error, breaker open)
   * after it answered, not every call of the outage (see `storeHealth` for the counts).
   */
  readonly onStoreError = this.#onStoreError.event;
  /** Fires when a Redis call succeeds again after an outage. */
  readonly onStoreRecovered = this.#onStoreRecovered.event;

  constructor(options: RedisRateLimiterOptions) {
    this.options = resolveAlgorithmOptions(options, 'redisRateLimiter');
    if (options.client === undefined || options.client === null) throw new InvalidOptionsError('redisRateLimiter: a Redis client is required');
    try {
      this.client = toRedisScriptClient(options.client);
    } catch (error) {
      throw new InvalidOptionsError(`redisRateLimiter: ${(error as Error).message}`);
    }
    this.limit = this.options.algorithm === 'token-bucket' || this.options.algorithm === 'gcra' ? this.options.capacity : this.options.limit;
    this.clock = options.clock ?? systemClock;
    this.name = options.name;
    this.prefix = options.prefix ?? 'bulwark:rl';
    if (typeof this.prefix !== 'string') throw new InvalidOptionsError('redisRateLimiter.prefix must be a string');
    this.timeoutMs = positive('redisRateLimiter.timeoutMs', options.timeoutMs, 20);
    this.failMode = oneOf('redisRateLimiter.failMode', options.failMode, ['open', 'closed'] as const, 'open');
    this.#fallback = oneOf('redisRateLimiter.fallback', options.fallback, ['local', 'allow'] as const, 'local');
    this.#fallbackMaxKeys = positiveInt('redisRateLimiter.fallbackMaxKeys', options.fallbackMaxKeys, 10_000);
    this.#failClosedRetryAfterMs = nonNegative('redisRateLimiter.failClosedRetryAfterMs', options.failClosedRetryAfterMs, 1000);
    this.#batch = oneOf('redisRateLimiter.batch', options.batch, ['tick', 'none'] as const, 'tick') === 'tick';
    this.#maxBatch = positiveInt('redisRateLimiter.maxBatch', options.maxBatch, 128);
    this.#cluster = options.cluster ?? isClusterClient(options.client);
    this.#breaker = storeBreaker(options.breaker, 'redisRateLimiter', `${this.name ?? 'ratelimit'}-redis`, this.clock);
    this.#script = RATE_LIMIT_SCRIPTS[this.options.algorithm];
    this.#keysPerEntry = keysPerEntry(this.options.algorithm);
    this.#configArgs = [String(this.options.limit), String(this.options.intervalMs), String(this.options.capacity), ''];
    this.#deadlines = new DeadlineQueue(this.clock);
  }

  /** Script calls made so far (for tests and the benchmark). */
  get redisCalls(): number {
    return this.#calls;
  }

  /** Whether Redis answers now, failed calls and outages so far. */
  get storeHealth(): StoreHealthSnapshot {
    return this.#health.snapshot();
  }

  consume(key: string, cost = 1): Promise<Decision> {
    try {
      checkKey(key);
      checkCost(cost);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#enqueue(key, 'c', cost);
  }

  /** What a request of `cost` would get now, without taking anything. */
  peek(key: string, cost = 1): Promise<Decision> {
    try {
      checkKey(key);
      checkCost(cost);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#enqueue(key, 'p', cost);
  }

  refund(key: string, cost = 1): Promise<void> {
    try {
      checkKey(key);
      checkCost(cost);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#enqueue(key, 'a', cost);
  }

  penalty(key: string, cost = 1): Promise<void> {
    try {
      checkKey(key);
      checkCost(cost);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#enqueue(key, 'a', -cost);
  }

  acquire(key: string, options?: AcquireOptions): Promise<Decision> {
    return acquireFrom(this.#consume, this.clock, key, options);
  }

  readonly #consume = (key: string, cost: number): Promise<Decision> => this.consume(key, cost);

  /** Forgets a key in Redis (and in the local fallback). Rejects with STORE_UNAVAILABLE if Redis cannot. */
  async reset(key: string): Promise<void> {
    checkKey(key);
    this.#local?.reset(key);
    const keys = this.#redisKeys(key);
    try {
      this.#calls++;
      await withinStoreTimeout(this.client.run(DELETE_SCRIPT, keys, []), this.clock, this.timeoutMs);
    } catch (error) {
      throw new StoreUnavailableError('redis', error);
    }
  }

  /** The Redis keys of a limiter key: `<prefix>:{key}` (+ `:seq` for the sliding log). */
  redisKeysOf(key: string): string[] {
    return this.#redisKeys(key);
  }

  #redisKeys(key: string): string[] {
    const base = clusterKey(this.prefix, key);
    return this.#keysPerEntry === 1 ? [base] : [base, `${base}:seq`];
  }

  readonly #redisKeyOf = (entry: Pending): string => clusterKey(this.prefix, entry.key);

  #enqueue(key: string, op: Op, amount: number): Promise<any> {
    return new Promise((resolve) => {
      const entry = new Pending(key, op, amount, resolve);
      if (!this.#batch) {
        this.#send([entry]);
        return;
      }
      this.#queue.push(entry);
      if (!this.#scheduled) {
        this.#scheduled = true;
        // setImmediate runs after this tick's I/O callbacks and promise reactions, so every
        // decision asked in the tick rides in one script call.
        setImmediate(this.#flush);
      }
    });
  }

  readonly #flush = (): void => {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    for (const batch of storeBatches(queue, this.#maxBatch, this.#cluster, this.#redisKeyOf)) this.#send(batch);
  };

  #send(entries: Pending[]): void {
    const permit = admitStoreCall(this.#breaker);
    if (!isStorePermit(permit)) {
      this.#failAll(entries, permit, true, permit.retryAfterMs);
      return;
    }
    const keys: string[] = [];
    const args: (string | number)[] = this.#configArgs.slice();
    const first = entries[0]!;
    let uniform = true;
    for (const entry of entries) {
      const base = clusterKey(this.prefix, entry.key);
      keys.push(base);
      if (this.#keysPerEntry === 2) keys.push(`${base}:seq`);
      if (entry.op !== first.op || entry.amount !== first.amount) uniform = false;
    }
    if (uniform) args.push('u', first.op, first.amount);
    else {
      args.push('e');
      for (const entry of entries) args.push(entry.op, entry.amount);
    }
    const call = new BatchCall(this.clock.now() + this.timeoutMs, this.#expire, entries, permit);
    this.#deadlines.add(call);
    this.#calls++;
    let reply: Promise<unknown>;
    try {
      reply = this.client.run(this.#script, keys, args);
    } catch (error) {
      reply = Promise.reject(error);
    }
    reply.then(
      (value) => this.#complete(call, value),
      (error) => this.#failCall(call, error),
    );
  }

  #complete(call: BatchCall, reply: unknown): void {
    if (call.done) return; // timed out already: answered without Redis
    const n = call.entries.length;
    if (!Array.isArray(reply) || reply.length !== 4 * n) {
      this.#failCall(call, new Error(`unexpected reply from the rate-limit script: ${JSON.stringify(reply)?.slice(0, 100)}`));
      return;
    }
    call.done = true;
    this.#deadlines.remove(call);
    call.permit.success();
    const now = this.clock.now();
    const recovered = this.#health.succeeded(now, 'redis');
    if (recovered !== undefined && this.#onStoreRecovered.active) this.#onStoreRecovered.emit(recovered);
    for (let i = 0; i < n; i++) {
      const entry = call.entries[i]!;
      if (entry.op === 'a') {
        entry.resolve(undefined);
        continue;
      }
      const retry = Number(reply[4 * i + 2]);
      entry.resolve({
        allowed: Number(reply[4 * i]) === 1,
        remaining: Number(reply[4 * i + 1]),
        limit: this.limit,
        resetAt: now + Number(reply[4 * i + 3]) / 1000,
        retryAfterMs: retry < 0 ? Infinity : retry / 1000,
        store: 'redis',
        degraded: undefined,
      } satisfies Decision);
    }
  }

  readonly #expire = (entry: DeadlineEntry): void => {
    const call = entry as BatchCall;
    this.#failCall(call, new TimeoutError(this.timeoutMs));
  };

  #failCall(call: BatchCall, error: unknown): void {
    if (call.done) return;
    call.done = true;
    this.#deadlines.remove(call);
    call.permit.failure(error);
    this.#failAll(call.entries, error, false, this.#failClosedRetryAfterMs);
  }

  /** Answers every entry without Redis, per the fail mode. */
  #failAll(entries: Pending[], error: unknown, breakerOpen: boolean, retryAfterMs: number): void {
    const now = this.clock.now();
    if (this.#health.failed(now) && this.#onStoreError.active) {
      this.#onStoreError.emit({ store: 'redis', error, failMode: this.failMode, affected: entries.length, breakerOpen });
    }
    for (const entry of entries) {
      if (entry.op === 'a') {
        // Keep the local view consistent; a refund that cannot reach Redis is not an error for the caller.
        if (this.failMode === 'open' && this.#fallback === 'local') {
          if (entry.amount >= 0) this.#localLimiter().refund(entry.key, entry.amount);
          else this.#localLimiter().penalty(entry.key, -entry.amount);
        }
        entry.resolve(undefined);
        continue;
      }
      entry.resolve(this.#degraded(entry, now, retryAfterMs));
    }
  }

  #degraded(entry: Pending, now: number, retryAfterMs: number): Decision {
    if (this.failMode === 'closed') {
      const wait = Math.max(retryAfterMs, 1);
      return { allowed: false, remaining: 0, limit: this.limit, resetAt: now + wait, retryAfterMs: wait, store: 'redis', degraded: 'fail-closed' };
    }
    if (this.#fallback === 'allow') {
      return { allowed: true, remaining: this.limit, limit: this.limit, resetAt: now, retryAfterMs: 0, store: 'redis', degraded: 'fail-open' };
    }
    const local = this.#localLimiter();
    const decision = entry.op === 'p' ? local.peek(entry.key, entry.amount) : local.consume(entry.key, entry.amount);
    decision.degraded = 'fail-open';
    return decision;
  }

  #localLimiter(): MemoryRateLimiter {
    if (this.#local === undefined) {
      const { algorithm, limit, intervalMs, capacity } = this.options;
      // A window algorithm takes no capacity option (its resolved capacity is its limit).
      const bucket = algorithm === 'token-bucket' || algorithm === 'gcra' ? capacity : undefined;
      this.#local = new MemoryRateLimiter({ algorithm, limit, intervalMs, capacity: bucket, maxKeys: this.#fallbackMaxKeys, clock: this.clock });
    }
    return this.#local;
  }
}

export function redisRateLimiter(options: RedisRateLimiterOptions): RedisRateLimiter {
  return new RedisRateLimiter(options);
}

/**
 * Runs one batch through the algorithm's script directly (no batching, timeout or breaker).
 * `now` overrides the server time: for tests that compare the Lua and TypeScript kernels.
 */
export async function runRateLimitScript(
  client: unknown,
  options: AlgorithmOptions,
  entries: readonly { keys: readonly string[]; op: Op; amount: number }[],
  now?: number,
): Promise<{ allowed: boolean; remaining: number; retryAfterMs: number; resetAfterMs: number }[]> {
  const o = resolveAlgorithmOptions(options);
  const args: (string | number)[] = [o.limit, o.intervalMs, o.capacity, now === undefined ? '' : String(now), 'e'];
  for (const e of entries) args.push(e.op, e.amount);
  const reply = (await toRedisScriptClient(client).run(RATE_LIMIT_SCRIPTS[o.algorithm], entries.flatMap((e) => e.keys), args)) as unknown[];
  return entries.map((_, i) => ({
    allowed: Number(reply[4 * i]) === 1,
    remaining: Number(reply[4 * i + 1]),
    retryAfterMs: Number(reply[4 * i + 2]) < 0 ? Infinity : Number(reply[4 * i + 2]) / 1000,
    resetAfterMs: Number(reply[4 * i + 3]) / 1000,
  }));
}
