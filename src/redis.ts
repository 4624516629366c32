// Entry point `bulwark/redis`: Redis integrations. Each takes an ioredis or node-redis client the
// application creates (or any `RedisScriptClient`); neither library is imported here.

// A Redis client guarded by a resilience pipeline (timeout, retry, breaker, bulkhead).
export {
  guardRedis, GuardedRedis, type GuardRedisOptions, type GuardedRedisStats, type RedisArgument, type RedisFlavour,
} from './clients/guarded-redis.js';
export { isRedisFailure, isRedisTransient, READ_ONLY_COMMANDS } from './clients/redis-errors.js';
export type { GuardOptions, GuardBulkheadOptions, GuardedCallOptions } from './clients/dependency-pipeline.js';

// Rate limits shared by a fleet: every decision in Redis, or local decisions synced to Redis.
export {
  redisRateLimiter, RedisRateLimiter,
  type RedisRateLimiterOptions, type StoreBreaker, type StorePermit,
  type FailMode as RateLimitFailMode, type StoreErrorEvent as RateLimitStoreErrorEvent,
} from './ratelimit/redis-limiter.js';
export {
  hybridRateLimiter, HybridRateLimiter, redisHybridRemote,
  type HybridRateLimiterOptions, type HybridRemote, type HybridSyncEvent,
} from './ratelimit/hybrid.js';
export type {
  StoreHealthSnapshot as RateLimitStoreHealth, StoreRecoveredEvent as RateLimitStoreRecoveredEvent,
} from './ratelimit/store-health.js';

// The idempotency store on Redis.
export {
  redisIdempotencyStore, RedisIdempotencyStore, type RedisIdempotencyStoreOptions,
} from './idempotency/stores/redis-store.js';

// The narrow client interface the integrations above run scripts through.
export type { RedisScriptClient, RedisScript } from './redis-client/script-client.js';
