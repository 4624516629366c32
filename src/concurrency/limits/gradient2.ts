import { InvalidOptionsError } from '../../core/errors.js';
import { fn, positiveInt, ratio } from '../../core/validate.js';
import { atLeastOne } from './aimd.js';
import { clamp, squareRoot, type LimitAlgorithm, type LimitSample, type LimitState } from './types.js';

/**
 * Gradient2 (Netflix `Gradient2Limit`): compares the current RTT with a long-term exponential
 * average of RTT and shrinks the limit in proportion when the current one is higher.
 *
 *   longRtt   = EWMA over `longWindow` samples, factor 2 / (longWindow + 1)
 *               (a plain average over the first 10 samples as warm-up)
 *   if longRtt / shortRtt > 2: longRtt × 0.95      (recover quickly after a long overload)
 *   gradient  = max(0.5, min(1, tolerance × longRtt / shortRtt))
 *   new       = limit × gradient + queueSize(limit)
 *   limit'    = clamp((1 − smoothing) × limit + smoothing × new, minLimit, maxLimit)
 *
 * The gradient is 1 (no queueing) while the current RTT is within `rttTolerance` (1.5) of the
 * baseline, so the limit creeps up by ~smoothing × queueSize per window; it is never cut by more
 * than half at once (outliers). The limit does not grow while under-used (inflight < limit / 2).
 * Averages (not minimums) are used on purpose: RPC latencies are bursty and a minimum biases the
 * baseline low and sheds too much (Netflix's note). Drops carry no special meaning here; their
 * (usually long) RTT is what moves the estimate.
 *
 * Defaults are Netflix's (initial 20, min 20, max 200, smoothing 0.2, longWindow 600,
 * rttTolerance 1.5) except `queueSize`, which is max(4, ⌊√limit⌋) (Netflix's square-root function
 * with a floor of 4) rather than a constant 4, so headroom scales with the limit.
 */
export interface Gradient2Options {
  /** Default 20. */
  initialLimit?: number;
  /** Default 20. */
  minLimit?: number;
  /** Default 200. */
  maxLimit?: number;
  /** Weight of the new estimate, in (0, 1]. Default 0.2. */
  smoothing?: number;
  /** Samples in the long-term RTT average. Default 600. */
  longWindow?: number;
  /** How much slower than the baseline the current RTT may be before the limit shrinks. Default 1.5. */
  rttTolerance?: number;
  /** Allowed queueing as a function of the limit. Default max(4, ⌊√limit⌋). */
  queueSize?: (limit: number) => number;
}

export interface Gradient2State extends LimitState {
  readonly limit: number;
  readonly estimate: number;
  /** The long-term RTT (the baseline), 0 before the first sample. */
  readonly longRttMs: number;
  /** Samples folded into longRtt so far (warm-up counts up to 10). */
  readonly longCount: number;
  /** The last window's RTT. */
  readonly shortRttMs: number;
}

export interface Gradient2Settings {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
  smoothing: number;
  longWindow: number;
  rttTolerance: number;
  queueSize: (limit: number) => number;
}

const WARMUP_SAMPLES = 10;

/** The pure Gradient2 step. */
export function gradient2Update(state: Gradient2State, sample: LimitSample, s: Gradient2Settings): Gradient2State {
  const shortRtt = sample.rttMs;
  if (!(shortRtt > 0)) return state;

  let longRtt: number;
  let longCount = state.longCount;
  if (longCount < WARMUP_SAMPLES) {
    longCount++;
    longRtt = state.longRttMs + (shortRtt - state.longRttMs) / longCount; // running mean
  } else {
    const factor = 2 / (s.longWindow + 1);
    longRtt = state.longRttMs * (1 - factor) + shortRtt * factor;
  }
  const estimate = state.estimate;
  const queueSize = s.queueSize(Math.floor(estimate));
  const gradient = Math.max(0.5, Math.min(1, (s.rttTolerance * longRtt) / shortRtt));
  // Long overload just ended: pull the baseline down faster than the EWMA would. The gradient
  // above already used this sample's baseline; the decay shows from the next sample (Netflix order).
  if (longRtt / shortRtt > 2) longRtt *= 0.95;

  if (sample.inflight < estimate / 2) {
    return { limit: state.limit, estimate, longRttMs: longRtt, longCount, shortRttMs: shortRtt };
  }
  let next = estimate * gradient + queueSize;
  next = estimate * (1 - s.smoothing) + next * s.smoothing;
  next = clamp(next, s.minLimit, s.maxLimit);
  return { limit: Math.floor(next), estimate: next, longRttMs: longRtt, longCount, shortRttMs: shortRtt };
}

export interface Gradient2Limit extends LimitAlgorithm<Gradient2State> {
  readonly kind: 'gradient2';
  readonly settings: Readonly<Gradient2Settings>;
}

export function gradient2(options: Gradient2Options = {}): Gradient2Limit {
  const minLimit = positiveInt('gradient2.minLimit', options.minLimit, 20);
  const maxLimit = positiveInt('gradient2.maxLimit', options.maxLimit, 200);
  const initialLimit = positiveInt('gradient2.initialLimit', options.initialLimit, clamp(20, minLimit, maxLimit));
  if (minLimit > maxLimit) throw new InvalidOptionsError(`gradient2.minLimit (${minLimit}) must be <= maxLimit (${maxLimit})`);
  if (initialLimit < minLimit || initialLimit > maxLimit) {
    throw new InvalidOptionsError(`gradient2.initialLimit (${initialLimit}) must be within [${minLimit}, ${maxLimit}]`);
  }
  const smoothing = ratio('gradient2.smoothing', options.smoothing, 0.2);
  if (smoothing === 0) throw new InvalidOptionsError('gradient2.smoothing must be > 0 (0 would freeze the limit)');
  const settings: Gradient2Settings = {
    initialLimit,
    minLimit,
    maxLimit,
    smoothing,
    longWindow: positiveInt('gradient2.longWindow', options.longWindow, 600),
    rttTolerance: atLeastOne('gradient2.rttTolerance', options.rttTolerance, 1.5),
    queueSize: fn('gradient2.queueSize', options.queueSize, (limit) => squareRoot(limit, 4)),
  };
  Object.freeze(settings);
  return {
    kind: 'gradient2',
    minLimit,
    maxLimit,
    settings,
    initial: () => ({ limit: initialLimit, estimate: initialLimit, longRttMs: 0, longCount: 0, shortRttMs: 0 }),
    update: (state, sample) => gradient2Update(state, sample, settings),
    describe: () => ({ initialLimit, minLimit, maxLimit, smoothing, longWindow: settings.longWindow, rttTolerance: settings.rttTolerance }),
  };
}
