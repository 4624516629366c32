import { TimeoutError, InvalidOptionsError } from '../core/errors.js';
import type { Clock, TimerHandle } from '../core/clock.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { consecutive } from '../breaker/strategies.js';
import { hashSlot } from './crc16.js';

// What the Redis-backed limiters (the Redis store and the hybrid limiter) share around each call
// to Redis: the breaker that guards it, its timeout, and grouping calls by cluster hash slot.

/** A permit from a breaker, settled once the store call has ended. */
export interface StorePermit {
  success(): void;
  failure(error?: unknown): void;
}

/**
 * What the Redis-backed limiters need from a circuit breaker: `circuitBreaker()` from bulwark
 * fits (its `tryAcquire()` returns a permit or the CircuitOpenError as a value).
 */
export interface StoreBreaker {
  tryAcquire(): StorePermit | { retryAfterMs: number };
}

/** The breaker's answer when it is open: the CircuitOpenError, or anything carrying a Retry-After. */
export type StoreRejection = { retryAfterMs: number };

/** The permit of an unguarded store call: nobody to tell how it went. */
const UNGUARDED: StorePermit = { success() {}, failure() {} };

/**
 * The breaker a limiter's `breaker` option asks for: `false` none, a breaker of the caller's
 * (checked), or by default one opening after 5 consecutive failed calls, for 1 s.
 */
export function storeBreaker(option: StoreBreaker | false | undefined, owner: string, name: string, clock: Clock): StoreBreaker | undefined {
  if (option === false) return undefined;
  if (option === undefined) return circuitBreaker({ name, strategy: consecutive({ threshold: 5 }), openMs: 1000, clock });
  if (typeof option?.tryAcquire !== 'function') throw new InvalidOptionsError(`${owner}.breaker must have tryAcquire() (e.g. circuitBreaker())`);
  return option;
}

/** A permit for one store call (settle it when the call ends), or the open breaker's rejection. */
export function admitStoreCall(breaker: StoreBreaker | undefined): StorePermit | StoreRejection {
  return breaker === undefined ? UNGUARDED : breaker.tryAcquire();
}

export function isStorePermit(admitted: StorePermit | StoreRejection): admitted is StorePermit {
  return typeof (admitted as StorePermit).success === 'function';
}

/** The store call's answer, or TIMEOUT after `ms` on `clock` (the call itself is left to end on its own). */
export async function withinStoreTimeout<T>(call: Promise<T>, clock: Clock, ms: number): Promise<T> {
  let timer: TimerHandle | undefined;
  try {
    return await Promise.race([
      call,
      new Promise<never>((_, reject) => { timer = clock.setTimeout(() => reject(new TimeoutError(ms)), ms); }),
    ]);
  } finally {
    if (timer !== undefined) clock.clearTimeout(timer);
  }
}

/** Whether a client talks to a Redis Cluster (ioredis `Cluster`, node-redis cluster client). */
export function isClusterClient(client: unknown): boolean {
  const c = client as { isCluster?: unknown; masters?: unknown } | null | undefined;
  return c?.isCluster === true || Array.isArray(c?.masters);
}

/**
 * Splits items into script calls of at most `maxBatch`; on a cluster, each call holds the items
 * of one hash slot only (a script may touch the keys of one slot), `redisKey` naming an item's key.
 * `items` itself is the one batch when it is small enough: the caller hands it over.
 */
export function storeBatches<T>(items: T[], maxBatch: number, cluster: boolean, redisKey: (item: T) => string): T[][] {
  const batches: T[][] = [];
  if (!cluster) {
    if (items.length <= maxBatch) return [items];
    for (let i = 0; i < items.length; i += maxBatch) batches.push(items.slice(i, i + maxBatch));
    return batches;
  }
  const bySlot = new Map<number, T[]>();
  for (const item of items) {
    const slot = hashSlot(redisKey(item));
    const group = bySlot.get(slot);
    if (group) group.push(item); else bySlot.set(slot, [item]);
  }
  for (const group of bySlot.values()) {
    for (let i = 0; i < group.length; i += maxBatch) batches.push(group.slice(i, i + maxBatch));
  }
  return batches;
}
