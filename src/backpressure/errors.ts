import { BulwarkError, InvalidInputError } from '../core/errors.js';

/**
 * A push was refused: the queue was full ('reject' policy), stayed full until the push's
 * `timeoutMs` ran out ('block'), or was closed (a closed queue has room for nothing).
 * Code `QUEUE_FULL`; stack-less (a rejection is an expected, frequent outcome).
 */
export class QueueFullError extends BulwarkError {
  constructor(
    readonly capacity: number,
    readonly reason: 'full' | 'timeout' | 'closed',
  ) {
    super('QUEUE_FULL', reason === 'closed' ? 'queue is closed' : reason === 'timeout' ? `queue stayed full (capacity ${capacity}) until the push timed out` : `queue full (capacity ${capacity})`, { captureStack: false });
  }
}

/** A call passed an argument the stream cannot use (Reactive Streams §3.9: request(n ≤ 0) is an error). Code `INVALID_INPUT`. */
export class InvalidStreamRequestError extends InvalidInputError {
  constructor(message: string) {
    super(message, { captureStack: false });
  }
}
