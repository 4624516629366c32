import { abortedError } from '../core/abort.js';
import type { CallContext } from '../core/context.js';
import type { Clock } from '../core/clock.js';
import { markDegraded } from '../core/degraded.js';
import { InvalidOptionsError } from '../core/errors.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { errorCode, type PolicyIdentity } from '../core/telemetry.js';
import { fn } from '../core/validate.js';

/** Any error class (`TimeoutError`, `TypeError`, a class of your own). */
export type ErrorClass = abstract new (...args: any[]) => unknown;

/** Which errors get the fallback: codes and classes (matched along the `cause` chain), or a predicate. */
export type FallbackHandle = readonly (string | ErrorClass)[] | ((error: unknown, context: CallContext) => boolean);

/** What the fallback replaces: the error thrown, or the result judged bad by `handleResult`. */
export interface FallbackOutcome<In = unknown> {
  error?: unknown;
  result?: In;
}

export type FallbackFunction<R, In = unknown> = (outcome: FallbackOutcome<In>, context: CallContext) => R | PromiseLike<R>;

/**
 * `R`: the fallback value's type (a call returning `T` resolves to `T | R`). `In`: the results
 * `handleResult` reads (the operation must return one); inferred from its parameter.
 */
export interface FallbackOptions<R = unknown, In = unknown> extends PolicyIdentity {
  /**
   * Errors to replace. An array of error codes (strings, compared with `error.code` and the
   * codes along the `cause` chain, so `'TIMEOUT'` also matches a `RETRIES_EXHAUSTED` whose last
   * attempt timed out, and Node codes such as `'ECONNREFUSED'` work) and error classes
   * (`instanceof`, also along the `cause` chain); or a predicate. Default: every error.
   * A call the caller (or an outer policy) aborted is never replaced: nobody waits for its value.
   */
  handle?: FallbackHandle;
  /** Results to replace, e.g. `(r: Response) => r.status === 503`. */
  handleResult?: (result: In) => boolean;
  /**
   * The replacement: a static value, or a function of the outcome and the call context (sync or
   * async). A function is always called, so to return a function as the value, wrap it:
   * `fallback: () => myFunction`. If the function throws, its error surfaces, with the replaced
   * error attached as `cause` when it has none.
   */
  fallback: R | FallbackFunction<R, In>;
  clock?: Clock;
}

export interface FallbackEvent {
  /** The error replaced (absent when a result was replaced). */
  error?: unknown;
  /** The result replaced (absent when an error was replaced). */
  result?: unknown;
}

/** A fallback's counters since it was built (`stats()`). */
export interface FallbackStats {
  /** Calls run. */
  calls: number;
  /** Fallback values served (one per `fallback` event). */
  fallbacks: number;
  /** Fallback functions that threw: their error surfaced instead of a value. */
  fallbackFailures: number;
}

/**
 * Replaces a failure with a degraded but useful answer: a cached list, a default, a partial
 * response (graceful degradation; the Google SRE book, "Addressing Cascading Failures"). The
 * value returned is marked with `degradation(value)` (objects) and an `onFallback` event fires
 * (for every value, primitives included), so a fallback never hides a failure from telemetry.
 */
export class FallbackPolicy<R = unknown, In = unknown> extends BasePolicy<R, In> {
  readonly kind = 'fallback';
  readonly #codes: ReadonlySet<string>;
  readonly #classes: readonly ErrorClass[];
  readonly #predicate: ((error: unknown, context: CallContext) => boolean) | undefined;
  /** Typed by `In` in the options; `run` only takes operations whose results are `In`. */
  readonly #handleResult: ((result: unknown) => boolean) | undefined;
  readonly #fallbackFn: FallbackFunction<R> | undefined;
  readonly #fallbackValue: R | undefined;
  #calls = 0;
  #fallbacks = 0;
  #fallbackFailures = 0;
  readonly #onFallback = this.telemetry.emitter<FallbackEvent>('fallback', (e) => ({
    outcome: 'substituted',
    attributes: 'error' in e ? { replaced: 'error', code: errorCode(e.error) } : { replaced: 'result' },
  }));
  /** Fires each time a fallback value is served instead of an error or a bad result. */
  readonly onFallback = this.#onFallback.event;

  constructor(options: FallbackOptions<R, In>) {
    super(options?.clock, options);
    if (typeof options !== 'object' || options === null || !('fallback' in options)) {
      throw new InvalidOptionsError('fallback() needs options: { fallback: value | (outcome, context) => value }');
    }
    const { handle, handleResult } = options;
    const codes = new Set<string>();
    const classes: ErrorClass[] = [];
    if (typeof handle === 'function') {
      if (isClass(handle)) {
        throw new InvalidOptionsError(`fallback.handle got the class ${handle.name}; list classes in an array (handle: [${handle.name}]) or pass a predicate`);
      }
      this.#predicate = handle;
    } else if (Array.isArray(handle)) {
      for (const item of handle) {
        if (typeof item === 'string' && item.length > 0) codes.add(item);
        else if (typeof item === 'function') classes.push(item as ErrorClass);
        else throw new InvalidOptionsError(`fallback.handle items must be error codes (strings) or error classes, got ${String(item)}`);
      }
      if (handle.length === 0) throw new InvalidOptionsError('fallback.handle is empty: it would never fall back (omit it to handle every error)');
    } else if (handle !== undefined) {
      throw new InvalidOptionsError('fallback.handle must be an array of error codes/classes or a predicate');
    }
    this.#codes = codes;
    this.#classes = classes;
    this.#handleResult = fn('fallback.handleResult', handleResult, undefined, '(result) => boolean') as ((result: unknown) => boolean) | undefined;
    if (typeof options.fallback === 'function') this.#fallbackFn = options.fallback as FallbackFunction<R>;
    else this.#fallbackValue = options.fallback;
  }

  async run<T extends In>(context: CallContext, next: Next<T>): Promise<T | R> {
    if (context.aborted) throw abortedError(context.abortReason); // nothing to run, nothing to replace
    this.#calls++;
    let result: T;
    try {
      result = await next(context);
    } catch (error) {
      if (context.aborted || !this.#handles(error, context)) throw error;
      return this.#substitute({ error }, error, context);
    }
    if (this.#handleResult !== undefined && this.#handleResult(result)) {
      return this.#substitute({ result }, result, context);
    }
    return result;
  }

  #handles(error: unknown, context: CallContext): boolean {
    if (this.#predicate !== undefined) return this.#predicate(error, context);
    if (this.#codes.size === 0 && this.#classes.length === 0) return true;
    return matchesChain(error, this.#codes, this.#classes);
  }

  async #substitute(outcome: FallbackOutcome, replaced: unknown, context: CallContext): Promise<R> {
    let value: R;
    if (this.#fallbackFn === undefined) {
      value = this.#fallbackValue as R;
    } else {
      try {
        value = await this.#fallbackFn(outcome, context);
      } catch (fallbackError) {
        this.#fallbackFailures++;
        if ('error' in outcome) attachCause(fallbackError, outcome.error);
        throw fallbackError;
      }
    }
    markDegraded(value, { source: 'fallback', reason: replaced });
    this.#fallbacks++;
    if (this.#onFallback.active) this.#onFallback.emit(outcome);
    return value;
  }

  stats(): FallbackStats {
    return { calls: this.#calls, fallbacks: this.#fallbacks, fallbackFailures: this.#fallbackFailures };
  }

  describe(): PolicyDescription {
    let handle: unknown = 'every error';
    if (this.#predicate !== undefined) handle = 'predicate';
    else if (this.#codes.size > 0 || this.#classes.length > 0) handle = [...this.#codes, ...this.#classes.map((c) => c.name)];
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        handle,
        handleResult: this.#handleResult !== undefined,
        fallback: this.#fallbackFn === undefined ? 'value' : 'function',
      },
    };
  }
}

/** True when `error`, or an error along its `cause` chain, has one of `codes` or is an instance of one of `classes`. */
export function matchesChain(error: unknown, codes: ReadonlySet<string>, classes: readonly ErrorClass[]): boolean {
  let current = error;
  for (let depth = 0; depth < 32 && current !== null && current !== undefined; depth++) {
    if (typeof current !== 'object' && typeof current !== 'function') return false;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && codes.has(code)) return true;
    for (let i = 0; i < classes.length; i++) if (current instanceof (classes[i] as any)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** Keeps the replaced error reachable from the fallback's own error, without overwriting a cause. */
function attachCause(error: unknown, cause: unknown): void {
  if (!(error instanceof Error) || error === cause || Object.hasOwn(error, 'cause')) return;
  try {
    Object.defineProperty(error, 'cause', { value: cause, enumerable: false, configurable: true, writable: true });
  } catch {
    // A frozen error keeps its shape; the fallback's error still surfaces.
  }
}

function isClass(fn: (...args: any[]) => unknown): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

/**
 * `fallback({ handle: ['CIRCUIT_OPEN', 'TIMEOUT'], fallback: cachedList })`, or with a function:
 * `fallback({ fallback: ({ error }) => defaultRecommendations() })`.
 */
export function fallback<R, In = unknown>(options: FallbackOptions<R, In>): FallbackPolicy<R, In> {
  return new FallbackPolicy<R, In>(options);
}
