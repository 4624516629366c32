/** A node of a WaitList (fields separate from DeadlineEntry's prev/next, so one object can be in both). */
export interface WaitNode<W> {
  before: W | undefined;
  after: W | undefined;
  listed: boolean;
}

/**
 * FIFO list of waiters with O(1) append, shift and removal from the middle: a waiter that times
 * out or is aborted leaves at once (no tombstones piling up while the queue stays full).
 */
export class WaitList<W extends WaitNode<W>> {
  #first: W | undefined;
  #last: W | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  append(node: W): void {
    node.before = this.#last;
    node.after = undefined;
    if (this.#last) this.#last.after = node;
    else this.#first = node;
    this.#last = node;
    node.listed = true;
    this.#size++;
  }

  shift(): W | undefined {
    const node = this.#first;
    if (node) this.remove(node);
    return node;
  }

  remove(node: W): void {
    if (!node.listed) return;
    if (node.before) node.before.after = node.after;
    else this.#first = node.after;
    if (node.after) node.after.before = node.before;
    else this.#last = node.before;
    node.before = node.after = undefined;
    node.listed = false;
    this.#size--;
  }
}
