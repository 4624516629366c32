import type { Clock } from './clock.js';
import { AbortedError } from './errors.js';

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
