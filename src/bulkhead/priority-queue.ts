import { PRIORITIES, type Priority } from '../core/context.js';

/** Index of each priority class: 0 = critical (served first) … 4 = best-effort (evicted first). */
const PRIORITY_INDEX: Readonly<Record<string, number>> = Object.freeze(
  Object.fromEntries(PRIORITIES.map((p, i) => [p, i])),
);

/** The class index of `priority`, or -1 for a value that is not a known priority. */
export function priorityIndex(priority: Priority): number {
  return Object.hasOwn(PRIORITY_INDEX, priority) ? PRIORITY_INDEX[priority]! : -1;
}

/**
 * A node of the queue. Callers extend it (a bulkhead waiter also extends DeadlineEntry, whose
 * `prev`/`next` belong to the deadline list, hence the distinct names here).
 */
export interface PriorityNode {
  queuePrev: PriorityNode | undefined;
  queueNext: PriorityNode | undefined;
  /** Class index from `priorityIndex`; set before `push`. */
  classIndex: number;
  inQueue: boolean;
}

/**
 * Waiters by priority class, FIFO within a class: one doubly linked list per class, so push,
 * shift (the oldest of the most important class), pop of the newest of the least important
 * class (eviction) and removal of any node (timeout, abort) are all O(1) (the class scan is
 * over five lists, not over the waiters).
 */
export class PriorityWaitQueue<N extends PriorityNode> {
  readonly #heads: (N | undefined)[] = PRIORITIES.map(() => undefined);
  readonly #tails: (N | undefined)[] = PRIORITIES.map(() => undefined);
  readonly #counts: number[] = PRIORITIES.map(() => 0);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(node: N): void {
    const c = node.classIndex;
    const tail = this.#tails[c];
    node.queuePrev = tail;
    node.queueNext = undefined;
    if (tail) tail.queueNext = node; else this.#heads[c] = node;
    this.#tails[c] = node;
    node.inQueue = true;
    this.#counts[c]!++;
    this.#size++;
  }

  /** Removes and returns the oldest waiter of the most important non-empty class. */
  shift(): N | undefined {
    if (this.#size === 0) return undefined;
    for (let c = 0; c < this.#heads.length; c++) {
      const head = this.#heads[c];
      if (head) {
        this.remove(head);
        return head;
      }
    }
    return undefined;
  }

  /** The least important class that has a waiter, or -1 when empty. */
  lowestClass(): number {
    if (this.#size === 0) return -1;
    for (let c = this.#tails.length - 1; c >= 0; c--) if (this.#tails[c]) return c;
    return -1;
  }

  /** Removes and returns the newest waiter of class `c` (the one that has waited least). */
  popNewest(c: number): N | undefined {
    const tail = this.#tails[c];
    if (tail) this.remove(tail);
    return tail;
  }

  /** Removes `node` if it is still queued; a no-op otherwise (so every exit path may call it). */
  remove(node: N): void {
    if (!node.inQueue) return;
    node.inQueue = false;
    const c = node.classIndex;
    const prev = node.queuePrev as N | undefined;
    const next = node.queueNext as N | undefined;
    if (prev) prev.queueNext = next; else this.#heads[c] = next;
    if (next) next.queuePrev = prev; else this.#tails[c] = prev;
    node.queuePrev = node.queueNext = undefined;
    this.#counts[c]!--;
    this.#size--;
  }

  /** Waiters per class, most important first (telemetry and tests). */
  sizes(): Record<Priority, number> {
    const out = {} as Record<Priority, number>;
    PRIORITIES.forEach((p, c) => { out[p] = this.#counts[c]!; });
    return out;
  }
}
