// Core entry (`bulwark`): algorithms, the memory store, composition and the policy. No Redis here:
// the Redis store and the hybrid limiter are in ./redis-entry.ts (the `bulwark/redis` entry).
export * from './types.js';
export {
  ALGORITHMS as RATE_LIMIT_ALGORITHMS, createAlgorithm as createRateLimitAlgorithm, decide as decideRateLimit,
  resolveAlgorithmOptions as resolveRateLimitOptions,
  TokenBucket, Gcra, FixedWindow, SlidingWindowCounter, SlidingWindowLog,
  type AlgorithmDecision, type RateAlgorithm, type KernelResult, type ResolvedAlgorithmOptions,
  type TokenBucketConfig, type GcraConfig, type WindowConfig,
} from './algorithms/index.js';
export { MemoryRateLimiter, memoryRateLimiter, type MemoryRateLimiterOptions, type MemoryRateLimiterStats } from './memory.js';
export { CompositeRateLimiter, compositeRateLimiter, type LimitRule, type RuleResult, type CompositeDecision } from './composite.js';
export { RateLimitPolicy, rateLimit, type RateLimitPolicyOptions, type RateLimitRejection, type RateLimitStats } from './policy.js';
