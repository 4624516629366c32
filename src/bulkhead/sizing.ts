import { InvalidOptionsError } from '../core/errors.js';
import { positive, positiveInt } from '../core/validate.js';
import type { BulkheadOptions } from './bulkhead.js';

export interface BulkheadSizeOptions {
  /** Calls per second the bulkhead must carry at the busiest hour you plan for. */
  ratePerSecond: number;
  /** How long a call holds its slot, in ms: the latency you tolerate (p99 or a little above), not the mean. */
  latencyMs: number;
  /** A multiplier for bursts above the planned rate, >= 1. Default 1.1 (10 % spare). */
  headroom?: number;
  /** Little's-law concurrency is rounded up to a multiple of this before the headroom. Default 10. */
  roundTo?: number;
}

/**
 * `maxConcurrent` for a bulkhead by Little's law (John Little, "A Proof for the Queuing Formula:
 * L = λW", Operations Research, 1961): the calls in flight are the arrival rate times the time
 * each call takes. In this order:
 *
 *   in flight = ratePerSecond × latencyMs / 1000
 *   size      = ⌈ ⌈in flight / roundTo⌉ × roundTo × headroom ⌉
 *
 * so `{ ratePerSecond: 500, latencyMs: 200 }` gives 500 × 0.2 = 100 in flight, 100 rounded to a
 * multiple of 10, × 1.1 = 110. Rounding first keeps the headroom a true margin above a round
 * figure; the final result is a whole number of slots, not necessarily a multiple of `roundTo`
 * (102 in flight gives 110, then 121).
 */
export function bulkheadSize(options: BulkheadSizeOptions): number {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('bulkheadSize() needs { ratePerSecond, latencyMs }');
  const rate = finite('bulkheadSize.ratePerSecond', positive('bulkheadSize.ratePerSecond', options.ratePerSecond, NaN));
  const latencyMs = finite('bulkheadSize.latencyMs', positive('bulkheadSize.latencyMs', options.latencyMs, NaN));
  const headroom = finite('bulkheadSize.headroom', positive('bulkheadSize.headroom', options.headroom, 1.1));
  if (headroom < 1) throw new InvalidOptionsError(`bulkheadSize.headroom must be >= 1 (a margin, not a cut), got ${headroom}`);
  const roundTo = positiveInt('bulkheadSize.roundTo', options.roundTo, 10);
  const size = ceilTo(ceilTo((rate * latencyMs) / 1000, roundTo) * headroom, 1);
  if (size > 1e9) throw new InvalidOptionsError(`bulkheadSize: ${rate}/s × ${latencyMs} ms needs ${size} slots; check the units (latencyMs is in milliseconds)`);
  return size;
}

/**
 * The smallest multiple of `step` at or above `x`. Binary floating point turns 100 × 1.1 into
 * 110.00000000000001, which would round up to 111 (or 120): 12 significant digits remove that
 * noise, are exact for every figure below 10^12, and are far more precision than any rate or
 * latency has.
 */
function ceilTo(x: number, step: number): number {
  return Math.ceil(Number((x / step).toPrecision(12))) * step;
}

function finite(name: string, value: number): number {
  if (!Number.isFinite(value)) throw new InvalidOptionsError(`${name} must be finite, got ${value}`);
  return value;
}

/** The options a preset fixes: everything but the clock. */
export type BulkheadPreset = Readonly<Required<Pick<BulkheadOptions, 'name' | 'maxConcurrent' | 'maxQueue' | 'queueTimeoutMs'>>>;

/**
 * Starting points for three common pools, from the bulkhead pattern's usual example (a service
 * with a primary database, a recommendations service and a notifications service): how many
 * calls run at once, and how long a call may wait for a slot. Each queue holds one pool's
 * worth of callers; the wait, not the queue length, bounds how late a call starts. Use one with
 * `bulkhead({ ...BULKHEAD_PRESETS.database, name: 'orders-db' })`, then adjust from the
 * saturation metrics (or size it with `bulkheadSize`).
 */
export const BULKHEAD_PRESETS: Readonly<{ database: BulkheadPreset; recommendations: BulkheadPreset; notifications: BulkheadPreset }> = Object.freeze({
  /** The primary database: 50 at once, a 100 ms wait for a slot (keep it at or below the `pg` pool size). */
  database: Object.freeze({ name: 'database', maxConcurrent: 50, maxQueue: 50, queueTimeoutMs: 100 }),
  /** A non-critical enrichment with a fallback: 20 at once, 50 ms wait, then the fallback. */
  recommendations: Object.freeze({ name: 'recommendations', maxConcurrent: 20, maxQueue: 20, queueTimeoutMs: 50 }),
  /** Fire-and-forget side effects: 10 at once, 50 ms wait. */
  notifications: Object.freeze({ name: 'notifications', maxConcurrent: 10, maxQueue: 10, queueTimeoutMs: 50 }),
});
