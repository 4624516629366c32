import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import { AbortedError, InvalidInputError, InvalidOptionsError, TimeoutError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { REQUIRED, nonNegative, nonNegativeInt, oneOf, positiveInt } from '../core/validate.js';
import { DeadlineEntry, DeadlineQueue } from '../core/deadline-queue.js';
import { QueueFullError } from './errors.js';
import { RingBuffer } from './ring-buffer.js';
import { WaitList, type WaitNode } from './wait-list.js';
import { onSignalAbort } from '../core/abort.js';

/**
 * What a full queue does with a new item (backpressure: the feedback that slows a producer to its
 * consumer's pace, or an explicit choice of what to lose):
 * - 'block': the producer waits for space (abortable, optional timeout): true backpressure.
 * - 'reject': refused at once (`offer` → value, `push` → `QueueFullError`, code QUEUE_FULL).
 * - 'drop-oldest': the oldest item is evicted to make room (fresh data matters most: telemetry, prices).
 * - 'drop-newest': the incoming item is discarded (what is queued is already promised).
 */
export type OverflowPolicy = 'block' | 'reject' | 'drop-oldest' | 'drop-newest';

export interface BoundedQueueOptions {
  /** Most items held. */
  capacity: number;
  /** Default 'block'. */
  policy?: OverflowPolicy;
  /** `onHighWater` fires when the size reaches this. Default ⌈0.8 × capacity⌉. */
  highWaterMark?: number;
  /** ...and `onLowWater` when it falls back to this (hysteresis). Default ⌊highWaterMark / 2⌋. */
  lowWaterMark?: number;
  clock?: Clock;
  name?: string;
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Give up waiting after this long (push: `QueueFullError` reason 'timeout'; pull: `TimeoutError`). */
  timeoutMs?: number;
}

/** The outcome of offering an item (a value; `push` throws instead for 'full' and 'closed'). */
export type OfferResult<T> =
  | { readonly accepted: true; /** drop-oldest: the item evicted to make room. */ readonly evicted?: T }
  | { readonly accepted: false; readonly reason: 'full' | 'dropped' | 'closed' };

export interface WatermarkEvent {
  size: number;
  capacity: number;
}

export interface DropEvent<T> {
  item: T;
  reason: 'drop-oldest' | 'drop-newest';
}

export interface BoundedQueueStats {
  size: number;
  capacity: number;
  waitingProducers: number;
  waitingConsumers: number;
  /** Items accepted into the queue (or handed straight to a waiting consumer). */
  accepted: number;
  /** Items discarded by a drop policy. */
  dropped: number;
  /** Offers / pushes refused (full, timed out, closed). */
  rejected: number;
  highWater: boolean;
  closed: boolean;
}

class PushWaiter<T> extends DeadlineEntry implements WaitNode<PushWaiter<T>> {
  before: PushWaiter<T> | undefined;
  after: PushWaiter<T> | undefined;
  listed = false;
  unlisten: (() => void) | undefined;
  resolve!: (result: OfferResult<T>) => void;
  reject!: (error: unknown) => void;
  constructor(deadline: number, onExpire: (entry: DeadlineEntry) => void, readonly item: T) {
    super(deadline, onExpire);
  }
}

class PullWaiter<T> extends DeadlineEntry implements WaitNode<PullWaiter<T>> {
  before: PullWaiter<T> | undefined;
  after: PullWaiter<T> | undefined;
  listed = false;
  unlisten: (() => void) | undefined;
  resolve!: (result: IteratorResult<T, undefined>) => void;
  reject!: (error: unknown) => void;
  constructor(deadline: number, onExpire: (entry: DeadlineEntry) => void, readonly timeoutMs: number) {
    super(deadline, onExpire);
  }
}

const ACCEPTED: OfferResult<never> = Object.freeze({ accepted: true });
const FULL: OfferResult<never> = Object.freeze({ accepted: false, reason: 'full' });
const DROPPED: OfferResult<never> = Object.freeze({ accepted: false, reason: 'dropped' });
const CLOSED: OfferResult<never> = Object.freeze({ accepted: false, reason: 'closed' });
const DONE: IteratorResult<never, undefined> = Object.freeze({ done: true, value: undefined });

/**
 * A bounded FIFO queue between a producer and a consumer. Its size never exceeds `capacity`
 * under any policy (property-tested). O(1) per operation (ring buffer; waiters in linked lists
 * that abort and time out in O(1)); waits share one unref'd timer, which is dropped when nothing
 * waits, so an idle process exits.
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  readonly capacity: number;
  readonly policy: OverflowPolicy;
  readonly highWaterMark: number;
  readonly lowWaterMark: number;
  readonly name: string | undefined;
  readonly clock: Clock;
  readonly #items: RingBuffer<T>;
  readonly #producers = new WaitList<PushWaiter<T>>();
  readonly #consumers = new WaitList<PullWaiter<T>>();
  readonly #timers: DeadlineQueue;
  #closed = false;
  #high = false;
  #accepted = 0;
  #dropped = 0;
  #rejected = 0;

  readonly #onHighWater = new EventEmitter<WatermarkEvent>();
  readonly #onLowWater = new EventEmitter<WatermarkEvent>();
  readonly #onDrop = new EventEmitter<DropEvent<T>>();
  /** Fires when the size reaches the high-water mark (once, until it falls to the low-water mark). */
  readonly onHighWater = this.#onHighWater.event;
  /** Fires when the size falls back to the low-water mark after a high-water alert: producers may speed up. */
  readonly onLowWater = this.#onLowWater.event;
  /** Fires for every item a drop policy discards. */
  readonly onDrop = this.#onDrop.event;

  constructor(options: BoundedQueueOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionsError('boundedQueue needs options with a capacity');
    this.capacity = positiveInt('boundedQueue.capacity', options.capacity, REQUIRED);
    this.policy = oneOf<OverflowPolicy>('boundedQueue.policy', options.policy, ['block', 'reject', 'drop-oldest', 'drop-newest'], 'block');
    this.highWaterMark = positiveInt('boundedQueue.highWaterMark', options.highWaterMark, Math.ceil(this.capacity * 0.8));
    if (this.highWaterMark > this.capacity) throw new InvalidOptionsError(`boundedQueue.highWaterMark (${this.highWaterMark}) must be <= capacity (${this.capacity})`);
    this.lowWaterMark = nonNegativeInt('boundedQueue.lowWaterMark', options.lowWaterMark, Math.floor(this.highWaterMark / 2));
    if (this.lowWaterMark >= this.highWaterMark) throw new InvalidOptionsError(`boundedQueue.lowWaterMark (${this.lowWaterMark}) must be < highWaterMark (${this.highWaterMark})`);
    this.name = options.name;
    this.clock = options.clock ?? systemClock;
    this.#items = new RingBuffer<T>(Math.min(this.capacity, 16));
    this.#timers = new DeadlineQueue(this.clock);
  }

  get size(): number {
    return this.#items.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  stats(): BoundedQueueStats {
    return {
      size: this.#items.size,
      capacity: this.capacity,
      waitingProducers: this.#producers.size,
      waitingConsumers: this.#consumers.size,
      accepted: this.#accepted,
      dropped: this.#dropped,
      rejected: this.#rejected,
      highWater: this.#high,
      closed: this.#closed,
    };
  }

  /**
   * Offers an item without waiting: accepted, or what the policy did. With 'block' a full queue
   * answers `{ accepted: false, reason: 'full' }` (use `push` to wait).
   */
  offer(item: T): OfferResult<T> {
    if (this.#closed) {
      this.#rejected++;
      return CLOSED;
    }
    if (this.#deliver(item)) return ACCEPTED;
    if (this.#items.size < this.capacity) {
      this.#enqueue(item);
      return ACCEPTED;
    }
    switch (this.policy) {
      case 'drop-oldest': {
        const evicted = this.#items.shift() as T;
        this.#drop(evicted, 'drop-oldest');
        this.#enqueue(item);
        return { accepted: true, evicted };
      }
      case 'drop-newest':
        this.#drop(item, 'drop-newest');
        return DROPPED;
      default:
        this.#rejected++;
        return FULL;
    }
  }

  /**
   * Adds an item. 'block' waits for space (abortable via `signal`, bounded by `timeoutMs`);
   * 'reject' throws `QueueFullError` (code QUEUE_FULL) when full; the drop policies resolve with
   * what they dropped. A closed queue throws `QueueFullError` with reason 'closed'.
   */
  push(item: T, options?: WaitOptions): Promise<OfferResult<T>> {
    const mustWait = this.policy === 'block' && !this.#closed && this.#consumers.size === 0 && this.#items.size >= this.capacity;
    if (!mustWait) {
      const result = this.offer(item);
      if (result.accepted || result.reason === 'dropped') return Promise.resolve(result);
      return Promise.reject(new QueueFullError(this.capacity, result.reason));
    }
    const signal = options?.signal;
    if (signal?.aborted) {
      this.#rejected++;
      return Promise.reject(new AbortedError(signal.reason));
    }
    let timeoutMs: number;
    try {
      timeoutMs = options?.timeoutMs === undefined ? Infinity : nonNegative('push.timeoutMs', options.timeoutMs, 0, InvalidInputError);
    } catch (error) {
      return Promise.reject(error);
    }
    const waiter = new PushWaiter<T>(this.clock.now() + timeoutMs, this.#expirePush, item);
    return new Promise<OfferResult<T>>((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
      this.#producers.append(waiter);
      if (timeoutMs !== Infinity) this.#timers.add(waiter);
      if (signal) waiter.unlisten = onSignalAbort(signal, () => this.#cancelPush(waiter, new AbortedError(signal.reason)));
    });
  }

  /** Takes the oldest item now, or undefined when empty. */
  shift(): T | undefined {
    if (this.#items.size === 0) return undefined;
    const item = this.#items.shift() as T;
    this.#afterRemoval();
    return item;
  }

  /**
   * Takes the oldest item, waiting for one if empty: `{ done: false, value }`, or
   * `{ done: true }` once the queue is closed and drained. Abortable; `timeoutMs` rejects
   * with `TimeoutError`.
   */
  pull(options?: WaitOptions): Promise<IteratorResult<T, undefined>> {
    if (this.#items.size > 0) return Promise.resolve({ done: false, value: this.shift() as T });
    if (this.#closed) return Promise.resolve(DONE);
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    let timeoutMs: number;
    try {
      timeoutMs = options?.timeoutMs === undefined ? Infinity : nonNegative('pull.timeoutMs', options.timeoutMs, 0);
    } catch (error) {
      return Promise.reject(error);
    }
    const waiter = new PullWaiter<T>(this.clock.now() + timeoutMs, this.#expirePull, timeoutMs);
    return new Promise<IteratorResult<T, undefined>>((resolve, reject) => {
      waiter.resolve = resolve;
      waiter.reject = reject;
      this.#consumers.append(waiter);
      if (timeoutMs !== Infinity) this.#timers.add(waiter);
      if (signal) waiter.unlisten = onSignalAbort(signal, () => this.#cancelPull(waiter, new AbortedError(signal.reason)));
    });
  }

  /**
   * No more items: waiting producers get `QueueFullError` ('closed'); consumers drain what is
   * left, then see `done`.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (let w = this.#producers.shift(); w; w = this.#producers.shift()) {
      this.#settle(w);
      this.#rejected++;
      w.reject(new QueueFullError(this.capacity, 'closed'));
    }
    for (let w = this.#consumers.shift(); w; w = this.#consumers.shift()) {
      this.#settle(w);
      w.resolve(DONE);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return {
      next: () => this.pull(),
      return: () => Promise.resolve(DONE),
    };
  }

  /** Hands the item straight to a waiting consumer, if there is one. */
  #deliver(item: T): boolean {
    const consumer = this.#consumers.shift();
    if (consumer === undefined) return false;
    this.#settle(consumer);
    this.#accepted++;
    consumer.resolve({ done: false, value: item });
    return true;
  }

  #enqueue(item: T): void {
    this.#items.push(item);
    this.#accepted++;
    if (!this.#high && this.#items.size >= this.highWaterMark) {
      this.#high = true;
      if (this.#onHighWater.active) this.#onHighWater.emit({ size: this.#items.size, capacity: this.capacity });
    }
  }

  #drop(item: T, reason: DropEvent<T>['reason']): void {
    this.#dropped++;
    if (this.#onDrop.active) this.#onDrop.emit({ item, reason });
  }

  /** A slot freed: let the first blocked producer in, then check the low-water mark. */
  #afterRemoval(): void {
    const producer = this.#producers.shift();
    if (producer !== undefined) {
      this.#settle(producer);
      this.#enqueue(producer.item);
      producer.resolve(ACCEPTED);
    }
    if (this.#high && this.#items.size <= this.lowWaterMark) {
      this.#high = false;
      if (this.#onLowWater.active) this.#onLowWater.emit({ size: this.#items.size, capacity: this.capacity });
    }
  }

  #settle(waiter: PushWaiter<T> | PullWaiter<T>): void {
    this.#timers.remove(waiter);
    waiter.unlisten?.();
    waiter.unlisten = undefined;
  }

  #cancelPush(waiter: PushWaiter<T>, error: unknown): void {
    if (!waiter.listed) return;
    this.#producers.remove(waiter);
    this.#settle(waiter);
    this.#rejected++;
    waiter.reject(error);
  }

  #cancelPull(waiter: PullWaiter<T>, error: unknown): void {
    if (!waiter.listed) return;
    this.#consumers.remove(waiter);
    this.#settle(waiter);
    waiter.reject(error);
  }

  readonly #expirePush = (entry: DeadlineEntry): void => {
    this.#cancelPush(entry as PushWaiter<T>, new QueueFullError(this.capacity, 'timeout'));
  };

  readonly #expirePull = (entry: DeadlineEntry): void => {
    const waiter = entry as PullWaiter<T>;
    this.#cancelPull(waiter, new TimeoutError(waiter.timeoutMs));
  };
}

export function boundedQueue<T>(options: BoundedQueueOptions): BoundedQueue<T> {
  return new BoundedQueue<T>(options);
}
