import { abortedError } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { BulwarkError, InvalidOptionsError, TimeoutError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { systemRandom, type Random } from '../core/random.js';
import { REQUIRED, fn, ratio } from '../core/validate.js';
import type { Distribution } from './distributions.js';

/** What every kind of fault has. */
export interface FaultBase {
  /** Probability (0..1) of injecting into a call that passes `when`. Required: no accidental 100%. */
  rate: number;
  /** Allow-list: only calls for which this returns true are eligible (e.g. test accounts, one route). */
  when?: (context: CallContext) => boolean;
  /** A label for events and stats. */
  name?: string;
}

/** Adds delay before the call (abortable, on the policy's clock), then lets it proceed. */
export interface LatencyFault extends FaultBase {
  type: 'latency';
  /** Fixed ms or a distribution (see `distributions`), drawn from the policy's random source. */
  ms: number | Distribution;
}

/** Fails the call without calling the dependency. */
export interface ErrorFault extends FaultBase {
  type: 'error';
  /**
   * The error to throw, or a function making one per call. Default: a `FaultInjectedError`
   * (code FAULT_INJECTED), carrying `status`/`statusCode` when `status` is given.
   */
  error?: unknown;
  /** An HTTP-like status for the default error (e.g. 503, 429), for status-based classifiers. */
  status?: number;
}

/**
 * A connection reset: rejects with an Error whose `code` is 'ECONNRESET' (as Node's sockets
 * do, so network-error classifiers treat it as one). `phase: 'after'` runs the operation first
 * and loses its answer: the side effect happened but the caller cannot know (the case
 * idempotency keys exist for). Default 'before'.
 */
export interface AbortFault extends FaultBase {
  type: 'abort';
  phase?: 'before' | 'after';
}

/**
 * A black hole: the call hangs without reaching the dependency until it is aborted (e.g. by a
 * timeout policy outside) or `ms` pass (default 30000), then fails with TIMEOUT.
 */
export interface TimeoutFault extends FaultBase {
  type: 'timeout';
  ms?: number;
}

/** Replaces a successful result (corrupt, empty or stale answers). */
export interface ResultFault extends FaultBase {
  type: 'result';
  result: (value: unknown, context: CallContext) => unknown;
}

export type Fault = LatencyFault | ErrorFault | AbortFault | TimeoutFault | ResultFault;

export interface FaultInjectionOptions {
  /** Evaluated in order for each call; each draws its own chance. Latency faults add up. */
  faults: readonly Fault[];
  /** Off unless enabled (here or with `enable()`): a disabled policy is a single branch. */
  enabled?: boolean;
  random?: Random;
  clock?: Clock;
  name?: string;
}

export interface FaultInjectedEvent {
  type: Fault['type'];
  /** Position of the fault in `faults`. */
  index: number;
  name?: string;
  /** For latency faults: the delay drawn. */
  delayMs?: number;
}

/** The default error of an `error` fault. */
export class FaultInjectedError extends BulwarkError {
  readonly statusCode: number | undefined;
  constructor(readonly fault: string, readonly status?: number) {
    super('FAULT_INJECTED', `injected fault${fault ? ` "${fault}"` : ''}${status === undefined ? '' : `: HTTP ${status}`}`, { captureStack: false });
    this.statusCode = status;
  }
}

/** What `abort` faults throw: shaped like Node's socket reset. */
export function connectionResetError(): Error & { code: 'ECONNRESET'; syscall: string; injected: true } {
  return Object.assign(new Error('read ECONNRESET (injected)'), { code: 'ECONNRESET' as const, syscall: 'read', injected: true as const });
}

const MAX_FAULTS = 32;

/**
 * Failure injection as a policy, for chaos experiments run on purpose and in a controlled way (the
 * "Principles of Chaos Engineering", principlesofchaos.org): put it innermost, next to the call, to
 * test how the policies outside it (timeouts, retries, breakers, fallbacks, caches) behave. Off by
 * default; `enable()`/`disable()` switch it at run time. Each fault has a rate and an optional
 * allow-list; with a seeded `random` the injected calls are reproducible.
 */
export class FaultInjectionPolicy extends BasePolicy {
  readonly kind = 'fault-injection';
  #enabled: boolean;
  #faults: readonly Fault[];
  #injected: number[];
  #calls = 0;
  readonly #random: Random;
  readonly #onInjected = new EventEmitter<FaultInjectedEvent>();
  /** A fault was injected into a call. */
  readonly onInjected = this.#onInjected.event;

  constructor(options: FaultInjectionOptions) {
    super(options.clock, options);
    this.#faults = validateFaults(options.faults);
    this.#injected = this.#faults.map(() => 0);
    this.#enabled = options.enabled ?? false;
    this.#random = fn('faultInjection.random', options.random, systemRandom, 'returning [0, 1)');
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  enable(): void {
    this.#enabled = true;
  }

  disable(): void {
    this.#enabled = false;
  }

  get faults(): readonly Fault[] {
    return this.#faults;
  }

  /** Replaces the faults (validated) and resets the counts. */
  setFaults(faults: readonly Fault[]): void {
    this.#faults = validateFaults(faults);
    this.#injected = this.#faults.map(() => 0);
    this.#calls = 0;
  }

  /** Calls seen while enabled, and injections per fault (same order as `faults`). */
  stats(): { calls: number; injected: number[] } {
    return { calls: this.#calls, injected: [...this.#injected] };
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (!this.#enabled) return next(context);
    return this.#inject(context, next);
  }

  #inject<T>(context: CallContext, next: Next<T>): Promise<T> {
    this.#calls++;
    // Decide synchronously; a call that draws no fault costs no extra promise.
    let chosen = 0; // bit set of the faults that fire
    const faults = this.#faults;
    try {
      for (let i = 0; i < faults.length; i++) {
        const fault = faults[i]!;
        if (fault.rate <= 0) continue;
        if (fault.when !== undefined && !fault.when(context)) continue;
        if (fault.rate >= 1 || this.#random() < fault.rate) chosen |= 1 << i;
      }
    } catch (error) {
      return Promise.reject(error); // a broken allow-list fails the call, never throws synchronously
    }
    if (chosen === 0) return next(context);
    return this.#apply(chosen, context, next);
  }

  async #apply<T>(chosen: number, context: CallContext, next: Next<T>): Promise<T> {
    let resetAfter = false;
    const replacements: ResultFault[] = [];
    const faults = this.#faults;
    for (let i = 0; i < faults.length; i++) {
      if ((chosen & (1 << i)) === 0) continue;
      const fault = faults[i]!;
      this.#injected[i]!++;
      switch (fault.type) {
        case 'latency': {
          const ms = typeof fault.ms === 'number' ? fault.ms : Math.max(0, fault.ms(this.#random));
          this.#emit(fault, i, ms);
          await this.#sleep(ms, context);
          break;
        }
        case 'error':
          this.#emit(fault, i);
          throw makeError(fault, context);
        case 'abort':
          this.#emit(fault, i);
          if (fault.phase === 'after') resetAfter = true;
          else throw connectionResetError();
          break;
        case 'timeout': {
          this.#emit(fault, i);
          const ms = fault.ms ?? 30_000;
          await this.#sleep(ms, context);
          throw new TimeoutError(ms);
        }
        case 'result':
          this.#emit(fault, i);
          replacements.push(fault);
          break;
      }
    }
    if (resetAfter) {
      await next(context).catch(() => undefined);
      throw connectionResetError();
    }
    let value: unknown = await next(context);
    for (const fault of replacements) value = fault.result(value, context);
    return value as T;
  }

  #emit(fault: Fault, index: number, delayMs?: number): void {
    if (!this.#onInjected.active) return;
    const event: FaultInjectedEvent = { type: fault.type, index };
    if (fault.name !== undefined) event.name = fault.name;
    if (delayMs !== undefined) event.delayMs = delayMs;
    this.#onInjected.emit(event);
  }

  /** Waits on the policy's clock; aborting the call ends the wait at once. */
  #sleep(ms: number, context: CallContext): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (context.aborted) {
        reject(abortedError(context.abortReason));
        return;
      }
      // The timer callback runs later, when `stopListening` is initialised.
      const timer = this.clock.setTimeout(() => {
        stopListening();
        resolve();
      }, ms);
      const stopListening = context.onAbort((reason) => {
        this.clock.clearTimeout(timer);
        reject(abortedError(reason));
      });
    });
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: {
        enabled: this.#enabled,
        faults: this.#faults.map((f) => ({ type: f.type, rate: f.rate, allowList: f.when !== undefined, ...(f.name ? { name: f.name } : {}) })),
      },
    };
  }
}

function makeError(fault: ErrorFault, context: CallContext): unknown {
  if (fault.error === undefined) return new FaultInjectedError(fault.name ?? 'error', fault.status);
  return typeof fault.error === 'function' ? (fault.error as (context: CallContext) => unknown)(context) : fault.error;
}

const TYPES: ReadonlyArray<Fault['type']> = ['latency', 'error', 'abort', 'timeout', 'result'];

function validateFaults(faults: readonly Fault[] | undefined): readonly Fault[] {
  if (!Array.isArray(faults)) throw new InvalidOptionsError('faultInjection needs faults: an array of fault descriptions');
  if (faults.length > MAX_FAULTS) throw new InvalidOptionsError(`faultInjection supports at most ${MAX_FAULTS} faults`);
  faults.forEach((fault, i) => {
    const where = `faultInjection.faults[${i}]`;
    if (!fault || !TYPES.includes(fault.type)) throw new InvalidOptionsError(`${where}.type must be one of ${TYPES.join(', ')}`);
    ratio(`${where}.rate`, fault.rate, REQUIRED);
    fn(`${where}.when`, fault.when);
    switch (fault.type) {
      case 'latency':
        if (!(typeof fault.ms === 'function' || (typeof fault.ms === 'number' && fault.ms >= 0))) {
          throw new InvalidOptionsError(`${where}.ms must be a number >= 0 or a distribution`);
        }
        break;
      case 'timeout':
        if (fault.ms !== undefined && !(fault.ms >= 0)) throw new InvalidOptionsError(`${where}.ms must be >= 0`);
        break;
      case 'abort':
        if (fault.phase !== undefined && fault.phase !== 'before' && fault.phase !== 'after') {
          throw new InvalidOptionsError(`${where}.phase must be 'before' or 'after'`);
        }
        break;
      case 'result':
        fn(`${where}.result`, fault.result, REQUIRED, '(value, context) => replacement');
        break;
      case 'error':
        if (fault.status !== undefined && !(Number.isInteger(fault.status) && fault.status >= 100 && fault.status <= 599)) {
          throw new InvalidOptionsError(`${where}.status must be an HTTP status (100..599)`);
        }
        break;
    }
  });
  return [...faults];
}

export function faultInjection(options: FaultInjectionOptions): FaultInjectionPolicy {
  return new FaultInjectionPolicy(options);
}
