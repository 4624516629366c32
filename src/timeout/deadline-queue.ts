import { unrefTimer, type Clock, type TimerHandle } from '../core/clock.js';

/** A scheduled expiry; the queue's doubly linked list node. */
export class DeadlineEntry {
  prev: DeadlineEntry | undefined;
  next: DeadlineEntry | undefined;
  queued = false;
  constructor(
    public deadline: number,
    public readonly onExpire: (entry: DeadlineEntry) => void,
  ) {}
}

/**
 * Many expiries, one timer: a setTimeout + clearTimeout pair per call would be a large part of a
 * policy's per-call cost. Entries are kept in deadline order. With a fixed timeout, each new
 * deadline is the latest, so insertion is O(1) at the tail; removal is always O(1). The one timer
 * is re-armed only when it fires (or when a new deadline is earlier than it), is cleared when the
 * last entry leaves, and is unref'd: it guards work, it never keeps an idle process alive.
 */
export class DeadlineQueue {
  #head: DeadlineEntry | undefined;
  #tail: DeadlineEntry | undefined;
  #timer: TimerHandle | undefined;
  #timerAt = Infinity;
  #size = 0;

  constructor(private readonly clock: Clock) {}

  get size(): number {
    return this.#size;
  }

  add(entry: DeadlineEntry): void {
    let after = this.#tail;
    while (after && after.deadline > entry.deadline) after = after.prev;
    entry.prev = after;
    entry.next = after ? after.next : this.#head;
    if (entry.next) entry.next.prev = entry; else this.#tail = entry;
    if (after) after.next = entry; else this.#head = entry;
    entry.queued = true;
    this.#size++;
    if (entry.deadline < this.#timerAt) this.#arm(entry.deadline);
  }

  remove(entry: DeadlineEntry): void {
    if (!entry.queued) return;
    entry.queued = false;
    if (entry.prev) entry.prev.next = entry.next; else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev; else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.#size--;
    // Nothing left to guard: clear the timer. An armed timer keeps this queue (and whatever the
    // owner hangs on it) reachable until it fires, so an owner built per request and dropped
    // would outlive its work by the whole timeout. Sequential calls pay one timer each
    // (a few hundred ns); concurrent ones keep sharing one.
    if (this.#size === 0 && this.#timer !== undefined) {
      this.clock.clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
    }
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = unrefTimer(this.clock.setTimeout(this.#fire, Math.max(0, at - this.clock.now())));
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.clock.now();
    let entry = this.#head;
    while (entry && entry.deadline <= now) {
      this.remove(entry);
      entry.onExpire(entry);
      entry = this.#head;
    }
    if (this.#head && this.#timer === undefined) {
      // Real timers can fire a hair early; never spin at 0 ms.
      this.#arm(Math.max(this.#head.deadline, now + 1));
    }
  };
}
