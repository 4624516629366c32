/**
 * A FIFO ring buffer with O(1) push, shift and drop-oldest. Storage grows by doubling up to the
 * capacity it is asked to hold, so a queue with a huge bound and few items costs little.
 */
export class RingBuffer<T> {
  #items: (T | undefined)[];
  #head = 0;
  #size = 0;

  constructor(initialSlots = 16) {
    this.#items = new Array<T | undefined>(Math.max(1, initialSlots));
  }

  get size(): number {
    return this.#size;
  }

  push(item: T): void {
    if (this.#size === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#size) % this.#items.length] = item;
    this.#size++;
  }

  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined; // let it be collected
    this.#head = (this.#head + 1) % this.#items.length;
    this.#size--;
    return item;
  }

  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  clear(): void {
    this.#items.fill(undefined);
    this.#head = 0;
    this.#size = 0;
  }

  #grow(): void {
    const old = this.#items;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.#size; i++) next[i] = old[(this.#head + i) % old.length];
    this.#items = next;
    this.#head = 0;
  }
}
