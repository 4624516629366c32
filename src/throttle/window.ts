/**
 * Request and accept counts over a sliding time window, in fixed buckets: O(1) per call
 * (amortised: buckets are rolled as time passes, at most `buckets` per call), with running
 * totals so reading the window never scans it.
 */
export class CountWindow {
  readonly bucketMs: number;
  readonly #requests: Float64Array;
  readonly #accepts: Float64Array;
  #head = 0;
  /** Start time of the head bucket. */
  #headStart: number;
  #requestTotal = 0;
  #acceptTotal = 0;

  constructor(windowMs: number, readonly buckets: number, now: number) {
    this.bucketMs = windowMs / buckets;
    this.#requests = new Float64Array(buckets);
    this.#accepts = new Float64Array(buckets);
    this.#headStart = now;
  }

  get requests(): number {
    return this.#requestTotal;
  }

  get accepts(): number {
    return this.#acceptTotal;
  }

  /** Drops buckets that slid out of the window by `now`. */
  roll(now: number): void {
    const elapsed = Math.floor((now - this.#headStart) / this.bucketMs);
    if (elapsed <= 0) return;
    if (elapsed >= this.buckets) {
      this.#requests.fill(0);
      this.#accepts.fill(0);
      this.#requestTotal = this.#acceptTotal = 0;
      this.#head = 0;
      this.#headStart += elapsed * this.bucketMs;
      return;
    }
    for (let i = 0; i < elapsed; i++) {
      this.#head = (this.#head + 1) % this.buckets;
      this.#requestTotal -= this.#requests[this.#head]!;
      this.#acceptTotal -= this.#accepts[this.#head]!;
      this.#requests[this.#head] = 0;
      this.#accepts[this.#head] = 0;
    }
    this.#headStart += elapsed * this.bucketMs;
  }

  addRequest(): void {
    this.#requests[this.#head]!++;
    this.#requestTotal++;
  }

  addAccept(): void {
    this.#accepts[this.#head]!++;
    this.#acceptTotal++;
  }

  reset(now: number): void {
    this.#requests.fill(0);
    this.#accepts.fill(0);
    this.#requestTotal = this.#acceptTotal = 0;
    this.#head = 0;
    this.#headStart = now;
  }
}
