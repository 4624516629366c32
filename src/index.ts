// The core entry point, `bulwark`: the policies, how they compose, and the types a user writes
// (options) or reads (events, stats, errors). Integrations have entry points of their own
// (bulwark/http, /fastify, /express, /fetch, /redis, /postgres, /sqlite), and so do idempotency
// keys (bulwark/idempotency); test tools are in bulwark/testing. Only the names listed here are
// public: a change shows in api/bulwark.api.md.

// Composition: a policy, a pipeline of policies, the call they run, custom policies.
export {
  pipeline, BasePolicy,
  type Policy, type AnyPolicy, type Pipeline, type PipelineOptions, type Next, type PolicyDescription, type SubstituteOf, type AcceptedBy,
} from './core/policy.js';
export { CallContext, type CallOptions, type CallContextSource, type Operation, type Priority } from './core/context.js';
export { KeyedPolicy, tagKey, type CallKey } from './core/keyed-policy.js';
export type { Event, Listener, Disposable } from './core/events.js';

// Observing policies: one event shape for every policy, and the registry exporters read.
export {
  PolicyRegistry, policyRegistry, PolicyTelemetry, PolicyEmitter,
  type PolicyEvent, type PolicyEventFields, type PolicyOutcome, type AttributeValue, type Instrumented, type PolicyIdentity, errorCode,
} from './core/telemetry.js';

// Time and randomness in production (their test doubles are in bulwark/testing).
export { systemClock, type Clock, type TimerHandle } from './core/clock.js';
export { systemRandom, type Random } from './core/random.js';

// Errors: one class per code, and the table that maps each code to an HTTP status.
export {
  BulwarkError, InvalidOptionsError, InvalidInputError, TimeoutError, DeadlineExceededError, CircuitOpenError,
  BulkheadFullError, BulkheadQueueTimeoutError, RateLimitedError, ShedError, RetriesExhaustedError,
  RetryBudgetExhaustedError, AbortedError, StoreUnavailableError, hasCode, rootCause,
  type ErrorCode, type BulwarkErrorOptions,
} from './core/errors.js';
export { ERROR_TABLE, statusOf, meaningOf, type ErrorMeaning } from './core/error-table.js';

// Degradation marks: which answers came from a fallback or a stale cache.
export { degradation, markDegraded, type Degradation } from './core/degraded.js';

// Timeout.
export { timeout, TimeoutPolicy, type TimeoutOptions, type TimeoutEvent, type TimeoutStats } from './timeout/timeout.js';

// Retry, its backoffs and retry budgets.
export {
  retry, RetryPolicy, RETRY_DEFAULTS,
  type RetryOptions, type GiveUpReason, type RetryEvent, type GiveUpEvent, type RetrySuccessEvent, type RetryStats,
} from './retry/retry.js';
export {
  backoff, constantBackoff, linearBackoff, exponentialBackoff, fibonacciBackoff, decorrelatedBackoff, reconnectBackoff,
  ScheduleBackoff, BACKOFF_DEFAULTS,
  type Backoff, type BackoffOptions, type ShorthandBackoffOptions, type BackoffKind, type JitterKind,
} from './retry/backoff.js';
export type { RetryBudget, RetryBudgetSnapshot } from './core/budget.js';
export {
  ratioBudget, tokenBudget, concurrencyBudget, RatioRetryBudget, TokenRetryBudget, ConcurrencyRetryBudget,
  type RatioBudgetOptions, type RatioBudgetSnapshot, type TokenBudgetOptions, type TokenBudgetSnapshot,
  type ConcurrencyBudgetOptions, type ConcurrencyBudgetSnapshot,
} from './retry/budget.js';
export {
  isRetryableError, parseRetryAfter, RETRYABLE_NETWORK_CODES, RETRYABLE_STATUSES, NO_RETRY_HEADER, type RetryOutcome,
} from './retry/classify.js';

// Circuit breakers: one per dependency, or one per key; trip strategies; saved state.
export {
  circuitBreaker, CircuitBreakerPolicy,
  type CircuitBreakerOptions, type HalfOpenOptions, type OpenBackoffOptions, type BreakerPermit, type BreakerRejection,
  type BreakerCallOutcome, type BreakerStateChange, type BreakerStats, type TransitionReason,
} from './breaker/breaker.js';
export {
  consecutive, failureCount, countWindow, timeWindow,
  type TripStrategy, type TripStrategyFactory, type ConsecutiveOptions, type FailureCountOptions, type CountWindowOptions, type TimeWindowOptions,
  type BreakerRateOptions, type BreakerWindowStats, type BreakerWindowSnapshot, type BuiltInBreakerWindowSnapshot,
  type CustomBreakerWindowSnapshot,
} from './breaker/strategies.js';
export {
  keyedBreaker, KeyedCircuitBreaker,
  type KeyedCircuitBreakerOptions, type KeyedBreakerStats, type KeyedStateChange,
} from './breaker/keyed.js';
export { isDependencyFailure } from './breaker/classify.js';
export {
  parseSnapshot, InvalidSnapshotError,
  type BreakerSnapshot, type CircuitState, type CircuitStateKind, type SnapshotState,
} from './breaker/snapshot.js';

// Bulkhead, its sizing by Little's law and presets for common pools.
export {
  bulkhead, BulkheadPolicy,
  type BulkheadOptions, type BulkheadStats, type BulkheadQueuedEvent, type BulkheadRejectEvent, type BulkheadRejectReason,
} from './bulkhead/bulkhead.js';
export { bulkheadSize, BULKHEAD_PRESETS, type BulkheadSizeOptions, type BulkheadPreset } from './bulkhead/sizing.js';

// Fallback.
export {
  fallback, FallbackPolicy,
  type FallbackOptions, type FallbackFunction, type FallbackOutcome, type FallbackHandle, type FallbackEvent, type FallbackStats,
  type ErrorClass,
} from './fallback/fallback.js';

// Adaptive concurrency limits and their limit algorithms.
export {
  adaptiveLimiter, AdaptiveLimiter,
  type AdaptiveLimiterOptions, type AdaptiveLimiterStats, type LimiterDecision, type LimiterPermit, type LimiterRejection,
  type LimiterRejectEvent, type LimitChangeEvent, type SampleOutcome,
} from './concurrency/limiter.js';
export type { SampleWindowOptions, WindowAggregate } from './concurrency/sample-window.js';
export type { LimitAlgorithm, LimitSample, LimitState } from './concurrency/limits/types.js';
export { aimd, type AimdLimit, type AimdOptions, type AimdSettings, type AimdState } from './concurrency/limits/aimd.js';
export { vegas, type VegasLimit, type VegasOptions, type VegasSettings, type VegasState } from './concurrency/limits/vegas.js';
export {
  gradient2, type Gradient2Limit, type Gradient2Options, type Gradient2Settings, type Gradient2State,
} from './concurrency/limits/gradient2.js';

// Load shedding, reserved capacity per class of work, and the overload signal.
export {
  loadShedder, LoadShedder,
  type LoadShedderOptions, type LoadShedderStats, type ShedDecision, type ShedPermit, type ShedRejection, type ShedReason,
  type ShedQueueMode, type ShedQueueOptions, type ShedEvent, type OverloadEvent,
} from './shedding/shedder.js';
export {
  reservationGate, ReservationGate, type ReservationPermit,
  type ReservationGateOptions, type ReservationPlan, type CapacityAllocation, type LendingRule, type ReservationDecision, type ReservationRejection,
  type ReservationStats, type ReservationModeEvent, type ReservationRejectEvent,
} from './shedding/reservation.js';
export { eventLoopDelayMonitor, type DelaySource, type EventLoopDelayOptions } from './shedding/signals.js';
export { InvalidAdmissionError } from './shedding/errors.js';

// Backpressure: a bounded queue and credit-based streams.
export {
  boundedQueue, BoundedQueue,
  type BoundedQueueOptions, type BoundedQueueStats, type OverflowPolicy, type OfferResult, type WaitOptions,
  type DropEvent, type WatermarkEvent, type QueueRejectEvent,
} from './backpressure/bounded-queue.js';
export {
  creditStream, CreditStream, type CreditStreamOptions, type CreditStreamStats, type StreamEndEvent,
} from './backpressure/credit-stream.js';
export { QueueFullError, InvalidStreamRequestError } from './backpressure/errors.js';

// Hedging.
export {
  hedge, HedgePolicy, type HedgeOptions, type HedgeStartedEvent, type HedgeWonEvent, type HedgeDeniedEvent, type HedgeStats,
} from './hedge/hedge.js';
export { HedgeLostError, NotIdempotentError } from './hedge/errors.js';
export { LatencyTracker, type LatencyTrackerOptions } from './hedge/latency-tracker.js';

// Request coalescing and the stale cache.
export { coalesce, CoalescePolicy, type CoalesceOptions, type CoalesceStats, type FlightAbandonedEvent } from './coalesce/coalesce.js';
export {
  staleCache, StaleCachePolicy, type StaleCacheOptions, type StaleCacheStats, type StaleServedEvent, type RevalidateErrorEvent, type CachePeek,
} from './cache/stale-cache.js';

// Client-side adaptive throttling.
export {
  adaptiveThrottle, AdaptiveThrottlePolicy, type AdaptiveThrottleOptions, type AdaptiveThrottleStats, type ThrottledEvent, type ThrottleSnapshot,
} from './throttle/throttle.js';

// Fault injection (chaos testing in staging).
export {
  faultInjection, FaultInjectionPolicy, FaultInjectedError, connectionResetError,
  type Fault, type FaultBase, type LatencyFault, type ErrorFault, type AbortFault, type TimeoutFault, type ResultFault,
  type FaultInjectionOptions, type FaultInjectionStats, type FaultInjectedEvent,
} from './fault/fault.js';
export * as distributions from './fault/distributions.js';
export type { Distribution } from './fault/distributions.js';

// Rate limiting in memory (the Redis and hybrid limiters are in bulwark/redis).
export {
  type RateLimiter, type Decision, type AcquireOptions, type AlgorithmKind, type AlgorithmOptions, type DecisionStore,
  type Degraded, RateLimitInputError,
} from './ratelimit/types.js';
export type { ResolvedAlgorithmOptions } from './ratelimit/algorithms/registry.js';
export {
  memoryRateLimiter, MemoryRateLimiter, type MemoryRateLimiterOptions, type MemoryRateLimiterStats,
} from './ratelimit/memory.js';
export {
  compositeRateLimiter, CompositeRateLimiter, type LimitRule, type RuleResult, type CompositeDecision,
} from './ratelimit/composite.js';
export { rateLimit, RateLimitPolicy, type RateLimitPolicyOptions, type RateLimitRejection, type RateLimitStats } from './ratelimit/policy.js';

// Idempotency-key errors. The engine, its HTTP semantics and the stores are in
// bulwark/idempotency; the errors are here, with the table, so every error class is in one place.
export {
  IdempotencyConflictError, IdempotencyKeyInvalidError, IdempotencyMismatchError, LeaseLostError, type KeyProblem,
} from './idempotency/errors.js';
