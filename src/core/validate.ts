import { InvalidOptionsError, type BulwarkError } from './errors.js';

/**
 * Option checks run when a policy is built (Polly's rule), so bad configuration fails at
 * start-up with a clear message instead of misbehaving under load. `??` everywhere, never
 * `||`: zero is a legal value for most options.
 */

/**
 * The error a check throws: InvalidOptionsError while a policy is built (the default),
 * InvalidInputError for a value passed with a call (INVALID_OPTIONS is for build time only).
 */
export type InvalidValueError = new (message: string) => BulwarkError;

export function nonNegative(name: string, value: number | undefined, fallback: number, invalid: InvalidValueError = InvalidOptionsError): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new invalid(`${name} must be a number >= 0, got ${String(value)}`);
  return v;
}

export function positive(name: string, value: number | undefined, fallback: number, invalid: InvalidValueError = InvalidOptionsError): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v <= 0) throw new invalid(`${name} must be a number > 0, got ${String(value)}`);
  return v;
}

export function positiveInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 1) throw new InvalidOptionsError(`${name} must be an integer >= 1, got ${String(value)}`);
  return v;
}

/**
 * A bound on keys one in-process limiter tracks: an integer from 1 to 2^24 (the most entries a
 * JavaScript Map holds, which the hybrid limiter uses; the memory limiter's table keeps the same bound).
 */
export function keyLimit(name: string, value: number | undefined, fallback: number): number {
  const v = positiveInt(name, value, fallback);
  if (v > 2 ** 24) throw new InvalidOptionsError(`${name} must be <= ${2 ** 24} (the most keys an in-process limiter tracks), got ${v}`);
  return v;
}

export function nonNegativeInt(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < 0) {
    if (v !== Infinity) throw new InvalidOptionsError(`${name} must be an integer >= 0 (or Infinity), got ${String(value)}`);
  }
  return v;
}

export function ratio(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new InvalidOptionsError(`${name} must be between 0 and 1, got ${String(value)}`);
  return v;
}

export function oneOf<T extends string>(name: string, value: T | undefined, allowed: readonly T[], fallback: T): T {
  const v = value ?? fallback;
  if (!allowed.includes(v)) throw new InvalidOptionsError(`${name} must be one of ${allowed.join(', ')}, got ${String(value)}`);
  return v;
}
