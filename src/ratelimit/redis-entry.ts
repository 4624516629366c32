// `bulwark/redis` entry: the Redis-backed limiters. They take an ioredis or node-redis client that
// the application creates; neither library is imported here.
export {
  RedisRateLimiter, redisRateLimiter, runRateLimitScript,
  type RedisRateLimiterOptions, type RedisRateLimiterStats, type StoreBreaker, type StorePermit,
  type FailMode as RateLimitFailMode, type StoreErrorEvent as RateLimitStoreErrorEvent,
} from './redis-limiter.js';
export {
  HybridRateLimiter, hybridRateLimiter, redisHybridRemote, memoryHybridRemote,
  type HybridRateLimiterOptions, type HybridRateLimiterStats, type HybridRemote, type HybridSyncEvent,
} from './hybrid.js';
export type { StoreHealthSnapshot as RateLimitStoreHealth, StoreRecoveredEvent as RateLimitStoreRecoveredEvent } from './store-health.js';
export { RATE_LIMIT_SCRIPTS, HYBRID_SYNC_SCRIPT } from './lua-scripts.js';
export { hashSlot } from './crc16.js';
