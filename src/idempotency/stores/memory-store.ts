import { systemClock, type Clock } from '../../core/clock.js';
import { positiveInt } from '../../core/validate.js';
import type {
  ClaimInput, ClaimResult, CompleteInput, IdempotencyStore, OwnerInput, RenewInput, StepInput, StoredRecord,
} from '../types.js';

interface MemoryRecord {
  state: 'in_progress' | 'completed';
  fingerprint: string;
  owner: string;
  fence: number;
  leaseExpiresAt: number;
  expiresAt: number;
  response: string | undefined;
  completedAt: number;
  steps: Record<string, string> | undefined;
}

export interface MemoryIdempotencyStoreOptions {
  /** Time for leases and TTLs. Default: the system clock. */
  clock?: Clock;
  /** Expired records removed per claim, amortizing cleanup without any timer. Default 4. */
  sweepPerClaim?: number;
}

const NO_STEPS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * Records in a Map, for a single process and for tests. Not durable: a restart forgets every
 * record (so a retry after a restart runs again). Use SQLite for a durable single instance,
 * Redis or PostgreSQL for a fleet.
 *
 * Cleanup needs no timer: the Map is kept in expiry order (a record is re-inserted when its
 * expiry moves, and with one TTL per store later writes always expire later), so each claim
 * drops the few expired records at the front. `sweep()` removes all of them.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  readonly name = 'memory';
  readonly remote = false;
  readonly clock: Clock;
  readonly #records = new Map<string, MemoryRecord>();
  readonly #sweepPerClaim: number;

  constructor(options: MemoryIdempotencyStoreOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#sweepPerClaim = positiveInt('memoryStore.sweepPerClaim', options.sweepPerClaim, 4);
  }

  /** Records held, including expired ones not yet swept. */
  get size(): number {
    return this.#records.size;
  }

  claim(input: ClaimInput): Promise<ClaimResult> {
    return Promise.resolve(this.claimSync(input));
  }

  /** The synchronous core of `claim` (the memory store never waits). */
  claimSync(input: ClaimInput): ClaimResult {
    const now = this.clock.now();
    this.#sweepFront(now, this.#sweepPerClaim);
    const record = this.#records.get(input.id);
    if (record === undefined || record.expiresAt <= now) {
      const fresh: MemoryRecord = {
        state: 'in_progress',
        fingerprint: input.fingerprint,
        owner: input.owner,
        fence: 1,
        leaseExpiresAt: now + input.leaseMs,
        expiresAt: now + Math.max(input.ttlMs, input.leaseMs),
        response: undefined,
        completedAt: 0,
        steps: undefined,
      };
      this.#put(input.id, fresh);
      return { kind: 'acquired', fence: 1, takeover: false, leaseExpiresAt: fresh.leaseExpiresAt, steps: NO_STEPS };
    }
    if (record.fingerprint !== input.fingerprint) return { kind: 'mismatch' };
    if (record.state === 'completed') return { kind: 'completed', response: record.response!, completedAt: record.completedAt };
    if (record.leaseExpiresAt > now) return { kind: 'busy', retryAfterMs: record.leaseExpiresAt - now };
    // The lease ran out (crashed owner, or released with steps): take it over. The old owner's
    // token no longer matches, so its late writes are rejected.
    record.owner = input.owner;
    record.fence += 1;
    record.leaseExpiresAt = now + input.leaseMs;
    if (record.expiresAt < record.leaseExpiresAt) {
      record.expiresAt = record.leaseExpiresAt;
      this.#put(input.id, record);
    }
    return { kind: 'acquired', fence: record.fence, takeover: true, leaseExpiresAt: record.leaseExpiresAt, steps: { ...record.steps } };
  }

  complete(input: CompleteInput): Promise<boolean> {
    return Promise.resolve(this.completeSync(input));
  }

  completeSync(input: CompleteInput): boolean {
    const now = this.clock.now();
    const record = this.#owned(input, now);
    if (record === undefined) {
      const existing = this.#live(input.id, now);
      return existing !== undefined && existing.state === 'completed' && existing.owner === input.owner;
    }
    record.state = 'completed';
    record.response = input.response;
    record.completedAt = now;
    record.leaseExpiresAt = 0;
    record.expiresAt = now + input.ttlMs;
    this.#put(input.id, record);
    return true;
  }

  release(input: OwnerInput): Promise<boolean> {
    const now = this.clock.now();
    const record = this.#owned(input, now);
    if (record === undefined) return Promise.resolve(false);
    if (record.steps === undefined) {
      this.#records.delete(input.id);
    } else {
      // Saved steps belong to this request: keep them (and the fingerprint) for the retry.
      record.owner = '';
      record.leaseExpiresAt = 0;
    }
    return Promise.resolve(true);
  }

  renew(input: RenewInput): Promise<boolean> {
    const now = this.clock.now();
    const record = this.#owned(input, now);
    if (record === undefined) return Promise.resolve(false);
    record.leaseExpiresAt = now + input.leaseMs;
    if (record.expiresAt < record.leaseExpiresAt) {
      record.expiresAt = record.leaseExpiresAt;
      this.#put(input.id, record);
    }
    return Promise.resolve(true);
  }

  saveStep(input: StepInput): Promise<boolean> {
    const record = this.#owned(input, this.clock.now());
    if (record === undefined) return Promise.resolve(false);
    (record.steps ??= {})[input.name] = input.value;
    return Promise.resolve(true);
  }

  inspect(id: string): Promise<StoredRecord | undefined> {
    const record = this.#live(id, this.clock.now());
    if (record === undefined) return Promise.resolve(undefined);
    const common = { fingerprint: record.fingerprint, owner: record.owner, fence: record.fence, expiresAt: record.expiresAt, steps: { ...record.steps } };
    return Promise.resolve(record.state === 'completed'
      ? { state: 'completed', ...common, response: record.response!, completedAt: record.completedAt }
      : { state: 'in_progress', ...common, leaseExpiresAt: record.leaseExpiresAt });
  }

  /** Removes every expired record; returns how many. */
  sweep(): number {
    const now = this.clock.now();
    let removed = 0;
    for (const [id, record] of this.#records) {
      if (record.expiresAt <= now) {
        this.#records.delete(id);
        removed++;
      }
    }
    return removed;
  }

  /** Forgets everything (what a process restart does to this store). */
  clear(): void {
    this.#records.clear();
  }

  #sweepFront(now: number, limit: number): void {
    let n = 0;
    for (const [id, record] of this.#records) {
      if (record.expiresAt > now || n >= limit) return;
      this.#records.delete(id);
      n++;
    }
  }

  /** The record if `input.owner` holds it in progress (an expired lease still counts until someone takes it over). */
  #owned(input: OwnerInput, now: number): MemoryRecord | undefined {
    const record = this.#live(input.id, now);
    if (record === undefined || record.state !== 'in_progress' || record.owner !== input.owner || input.owner === '') return undefined;
    return record;
  }

  #live(id: string, now: number): MemoryRecord | undefined {
    const record = this.#records.get(id);
    return record !== undefined && record.expiresAt > now ? record : undefined;
  }

  /** (Re)inserts at the end, keeping the Map in expiry order. */
  #put(id: string, record: MemoryRecord): void {
    this.#records.delete(id);
    this.#records.set(id, record);
  }
}

export function memoryIdempotencyStore(options?: MemoryIdempotencyStoreOptions): MemoryIdempotencyStore {
  return new MemoryIdempotencyStore(options);
}
