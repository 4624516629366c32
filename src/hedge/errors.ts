import { BulwarkError } from '../core/errors.js';

/**
 * Hedging sends the same operation more than once; it refuses to unless the operation was
 * declared idempotent (policy option `idempotent: true` or per-call tag `idempotent: true`).
 */
export class NotIdempotentError extends BulwarkError {
  constructor(readonly policy: string) {
    super('NOT_IDEMPOTENT', `${policy}: refusing to hedge an operation not declared idempotent (set idempotent: true on the policy or tags: { idempotent: true } on the call)`);
  }
}

/** The abort reason a losing hedged attempt sees on its signal. */
export class HedgeLostError extends BulwarkError {
  constructor(
    /** The attempt that was cancelled (1 = the primary). */
    readonly attempt: number,
    /** The attempt that succeeded first. */
    readonly winner: number,
  ) {
    super('ABORTED', `hedged attempt ${attempt} cancelled: attempt ${winner} succeeded first`, { captureStack: false });
  }
}
