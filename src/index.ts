// The core entry point: `import { pipeline, retry, circuitBreaker, ... } from 'bulwark'`.
// Integrations (redis, postgres, sqlite, fastify, express, http, fetch) have their own entry points.
export * from './core/index.js';
export * from './timeout/index.js';
export * from './bulkhead/index.js';
export * from './fallback/index.js';
export * from './retry/index.js';
export * from './breaker/index.js';
export * from './concurrency/index.js';
export * from './shedding/index.js';
export * from './backpressure/index.js';
export * from './hedge/index.js';
export * from './coalesce/index.js';
export * from './cache/index.js';
export * from './throttle/index.js';
export * from './fault/index.js';
export * from './ratelimit/index.js';
export * from './idempotency/index.js';
