import { InvalidOptionsError, type BulwarkError } from './errors.js';

/**
 * Option checks run when a policy is built (Polly's rule), so bad configuration fails at
 * start-up with a clear message instead of misbehaving under load. `??` everywhere, never
 * `||`: zero is a legal value for most options.
 *
 * Every check takes (name, value, fallback): the fallback is the option's default, or REQUIRED
 * for an option with none, so leaving it out fails naming the option and what it takes.
 */

/**
 * The error a check throws: InvalidOptionsError while a policy is built (the default),
 * InvalidInputError for a value passed with a call (INVALID_OPTIONS is for build time only).
 */
export type InvalidValueError = new (message: string) => BulwarkError;

/** The fallback of an option that has no default: a check given it fails when the option is left out. */
export const REQUIRED: unique symbol = Symbol('required');

type Fallback<T> = T | typeof REQUIRED;

/** Any function, whatever it takes (`never[]` accepts every parameter list). */
type AnyFunction = (...args: never[]) => unknown;

/**
 * A value as a message shows it: strings quoted (so '5' and 5 differ), objects by kind only
 * (their text is rarely useful, may be long, and a custom toString could throw).
 */
function shown(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/** The one shape of every check: the default (or REQUIRED) when left out, then the test, then a message naming the option. */
function check<T>(
  name: string, value: T | undefined, fallback: Fallback<T>, expected: string, valid: (v: T) => boolean,
  invalid: InvalidValueError = InvalidOptionsError,
): T {
  const v = value ?? fallback;
  if (value === undefined && v === REQUIRED) throw new invalid(`${name} is required: ${expected}`);
  if (v === REQUIRED || !valid(v)) throw new invalid(`${name} must be ${expected}, got ${shown(value)}`);
  return v;
}

export function nonNegative(name: string, value: number | undefined, fallback: Fallback<number>, invalid?: InvalidValueError): number {
  return check(name, value, fallback, 'a number >= 0', (v) => typeof v === 'number' && v >= 0, invalid);
}

export function positive(name: string, value: number | undefined, fallback: Fallback<number>, invalid?: InvalidValueError): number {
  return check(name, value, fallback, 'a number > 0', (v) => typeof v === 'number' && v > 0, invalid);
}

export function positiveInt(name: string, value: number | undefined, fallback: Fallback<number>): number {
  return check(name, value, fallback, 'an integer >= 1', (v) => Number.isInteger(v) && v >= 1);
}

/**
 * A bound on keys one in-process limiter tracks: an integer from 1 to 2^24 (the most entries a
 * JavaScript Map holds, which the hybrid limiter uses; the memory limiter's table keeps the same bound).
 */
export function keyLimit(name: string, value: number | undefined, fallback: Fallback<number>): number {
  const v = positiveInt(name, value, fallback);
  if (v > 2 ** 24) throw new InvalidOptionsError(`${name} must be <= ${2 ** 24} (the most keys an in-process limiter tracks), got ${v}`);
  return v;
}

export function nonNegativeInt(name: string, value: number | undefined, fallback: Fallback<number>): number {
  return check(name, value, fallback, 'an integer >= 0 (or Infinity)', (v) => (Number.isInteger(v) && v >= 0) || v === Infinity);
}

export function ratio(name: string, value: number | undefined, fallback: Fallback<number>): number {
  return check(name, value, fallback, 'a number between 0 and 1', (v) => typeof v === 'number' && v >= 0 && v <= 1);
}

export function oneOf<T extends string>(name: string, value: T | undefined, allowed: readonly T[], fallback: Fallback<T>): T {
  return check(name, value, fallback, `one of ${allowed.join(', ')}`, (v) => allowed.includes(v));
}

/**
 * A function option (a predicate, a hook, a random source). With no fallback, leaving it out is
 * fine and gives undefined. `shape` says more than "a function" where that helps the reader,
 * e.g. 'returning [0, 1)' or '(request) => user id'.
 */
export function fn<F extends AnyFunction>(name: string, value: F | undefined, fallback?: undefined, shape?: string): F | undefined;
export function fn<F extends AnyFunction>(name: string, value: F | undefined, fallback: Fallback<F>, shape?: string): F;
export function fn<F extends AnyFunction>(name: string, value: F | undefined, fallback?: Fallback<F>, shape?: string): F | undefined {
  // Only undefined means "left out": null is a value, and not a function.
  if (value === undefined && fallback !== REQUIRED) return fallback;
  return check<F>(name, value, REQUIRED, shape === undefined ? 'a function' : `a function ${shape}`, (v) => typeof v === 'function');
}
