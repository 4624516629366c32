// Entry point `bulwark/redis`: Redis integrations for ioredis and node-redis clients.
export * from './redis-client/index.js';
export * from './clients/guarded-redis.js';
export * from './ratelimit/redis-entry.js';
export * from './idempotency/stores/redis-store.js';
