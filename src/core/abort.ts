import type { Clock } from './clock.js';
import type { CallContext } from './context.js';
import { AbortedError, BulwarkError } from './errors.js';

const noop = (): void => {};

/**
 * Runs `listener` once when `signal` aborts (at once if it already has), until the returned
 * function is called. For waits only: a listener costs microseconds, so hot paths avoid them.
 */
export function onSignalAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) {
    listener();
    return noop;
  }
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/** Waits `ms` on the injected clock; the signal ends the wait early with an AbortedError. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal === undefined) {
      clock.setTimeout(resolve, ms);
      return;
    }
    if (signal.aborted) {
      reject(new AbortedError(signal.reason));
      return;
    }
    const timer = clock.setTimeout(() => {
      stop();
      resolve();
    }, ms);
    const stop = onSignalAbort(signal, () => {
      clock.clearTimeout(timer);
      reject(new AbortedError(signal.reason));
    });
  });
}

/**
 * The error an aborted call ends with: ABORTED with the abort reason as `cause`, unless the
 * reason is already a Bulwark error (an outer timeout's TIMEOUT, a lost hedge), which keeps its code.
 */
export function abortedError(reason: unknown): BulwarkError {
  return reason instanceof BulwarkError ? reason : new AbortedError(reason);
}

/**
 * Refuses a call whose caller has already aborted. Policies check `context.aborted` before taking
 * anything for a call (a slot, a probe, a timer, a budget entry) or running the operation:
 * nobody waits for the answer, so the work would be wasted and the resource denied to a real call.
 */
export function rejectAborted<T>(context: CallContext): Promise<T> {
  return Promise.reject(abortedError(context.abortReason));
}
