import { BulwarkError } from '../core/errors.js';

/** A duplicate arrived while the first request with the same key is still running (HTTP 409). */
export class IdempotencyConflictError extends BulwarkError {
  constructor(
    /** How long until the current lease runs out (the first request may finish earlier). */
    readonly retryAfterMs: number,
  ) {
    super('IDEMPOTENCY_CONFLICT', 'a request with this idempotency key is already in progress', { captureStack: false });
  }
}

/** The key was used before with a different request (method, path or body) (HTTP 422). */
export class IdempotencyMismatchError extends BulwarkError {
  constructor() {
    super('IDEMPOTENCY_MISMATCH', 'this idempotency key was already used with a different request', { captureStack: false });
  }
}

export type KeyProblem = 'missing' | 'empty' | 'too-long' | 'invalid-characters' | 'multiple';

/** The Idempotency-Key header is missing (where required), empty, too long or not visible ASCII (HTTP 400). */
export class IdempotencyKeyInvalidError extends BulwarkError {
  constructor(readonly problem: KeyProblem, detail: string) {
    super('IDEMPOTENCY_KEY_INVALID', detail, { captureStack: false });
  }
}

/**
 * This worker no longer owns the record: its lease expired and another worker took it over,
 * or it was released. Its completion or step write was rejected (fencing); roll back whatever
 * the write was meant to commit.
 */
export class LeaseLostError extends BulwarkError {
  constructor(readonly recordId: string, readonly operation: 'complete' | 'step' | 'renew' | 'release') {
    super('LEASE_LOST', `lease lost on idempotency record ${recordId} during ${operation}: another worker owns it now (or it was released)`, { captureStack: false });
  }
}
