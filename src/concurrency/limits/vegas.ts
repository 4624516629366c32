import { InvalidOptionsError } from '../../core/errors.js';
import { systemRandom, type Random } from '../../core/random.js';
import { fn, positive, positiveInt, ratio } from '../../core/validate.js';
import { clamp, log10Root, type LimitAlgorithm, type LimitSample, type LimitState } from './types.js';

/**
 * TCP Vegas applied to concurrency (Brakmo & Peterson 1994; Netflix `VegasLimit`). Vegas
 * estimates how many requests are queued rather than being served:
 *
 *   queue = ⌈limit × (1 − rttNoLoad / rtt)⌉
 *
 * where rttNoLoad is the smallest RTT seen (the service's latency with no queueing). With
 * f(limit) = max(1, ⌊log10(limit)⌋) (Netflix's `Log10RootIntFunction`), Netflix's defaults are
 *
 *   alpha = 3·f, beta = 6·f, threshold = f
 *   dropped              → limit − f
 *   queue ≤ threshold    → limit + beta   (nothing queued: grow fast)
 *   queue < alpha        → limit + f      (little queueing: grow)
 *   queue > beta         → limit − f      (queueing: shrink)
 *   otherwise            → unchanged      (the sweet spot)
 *
 * then clamped to [minLimit, maxLimit] and smoothed: limit' = (1 − s)·limit + s·new (s = 1 by
 * default). The limit does not grow while under-used (inflight × 2 < limit). Because rttNoLoad
 * only ever falls, every probeMultiplier × limit samples (jittered by a factor in [0.5, 1) drawn
 * from the injected `random`) the next sample resets it, so a permanent latency shift (a
 * dependency moved further away) is eventually accepted as the new baseline.
 */
export interface VegasOptions {
  /** Default 20. */
  initialLimit?: number;
  /** Default 1. */
  minLimit?: number;
  /** Default 1000. */
  maxLimit?: number;
  /** Weight of the new estimate, in (0, 1]. Default 1 (no smoothing). */
  smoothing?: number;
  /** Re-probe rttNoLoad every probeMultiplier × limit samples. Default 30. */
  probeMultiplier?: number;
  alpha?: (limit: number) => number;
  beta?: (limit: number) => number;
  threshold?: (limit: number) => number;
  increase?: (limit: number) => number;
  decrease?: (limit: number) => number;
  /** Source of the probe jitter. Default Math.random. */
  random?: Random;
}

export interface VegasState extends LimitState {
  /** The integer limit to enforce: ⌊estimate⌋. */
  readonly limit: number;
  /** The unrounded estimate that smoothing works on. */
  readonly estimate: number;
  /** Smallest RTT seen since the last probe (0 = none yet). */
  readonly rttNoLoadMs: number;
  readonly probeCount: number;
  readonly probeJitter: number;
}

export interface VegasSettings {
  initialLimit: number;
  minLimit: number;
  maxLimit: number;
  smoothing: number;
  probeMultiplier: number;
  alpha: (limit: number) => number;
  beta: (limit: number) => number;
  threshold: (limit: number) => number;
  increase: (limit: number) => number;
  decrease: (limit: number) => number;
  random: Random;
}

/** The pure Vegas step (deterministic for a deterministic `random`, used only when probing). */
export function vegasUpdate(state: VegasState, sample: LimitSample, s: VegasSettings): VegasState {
  const rtt = sample.rttMs;
  if (!(rtt > 0)) return state; // no information in a zero RTT (and it would poison rttNoLoad)

  const probeCount = state.probeCount + 1;
  if (state.probeJitter * s.probeMultiplier * state.estimate <= probeCount) {
    // Probe: take this RTT as the new no-load baseline and start a new probe period.
    return probed(state, rtt, 0, probeJitter(s.random));
  }
  if (state.rttNoLoadMs === 0 || rtt < state.rttNoLoadMs) {
    return probed(state, rtt, probeCount, state.probeJitter);
  }

  const estimate = state.estimate;
  const current = Math.floor(estimate);
  let next: number;
  if (sample.dropped) {
    next = s.decrease(estimate);
  } else if (sample.inflight * 2 < estimate) {
    return probed(state, state.rttNoLoadMs, probeCount, state.probeJitter); // app-limited: no evidence the limit is too low
  } else {
    const queue = Math.ceil(estimate * (1 - state.rttNoLoadMs / rtt));
    if (queue <= s.threshold(current)) next = estimate + s.beta(current);
    else if (queue < s.alpha(current)) next = s.increase(estimate);
    else if (queue > s.beta(current)) next = s.decrease(estimate);
    else return probed(state, state.rttNoLoadMs, probeCount, state.probeJitter);
  }
  next = clamp(next, s.minLimit, s.maxLimit);
  next = (1 - s.smoothing) * estimate + s.smoothing * next;
  return { limit: Math.max(s.minLimit, Math.floor(next)), estimate: next, rttNoLoadMs: state.rttNoLoadMs, probeCount, probeJitter: state.probeJitter };
}

/**
 * The same limit with new probe bookkeeping. Spelled out, not `{ ...state, probeCount }`: in
 * Node 20 a spread followed by more properties takes V8's generic copy path (many times the
 * cost, see docs/benchmarks.md), and this runs once per sample.
 */
function probed(state: VegasState, rttNoLoadMs: number, probeCount: number, jitter: number): VegasState {
  return { limit: state.limit, estimate: state.estimate, rttNoLoadMs, probeCount, probeJitter: jitter };
}

function probeJitter(random: Random): number {
  return 0.5 + random() * 0.5;
}

export interface VegasLimit extends LimitAlgorithm<VegasState> {
  readonly kind: 'vegas';
  readonly settings: Readonly<VegasSettings>;
}

export function vegas(options: VegasOptions = {}): VegasLimit {
  const minLimit = positiveInt('vegas.minLimit', options.minLimit, 1);
  const maxLimit = positiveInt('vegas.maxLimit', options.maxLimit, 1000);
  const initialLimit = positiveInt('vegas.initialLimit', options.initialLimit, clamp(20, minLimit, maxLimit));
  if (minLimit > maxLimit) throw new InvalidOptionsError(`vegas.minLimit (${minLimit}) must be <= maxLimit (${maxLimit})`);
  if (initialLimit < minLimit || initialLimit > maxLimit) {
    throw new InvalidOptionsError(`vegas.initialLimit (${initialLimit}) must be within [${minLimit}, ${maxLimit}]`);
  }
  const smoothing = ratio('vegas.smoothing', options.smoothing, 1);
  if (smoothing === 0) throw new InvalidOptionsError('vegas.smoothing must be > 0 (0 would freeze the limit)');
  const settings: VegasSettings = {
    initialLimit,
    minLimit,
    maxLimit,
    smoothing,
    probeMultiplier: positive('vegas.probeMultiplier', options.probeMultiplier, 30),
    alpha: fn('vegas.alpha', options.alpha, (limit) => 3 * log10Root(limit)),
    beta: fn('vegas.beta', options.beta, (limit) => 6 * log10Root(limit)),
    threshold: fn('vegas.threshold', options.threshold, (limit) => log10Root(limit)),
    increase: fn('vegas.increase', options.increase, (limit) => limit + log10Root(Math.floor(limit))),
    decrease: fn('vegas.decrease', options.decrease, (limit) => limit - log10Root(Math.floor(limit))),
    random: fn('vegas.random', options.random, systemRandom, 'returning [0, 1)'),
  };
  Object.freeze(settings);
  return {
    kind: 'vegas',
    minLimit,
    maxLimit,
    settings,
    initial: () => ({ limit: initialLimit, estimate: initialLimit, rttNoLoadMs: 0, probeCount: 0, probeJitter: probeJitter(settings.random) }),
    update: (state, sample) => vegasUpdate(state, sample, settings),
    describe: () => ({ initialLimit, minLimit, maxLimit, smoothing, probeMultiplier: settings.probeMultiplier }),
  };
}
