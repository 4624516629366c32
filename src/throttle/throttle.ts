import { rejectAborted } from '../core/abort.js';
import type { Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import { isClientErrorStatus, statusOf } from '../core/error-table.js';
import { InvalidOptionsError, ShedError } from '../core/errors.js';
import { EventEmitter } from '../core/events.js';
import { BasePolicy, type Next, type PolicyDescription } from '../core/policy.js';
import { systemRandom, type Random } from '../core/random.js';
import { fn, positive, positiveInt, ratio } from '../core/validate.js';
import { CountWindow } from './window.js';

export interface AdaptiveThrottleOptions {
  /**
   * The multiplier K: the client lets through about K times what the backend accepts.
   * Lower is more aggressive (1.1 sheds nearly everything the backend would reject), higher
   * wastes more backend work on rejections but adapts faster. Default 2 (Google SRE book).
   */
  k?: number;
  /** The window over which requests and accepts are counted, in ms. Default 120000 (2 min). */
  windowMs?: number;
  /** Buckets the window is divided into (its time resolution). Default 60 (2 s each). */
  buckets?: number;
  /**
   * Whether a failed call still counts as accepted by the backend (it did the work and
   * answered, e.g. 404). Default: errors carrying an HTTP 4xx `status`/`statusCode` other
   * than 408 and 429 are accepts; everything else (5xx, 429, timeouts, network errors) is not.
   */
  isAccepted?: (error: unknown) => boolean;
  /** Caps the local rejection probability so a trickle of requests always probes. Default 1. */
  maxRejectionProbability?: number;
  random?: Random;
  clock?: Clock;
  name?: string;
}

export interface ThrottledEvent {
  probability: number;
  requests: number;
  accepts: number;
}

export interface ThrottleSnapshot {
  requests: number;
  accepts: number;
  /** The current local rejection probability. */
  probability: number;
  k: number;
}

/**
 * Client-side adaptive throttling (Google SRE book, "Handling Overload"): each client counts,
 * over a sliding window, the requests it attempted and the ones the backend accepted, and
 * rejects new requests locally with probability max(0, (requests − K·accepts) / (requests + 1)).
 * A healthy backend sees no throttling; a backend rejecting everything quickly stops
 * receiving more than a trickle, and throttling fades as accepts return.
 *
 * Locally rejected requests count as requests (that is what makes the probability rise) and
 * fail with `SHED` (stack-less `ShedError`). Place it innermost, around the call itself.
 */
export class AdaptiveThrottlePolicy extends BasePolicy {
  readonly kind = 'adaptive-throttle';
  readonly k: number;
  readonly windowMs: number;
  readonly #window: CountWindow;
  readonly #isAccepted: (error: unknown) => boolean;
  readonly #maxProbability: number;
  readonly #random: Random;
  #throttled = 0;
  readonly #onThrottled = new EventEmitter<ThrottledEvent>();
  /** A request was rejected locally. */
  readonly onThrottled = this.#onThrottled.event;

  constructor(options: AdaptiveThrottleOptions = {}) {
    super(options.clock, options);
    this.k = positive('throttle.k', options.k, 2);
    if (this.k < 1) throw new InvalidOptionsError(`throttle.k must be >= 1 (below 1 it rejects a healthy backend's traffic), got ${this.k}`);
    this.windowMs = positive('throttle.windowMs', options.windowMs, 120_000);
    const buckets = positiveInt('throttle.buckets', options.buckets, 60);
    this.#isAccepted = fn('throttle.isAccepted', options.isAccepted, isClientError);
    this.#maxProbability = ratio('throttle.maxRejectionProbability', options.maxRejectionProbability, 1);
    this.#random = fn('throttle.random', options.random, systemRandom, 'returning [0, 1)');
    this.#window = new CountWindow(this.windowMs, buckets, this.clock.now());
  }

  /** The probability that a request made now is rejected locally. */
  rejectionProbability(): number {
    this.#window.roll(this.clock.now());
    return this.#probability();
  }

  snapshot(): ThrottleSnapshot {
    this.#window.roll(this.clock.now());
    return { requests: this.#window.requests, accepts: this.#window.accepts, probability: this.#probability(), k: this.k };
  }

  /** Requests rejected locally since creation. */
  get throttled(): number {
    return this.#throttled;
  }

  /** Forgets the window (e.g. after the dependency's endpoint changed). */
  reset(): void {
    this.#window.reset(this.clock.now());
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    if (context.aborted) return rejectAborted(context); // not a request the backend will see
    this.#window.roll(this.clock.now());
    const probability = this.#probability();
    this.#window.addRequest();
    if (probability > 0 && this.#random() < probability) {
      this.#throttled++;
      if (this.#onThrottled.active) {
        this.#onThrottled.emit({ probability, requests: this.#window.requests, accepts: this.#window.accepts });
      }
      return Promise.reject(new ShedError(`adaptive throttling (rejecting ${Math.round(probability * 100)}% locally)`));
    }
    let work: Promise<T>;
    try {
      work = next(context);
    } catch (error) {
      work = Promise.reject(error);
    }
    return work.then(this.#onValue as (value: T) => T, this.#onError);
  }

  #probability(): number {
    const requests = this.#window.requests;
    const p = (requests - this.k * this.#window.accepts) / (requests + 1);
    return p <= 0 ? 0 : p < this.#maxProbability ? p : this.#maxProbability;
  }

  #accept(): void {
    this.#window.roll(this.clock.now());
    this.#window.addAccept();
  }

  // Bound once: no closure per call.
  readonly #onValue = (value: unknown): unknown => {
    this.#accept();
    return value;
  };

  readonly #onError = (error: unknown): never => {
    if (this.#isAccepted(error)) this.#accept();
    throw error;
  };

  /** Filled in with the policy's counters when its events are wired (below). */
  stats(): object {
    return {};
  }

  describe(): PolicyDescription {
    return {
      kind: this.kind,
      ...(this.name ? { name: this.name } : {}),
      options: { k: this.k, windowMs: this.windowMs, buckets: this.#window.buckets, maxRejectionProbability: this.#maxProbability },
    };
  }
}

/** A backend answer that says "your request was wrong", not "I could not serve it". */
function isClientError(error: unknown): boolean {
  return isClientErrorStatus(statusOf(error));
}

export function adaptiveThrottle(options?: AdaptiveThrottleOptions): AdaptiveThrottlePolicy {
  return new AdaptiveThrottlePolicy(options);
}
