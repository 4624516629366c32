import type { ResponseInput } from './codec.js';

/**
 * The contract between the idempotency engine and its stores. Stores are deliberately dumb
 * about HTTP and encoding: they keep opaque strings (the engine encodes responses and step
 * results), and each operation is one atomic step on the store's own clock, so the lease
 * expiry has exactly one source of truth (a design with a "stale" threshold and a separate expiry
 * has a window where both workers believe they own the key; there is no second threshold here).
 */

/** Who is asking and for what: one caller can never read or replay another caller's record. */
export interface IdempotencyScope {
  /** The authenticated principal/tenant. null or '' means anonymous (all anonymous callers share one space). */
  principal: string | null | undefined;
  /** HTTP method (or any operation verb), compared case-insensitively. */
  method: string;
  /** The route template (`/orders/:id`) or path the key is valid for. */
  route: string;
  /** The idempotency key itself. */
  key: string;
}

export interface ClaimInput {
  /** Record id: the encoded scope (see `recordId`). */
  id: string;
  fingerprint: string;
  /** A fresh random token that identifies this claimant (the fencing token). */
  owner: string;
  leaseMs: number;
  ttlMs: number;
}

/**
 * What a claim found.
 * - `acquired`: the caller now owns the lease. `takeover` when a previous owner's lease ran
 *   out (crash, release with steps); `steps` holds the step results the previous owners saved.
 * - `busy`: someone else holds a live lease.
 * - `completed`: the request already finished; `response` replays it.
 * - `mismatch`: the record belongs to a different request (fingerprint differs).
 *
 * `version` (optional, opaque, store-defined): the record as this claim left it. The engine
 * hands it back in `CompleteInput.version` unless it has written anything else for the lease
 * since (a renewal or a step, even one that failed), so a store can complete with a cheaper
 * write when the record is still exactly that. A store must stay correct when the version it
 * gets is absent, stale or someone else's.
 */
export type ClaimResult =
  | { kind: 'acquired'; fence: number; takeover: boolean; leaseExpiresAt: number; steps: Readonly<Record<string, string>>; version?: string }
  | { kind: 'busy'; retryAfterMs: number }
  | { kind: 'completed'; response: string; completedAt: number }
  | { kind: 'mismatch' };

export interface OwnerInput {
  id: string;
  owner: string;
}

export interface CompleteInput extends OwnerInput {
  /** The encoded response. */
  response: string;
  /** How long the completed record is kept (counted from the completion). */
  ttlMs: number;
  /** The `version` of the claim's result, while nothing else was written for the lease. */
  version?: string | undefined;
}

export interface StepInput extends OwnerInput {
  name: string;
  /** The encoded step result. */
  value: string;
}

export interface RenewInput extends OwnerInput {
  leaseMs: number;
}

/**
 * A store of idempotency records. Every method is atomic. Methods that take an owner
 * return false when the caller is not the current owner of an in-progress record (fencing):
 * the lease expired and was taken over, the record was released, or it is gone.
 *
 * The writes take an optional `signal`, aborted when the engine's bound on the call fires (the
 * caller has given up), for stores that set `cancellable`. Such a store stops its work there
 * (the PostgreSQL store cancels the statement and frees its connection). For any store, the
 * engine has already answered by then, and it releases a claim that lands after it gave up.
 */
export interface IdempotencyStore {
  /** For describe(), logs and errors. */
  readonly name: string;
  /**
   * Network stores (Redis, PostgreSQL) can hang or fail; the engine wraps their calls in a
   * short timeout (and a breaker) by default. In-process stores (memory, SQLite) cannot hang.
   */
  readonly remote: boolean;
  /**
   * True when the store can stop a call whose `signal` aborts: the engine then passes one with
   * every guarded call. Unset, it passes none, as creating an AbortSignal costs microseconds
   * per call, a real share of a Redis round trip, for a store that would ignore it.
   */
  readonly cancellable?: boolean;
  claim(input: ClaimInput, signal?: AbortSignal): Promise<ClaimResult>;
  /**
   * Records the response. Idempotent for the same owner: completing twice with the same token
   * returns true (so a completion whose reply was lost can be retried safely).
   */
  complete(input: CompleteInput, signal?: AbortSignal): Promise<boolean>;
  /** Ends the lease without a response. The record is deleted unless steps were saved (then it is kept, ownerless, for the retry). */
  release(input: OwnerInput, signal?: AbortSignal): Promise<boolean>;
  /** Extends the lease to now + leaseMs on the store's clock. */
  renew(input: RenewInput, signal?: AbortSignal): Promise<boolean>;
  /** Saves one step's result on the in-progress record. */
  saveStep(input: StepInput, signal?: AbortSignal): Promise<boolean>;
  /** Reads a record (diagnostics and tests). */
  inspect(id: string): Promise<StoredRecord | undefined>;
  /**
   * Database stores only (PostgreSQL, SQLite): writes the completion inside the caller's open
   * transaction on `client`, fenced by the owner token (LEASE_LOST when this owner was fenced
   * off), so the business write and the record commit or roll back together. The caller
   * commits; the lease stays active until its owner says the request is done.
   */
  completeWithin?(client: unknown, lease: StoreLease, response: ResponseInput): Promise<void> | void;
  /** Frees resources the store created itself (timers, connections it opened). Never closes a client you passed in. */
  close?(): Promise<void>;
}

/**
 * What a store's transactional completion uses of the engine's `Lease`. Declared here, not
 * imported, so the store contract does not depend on the engine built on top of it.
 */
export interface StoreLease {
  readonly id: string;
  /** The fencing token the store's write is conditioned on. */
  readonly owner: string;
  readonly ttlMs: number;
  readonly active: boolean;
  /** Called when the store fenced the write off: another worker owns the record now. */
  markLost(): void;
}

/** A record as stored (diagnostics). Times are on the store's clock, in epoch milliseconds. */
export type StoredRecord =
  | {
    state: 'in_progress';
    fingerprint: string;
    /** '' after a release: nobody owns it, the next claim takes it over. */
    owner: string;
    fence: number;
    leaseExpiresAt: number;
    expiresAt: number;
    steps: Readonly<Record<string, string>>;
  }
  | {
    state: 'completed';
    fingerprint: string;
    owner: string;
    fence: number;
    response: string;
    completedAt: number;
    expiresAt: number;
    steps: Readonly<Record<string, string>>;
  };
