import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../core/clock.js';
import { CallContext } from '../core/context.js';
import { InvalidInputError, InvalidOptionsError, RetriesExhaustedError, StoreUnavailableError } from '../core/errors.js';
import type { Event } from '../core/events.js';
import { errorCode, PolicyTelemetry, type Instrumented, type PolicyEvent, type PolicyIdentity, type PolicyOutcome } from '../core/telemetry.js';
import { invokeOperation, type Next, type Policy } from '../core/policy.js';
import { retry, type RetryPolicy } from '../retry/retry.js';
import { fn, nonNegative, positive, positiveInt } from '../core/validate.js';
import { decodeResponse, decodeStep, encodeResponse, encodeStep, normalizeResponse, type ResponseInput, type StoredResponse } from './codec.js';
import { IdempotencyConflictError, IdempotencyMismatchError, LeaseLostError } from './errors.js';
import { defaultStoreGuard, toStoreUnavailable } from './store-guard.js';
import { recordId } from './scope.js';
import type { ClaimResult, IdempotencyScope, IdempotencyStore, OwnerInput } from './types.js';
import { sleep } from '../core/abort.js';
import { DeadlineQueue, type DeadlineEntry } from '../core/deadline-queue.js';
import { Lease, leaseState, type LeaseEngine, type LeaseOperation, type LeaseState, type LeaseStatus } from './lease.js';

export { Lease, type LeaseStatus, type LeaseOperation } from './lease.js';

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
   * engine tries hard to record it), 25 ms then 100 ms apart (×4 each time). Completions are
   * fenced and idempotent, so re-sending is safe. An open breaker is not retried. Default 3.
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

export interface ClaimEvent {
  id: string;
  outcome: 'acquired' | 'takeover' | 'busy' | 'completed' | 'mismatch';
}

export interface LeaseLostEvent {
  id: string;
  operation: LeaseOperation;
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
  /** Retries a completion's store write (outside the guard: each attempt is guarded). */
  readonly #completeRetry: RetryPolicy;
  /** One guarded store call for a context whose operation is the call (no closure per call). */
  readonly #guarded: Next<unknown>;
  readonly #newOwner: () => string;
  /** Active leases in renewal order, one timer for all (an intrusive list: no per-request Set entry). */
  readonly #renewals: DeadlineQueue;
  /** What the leases this engine grants ask of it; the two store-specific endings stay private. */
  readonly #leaseEngine: LeaseEngine = {
    step: (lease, name, fn) => this.step(lease, name, fn),
    complete: (lease, response) => this.complete(lease, response),
    release: (lease) => this.release(lease),
    renew: (lease) => this.renew(lease),
    completedElsewhere: (lease) => {
      const state = leaseState(lease);
      if (state.status === 'active') this.#end(state, 'completed');
    },
    lostElsewhere: (lease) => {
      const state = leaseState(lease);
      if (state.status === 'active') this.#lost(state, 'complete');
    },
  };

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
    const completeAttempts = positiveInt('idempotency.completeAttempts', options.completeAttempts, 3);
    const storeTimeoutMs = positive('idempotency.storeTimeoutMs', options.storeTimeoutMs, 1000);
    if (options.guard === null) this.#guard = undefined;
    else if (options.guard !== undefined) this.#guard = options.guard;
    else this.#guard = store.remote ? defaultStoreGuard(store, { timeoutMs: storeTimeoutMs, clock: this.clock }) : undefined;
    const guard = this.#guard;
    // Composed by hand rather than with pipeline(): a guard of the caller's may run on another clock.
    this.#guarded = guard === undefined ? invokeOperation : (context) => guard.run(context, invokeOperation);
    this.#completeRetry = retry({
      maxAttempts: completeAttempts,
      backoff: { kind: 'exponential', baseDelayMs: 25, factor: 4, jitter: 'none' },
      // Any store failure may be transient; Bulwark's own rejections (an open breaker) stay unretried.
      shouldRetry: () => true,
      clock: this.clock,
      name: 'idempotency-complete',
    });
    this.#completeRetry.onRetry((event) => { this.#storeError('complete', event.error); });
    this.#passSignal = store.cancellable === true;
    this.#newOwner = fn('idempotency.newOwnerToken', options.newOwnerToken, randomUUID);
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
          const lease = new Lease({
            engine: this.#leaseEngine, id, scope, fingerprint, owner, fence: result.fence, takeover: result.takeover, steps: result.steps,
            leaseMs: this.leaseMs, ttlMs: this.ttlMs, claimedAt: this.clock.now(), version: result.version, onRenewalDue: this.#renewDue,
          });
          if (this.renewEveryMs !== false) this.#schedule(leaseState(lease));
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
    const state = leaseState(lease);
    if (state.status === 'completed') return;
    if (state.status !== 'active') throw new LeaseLostError(lease.id, 'complete');
    const encoded = encodeResponse(normalizeResponse(response));
    const input = { id: lease.id, owner: lease.owner, response: encoded, ttlMs: lease.ttlMs, version: state.storeVersion };
    // The guard's signal, as #call gives it: only a cancellable store behind a guard gets one.
    const write = this.#passSignal && this.#guard !== undefined
      ? (context: CallContext) => this.store.complete(input, context.signal)
      : () => this.store.complete(input, undefined);
    let ok: boolean;
    try {
      ok = await this.#completeRetry.run(CallContext.root(this.clock, write), this.#guarded as Next<boolean>);
    } catch (error) {
      // Failed attempts before the last were reported as the retry went on (onRetry).
      const failure = this.#storeError('complete', error instanceof RetriesExhaustedError ? error.cause : error);
      this.#end(state, 'abandoned');
      throw failure;
    }
    if (!ok) {
      this.#lost(state, 'complete');
      throw new LeaseLostError(lease.id, 'complete');
    }
    this.#end(state, 'completed');
  }

  /**
   * Ends the lease without a response (the operation failed and may be retried). Records with
   * saved steps are kept so the retry skips those steps. A no-op for a lease that is no longer
   * active. Rejects with STORE_UNAVAILABLE when the store fails (the lease then simply expires).
   */
  async release(lease: Lease): Promise<void> {
    const state = leaseState(lease);
    if (state.status !== 'active') return;
    this.#end(state, 'released');
    try {
      await this.#call((signal) => this.store.release({ id: lease.id, owner: lease.owner }, signal));
    } catch (error) {
      throw this.#storeError('release', error);
    }
  }

  /** Extends the lease now (automatic renewal does this in the background). Throws LEASE_LOST if it is gone. */
  async renew(lease: Lease): Promise<void> {
    const state = leaseState(lease);
    if (state.status !== 'active') throw new LeaseLostError(lease.id, 'renew');
    const startedAt = this.clock.now();
    state.storeVersion = undefined; // the record changes (or may have, if the call fails)
    let ok: boolean;
    try {
      ok = await this.#call((signal) => this.store.renew({ id: lease.id, owner: lease.owner, leaseMs: lease.leaseMs }, signal));
    } catch (error) {
      throw this.#storeError('renew', error);
    }
    if (!ok) {
      this.#lost(state, 'renew');
      throw new LeaseLostError(lease.id, 'renew');
    }
    state.renewedAt = startedAt;
  }

  /**
   * Runs one step of a multi-step operation at most once per key (per successful save): if
   * the step's result was saved by this or an earlier owner, returns it without calling `fn`.
   * Results must be JSON-serializable. If the save is rejected (LEASE_LOST) the step ran but
   * another worker owns the record now.
   */
  async step<T>(lease: Lease, name: string, fn: (signal: AbortSignal) => Promise<T> | T): Promise<T> {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) throw new InvalidInputError('idempotency: step name must be a string of 1..200 characters');
    const state = leaseState(lease);
    const saved = state.steps?.get(name);
    if (saved !== undefined) return decodeStep<T>(saved);
    if (state.status !== 'active') throw new LeaseLostError(lease.id, 'step');
    const value = await fn(lease.signal);
    const encoded = encodeStep(value);
    state.storeVersion = undefined;
    let ok: boolean;
    try {
      ok = await this.#call((signal) => this.store.saveStep({ id: lease.id, owner: lease.owner, name, value: encoded }, signal));
    } catch (error) {
      throw this.#storeError('step', error);
    }
    if (!ok) {
      this.#lost(state, 'step');
      throw new LeaseLostError(lease.id, 'step');
    }
    (state.steps ??= new Map()).set(name, encoded);
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

  #lost(state: LeaseState, operation: LeaseOperation): void {
    state.setStatus('lost', operation);
    this.#renewals.remove(state);
    this.#leasesLost++;
    if (this.#onLeaseLost.active) this.#onLeaseLost.emit({ id: state.lease.id, operation });
  }

  #end(state: LeaseState, status: LeaseStatus): void {
    state.setStatus(status);
    this.#renewals.remove(state);
  }

  /** Queues the lease's next background renewal (its state is its entry in the queue). */
  #schedule(state: LeaseState): void {
    state.deadline = this.clock.now() + (this.renewEveryMs as number);
    this.#renewals.add(state);
  }

  readonly #renewDue = (entry: DeadlineEntry): void => {
    this.#renewInBackground(entry as LeaseState);
  };

  #renewInBackground(state: LeaseState): void {
    const lease = state.lease;
    const startedAt = this.clock.now();
    state.storeVersion = undefined;
    this.#call((signal) => this.store.renew({ id: lease.id, owner: lease.owner, leaseMs: lease.leaseMs }, signal)).then(
      (ok) => {
        if (state.status !== 'active') return;
        if (!ok) {
          this.#lost(state, 'renew');
          return;
        }
        state.renewedAt = startedAt;
        this.#schedule(state);
      },
      (error) => {
        if (state.status !== 'active') return;
        this.#storeError('renew', error);
        // Keep trying; past the lease's own expiry another worker may have taken over, so tell
        // the handler (its completion will be fenced if so).
        if (this.clock.now() - state.renewedAt >= lease.leaseMs) state.signalExpired();
        this.#schedule(state);
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
