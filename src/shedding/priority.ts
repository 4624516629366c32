import { PRIORITIES, type Priority } from '../core/context.js';
import { InvalidOptionsError } from '../core/errors.js';

/**
 * Utilisation thresholds per priority class (shedding by criticality, as in the Google SRE book,
 * "Handling Overload"): a class is admitted while utilisation < its threshold. Critical work
 * (health checks, auth, payments) is never shed for load, so its threshold is 1.0 only for
 * documentation.
 */
export const DEFAULT_SHED_THRESHOLDS: Readonly<Record<Priority, number>> = Object.freeze({
  critical: 1.0,
  high: 0.9,
  normal: 0.75,
  low: 0.5,
  'best-effort': 0.25,
});

/** True when `priority` may be admitted at `utilisation` (critical: always). */
export function priorityAdmits(utilisation: number, priority: Priority, thresholds: Readonly<Record<Priority, number>> = DEFAULT_SHED_THRESHOLDS): boolean {
  return priority === 'critical' || utilisation < thresholds[priority];
}

/**
 * Random Early Detection (Floyd & Jacobson, "Random Early Detection Gateways for Congestion
 * Avoidance", 1993): below `min` nothing is dropped, from `max` up everything is, and in between
 * the drop probability rises linearly: p = (u − min) / (max − min). With min 0.5 and max 0.9,
 * p(0.7) = 0.5. Dropping a growing fraction early, instead of everything at a cliff, keeps the load
 * near the knee and avoids synchronised retries.
 */
export function redDropProbability(utilisation: number, min: number, max: number): number {
  if (utilisation < min) return 0;
  if (utilisation >= max) return 1;
  return (utilisation - min) / (max - min);
}

/** Merges and validates user thresholds over the defaults. */
export function resolveThresholds(thresholds: Partial<Record<Priority, number>> | undefined): Readonly<Record<Priority, number>> {
  const merged = { ...DEFAULT_SHED_THRESHOLDS };
  if (thresholds === undefined) return merged;
  for (const [key, value] of Object.entries(thresholds)) {
    if (!(PRIORITIES as readonly string[]).includes(key)) {
      throw new InvalidOptionsError(`loadShedder.thresholds: unknown priority '${key}' (use ${PRIORITIES.join(', ')})`);
    }
    if (value === undefined) continue;
    if (key === 'critical') {
      if (value !== 1) throw new InvalidOptionsError('loadShedder.thresholds.critical must be 1: critical work is never shed');
      continue;
    }
    if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
      throw new InvalidOptionsError(`loadShedder.thresholds.${key} must be between 0 and 1, got ${String(value)}`);
    }
    merged[key as Priority] = value;
  }
  return Object.freeze(merged);
}
