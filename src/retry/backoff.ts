import { InvalidOptionsError } from '../core/errors.js';
import type { Random } from '../core/random.js';
import { nonNegative, oneOf, ratio } from '../core/validate.js';

/**
 * Backoffs are immutable values (cockatiel style): a policy shares one between all its
 * concurrent calls, and each call carries its own "previous delay". `delay()` is pure
 * given the random source.
 */
export type BackoffKind = 'constant' | 'linear' | 'exponential' | 'fibonacci' | 'decorrelated';

/**
 * Jitter as defined in Marc Brooker's "Exponential Backoff And Jitter" (AWS):
 * - none: the schedule as is;
 * - full: random(0, d);
 * - equal: d/2 + random(0, d/2);
 * - proportional: d × (1 ± ratio × u), u uniform in [0, 1);
 * - additive: d + random(0, jitterMs), a fixed amount of noise on top of the schedule (for
 *   exponential, base·2^k + U(0, jitterMs), the form many SDKs and course texts use);
 * - decorrelated: min(cap, random(base, previous × 3)). It is a sequence of its own rather
 *   than noise on a schedule, so it goes with (and only with) `kind: 'decorrelated'`.
 */
export type JitterKind = 'none' | 'full' | 'equal' | 'proportional' | 'additive' | 'decorrelated';

export const BACKOFF_KINDS: readonly BackoffKind[] = ['constant', 'linear', 'exponential', 'fibonacci', 'decorrelated'];
export const JITTER_KINDS: readonly JitterKind[] = ['none', 'full', 'equal', 'proportional', 'additive', 'decorrelated'];

/** Node timers cannot wait longer than this (2^31 − 1 ms, about 24.8 days); longer waits fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

export const BACKOFF_DEFAULTS = Object.freeze({
  kind: 'exponential' as BackoffKind,
  baseDelayMs: 100,
  maxDelayMs: 30_000,
  factor: 2,
  jitter: 'full' as JitterKind,
  jitterRatio: 0.5,
});

export interface Backoff {
  readonly kind: string;
  /**
   * The wait before retry number `retry` (1 = the wait before the second call), given the
   * previous wait this call computed (0 before the first retry). Never negative, never above
   * the backoff's cap.
   */
  delay(retry: number, previousDelayMs: number, random: Random): number;
  describe(): Record<string, unknown>;
}

export interface BackoffOptions {
  /** Default 'exponential' ('decorrelated' when `jitter: 'decorrelated'`). */
  kind?: BackoffKind;
  /** The first delay (and the step of linear/fibonacci). Default 100 ms. 0 is legal: no wait. */
  baseDelayMs?: number;
  /** The cap, applied after jitter: no delay ever exceeds it. Default 30 000 ms. */
  maxDelayMs?: number;
  /** Exponential growth factor (>= 1). Default 2: 100, 200, 400, ... */
  factor?: number;
  /** Default 'full' (AWS); 'decorrelated' for the decorrelated kind. */
  jitter?: JitterKind;
  /** The ± ratio of proportional jitter, 0..1. Default 0.5 (resilience4j / Google HTTP client). */
  jitterRatio?: number;
  /**
   * The most additive jitter adds, in ms (`jitter: 'additive'` only), at most `maxDelayMs`.
   * Default `baseDelayMs` (capped at `maxDelayMs`).
   */
  jitterMs?: number;
}

/** The built-in backoff: a schedule, a jitter and a cap. */
export class ScheduleBackoff implements Backoff {
  readonly kind: BackoffKind;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  readonly jitter: JitterKind;
  readonly jitterRatio: number;
  /** The additive jitter's span; 0 for the other jitter kinds. */
  readonly jitterMs: number;

  constructor(options: BackoffOptions = {}) {
    const defaultKind: BackoffKind = options.jitter === 'decorrelated' ? 'decorrelated' : BACKOFF_DEFAULTS.kind;
    this.kind = oneOf('backoff.kind', options.kind, BACKOFF_KINDS, defaultKind);
    const defaultJitter: JitterKind = this.kind === 'decorrelated' ? 'decorrelated' : BACKOFF_DEFAULTS.jitter;
    this.jitter = oneOf('backoff.jitter', options.jitter, JITTER_KINDS, defaultJitter);
    if ((this.kind === 'decorrelated') !== (this.jitter === 'decorrelated')) {
      throw new InvalidOptionsError(
        "decorrelated jitter is Brooker's self-contained sequence min(cap, random(base, previous × 3)): "
        + `use kind 'decorrelated' with jitter 'decorrelated' (or omit jitter); got kind '${this.kind}' with jitter '${this.jitter}'`,
      );
    }
    this.baseDelayMs = finiteDelay('backoff.baseDelayMs', options.baseDelayMs, BACKOFF_DEFAULTS.baseDelayMs);
    this.maxDelayMs = finiteDelay('backoff.maxDelayMs', options.maxDelayMs, BACKOFF_DEFAULTS.maxDelayMs);
    this.factor = nonNegative('backoff.factor', options.factor, BACKOFF_DEFAULTS.factor);
    if (!(this.factor >= 1) || !Number.isFinite(this.factor)) throw new InvalidOptionsError(`backoff.factor must be a finite number >= 1, got ${String(options.factor)}`);
    this.jitterRatio = ratio('backoff.jitterRatio', options.jitterRatio, BACKOFF_DEFAULTS.jitterRatio);
    this.jitterMs = additiveJitterMs(options, this.jitter, this.baseDelayMs, this.maxDelayMs);
    Object.freeze(this);
  }

  delay(retry: number, previousDelayMs: number, random: Random): number {
    const n = retry >= 1 ? Math.floor(retry) : 1;
    // Additive jitter has room left under the cap (the schedule stops at max − jitterMs), so
    // clients that reached the cap stay spread over [max − jitterMs, max) instead of all
    // retrying at exactly max.
    const scheduled = Math.min(this.maxDelayMs - this.jitterMs, scheduleDelay(this.kind, this.baseDelayMs, this.factor, n));
    const jittered = applyJitter(this, scheduled, previousDelayMs, random);
    // The cap comes last: capping the schedule and jittering afterwards would give delays up to
    // 1.5 × max.
    return jittered > this.maxDelayMs ? this.maxDelayMs : jittered > 0 ? jittered : 0;
  }

  describe(): Record<string, unknown> {
    return {
      kind: this.kind,
      baseDelayMs: this.baseDelayMs,
      maxDelayMs: this.maxDelayMs,
      ...(this.kind === 'exponential' ? { factor: this.factor } : {}),
      jitter: this.jitter,
      ...(this.jitter === 'proportional' ? { jitterRatio: this.jitterRatio } : {}),
      ...(this.jitter === 'additive' ? { jitterMs: this.jitterMs } : {}),
    };
  }
}

/**
 * The deterministic schedule before jitter and cap, for retry n >= 1:
 * constant base; linear base × n; exponential base × factor^(n−1); fibonacci base × 1, 2, 3,
 * 5, 8, ... (fib(n+1), so the wait grows from the first retry); decorrelated has no schedule
 * (base, the jitter does the rest). May return Infinity (the caller caps it).
 */
export function scheduleDelay(kind: BackoffKind, baseDelayMs: number, factor: number, retry: number): number {
  if (baseDelayMs === 0) return 0; // 0 × Infinity would be NaN for huge retry numbers
  switch (kind) {
    case 'constant':
    case 'decorrelated':
      return baseDelayMs;
    case 'linear':
      return baseDelayMs * retry;
    case 'exponential':
      return baseDelayMs * factor ** (retry - 1);
    case 'fibonacci':
      return baseDelayMs * fibonacci(retry);
  }
}

/** 1, 2, 3, 5, 8, 13, ... for n = 1, 2, 3, ... (Infinity past the float range). */
export function fibonacci(n: number): number {
  if (n > 1500) return Infinity;
  let a = 1;
  let b = 2;
  for (let i = 1; i < n; i++) {
    const c = a + b;
    a = b;
    b = c;
  }
  return a;
}

/** What a jitter reads of its backoff. */
export interface JitterSettings {
  readonly jitter: JitterKind;
  readonly baseDelayMs: number;
  readonly jitterRatio: number;
  readonly jitterMs: number;
}

/**
 * Jitter on an already capped delay `d` (never Infinity here). `baseDelayMs` and `previous`
 * serve decorrelated jitter only: its first step starts from base.
 */
export function applyJitter(settings: JitterSettings, d: number, previous: number, random: Random): number {
  const { jitter, baseDelayMs: base, jitterRatio } = settings;
  switch (jitter) {
    case 'none':
      return d;
    case 'full':
      return random() * d;
    case 'equal':
      return d / 2 + random() * (d / 2);
    case 'proportional':
      return d * (1 + jitterRatio * (2 * random() - 1));
    case 'additive':
      return d + random() * settings.jitterMs;
    case 'decorrelated': {
      const from = previous > 0 && Number.isFinite(previous) ? previous : base;
      const upper = Math.max(base, from * 3);
      return base + random() * (upper - base);
    }
  }
}

/** Builds a backoff from options. */
export function backoff(options: BackoffOptions = {}): ScheduleBackoff {
  return new ScheduleBackoff(options);
}

/** The options of the named backoffs (`exponentialBackoff()`, ...): a `BackoffOptions` whose kind the name says. */
export type ShorthandBackoffOptions = Omit<BackoffOptions, 'kind'>;

/**
 * The same delay every time, jittered like every other kind unless `jitter: 'none'` is given
 * (a fixed interval keeps clients that failed together retrying together: Marc Brooker,
 * "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
 */
export function constantBackoff(delayMs: number, options: Omit<ShorthandBackoffOptions, 'baseDelayMs' | 'factor'> = {}): ScheduleBackoff {
  return new ScheduleBackoff({ ...options, kind: 'constant', baseDelayMs: delayMs });
}

export function linearBackoff(options: Omit<ShorthandBackoffOptions, 'factor'> = {}): ScheduleBackoff {
  return new ScheduleBackoff({ ...options, kind: 'linear' });
}

export function exponentialBackoff(options: ShorthandBackoffOptions = {}): ScheduleBackoff {
  return new ScheduleBackoff({ ...options, kind: 'exponential' });
}

export function fibonacciBackoff(options: Omit<ShorthandBackoffOptions, 'factor'> = {}): ScheduleBackoff {
  return new ScheduleBackoff({ ...options, kind: 'fibonacci' });
}

/** Brooker's decorrelated jitter: min(cap, random(base, previous × 3)). */
export function decorrelatedBackoff(options: Pick<BackoffOptions, 'baseDelayMs' | 'maxDelayMs'> = {}): ScheduleBackoff {
  return new ScheduleBackoff({ ...options, kind: 'decorrelated', jitter: 'decorrelated' });
}

/**
 * Reconnecting to a server that went away (a database, a message broker, a coordination
 * service): exponential from 100 ms, doubling, capped at 30 s, each delay varied by ±20 %
 * (proportional jitter, never above the cap). Options override any of these.
 */
export function reconnectBackoff(options: ShorthandBackoffOptions = {}): ScheduleBackoff {
  return new ScheduleBackoff({ baseDelayMs: 100, maxDelayMs: 30_000, jitter: 'proportional', jitterRatio: 0.2, ...options, kind: 'exponential' });
}

/** True for objects that can serve as a backoff (built-in or user-defined). */
export function isBackoff(value: unknown): value is Backoff {
  return typeof value === 'object' && value !== null && typeof (value as Backoff).delay === 'function';
}

/** A Backoff value as is; options or a kind name built into one. */
export function toBackoff(value: Backoff | BackoffOptions | BackoffKind | undefined): Backoff {
  if (value === undefined) return new ScheduleBackoff();
  if (typeof value === 'string') return new ScheduleBackoff({ kind: value });
  if (isBackoff(value)) return value;
  if (typeof value !== 'object' || value === null) throw new InvalidOptionsError(`backoff must be a Backoff, options or a kind name, got ${String(value)}`);
  // A misspelt key (`baseMs` for `baseDelayMs`) would otherwise silently fall back to a default.
  const unknown = Object.keys(value).filter((key) => !BACKOFF_OPTION_KEYS.has(key));
  if (unknown.length > 0) {
    throw new InvalidOptionsError(`unknown backoff option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; expected ${[...BACKOFF_OPTION_KEYS].join(', ')}`);
  }
  return new ScheduleBackoff(value);
}

const BACKOFF_OPTION_KEYS: ReadonlySet<string> = new Set(['kind', 'baseDelayMs', 'maxDelayMs', 'factor', 'jitter', 'jitterRatio', 'jitterMs']);

/** The additive jitter's span: given only with `jitter: 'additive'`, never more than the cap. */
function additiveJitterMs(options: BackoffOptions, jitter: JitterKind, baseDelayMs: number, maxDelayMs: number): number {
  if (jitter !== 'additive') {
    if (options.jitterMs !== undefined) throw new InvalidOptionsError(`backoff.jitterMs is the span of additive jitter: it needs jitter 'additive', got '${jitter}'`);
    return 0;
  }
  const jitterMs = finiteDelay('backoff.jitterMs', options.jitterMs, Math.min(baseDelayMs, maxDelayMs));
  if (jitterMs > maxDelayMs) throw new InvalidOptionsError(`backoff.jitterMs (${jitterMs}) must be <= maxDelayMs (${maxDelayMs}): no delay exceeds the cap`);
  return jitterMs;
}

function finiteDelay(name: string, value: number | undefined, fallback: number): number {
  const v = nonNegative(name, value, fallback);
  if (v > MAX_TIMER_MS) throw new InvalidOptionsError(`${name} must be <= ${MAX_TIMER_MS} ms (the longest Node timer), got ${String(value)}`);
  return v;
}
