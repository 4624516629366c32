import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { InvalidInputError, InvalidOptionsError, StoreUnavailableError } from '../core/errors.js';
import type { Event } from '../core/events.js';
import { errorCode, PolicyTelemetry, type Instrumented, type PolicyEvent, type PolicyIdentity, type PolicyOutcome } from '../core/telemetry.js';
import type { Policy } from '../core/policy.js';
import { nonNegative, positive, positiveInt } from '../core/validate.js';
import { decodeResponse, decodeStep, encodeResponse, encodeStep, normalizeResponse, type ResponseInput, type StoredResponse } from './codec.js';
import { IdempotencyConflictError, IdempotencyMismatchError, LeaseLostError } from './errors.js';
import { defaultStoreGuard, toStoreUnavailable } from './store-guard.js';
import { recordId } from './scope.js';
import type { ClaimResult, IdempotencyScope, IdempotencyStore, OwnerInput } from './types.js';
import { sleep } from '../core/abort.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';

export interface IdempotencyEngineOptions extends PolicyIdentity {
  store: IdempotencyStore;
  /**
   * How long an IN_PROGRESS lease lasts without renewal: a crashed worker's request can be
   * retried this long after its last renewal. This is the only expiry of a lease (one source of
   * truth, on the store's clock). Default 30 000.
   */
  leaseMs?: number;
  /** How long a record (and its replayable response) is kept. Match it to your clients' retry window. Default 24 h. */
  ttlMs?: number;
  /**
   * While a handler runs, its lease is renewed this often (by one shared, unref'd timer for all
   * leases). Must be below `leaseMs`. `false` disables automatic renewal. Default leaseMs / 3.
   */
  renewEveryMs?: number | false;
  /**
   * Wraps every call to the store. Default for network stores (`store.remote`): a breaker
   * around a `storeTimeoutMs` timeout (see `defaultStoreGuard`); none for in-process stores.
   * `null` disables it.
   */
  guard?: Policy | null;
  /** Timeout of each store call in the default guard. Default 1000. */
  storeTimeoutMs?: number;
  /**
   * Attempts to record a completion when the store fails (the handler has already run, so the
   * engine tries hard to record it). Completions are fenced and idempotent, so re-sending is
   * safe. Default 3.
   */
  completeAttempts?: number;
  /** Clock for renewal and waiting. Leases themselves are timed by the store's clock. */
  clock?: Clock;
  /**
   * Makes owner (fencing) tokens. Default `crypto.randomUUID`. Tokens must be unique across
   * processes, so this is deliberately not the seedable `Random`.
   */
  newOwnerToken?: () => string;
}

export interface ClaimOptions {
  /**
   * When another worker holds the lease, poll until it finishes (then replay it, or take over
   * if it was released) for up to this long. Default 0: answer `in-progress` at once.
   */
  waitMs?: number;
  /** Poll interval while waiting. Default 50. */
  pollMs?: number;
  /** Stops waiting (the claim rejects with ABORTED). */
  signal?: AbortSignal;
}

/** The result of a claim. */
export type ClaimOutcome =
  /** Run the operation: the lease is yours (a `takeover` when a previous owner's lease ran out). */
  | { kind: 'new'; lease: Lease }
  /** Another worker holds a live lease. */
  | { kind: 'in-progress'; retryAfterMs: number }
  /** It already finished: replay `response`. */
  | { kind: 'completed'; response: StoredResponse; completedAt: number }
  /** The key belongs to a different request (fingerprint differs). */
  | { kind: 'mismatch' };

export type { ResponseInput } from './codec.js';

export type LeaseStatus =
  /** Held; the handler may run, save steps and complete. */
  | 'active'
  | 'completed'
  | 'released'
  /** The store rejected this owner: another worker took over. Roll back whatever you were about to commit. */
  | 'lost'
  /** The completion could not be recorded (store down); the record stays in progress until the lease expires. */
  | 'abandoned';

export interface ClaimEvent {
  id: string;
  outcome: 'acquired' | 'takeover' | 'busy' | 'completed' | 'mismatch';
}

export interface LeaseLostEvent {
  id: string;
  operation: 'complete' | 'step' | 'renew' | 'release';
}

export interface StoreErrorEvent {
  operation: 'claim' | 'complete' | 'release' | 'renew' | 'step';
  error: StoreUnavailableError;
}

/** What an engine's claims found, and what went wrong, since it was built. */
export interface IdempotencyStats {
  /** Claims by what they found. */
  claims: Record<ClaimEvent['outcome'], number>;
  /** Writes refused because another worker owned the record by then. */
  leasesLost: number;
  /** Store calls that failed or timed out (or met an open breaker). */
  storeErrors: number;
  /** Leases renewed in the background now (handlers running). */
  inFlight: number;
}

/** How each claim result reads on a dashboard: a replay answers instead of the handler, a busy or mismatched key is refused. */
const CLAIM_OUTCOMES: Readonly<Record<ClaimEvent['outcome'], PolicyOutcome>> = {
  acquired: 'success',
  takeover: 'success',
  completed: 'substituted',
  busy: 'rejected',
  mismatch: 'rejected',
};

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
  /** @internal its place in the engine's renewal queue */
  renewal: Renewal | undefined;
  /** @internal local time of the last successful claim/renewal */
  renewedAt: number;
  /** @internal the claim's `version` of the record; forgotten at this lease's next other write */
  storeVersion: string | undefined;
  #status: LeaseStatus = 'active';
  #controller: AbortController | undefined;
  #steps: Map<string, string> | undefined;
  readonly #engine: IdempotencyEngine;

  /** @internal use IdempotencyEngine.claim */
  constructor(engine: IdempotencyEngine, id: string, scope: IdempotencyScope, fingerprint: string, owner: string, fence: number, takeover: boolean, steps: Readonly<Record<string, string>>, now: number) {
    this.#engine = engine;
    this.id = id;
    this.scope = scope;
    this.fingerprint = fingerprint;
    this.owner = owner;
    this.fence = fence;
    this.takeover = takeover;
    this.leaseMs = engine.leaseMs;
    this.ttlMs = engine.ttlMs;
    this.renewedAt = now;
    this.storeVersion = undefined;
    let map: Map<string, string> | undefined;
    for (const name in steps) (map ??= new Map()).set(name, steps[name]!);
    this.#steps = map;
  }

  get status(): LeaseStatus {
    return this.#status;
  }

  get active(): boolean {
    return this.#status === 'active';
  }

  /** Aborted when the lease is lost (or could not be renewed for longer than leaseMs). Created on first use. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#status === 'lost') this.#controller.abort(new LeaseLostError(this.id, 'renew'));
    }
    return this.#controller.signal;
  }

  /** Names of the steps already done (by this or a previous owner). */
  get completedSteps(): string[] {
    return this.#steps === undefined ? [] : [...this.#steps.keys()];
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
    this.#engine.markCompleted(this);
  }

  /**
   * Marks the lease lost after a store-specific write was fenced off (transactional
   * completion): stops renewal, aborts `signal`.
   */
  markLost(): void {
    this.#engine.markLost(this);
  }

  /** @internal */
  savedStep(name: string): string | undefined {
    return this.#steps?.get(name);
  }

  /** @internal */
  rememberStep(name: string, encoded: string): void {
    (this.#steps ??= new Map()).set(name, encoded);
  }

  /** @internal the engine moves the lease through its states */
  setStatus(status: LeaseStatus, lostDuring: LeaseLostEvent['operation'] = 'renew'): void {
    this.#status = status;
    if (status === 'lost') this.#controller?.abort(new LeaseLostError(this.id, lostDuring));
  }

  /** @internal renewal failed for longer than the lease: someone may own it now */
  signalExpired(): void {
    this.#controller?.abort(new LeaseLostError(this.id, 'renew'));
  }
}

/** A lease's entry in the renewal queue. */
class Renewal extends DeadlineEntry {
  constructor(deadline: number, onExpire: (entry: DeadlineEntry) => void, readonly lease: Lease) {
    super(deadline, onExpire);
  }
}

/**
 * The framework-neutral idempotency engine: claim a key, run once, complete (or release), and
 * replay for duplicates. HTTP semantics live in `http.ts`; stores in `stores/`.
 */
export class IdempotencyEngine implements Instrumented {
  readonly kind = 'idempotency';
  readonly name: string | undefined;
  readonly store: IdempotencyStore;
  readonly leaseMs: number;
  readonly ttlMs: number;
  readonly renewEveryMs: number | false;
  readonly clock: Clock;
  readonly #guard: Policy | undefined;
  /** Whether store calls get the guard's signal (only stores that can use it: see `cancellable`). */
  readonly #passSignal: boolean;
  readonly #completeAttempts: number;
  readonly #newOwner: () => string;
  /** Active leases in renewal order, one timer for all (an intrusive list: no per-request Set entry). */
  readonly #renewals: DeadlineQueue;

  readonly #claims: Record<ClaimEvent['outcome'], number> = { acquired: 0, takeover: 0, completed: 0, busy: 0, mismatch: 0 };
  #leasesLost = 0;
  #storeErrors = 0;
  readonly #telemetry: PolicyTelemetry;
  readonly #onClaim;
  readonly #onLeaseLost;
  readonly #onStoreError;
  /** `claim`, `lease-lost` and `store-error`, in the uniform shape (never with a key). */
  readonly onEvent: Event<PolicyEvent>;
  /** Every claim and what it found. */
  readonly onClaim: Event<ClaimEvent>;
  /** A write was rejected because another worker owns the record now. */
  readonly onLeaseLost: Event<LeaseLostEvent>;
  /** The store failed or timed out (or its breaker is open). */
  readonly onStoreError: Event<StoreErrorEvent>;

  constructor(options: IdempotencyEngineOptions) {
    this.name = options?.name;
    this.#telemetry = new PolicyTelemetry(this, options);
    this.onEvent = this.#telemetry.onEvent;
    this.#onClaim = this.#telemetry.emitter<ClaimEvent>('claim', (e) => ({ outcome: CLAIM_OUTCOMES[e.outcome], attributes: { result: e.outcome } }));
    this.#onLeaseLost = this.#telemetry.emitter<LeaseLostEvent>('lease-lost', (e) => ({ outcome: 'failure', attributes: { operation: e.operation } }));
    this.#onStoreError = this.#telemetry.emitter<StoreErrorEvent>('store-error', (e) => ({
      outcome: 'failure',
      // The store's own failure (TIMEOUT, CIRCUIT_OPEN, ECONNREFUSED's error) rather than the STORE_UNAVAILABLE around it.
      attributes: { operation: e.operation, code: errorCode(e.error.cause ?? e.error) },
    }));
    this.onClaim = this.#onClaim.event;
    this.onLeaseLost = this.#onLeaseLost.event;
    this.onStoreError = this.#onStoreError.event;
    const store = options?.store;
    if (!store || typeof store.claim !== 'function') throw new InvalidOptionsError('idempotency: options.store must be an IdempotencyStore');
    this.store = store;
    this.clock = options.clock ?? systemClock;
    this.#renewals = new DeadlineQueue(this.clock);
    this.leaseMs = positive('idempotency.leaseMs', options.leaseMs, 30_000);
    this.ttlMs = positive('idempotency.ttlMs', options.ttlMs, 86_400_000);
    if (options.renewEveryMs === false) {
      this.renewEveryMs = false;
    } else {
      this.renewEveryMs = positive('idempotency.renewEveryMs', options.renewEveryMs, this.leaseMs / 3);
      if (this.renewEveryMs >= this.leaseMs) throw new InvalidOptionsError(`idempotency.renewEveryMs (${this.renewEveryMs}) must be below leaseMs (${this.leaseMs})`);
    }
    this.#completeAttempts = positiveInt('idempotency.completeAttempts', options.completeAttempts, 3);
    const storeTimeoutMs = positive('idempotency.storeTimeoutMs', options.storeTimeoutMs, 1000);
    if (options.guard === null) this.#guard = undefined;
    else if (options.guard !== undefined) this.#guard = options.guard;
    else this.#guard = store.remote ? defaultStoreGuard(store, { timeoutMs: storeTimeoutMs, clock: this.clock }) : undefined;
    this.#passSignal = store.cancellable === true;
    if (options.newOwnerToken !== undefined && typeof options.newOwnerToken !== 'function') throw new InvalidOptionsError('idempotency.newOwnerToken must be a function');
    this.#newOwner = options.newOwnerToken ?? randomUUID;
  }

  /** Leases currently renewed in the background (in-flight handlers). */
  get inFlight(): number {
    return this.#renewals.size;
  }

  /**
   * Claims `scope` for a request with `fingerprint`: atomically NOT_SEEN → IN_PROGRESS (yours),
   * or tells you it is in progress elsewhere, completed (replay), or a different request.
   * Rejects with STORE_UNAVAILABLE when the store fails.
   */
  async claim(scope: IdempotencyScope, fingerprint: string, options?: ClaimOptions): Promise<ClaimOutcome> {
    const id = recordId(scope);
    if (typeof fingerprint !== 'string' || fingerprint.length === 0) throw new InvalidInputError('idempotency: fingerprint must be a non-empty string');
    const owner = this.#newOwner();
    const input = { id, fingerprint, owner, leaseMs: this.leaseMs, ttlMs: this.ttlMs };
    const waitMs = options?.waitMs === undefined ? 0 : nonNegative('claim.waitMs', options.waitMs, 0, InvalidInputError);
    const waitUntil = waitMs > 0 ? this.clock.now() + waitMs : 0;
    for (;;) {
      let result;
      const sent: { claim?: Promise<ClaimResult> } = {};
      try {
        result = await this.#call((signal) => (sent.claim = this.store.claim(input, signal)));
      } catch (error) {
        if (sent.claim !== undefined) this.#releaseIfItLands(sent.claim, input);
        throw this.#storeError('claim', error);
      }
      switch (result.kind) {
        case 'acquired': {
          const lease = new Lease(this, id, scope, fingerprint, owner, result.fence, result.takeover, result.steps, this.clock.now());
          lease.storeVersion = result.version;
          if (this.renewEveryMs !== false) this.#schedule(lease);
          this.#claimed(id, result.takeover ? 'takeover' : 'acquired');
          return { kind: 'new', lease };
        }
        case 'completed':
          this.#claimed(id, 'completed');
          return { kind: 'completed', response: decodeResponse(result.response), completedAt: result.completedAt };
        case 'mismatch':
          this.#claimed(id, 'mismatch');
          return { kind: 'mismatch' };
        case 'busy': {
          const now = this.clock.now();
          if (waitUntil > now) {
            const pollMs = positive('claim.pollMs', options?.pollMs, 50, InvalidInputError);
            await sleep(this.clock, Math.min(pollMs, Math.max(1, result.retryAfterMs), waitUntil - now), options?.signal);
            continue;
          }
          this.#claimed(id, 'busy');
          return { kind: 'in-progress', retryAfterMs: result.retryAfterMs };
        }
      }
    }
  }

  /**
   * Records the response and ends the lease. Throws LEASE_LOST when another worker took the
   * record over (this owner's result must not be used as the answer), STORE_UNAVAILABLE when it
   * could not be recorded after `completeAttempts` tries. A no-op when already completed (e.g.
   * inside a database transaction by the PostgreSQL store).
   */
  async complete(lease: Lease, response: ResponseInput): Promise<void> {
    if (lease.status === 'completed') return;
    if (lease.status !== 'active') throw new LeaseLostError(lease.id, 'complete');
    const encoded = encodeResponse(normalizeResponse(response));
    const input = { id: lease.id, owner: lease.owner, response: encoded, ttlMs: lease.ttlMs, version: lease.storeVersion };
    let ok: boolean;
    for (let attempt = 1; ; attempt++) {
      try {
        ok = await this.#call((signal) => this.store.complete(input, signal));
        break;
      } catch (error) {
        const failure = this.#storeError('complete', error);
        if (attempt >= this.#completeAttempts) {
          this.#end(lease, 'abandoned');
          throw failure;
        }
        await sleep(this.clock, 25 * 4 ** (attempt - 1));
      }
    }
    if (!ok) {
      this.#lost(lease, 'complete');
      throw new LeaseLostError(lease.id, 'complete');
    }
    this.#end(lease, 'completed');
  }

  /**
   * Ends the lease without a response (the operation failed and may be retried). Records with
   * saved steps are kept so the retry skips those steps. A no-op for a lease that is no longer
   * active. Rejects with STORE_UNAVAILABLE when the store fails (the lease then simply expires).
   */
  async release(lease: Lease): Promise<void> {
    if (lease.status !== 'active') return;
    this.#end(lease, 'released');
    try {
      await this.#call((signal) => this.store.release({ id: lease.id, owner: lease.owner }, signal));
    } catch (error) {
      throw this.#storeError('release', error);
    }
  }

  /** Extends the lease now (automatic renewal does this in the background). Throws LEASE_LOST if it is gone. */
  async renew(lease: Lease): Promise<void> {
    if (lease.status !== 'active') throw new LeaseLostError(lease.id, 'renew');
    const startedAt = this.clock.now();
    lease.storeVersion = undefined; // the record changes (or may have, if the call fails)
    let ok: boolean;
    try {
      ok = await this.#call((signal) => this.store.renew({ id: lease.id, owner: lease.owner, leaseMs: lease.leaseMs }, signal));
    } catch (error) {
      throw this.#storeError('renew', error);
    }
    if (!ok) {
      this.#lost(lease, 'renew');
      throw new LeaseLostError(lease.id, 'renew');
    }
    lease.renewedAt = startedAt;
  }

  /**
   * Runs one step of a multi-step operation at most once per key (per successful save): if
   * the step's result was saved by this or an earlier owner, returns it without calling `fn`.
   * Results must be JSON-serializable. If the save is rejected (LEASE_LOST) the step ran but
   * another worker owns the record now.
   */
  async step<T>(lease: Lease, name: string, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw new InvalidInputError('idempotency: step name must be a string of 1..200 characters');
    const saved = lease.savedStep(name);
    if (saved !== undefined) return decodeStep<T>(saved);
    if (lease.status !== 'active') throw new LeaseLostError(lease.id, 'step');
    const value = await fn(lease.signal);
    const encoded = encodeStep(value);
    lease.storeVersion = undefined;
    let ok: boolean;
    try {
      ok = await this.#call((signal) => this.store.saveStep({ id: lease.id, owner: lease.owner, name, value: encoded }, signal));
    } catch (error) {
      throw this.#storeError('step', error);
    }
    if (!ok) {
      this.#lost(lease, 'step');
      throw new LeaseLostError(lease.id, 'step');
    }
    lease.rememberStep(name, encoded);
    return value;
  }

  /**
   * Claim, run, complete — for non-HTTP callers (queue consumers, jobs). A duplicate gets the
   * stored value back (`replayed: true`); a concurrent duplicate throws IDEMPOTENCY_CONFLICT
   * (unless `waitMs`), a different request with the same key IDEMPOTENCY_MISMATCH. If `fn`
   * throws, the record is released (steps kept) and the error rethrown.
   */
  async run<T>(scope: IdempotencyScope, fingerprint: string, fn: (lease: Lease) => Promise<T> | T, options?: ClaimOptions): Promise<RunResult<T>> {
    const outcome = await this.claim(scope, fingerprint, options);
    switch (outcome.kind) {
      case 'completed':
        return { value: outcome.response.body as T, replayed: true, completedAt: outcome.completedAt };
      case 'in-progress':
        throw new IdempotencyConflictError(outcome.retryAfterMs);
      case 'mismatch':
        throw new IdempotencyMismatchError();
    }
    const lease = outcome.lease;
    let value: T;
    try {
      value = await fn(lease);
    } catch (error) {
      await this.release(lease).catch(() => {}); // the original error matters more; the lease expires anyway
      throw error;
    }
    await this.complete(lease, { status: 200, body: value });
    return { value, replayed: false, completedAt: undefined };
  }

  stats(): IdempotencyStats {
    return { claims: { ...this.#claims }, leasesLost: this.#leasesLost, storeErrors: this.#storeErrors, inFlight: this.#renewals.size };
  }

  describe(): { kind: 'idempotency'; name?: string; options: Record<string, unknown> } {
    return {
      kind: 'idempotency',
      ...(this.name !== undefined ? { name: this.name } : {}),
      options: { store: this.store.name, leaseMs: this.leaseMs, ttlMs: this.ttlMs, renewEveryMs: this.renewEveryMs, guarded: this.#guard !== undefined },
    };
  }

  // ------------------------------------------------------------------------------------------

  /** Runs a store call under the guard; for a cancellable store, `signal` aborts when the guard gives up on it (timeout). */
  async #call<T>(operation: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    if (this.#guard === undefined) return operation(undefined);
    return this.#passSignal ? this.#guard.execute((ctx) => operation(ctx.signal)) : this.#guard.execute(() => operation(undefined));
  }

  /**
   * A claim the engine gave up on may still succeed (a store that cannot cancel, or a cancel
   * that lost the race with the commit). Nobody will use that lease, yet it would hold the key
   * for a whole lease, answering every retry "in progress": release it as soon as it lands.
   * The release is fenced by the claim's owner token, so it never touches anyone else's claim.
   */
  #releaseIfItLands(claim: Promise<ClaimResult>, owner: OwnerInput): void {
    claim.then((result) => {
      if (result.kind !== 'acquired') return;
      this.#call((signal) => this.store.release({ id: owner.id, owner: owner.owner }, signal)).catch((error: unknown) => {
        this.#storeError('release', error);
      });
    }, () => {}); // a claim that failed left nothing behind
  }

  #claimed(id: string, outcome: ClaimEvent['outcome']): void {
    this.#claims[outcome]++;
    if (this.#onClaim.active) this.#onClaim.emit({ id, outcome });
  }

  #storeError(operation: StoreErrorEvent['operation'], error: unknown): StoreUnavailableError {
    const failure = toStoreUnavailable(this.store, error);
    this.#storeErrors++;
    if (this.#onStoreError.active) this.#onStoreError.emit({ operation, error: failure });
    return failure;
  }

  #lost(lease: Lease, operation: LeaseLostEvent['operation']): void {
    lease.setStatus('lost', operation);
    if (lease.renewal !== undefined) this.#renewals.remove(lease.renewal);
    this.#leasesLost++;
    if (this.#onLeaseLost.active) this.#onLeaseLost.emit({ id: lease.id, operation });
  }

  #end(lease: Lease, status: LeaseStatus): void {
    lease.setStatus(status);
    if (lease.renewal !== undefined) this.#renewals.remove(lease.renewal);
  }

  /** @internal marks a lease completed by a store-specific path (a database transaction). */
  markCompleted(lease: Lease): void {
    if (lease.status === 'active') this.#end(lease, 'completed');
  }

  /** @internal a store-specific write (a database transaction) was fenced off. */
  markLost(lease: Lease): void {
    if (lease.status === 'active') this.#lost(lease, 'complete');
  }

  #schedule(lease: Lease): void {
    const at = this.clock.now() + (this.renewEveryMs as number);
    if (lease.renewal === undefined) lease.renewal = new Renewal(at, this.#renewDue, lease);
    else lease.renewal.deadline = at;
    this.#renewals.add(lease.renewal);
  }

  readonly #renewDue = (entry: DeadlineEntry): void => {
    this.#renewInBackground((entry as Renewal).lease);
  };

  #renewInBackground(lease: Lease): void {
    const startedAt = this.clock.now();
    lease.storeVersion = undefined;
    this.#call((signal) => this.store.renew({ id: lease.id, owner: lease.owner, leaseMs: lease.leaseMs }, signal)).then(
      (ok) => {
        if (!lease.active) return;
        if (!ok) {
          this.#lost(lease, 'renew');
          return;
        }
        lease.renewedAt = startedAt;
        this.#schedule(lease);
      },
      (error) => {
        if (!lease.active) return;
        this.#storeError('renew', error);
        // Keep trying; past the lease's own expiry another worker may have taken over, so tell
        // the handler (its completion will be fenced if so).
        if (this.clock.now() - lease.renewedAt >= lease.leaseMs) lease.signalExpired();
        this.#schedule(lease);
      },
    );
  }
}

export type RunResult<T> =
  | { value: T; replayed: false; completedAt: undefined }
  | { value: T; replayed: true; completedAt: number };

export function idempotencyEngine(options: IdempotencyEngineOptions): IdempotencyEngine {
  return new IdempotencyEngine(options);
}
