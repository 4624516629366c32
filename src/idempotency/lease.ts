import { DeadlineEntry } from '../core/deadline-queue.js';
import type { ResponseInput } from './codec.js';
import { LeaseLostError } from './errors.js';
import type { IdempotencyScope } from './types.js';

export type LeaseStatus =
  /** Held; the handler may run, save steps and complete. */
  | 'active'
  | 'completed'
  | 'released'
  /** The store rejected this owner: another worker took over. Roll back whatever you were about to commit. */
  | 'lost'
  /** The completion could not be recorded (store down); the record stays in progress until the lease expires. */
  | 'abandoned';

/** The writes a lease makes, as LEASE_LOST names them. */
export type LeaseOperation = 'complete' | 'step' | 'renew' | 'release';

/** What a lease asks of the engine that granted it: one object per engine. */
export interface LeaseEngine {
  step<T>(lease: Lease, name: string, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T>;
  complete(lease: Lease, response: ResponseInput): Promise<void>;
  release(lease: Lease): Promise<void>;
  renew(lease: Lease): Promise<void>;
  /** A store-specific path (a database transaction) committed the completion. */
  completedElsewhere(lease: Lease): void;
  /** A store-specific write (a database transaction) was fenced off. */
  lostElsewhere(lease: Lease): void;
}

/** What a successful claim grants: everything a lease is made of. */
export interface LeaseGrant {
  engine: LeaseEngine;
  id: string;
  scope: IdempotencyScope;
  fingerprint: string;
  owner: string;
  fence: number;
  takeover: boolean;
  /** Steps saved by earlier owners. */
  steps: Readonly<Record<string, string>>;
  leaseMs: number;
  ttlMs: number;
  /** Local time of the claim. */
  claimedAt: number;
  /** The claim's version of the record, if the store gave one. */
  version: string | undefined;
  /** Runs when the lease's renewal falls due in the engine's renewal queue. */
  onRenewalDue: (entry: DeadlineEntry) => void;
}

/**
 * The engine's bookkeeping of one lease, out of the lease's public face (`leaseState(lease)`
 * reaches it; the package does not export it). Also the lease's entry in the engine's renewal
 * queue, so a renewed lease costs no second object.
 */
export class LeaseState extends DeadlineEntry {
  status: LeaseStatus = 'active';
  /** Local time of the last successful claim or renewal. */
  renewedAt: number;
  /** The claim's `version` of the record; forgotten at this lease's next other write. */
  storeVersion: string | undefined;
  /** Saved steps by name (encoded), created on the first one. */
  steps: Map<string, string> | undefined;
  /** Aborted when the lease is lost; created when `lease.signal` is first read. */
  controller: AbortController | undefined;

  constructor(readonly lease: Lease, grant: LeaseGrant) {
    super(0, grant.onRenewalDue);
    this.renewedAt = grant.claimedAt;
    this.storeVersion = grant.version;
    const steps = grant.steps;
    for (const name in steps) (this.steps ??= new Map()).set(name, steps[name]!);
  }

  setStatus(status: LeaseStatus, lostDuring: LeaseOperation = 'renew'): void {
    this.status = status;
    if (status === 'lost') this.controller?.abort(new LeaseLostError(this.lease.id, lostDuring));
  }

  /** Renewal failed for longer than the lease: someone may own the record now. */
  signalExpired(): void {
    this.controller?.abort(new LeaseLostError(this.lease.id, 'renew'));
  }
}

let stateOf: (lease: Lease) => LeaseState;

/** The engine's view of a lease (for the engine only). */
export function leaseState(lease: Lease): LeaseState {
  return stateOf(lease);
}

/**
 * Ownership of one IN_PROGRESS record: the fencing token, the saved steps, and the operations
 * that need ownership. Created by `IdempotencyEngine.claim`.
 */
export class Lease {
  readonly id: string;
  readonly scope: IdempotencyScope;
  readonly fingerprint: string;
  /** The fencing token: the store accepts writes only from the current owner. */
  readonly owner: string;
  /** 1 for the first owner, +1 for each takeover. Handy as a fencing number for your own writes. */
  readonly fence: number;
  /** True when a previous owner's lease ran out (it crashed, or failed after saving steps). */
  readonly takeover: boolean;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly #engine: LeaseEngine;
  readonly #state: LeaseState;

  static {
    stateOf = (lease) => lease.#state;
  }

  /** Use `IdempotencyEngine.claim`, which grants leases. @internal */
  constructor(grant: LeaseGrant) {
    this.#engine = grant.engine;
    this.id = grant.id;
    this.scope = grant.scope;
    this.fingerprint = grant.fingerprint;
    this.owner = grant.owner;
    this.fence = grant.fence;
    this.takeover = grant.takeover;
    this.leaseMs = grant.leaseMs;
    this.ttlMs = grant.ttlMs;
    this.#state = new LeaseState(this, grant);
  }

  get status(): LeaseStatus {
    return this.#state.status;
  }

  get active(): boolean {
    return this.#state.status === 'active';
  }

  /** Aborted when the lease is lost (or could not be renewed for longer than leaseMs). Created on first use. */
  get signal(): AbortSignal {
    const state = this.#state;
    if (state.controller === undefined) {
      state.controller = new AbortController();
      if (state.status === 'lost') state.controller.abort(new LeaseLostError(this.id, 'renew'));
    }
    return state.controller.signal;
  }

  /** Names of the steps already done (by this or a previous owner). */
  get completedSteps(): string[] {
    const steps = this.#state.steps;
    return steps === undefined ? [] : [...steps.keys()];
  }

  /** Runs `fn` once per key: if a previous attempt saved this step, returns its saved result instead. */
  step<T>(name: string, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
    return this.#engine.step(this, name, fn);
  }

  complete(response: ResponseInput): Promise<void> {
    return this.#engine.complete(this, response);
  }

  release(): Promise<void> {
    return this.#engine.release(this);
  }

  renew(): Promise<void> {
    return this.#engine.renew(this);
  }

  /**
   * Marks the lease completed after a store-specific completion committed (the PostgreSQL and
   * SQLite stores' transactional completion): stops renewal; `complete` becomes a no-op.
   */
  markCompleted(): void {
    this.#engine.completedElsewhere(this);
  }

  /**
   * Marks the lease lost after a store-specific write was fenced off (transactional
   * completion): stops renewal, aborts `signal`.
   */
  markLost(): void {
    this.#engine.lostElsewhere(this);
  }
}
