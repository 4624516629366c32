// Entry point `bulwark/idempotency`: idempotency keys. The engine, its HTTP semantics, the memory
// store and what a store implements; the Redis, PostgreSQL and SQLite stores are in their own
// entry points. The error classes (IdempotencyConflictError, LeaseLostError, ...) stay in
// `bulwark`, with the error table that maps every code.

// The engine: claim a key, run once, complete or release, through a fenced lease.
export {
  idempotencyEngine, IdempotencyEngine, type Lease,
  type IdempotencyEngineOptions, type ClaimOptions, type ClaimOutcome, type LeaseStatus, type LeaseOperation, type RunResult,
  type ClaimEvent, type LeaseLostEvent, type StoreErrorEvent, type ResponseInput, type IdempotencyStats,
} from './idempotency/engine.js';
export type { StoreGuardOptions } from './idempotency/store-guard.js';

// HTTP semantics without a framework: the key header, replays, 409 / 422 answers.
export {
  idempotencyHttp, IdempotencyHttp,
  type IdempotencyHttpOptions, type IdempotentRequest, type IdempotencyHttpResponse, type BufferedBody,
  type BeginOutcome, type BeginRun, type BeginRespond,
} from './idempotency/http.js';
export type { StoredResponse } from './idempotency/codec.js';
// What makes two requests the same request: the fingerprint `engine.run` and `claim` take.
export { fingerprintRequest, type FingerprintBody, type BodyChunk } from './idempotency/fingerprint.js';

// What a store implements, and the store in process memory.
export type {
  IdempotencyStore, IdempotencyScope, StoredRecord, ClaimInput, ClaimResult, OwnerInput, CompleteInput, StepInput, RenewInput, StoreLease,
} from './idempotency/types.js';
export {
  memoryIdempotencyStore, MemoryIdempotencyStore, type MemoryIdempotencyStoreOptions,
} from './idempotency/stores/memory-store.js';
