/**
 * A degraded result is a correct-but-lesser answer: a fallback value, a stale cache entry.
 * Callers (and HTTP adapters) ask `degradation(value)` to learn that, without the value's
 * type changing. Objects are marked with a non-enumerable symbol; primitives cannot carry a
 * mark, so policies also emit an event for them.
 */
export interface Degradation {
  /** What produced the degraded value: 'fallback', 'stale-cache', ... */
  source: string;
  /** Why: the error (or result) that was replaced, when there was one. */
  reason?: unknown;
  /** For stale values: how old the value is, in ms. */
  ageMs?: number;
}

const DEGRADED = Symbol.for('bulwark.degraded');

/** Marks `value` as degraded (objects only) and returns it. */
export function markDegraded<T>(value: T, info: Degradation): T {
  if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
    if (Object.isExtensible(value)) {
      Object.defineProperty(value, DEGRADED, { value: info, enumerable: false, configurable: true, writable: true });
    }
  }
  return value;
}

/** The degradation mark on `value`, or undefined for a normal result. */
export function degradation(value: unknown): Degradation | undefined {
  if ((typeof value === 'object' && value !== null) || typeof value === 'function') {
    return (value as Record<symbol, Degradation | undefined>)[DEGRADED];
  }
  return undefined;
}
