import { unrefTimer, type Clock, type TimerHandle } from './clock.js';

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
 * is re-armed only when it fires (or when a new deadline is earlier than it), and is unref'd: it
 * guards work, it never keeps an idle process alive.
 *
 * An idle queue keeps its timer (sequential calls would otherwise arm and clear one each, which
 * more than doubles a timeout policy's cost) but the timer no longer reaches the queue: it holds
 * only a small link that the last entry's removal empties. So a policy built per request and
 * dropped is collectable at once, not when its timer fires; a link whose timer fired while idle
 * is replaced on the next add.
 */
export class DeadlineQueue {
  #head: DeadlineEntry | undefined;
  #tail: DeadlineEntry | undefined;
  #timer: TimerHandle | undefined;
  /** What the armed timer reaches: this queue while it has entries, nothing while it is idle. */
  #link: TimerLink | undefined;
  #timerAt = Infinity;
  #size = 0;

  constructor(private readonly clock: Clock) {}

  get size(): number {
    return this.#size;
  }

  add(entry: DeadlineEntry): void {
    if (this.#size === 0 && this.#link !== undefined) {
      if (this.#link.fired) this.#disarm(); // fired while idle, with nothing to reach
      else this.#link.queue = this;
    }
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
    // Idle: the timer stays armed but lets go of the queue (and of whatever owns it).
    if (this.#size === 0 && this.#link !== undefined) this.#link.queue = undefined;
  }

  #arm(at: number): void {
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    const link: TimerLink = { queue: this, fired: false };
    this.#link = link;
    this.#timerAt = at;
    this.#timer = unrefTimer(this.clock.setTimeout(() => {
      link.fired = true;
      const queue = link.queue;
      if (queue !== undefined) queue.#fire();
    }, Math.max(0, at - this.clock.now())));
  }

  #disarm(): void {
    this.#timer = undefined;
    this.#link = undefined;
    this.#timerAt = Infinity;
  }

  #fire(): void {
    this.#disarm();
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
  }
}

interface TimerLink {
  queue: DeadlineQueue | undefined;
  fired: boolean;
}
