import { performance } from 'node:perf_hooks';

/**
 * Time is injected everywhere: policies never call Date.now() or setTimeout directly, so tests
 * and the simulator run them on a VirtualClock and are deterministic.
 */

/** An opaque timer handle. Real handles are Node `Timeout`s; virtual ones are plain objects. */
export interface TimerHandle {
  unref?(): unknown;
}

export interface Clock {
  /** Milliseconds. The system clock is monotonic and aligned to the Unix epoch at process start. */
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

// Taken from node:perf_hooks once: the global `performance` is a lazy getter in Node 20 and
// looking it up costs more than the reading itself (docs/benchmarks.md).
const origin = performance.timeOrigin;
const perfNow = performance.now.bind(performance);

/** The real clock: monotonic (immune to wall-clock jumps), epoch-aligned milliseconds. */
export const systemClock: Clock = {
  now: () => origin + perfNow(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** Lets a background timer (sweeps, syncs, shared timeout wheels) never keep the process alive. */
export function unrefTimer(handle: TimerHandle): TimerHandle {
  handle.unref?.();
  return handle;
}

interface VirtualTimer extends TimerHandle {
  at: number;
  seq: number;
  callback: (() => void) | undefined;
}

/**
 * A clock that only moves when told to. `advance(ms)` fires due timers in deadline order
 * (ties in creation order) and lets promise chains settle between timers, so async policy
 * code behaves as it would in real time, deterministically and instantly.
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #heap: VirtualTimer[] = [];
  #fired = 0;

  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: VirtualTimer = {
      at: this.#now + Math.max(0, Number.isFinite(ms) ? ms : 0),
      seq: this.#seq++,
      callback,
      unref: () => timer,
    };
    heapPush(this.#heap, timer);
    return timer;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as VirtualTimer).callback = undefined; // lazily dropped when it reaches the top
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pendingTimers(): number {
    let n = 0;
    for (const t of this.#heap) if (t.callback) n++;
    return n;
  }

  /** Deadline of the next live timer, or undefined. */
  nextTimerAt(): number | undefined {
    this.#dropCleared();
    return this.#heap[0]?.at;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, settling promises in between. */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.#now + ms);
  }

  async advanceTo(target: number): Promise<void> {
    await flushPromises();
    while (this.#fireNext(target)) await flushPromises();
    this.#now = Math.max(this.#now, target);
    await flushPromises();
  }

  /** Synchronous variant for code without promises (pure decision functions, simulators). */
  advanceSync(ms: number): void {
    const target = this.#now + ms;
    while (this.#fireNext(target));
    this.#now = Math.max(this.#now, target);
  }

  /** Fires the earliest live timer due by `target`; false when there is none. */
  #fireNext(target: number): boolean {
    this.#dropCleared();
    const top = this.#heap[0];
    if (!top || top.at > target) return false;
    heapPop(this.#heap);
    this.#now = Math.max(this.#now, top.at);
    const callback = top.callback!;
    top.callback = undefined;
    this.#fired++;
    callback();
    return true;
  }

  /**
   * Fires timers until none is left (or throws after `maxTimers`, to stop runaway loops).
   * Returns how many fired: tests use it to prove that nothing is left once the work is done
   * (an idle shared guard timer fires once, with nothing to do), not a leak or a loop.
   */
  async runAll(maxTimers = 100_000): Promise<number> {
    const firedBefore = this.#fired;
    // As advance() does: a call just started may set its first timer a few promise steps later.
    await flushPromises();
    while (this.#fired - firedBefore < maxTimers) {
      const at = this.nextTimerAt();
      if (at === undefined) return this.#fired - firedBefore;
      await this.advanceTo(at);
    }
    throw new Error(`VirtualClock.runAll: more than ${maxTimers} timers fired; a timer loop?`);
  }

  #dropCleared(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.callback === undefined) heapPop(this.#heap);
  }
}

/** Lets every pending promise reaction run (one macrotask turn drains the microtask queue). */
export function flushPromises(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function before(a: VirtualTimer, b: VirtualTimer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

function heapPush(heap: VirtualTimer[], item: VirtualTimer): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i]!, heap[parent]!)) break;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function heapPop(heap: VirtualTimer[]): VirtualTimer | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
  return top;
}
