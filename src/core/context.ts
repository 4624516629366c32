import type { Clock } from './clock.js';
import { InvalidInputError } from './errors.js';

export type Priority = 'critical' | 'high' | 'normal' | 'low' | 'best-effort';
export const PRIORITIES: readonly Priority[] = ['critical', 'high', 'normal', 'low', 'best-effort'];

/** What a caller may say about one call. */
export interface CallOptions {
  /** Aborts the call (and every wait inside it). */
  signal?: AbortSignal;
  /** Absolute deadline in clock milliseconds. */
  deadline?: number;
  /** Relative deadline; combined with `deadline`, the earlier wins. */
  timeoutMs?: number;
  priority?: Priority;
  tags?: Readonly<Record<string, unknown>>;
}

export type Operation<T> = (context: CallContext) => PromiseLike<T> | T;

/**
 * What a call can take its deadline, abort signal and priority from: the inbound request it
 * serves (`request.bulwark`), a `CallContext`, or any `{ deadline, clock?, signal?, priority? }`.
 */
export interface CallContextSource {
  /** Absolute deadline on `clock` (Infinity without one). */
  readonly deadline: number;
  /** The clock `deadline` is measured on; the caller's clock when absent. */
  readonly clock?: Clock;
  readonly signal?: AbortSignal;
  readonly priority?: Priority;
  readonly tags?: Readonly<Record<string, unknown>>;
}

/**
 * The key under which an object whose `signal` is a getter (an inbound `RequestContext`) keeps a
 * reference to itself, as an own enumerable data property. Object spread copies own enumerable
 * properties only, so `{ ...request.bulwark, safe: true }` would lose the signal and silently
 * stop cancelling the call; the copy keeps this key, and guarded clients follow it back to the
 * source. (An own accessor instead would cost every request a `defineProperty`; a symbol key is
 * skipped by `JSON.stringify`, so the self-reference never makes a log line throw.)
 */
export const CALL_SOURCE: unique symbol = Symbol.for('bulwark.callSource');

/** The source a spread copy of a context points back to (see `CALL_SOURCE`), if any. */
export function callSourceOf(options: object | undefined): CallContextSource | undefined {
  return options === undefined ? undefined : (options as { [CALL_SOURCE]?: CallContextSource })[CALL_SOURCE];
}

/**
 * `source.deadline` on `clock`: measured on the source's own clock and re-anchored on ours, so
 * the remaining budget is what carries over (two clocks need not agree on the time).
 */
export function deadlineOnClock(source: CallContextSource, clock: Clock, now = clock.now()): number {
  const deadline = source.deadline;
  if (deadline === Infinity) return Infinity;
  return source.clock === undefined || source.clock === clock ? deadline : now + (deadline - source.clock.now());
}


/**
 * What an operation sees of its call: a signal, the deadline, the attempt number,
 * priority and tags. Policies derive child contexts (a retry attempt, a timeout scope,
 * a hedge) instead of mutating the caller's.
 *
 * Signals are created lazily: an AbortController costs little, but linking it to a parent
 * signal costs an event listener (microseconds), so it happens only when someone reads
 * `signal` on a context that can be aborted by a policy.
 */
export class CallContext {
  readonly clock: Clock;
  readonly deadline: number;
  readonly attempt: number;
  readonly priority: Priority;
  readonly tags: Readonly<Record<string, unknown>>;
  /** The caller's operation; policies pass the context down and the innermost layer calls this. */
  readonly operation: Operation<unknown>;

  readonly #parent: CallContext | undefined;
  readonly #callerSignal: AbortSignal | undefined;
  readonly #abortable: boolean;
  #controller: AbortController | undefined;
  #abortReason: unknown;
  #aborted = false;
  #linkedTo: AbortSignal | undefined;
  #quietSignal: AbortSignal | undefined;
  #onParentAbort: (() => void) | undefined;

  private constructor(
    clock: Clock,
    operation: Operation<unknown>,
    deadline: number,
    attempt: number,
    priority: Priority,
    tags: Readonly<Record<string, unknown>>,
    parent: CallContext | undefined,
    callerSignal: AbortSignal | undefined,
    abortable: boolean,
  ) {
    this.clock = clock;
    this.operation = operation;
    this.deadline = deadline;
    this.attempt = attempt;
    this.priority = priority;
    this.tags = tags;
    this.#parent = parent;
    this.#callerSignal = callerSignal;
    this.#abortable = abortable;
  }

  static root(clock: Clock, operation: Operation<unknown>, options?: CallOptions | AbortSignal): CallContext {
    if (options === undefined) {
      return new CallContext(clock, operation, Infinity, 1, 'normal', EMPTY_TAGS, undefined, undefined, false);
    }
    if (isAbortSignal(options)) {
      return new CallContext(clock, operation, Infinity, 1, 'normal', EMPTY_TAGS, undefined, options, false);
    }
    let deadline = options.deadline ?? Infinity;
    if (options.timeoutMs !== undefined) {
      if (!(options.timeoutMs >= 0)) throw invalidCall(`timeoutMs must be >= 0, got ${options.timeoutMs}`);
      deadline = Math.min(deadline, clock.now() + options.timeoutMs);
    }
    if (Number.isNaN(deadline)) throw invalidCall('deadline must be a number of milliseconds');
    if (options.priority !== undefined && !PRIORITIES.includes(options.priority)) {
      throw invalidCall(`priority must be one of ${PRIORITIES.join(', ')}, got ${String(options.priority)}`);
    }
    // A spread copy of an inbound request context lost its `signal` and `tags` getters: read
    // them from the context it points back to (see CALL_SOURCE).
    const source = options.signal === undefined || options.tags === undefined ? callSourceOf(options) : undefined;
    return new CallContext(
      clock, operation, deadline, 1, options.priority ?? 'normal', options.tags ?? source?.tags ?? EMPTY_TAGS,
      undefined, options.signal ?? source?.signal, false,
    );
  }

  /**
   * A child context. `abortable` gives it its own abort (a timeout or hedge scope); the
   * child's deadline can only shrink.
   */
  derive(changes: { deadline?: number; attempt?: number; abortable?: boolean }): CallContext {
    return new CallContext(
      this.clock,
      this.operation,
      changes.deadline === undefined ? this.deadline : Math.min(this.deadline, changes.deadline),
      changes.attempt ?? this.attempt,
      this.priority,
      this.tags,
      this,
      undefined,
      changes.abortable ?? false,
    );
  }

  /** Milliseconds left before the deadline (Infinity without one). */
  remaining(): number {
    return this.deadline === Infinity ? Infinity : this.deadline - this.clock.now();
  }

  /** True once this call was aborted by the caller or by a policy. Cheap: creates no signal. */
  get aborted(): boolean {
    if (this.#aborted) return true;
    if (this.#callerSignal?.aborted) return true;
    return this.#parent?.aborted ?? false;
  }

  /** Why the call was aborted (the first reason wins). */
  get abortReason(): unknown {
    if (this.#aborted) return this.#abortReason;
    if (this.#callerSignal?.aborted) return this.#callerSignal.reason;
    return this.#parent?.abortReason;
  }

  get signal(): AbortSignal {
    if (!this.#abortable) {
      if (this.#callerSignal) return this.#callerSignal;
      if (this.#parent) return this.#parent.signal;
      // A call nobody can abort still gets its own signal (created on first read), so that
      // listeners an operation forgets to remove die with the call instead of piling up.
      return (this.#quietSignal ??= new AbortController().signal);
    }
    if (this.#controller) return this.#controller.signal;
    const controller = (this.#controller = new AbortController());
    if (this.#aborted) {
      controller.abort(this.#abortReason);
      return controller.signal;
    }
    const upstream = this.#parent?.canAbort ? this.#parent.signal : undefined;
    if (upstream) {
      if (upstream.aborted) {
        controller.abort(upstream.reason);
      } else {
        this.#onParentAbort = () => this.abort(upstream.reason);
        this.#linkedTo = upstream;
        upstream.addEventListener('abort', this.#onParentAbort, { once: true });
      }
    }
    return controller.signal;
  }

  /** False when nothing (caller or policy) can ever abort this call: no need to listen. */
  get canAbort(): boolean {
    return this.#abortable || this.#callerSignal !== undefined || (this.#parent?.canAbort ?? false);
  }

  /** Aborts this scope (only for contexts derived with `abortable: true`). */
  abort(reason?: unknown): void {
    if (!this.#abortable) throw new Error('bulwark: this context is not abortable; derive one with { abortable: true }');
    if (this.#aborted) return;
    this.#aborted = true;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
    this.release();
  }

  /** Detaches from the parent signal. Call when the scope's work has ended. */
  release(): void {
    if (this.#linkedTo && this.#onParentAbort) {
      this.#linkedTo.removeEventListener('abort', this.#onParentAbort);
      this.#linkedTo = undefined;
      this.#onParentAbort = undefined;
    }
  }

  /**
   * Runs `onAbort` once if this call is aborted, until the returned function is called.
   * For waits (retry delays, queues): costs a listener only while waiting.
   */
  onAbort(onAbort: (reason: unknown) => void): () => void {
    if (this.aborted) {
      onAbort(this.abortReason);
      return noop;
    }
    if (!this.canAbort) return noop;
    const signal = this.signal;
    const listener = () => onAbort(signal.reason);
    signal.addEventListener('abort', listener, { once: true });
    return () => signal.removeEventListener('abort', listener);
  }
}

/** Bad call options are bad input (INVALID_INPUT), not bad policy configuration. */
function invalidCall(message: string): InvalidInputError {
  return new InvalidInputError(message);
}

const EMPTY_TAGS: Readonly<Record<string, unknown>> = Object.freeze({});
const noop = (): void => {};

export function isAbortSignal(value: unknown): value is AbortSignal {
  return typeof value === 'object' && value !== null && typeof (value as AbortSignal).aborted === 'boolean'
    && typeof (value as AbortSignal).addEventListener === 'function';
}
