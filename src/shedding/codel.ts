/**
 * CoDel's standing-queue detection (Nichols & Jacobson, "Controlling Queue Delay", ACM Queue
 * 2012): a queue is *bad* when even its shortest recent wait stays above `target` (5 ms) for a
 * whole `interval` (100 ms): a good queue absorbs a burst and drains; a standing queue only adds
 * latency. Facebook applies the same idea to RPC queues (Maurer, "Fail at Scale", ACM Queue
 * 2015), with the same 5 ms / 100 ms, and switches to LIFO while the queue is standing.
 *
 * Fed with the sojourn time of each request leaving the queue (its wait), like CoDel at dequeue.
 * Plain state machine, no timers.
 */
export class StandingQueueDetector {
  #firstAboveAt: number | undefined;
  #overloaded = false;

  constructor(
    readonly targetMs: number,
    readonly intervalMs: number,
  ) {}

  /** True while a standing queue has been detected. */
  get overloaded(): boolean {
    return this.#overloaded;
  }

  /** Records one dequeue's wait; returns whether the queue is (now) considered standing. */
  observe(now: number, sojournMs: number): boolean {
    if (sojournMs < this.targetMs) {
      this.reset();
      return false;
    }
    if (this.#firstAboveAt === undefined) {
      this.#firstAboveAt = now + this.intervalMs;
    } else if (now >= this.#firstAboveAt) {
      this.#overloaded = true;
    }
    return this.#overloaded;
  }

  /** The queue went empty (or a wait fell below target): start over. */
  reset(): void {
    this.#firstAboveAt = undefined;
    this.#overloaded = false;
  }
}
