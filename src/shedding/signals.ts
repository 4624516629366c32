import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { nonNegative, positive } from '../core/validate.js';

/** A pressure reading in milliseconds (event-loop delay, or any custom source). */
export interface DelaySource {
  /** Current value in ms. Called on the admission path: must be cheap (return a cached number). */
  read(): number;
  /** Stops any background measurement. */
  close?(): void;
}

export interface EventLoopDelayOptions {
  /** Sampling resolution of the histogram, ms. Default 10. */
  resolutionMs?: number;
  /** The reading is refreshed (and the histogram reset) at most this often, ms. Default 1000. */
  windowMs?: number;
  /** Which percentile of the window to report. Default 99. */
  percentile?: number;
}

/**
 * Event-loop delay from `perf_hooks.monitorEventLoopDelay` (the signal @fastify/under-pressure
 * uses): how late the loop runs timers, i.e. how long every request waits for CPU. The histogram
 * records timer intervals, so the resolution is subtracted. Reading is O(1): the percentile is
 * recomputed once per window, lazily, on a read; there is no timer of ours and the histogram's
 * own does not keep the process alive. Real time by nature: tests inject a fake `DelaySource`.
 */
export function eventLoopDelayMonitor(options: EventLoopDelayOptions = {}): DelaySource {
  const resolutionMs = positive('eventLoopDelay.resolutionMs', options.resolutionMs, 10);
  const windowMs = nonNegative('eventLoopDelay.windowMs', options.windowMs, 1000);
  const percentile = positive('eventLoopDelay.percentile', options.percentile, 99);
  let histogram: IntervalHistogram | undefined = monitorEventLoopDelay({ resolution: Math.max(1, Math.round(resolutionMs)) });
  histogram.enable();
  let value = 0;
  let refreshedAt = performance.now();
  return {
    read(): number {
      if (histogram === undefined) return value;
      const now = performance.now();
      if (now - refreshedAt >= windowMs) {
        refreshedAt = now;
        if (histogram.count > 0) {
          value = Math.max(0, histogram.percentile(percentile) / 1e6 - resolutionMs);
          histogram.reset();
        }
      }
      return value;
    },
    close(): void {
      histogram?.disable();
      histogram = undefined;
    },
  };
}
