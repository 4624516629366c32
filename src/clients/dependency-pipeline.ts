/**
 * What the guarded PostgreSQL and Redis clients share: the per-dependency pipeline
 * `retry (safe calls only) → breaker → bulkhead → timeout → call`, built once from options.
 * No client library is imported here.
 */
import type { Clock } from '../core/clock.js';
import { callSourceOf, deadlineOnClock, type CallContextSource, type CallOptions, type Operation } from '../core/context.js';
import { DeadlineExceededError, InvalidInputError, InvalidOptionsError, RetriesExhaustedError } from '../core/errors.js';
import { pipeline, type Pipeline, type PolicyDescription } from '../core/policy.js';
import type { Random } from '../core/random.js';
import type { Event } from '../core/events.js';
import { subscribeAll, type PolicyEvent, type PolicyRegistry } from '../core/telemetry.js';
import { nonNegative, nonNegativeInt, positive, positiveInt } from '../core/validate.js';
import { CircuitBreakerPolicy, type BreakerStats, type CircuitBreakerOptions } from '../breaker/breaker.js';
import { BulkheadPolicy, type BulkheadStats } from '../bulkhead/bulkhead.js';
import { RetryPolicy, type RetryOptions } from '../retry/retry.js';
import type { RetryOutcome } from '../retry/classify.js';
import { TimeoutPolicy } from '../timeout/timeout.js';

/** Options of one guarded call: the core call options plus whether it may be retried. */
export interface GuardedCallOptions extends CallOptions {
  /**
   * The operation is safe to repeat (an idempotent read, a transaction that can be replayed
   * whole). Only safe calls are retried, and only after transient errors. Default false.
   */
  safe?: boolean;
  /**
   * The inbound request this call serves (`{ context: request.bulwark, safe: true }`), or any
   * `{ deadline, clock?, signal?, priority? }`: its remaining budget bounds the call, retries
   * and their waits included (with `deadline` / `timeoutMs` too, the earliest wins), and its
   * signal aborts it. `priority` and `tags` given here win over the context's.
   */
  context?: CallContextSource;
}

/** The bulkhead of a guarded client: options for a new one, or a policy you built (and maybe share). */
export interface GuardBulkheadOptions {
  /** Calls holding a connection (or in flight on the connection) at once. */
  maxConcurrent?: number;
  /** Calls allowed to wait for a slot. */
  maxQueue?: number;
  /** Longest wait for a slot before `BULKHEAD_QUEUE_TIMEOUT`. */
  queueTimeoutMs?: number;
}

export interface GuardOptions {
  /**
   * Names the client and the policies it builds (breaker, bulkhead, timeout, retry): their events
   * all carry it, so one label finds the dependency on a dashboard. Policies you pass in keep theirs.
   */
  name?: string;
  /** Where the client and its policies register. Default: the process-wide `policyRegistry`; null: none. */
  registry?: PolicyRegistry | null;
  /** Timeout of one attempt, in ms (the call's own deadline can only shorten it). */
  timeoutMs?: number;
  /** A bulkhead per pool / connection. */
  bulkhead?: GuardBulkheadOptions | BulkheadPolicy;
  /**
   * Circuit breaker options (the client's error classification is used unless you give
   * `isFailure`), or a breaker you built. Default: the breaker's defaults (5 consecutive
   * failures, open 30 s).
   */
  breaker?: Omit<CircuitBreakerOptions, 'clock'> | CircuitBreakerPolicy;
  /**
   * Retry options for calls marked `safe` (the client's transient-error classification is
   * used unless you give `shouldRetry`), a retry policy you built, or `false` for no retries.
   * Default: 3 attempts, exponential backoff from 100 ms with full jitter.
   */
  retry?: Omit<RetryOptions, 'clock' | 'random'> | RetryPolicy | false;
  clock?: Clock;
  random?: Random;
}

/** How a client's defaults and classification plug into the shared builder. */
export interface GuardDefaults {
  kind: string;
  name: string;
  timeoutMs: number;
  /** The timeout's grace: how long to wait for aborted work to end (0: give up at once, for uncancellable work). */
  graceMs: number;
  maxConcurrent: number;
  /** Upper bound for maxConcurrent (the pool size), undefined when unknown. */
  maxConcurrentLimit?: { value: number; what: string };
  isFailure: (error: unknown) => boolean;
  isTransient: (error: unknown) => boolean;
}

/** The policies of one guarded client. */
export interface Guard {
  readonly name: string;
  readonly timeoutMs: number;
  readonly breaker: CircuitBreakerPolicy;
  readonly bulkhead: BulkheadPolicy;
  readonly timeout: TimeoutPolicy;
  readonly retry: RetryPolicy | undefined;
  /** breaker → bulkhead → timeout. */
  readonly unsafe: Pipeline;
  /** retry → breaker → bulkhead → timeout (the same policy instances as `unsafe`). */
  readonly safe: Pipeline;
}

export interface GuardStats {
  name: string;
  breaker: BreakerStats;
  bulkhead: BulkheadStats;
  /** Attempts currently running under the timeout. */
  inFlight: number;
}

export function buildGuard(options: GuardOptions | undefined, defaults: GuardDefaults): Guard {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidOptionsError(`${defaults.kind}: options must be an object`);
  }
  const o = options ?? {};
  if (o.name !== undefined && (typeof o.name !== 'string' || o.name === '')) throw new InvalidOptionsError(`${defaults.kind}.name must be a non-empty string`);
  const name = o.name ?? defaults.name;
  const clock = o.clock;
  const timeoutMs = positive(`${defaults.kind}.timeoutMs`, o.timeoutMs, defaults.timeoutMs);

  const identity = { name, ...(o.registry !== undefined ? { registry: o.registry } : {}) };
  const bulkhead = buildBulkhead(o.bulkhead, identity, timeoutMs, clock, defaults);
  const breaker = buildBreaker(o.breaker, identity, clock, defaults);
  const timeout = new TimeoutPolicy({ ms: timeoutMs, graceMs: defaults.graceMs, ...identity, ...(clock ? { clock } : {}) });
  const retry = buildRetry(o.retry, identity, clock, o.random, defaults);

  const unsafe = pipeline(breaker, bulkhead, timeout);
  const safe = retry === undefined ? unsafe : pipeline(retry, breaker, bulkhead, timeout);
  return { name, timeoutMs, breaker, bulkhead, timeout, retry, unsafe, safe };
}

/** The name and registry a guard's own policies are built with. */
interface GuardIdentity {
  name: string;
  registry?: PolicyRegistry | null;
}

function buildBulkhead(
  value: GuardOptions['bulkhead'],
  identity: GuardIdentity,
  timeoutMs: number,
  clock: Clock | undefined,
  defaults: GuardDefaults,
): BulkheadPolicy {
  const limit = defaults.maxConcurrentLimit;
  if (value instanceof BulkheadPolicy) {
    checkLimit(value.maxConcurrent, limit, defaults.kind);
    return value;
  }
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionsError(`${defaults.kind}.bulkhead must be { maxConcurrent, maxQueue, queueTimeoutMs } or a bulkhead policy`);
  }
  const b = value ?? {};
  const maxConcurrent = positiveInt(`${defaults.kind}.bulkhead.maxConcurrent`, b.maxConcurrent, limit?.value ?? defaults.maxConcurrent);
  checkLimit(maxConcurrent, limit, defaults.kind);
  // A bounded queue with a bounded wait by default: calls wait here (with priorities and
  // timeouts), never in the client library's own unbounded queue.
  const maxQueue = nonNegativeInt(`${defaults.kind}.bulkhead.maxQueue`, b.maxQueue, maxConcurrent);
  const queueTimeoutMs = nonNegative(`${defaults.kind}.bulkhead.queueTimeoutMs`, b.queueTimeoutMs, Math.min(1000, timeoutMs));
  return new BulkheadPolicy({ maxConcurrent, maxQueue, queueTimeoutMs, ...identity, ...(clock ? { clock } : {}) });
}

function checkLimit(maxConcurrent: number, limit: GuardDefaults['maxConcurrentLimit'], kind: string): void {
  if (limit !== undefined && maxConcurrent > limit.value) {
    throw new InvalidOptionsError(
      `${kind}.bulkhead.maxConcurrent (${maxConcurrent}) must be <= ${limit.what} (${limit.value}): ` +
      'extra calls would wait in the client library\'s unbounded queue instead of the bulkhead\'s bounded one',
    );
  }
}

function buildBreaker(
  value: GuardOptions['breaker'],
  identity: GuardIdentity,
  clock: Clock | undefined,
  defaults: GuardDefaults,
): CircuitBreakerPolicy {
  if (value instanceof CircuitBreakerPolicy) return value;
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionsError(`${defaults.kind}.breaker must be circuit breaker options or a circuit breaker policy`);
  }
  return new CircuitBreakerPolicy({ ...identity, isFailure: defaults.isFailure, ...value, ...(clock ? { clock } : {}) });
}

function buildRetry(
  value: GuardOptions['retry'],
  identity: GuardIdentity,
  clock: Clock | undefined,
  random: Random | undefined,
  defaults: GuardDefaults,
): RetryPolicy | undefined {
  if (value === false) return undefined;
  if (value instanceof RetryPolicy) return value;
  if (value !== undefined && (typeof value !== 'object' || value === null)) {
    throw new InvalidOptionsError(`${defaults.kind}.retry must be retry options, a retry policy or false`);
  }
  const isTransient = defaults.isTransient;
  const shouldRetry = (outcome: RetryOutcome): boolean | undefined => (outcome.kind === 'error' ? isTransient(outcome.error) : undefined);
  return new RetryPolicy({
    ...identity,
    shouldRetry,
    ...value,
    ...(clock ? { clock } : {}),
    ...(random ? { random } : {}),
  });
}

/** Splits the guard's own `safe` flag from the core call options. */
export function pipelineFor(guard: Guard, options: GuardedCallOptions | undefined): Pipeline {
  return options?.safe === true ? guard.safe : guard.unsafe;
}

/**
 * The core call options of a guarded call on `clock`: `context` (the inbound request) folded into
 * `deadline`, `signal`, `priority` and `tags`. Throws INVALID_INPUT for a context without a
 * numeric deadline.
 */
export function callOptionsOf(clock: Clock, options: GuardedCallOptions | undefined): CallOptions | undefined {
  // A spread copy of the request context (`{ ...request.bulwark, safe: true }`) lost the signal
  // getter but points back to its source: read the source, as with `{ context: request.bulwark }`.
  const spreadFrom = options?.context === undefined ? callSourceOf(options) : undefined;
  const context = spreadFrom ?? options?.context;
  if (context === undefined) return options?.timeoutMs === undefined ? options : withBudgetAsDeadline(clock, options);
  if (typeof context !== 'object' || context === null || typeof context.deadline !== 'number' || Number.isNaN(context.deadline)) {
    throw new InvalidInputError('context must carry a numeric deadline (request.bulwark, a CallContext or { deadline, clock?, signal? })');
  }
  const now = clock.now();
  let deadline = deadlineOnClock(context, clock, now);
  // A deadline copied from the source is on the source's clock: only one of your own counts.
  const ownDeadline = options!.deadline !== undefined && !(spreadFrom !== undefined && options!.deadline === spreadFrom.deadline);
  if (ownDeadline) deadline = Math.min(deadline, options!.deadline!);
  if (options!.timeoutMs !== undefined) {
    if (!(options!.timeoutMs >= 0)) throw new InvalidInputError(`timeoutMs must be >= 0, got ${options!.timeoutMs}`);
    deadline = Math.min(deadline, now + options!.timeoutMs);
  }
  const own = options!.signal;
  const theirs = context.signal;
  const signal = own === undefined ? theirs : theirs === undefined || theirs === own ? own : AbortSignal.any([own, theirs]);
  const priority = options!.priority ?? context.priority;
  const tags = options!.tags ?? context.tags;
  return {
    deadline,
    ...(signal === undefined ? {} : { signal }),
    ...(priority === undefined ? {} : { priority }),
    ...(tags === undefined ? {} : { tags }),
  };
}

/**
 * `timeoutMs` as the deadline it stands for, so that a retry stopped by it can say when that was
 * (DEADLINE_EXCEEDED carries the deadline).
 */
function withBudgetAsDeadline(clock: Clock, options: GuardedCallOptions): CallOptions {
  const { timeoutMs, ...rest } = options;
  if (!(timeoutMs! >= 0)) throw new InvalidInputError(`timeoutMs must be >= 0, got ${timeoutMs}`);
  return { ...rest, deadline: Math.min(options.deadline ?? Infinity, clock.now() + timeoutMs!) };
}

/**
 * Runs a guarded call. When the retry policy stops because the next attempt could not start
 * before the call's deadline, the caller's budget is spent: that surfaces as DEADLINE_EXCEEDED
 * (the last failure as `cause`), the code an HTTP adapter answers with 504 at once, rather than
 * RETRIES_EXHAUSTED. The retry never waits past the deadline and never starts an attempt after it.
 */
export function executeGuarded<T>(pipeline: Pipeline, operation: Operation<T>, options: CallOptions | undefined): Promise<T> {
  const result = pipeline.execute(operation, options);
  const bounded = options !== undefined && ((options.deadline !== undefined && options.deadline !== Infinity) || options.timeoutMs !== undefined);
  return bounded ? result.catch((error: unknown) => deadlineGaveUp(error, options.deadline)) : result;
}

function deadlineGaveUp(error: unknown, deadline: number | undefined): never {
  if (error instanceof RetriesExhaustedError && error.reason === 'deadline') {
    const late = new DeadlineExceededError(deadline ?? Number.NaN, `deadline reached with no time for another attempt (${error.message})`);
    throw Object.assign(late, { cause: error.cause, attempts: error.attempts });
  }
  throw error;
}

export function guardStats(guard: Guard): GuardStats {
  return { name: guard.name, breaker: guard.breaker.stats(), bulkhead: guard.bulkhead.stats(), inFlight: guard.timeout.inFlight };
}

/**
 * The uniform events of a guarded client: its own (`own`) and those of every policy of its
 * pipeline, so that one subscription sees the whole dependency.
 */
export function guardEvents(guard: Guard, own: Event<PolicyEvent>): Event<PolicyEvent> {
  const policies = guard.retry === undefined ? [guard.breaker, guard.bulkhead, guard.timeout] : [guard.retry, guard.breaker, guard.bulkhead, guard.timeout];
  return (listener) => subscribeAll([own, ...policies.map((p) => p.onEvent)], listener);
}

export function describeGuard(guard: Guard, kind: string, options: Record<string, unknown>): PolicyDescription {
  return { kind, name: guard.name, options, policies: guard.safe.describe().policies ?? [] };
}

/** Walks `cause` links (bounded) and returns the first value `pick` accepts. */
export function findInCauses<T>(error: unknown, pick: (value: object) => T | undefined): T | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && typeof current === 'object' && current !== null; depth++) {
    const found = pick(current);
    if (found !== undefined) return found;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Node's socket-level error codes: the connection, not the statement, failed. */
export const NETWORK_ERROR_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND',
  'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTCONN', 'ESHUTDOWN',
]);

/** True for a Node socket error (`ECONNRESET`, ...) anywhere in the cause chain. */
export function isNetworkError(error: unknown): boolean {
  return findInCauses(error, (e) => {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && NETWORK_ERROR_CODES.has(code) ? true : undefined;
  }) === true;
}

/** A Bulwark error code anywhere in the cause chain, or undefined. */
export function bulwarkCodeOf(error: unknown, codes: ReadonlySet<string>): string | undefined {
  return findInCauses(error, (e) => {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && codes.has(code) ? code : undefined;
  });
}
