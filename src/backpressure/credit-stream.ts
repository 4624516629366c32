import { RingBuffer } from './ring-buffer.js';
import { InvalidStreamRequestError } from './errors.js';
import { InvalidOptionsError } from '../core/errors.js';
import type { Event } from '../core/events.js';
import { errorCode, PolicyTelemetry, type Instrumented, type PolicyEmitter, type PolicyEvent, type PolicyIdentity } from '../core/telemetry.js';
import { nonNegativeInt } from '../core/validate.js';

export interface CreditStreamOptions extends PolicyIdentity {
  /** Credits granted at once. Default 0: nothing is pulled until `request(n)`. */
  initialRequest?: number;
  /**
   * Keep this many items requested ahead: the stream starts with `prefetch` credits and grants
   * one more each time the consumer takes an item (Reactive Streams' usual "request(1) per
   * onNext" loop). Default 0 (manual `request` only).
   */
  prefetch?: number;
}

/** The stream ended: its source completed, the consumer cancelled, or the source failed. */
export interface StreamEndEvent {
  reason: 'complete' | 'cancel' | 'error';
  /** For 'error': what the source threw. */
  error?: unknown;
}

export interface CreditStreamStats {
  /** Credits granted and not yet spent on pulling from the source. */
  outstanding: number;
  /** Items pulled from the source, not yet taken by the consumer. */
  buffered: number;
  /** Items pulled from the source in total (never more than the credits granted). */
  pulled: number;
  /** Items the consumer took. */
  delivered: number;
  done: boolean;
}

interface Pending<T> {
  resolve: (result: IteratorResult<T, undefined>) => void;
  reject: (error: unknown) => void;
}

const DONE: IteratorResult<never, undefined> = Object.freeze({ done: true, value: undefined });

/**
 * Credit-based pull over an async iterable (Reactive Streams' `request(n)`, the Reactive Streams
 * specification, reactive-streams.org): the consumer grants credits and the source is advanced only
 * once per credit, so a fast producer can never run ahead of what the consumer asked for, and
 * the buffer between them never holds more than the credits granted. Consume with `for await`
 * (breaking out cancels the source) or `next()`.
 *
 *   const stream = creditStream(readRows());
 *   stream.request(100);               // the source is advanced at most 100 times
 *   for await (const row of stream) { ...; if (done100) stream.request(100); }
 *
 * One pull from the source at a time; an error from the source reaches the consumer after the
 * items pulled before it.
 */
export class CreditStream<T> implements AsyncIterable<T>, AsyncIterator<T, undefined>, Instrumented {
  readonly kind = 'credit-stream';
  readonly name: string | undefined;
  /** Every event of this stream in the uniform shape policies share (see PolicyEvent). Free when nobody listens. */
  readonly onEvent: Event<PolicyEvent>;
  readonly #onEnd: PolicyEmitter<StreamEndEvent>;
  /** Fires once, when the stream ends. */
  readonly onEnd: Event<StreamEndEvent>;
  readonly #iterator: AsyncIterator<T> | Iterator<T>;
  readonly #buffer = new RingBuffer<T>(4);
  readonly #pending = new RingBuffer<Pending<T>>(1);
  readonly #prefetch: number;
  #credits = 0;
  #pulling = false;
  #done = false;
  #failed = false;
  #error: unknown;
  #pulled = 0;
  #delivered = 0;

  constructor(source: AsyncIterable<T> | Iterable<T>, options: CreditStreamOptions = {}) {
    const asyncIt = (source as AsyncIterable<T>)?.[Symbol.asyncIterator];
    const syncIt = (source as Iterable<T>)?.[Symbol.iterator];
    if (typeof asyncIt === 'function') this.#iterator = asyncIt.call(source);
    else if (typeof syncIt === 'function') this.#iterator = syncIt.call(source);
    else throw new InvalidOptionsError('creditStream needs an async iterable (or an iterable)');
    this.#prefetch = nonNegativeInt('creditStream.prefetch', options.prefetch, 0);
    const initial = nonNegativeInt('creditStream.initialRequest', options.initialRequest, 0) + this.#prefetch;
    this.name = options.name;
    // Once the options are valid: a named stream joins the policy registry here.
    const telemetry = new PolicyTelemetry(this, options);
    this.onEvent = telemetry.onEvent;
    this.#onEnd = telemetry.emitter('end', (e) => ({
      ...(e.reason === 'cancel' ? {} : { outcome: e.reason === 'error' ? 'failure' : 'success' }),
      attributes: { reason: e.reason, code: errorCode(e.error) },
    }));
    this.onEnd = this.#onEnd.event;
    if (initial > 0) this.request(initial);
  }

  stats(): CreditStreamStats {
    return { outstanding: this.#credits, buffered: this.#buffer.size, pulled: this.#pulled, delivered: this.#delivered, done: this.#done };
  }

  /** Grants `n` more items (a positive integer, or Infinity for unbounded). */
  request(n: number): void {
    if (!(n === Infinity || (Number.isInteger(n) && n > 0))) {
      throw new InvalidStreamRequestError(`request(n) needs a positive integer (or Infinity), got ${String(n)}`);
    }
    if (this.#done) return;
    this.#credits += n;
    void this.#pump();
  }

  /** Stops: the source is closed (its `return()` runs), buffered items are discarded, waiting `next()` calls end. */
  async cancel(): Promise<void> {
    if (this.#done && this.#buffer.size === 0) return;
    this.#credits = 0;
    this.#buffer.clear();
    this.#finish('cancel');
    await this.#iterator.return?.();
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#buffer.size > 0) return Promise.resolve(this.#take(this.#buffer.shift() as T));
    if (this.#failed) {
      this.#failed = false; // report the error once, then end
      return Promise.reject(this.#error);
    }
    if (this.#done) return Promise.resolve(DONE);
    return new Promise((resolve, reject) => this.#pending.push({ resolve, reject }));
  }

  /** Called by `for await` when the loop exits early (break, throw): cancels the source. */
  async return(): Promise<IteratorResult<T, undefined>> {
    await this.cancel();
    return DONE;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  #take(item: T): IteratorResult<T, undefined> {
    this.#delivered++;
    if (this.#prefetch > 0 && !this.#done) {
      this.#credits++;
      void this.#pump();
    }
    return { done: false, value: item };
  }

  async #pump(): Promise<void> {
    if (this.#pulling) return;
    this.#pulling = true;
    try {
      while (this.#credits > 0 && !this.#done) {
        this.#credits--;
        let result: IteratorResult<T>;
        try {
          result = await this.#iterator.next();
        } catch (error) {
          this.#fail(error);
          return;
        }
        if (this.#done) return; // cancelled while the source was producing: discard
        if (result.done) {
          this.#finish('complete');
          return;
        }
        this.#pulled++;
        const waiting = this.#pending.shift();
        if (waiting) waiting.resolve(this.#take(result.value));
        else this.#buffer.push(result.value);
      }
    } finally {
      this.#pulling = false;
    }
  }

  #finish(reason: 'complete' | 'cancel'): void {
    const ending = !this.#done;
    this.#done = true;
    this.#credits = 0;
    if (this.#buffer.size === 0) for (let p = this.#pending.shift(); p; p = this.#pending.shift()) p.resolve(DONE);
    if (ending && this.#onEnd.active) this.#onEnd.emit({ reason });
  }

  #fail(error: unknown): void {
    const ending = !this.#done;
    this.#done = true;
    this.#credits = 0;
    const waiting = this.#pending.shift();
    if (waiting) {
      waiting.reject(error);
      for (let p = this.#pending.shift(); p; p = this.#pending.shift()) p.resolve(DONE);
    } else {
      this.#failed = true;
      this.#error = error;
    }
    if (ending && this.#onEnd.active) this.#onEnd.emit({ reason: 'error', error });
  }
}

export function creditStream<T>(source: AsyncIterable<T> | Iterable<T>, options?: CreditStreamOptions): CreditStream<T> {
  return new CreditStream(source, options);
}
