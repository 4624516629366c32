// Idempotency keys. The core entry exports the engine, the HTTP
// semantics, fingerprints and the memory store; the Redis, PostgreSQL and SQLite stores have
// their own entry points (bulwark/redis, bulwark/postgres, bulwark/sqlite).
export * from './errors.js';
export * from './types.js';
export { recordId, parseIdempotencyKey, DEFAULT_MAX_KEY_LENGTH } from './scope.js';
export { fingerprintRequest, fingerprintStream, canonicalJson, type FingerprintBody, type BodyChunk } from './fingerprint.js';
export { encodeResponse, decodeResponse, type StoredResponse } from './codec.js';
export * from './engine.js';
export { defaultStoreGuard, type StoreGuardOptions } from './store-guard.js';
export * from './http.js';
export * from './stores/memory-store.js';
