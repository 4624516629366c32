import { InvalidOptionsError } from '../core/errors.js';
import type { Random } from '../core/random.js';

/** A latency distribution: draws one delay in ms from the injected random source. */
export type Distribution = (random: Random) => number;

function check(condition: boolean, message: string): void {
  if (!condition) throw new InvalidOptionsError(message);
}

/** Always `ms`. */
export function fixed(ms: number): Distribution {
  check(ms >= 0, `fixed(ms): ms must be >= 0, got ${ms}`);
  return () => ms;
}

/** Uniform in [min, max). */
export function uniform(min: number, max: number): Distribution {
  check(min >= 0 && max >= min, `uniform(min, max): need 0 <= min <= max, got ${min}, ${max}`);
  return (random) => min + (max - min) * random();
}

/** Exponential with the given mean (memoryless service times). */
export function exponential(mean: number): Distribution {
  check(mean > 0, `exponential(mean): mean must be > 0, got ${mean}`);
  return (random) => -mean * Math.log(1 - random());
}

/**
 * Log-normal with the given median and shape sigma (typical of RPC latency: a body around the
 * median and a long right tail; sigma 0.5 puts p99 at ~3.2x the median).
 */
export function logNormal(median: number, sigma: number): Distribution {
  check(median > 0 && sigma >= 0, `logNormal(median, sigma): need median > 0 and sigma >= 0, got ${median}, ${sigma}`);
  return (random) => median * Math.exp(sigma * standardNormal(random));
}

/** Pareto with minimum `scale` and tail index `shape` (heavier tail as shape falls toward 1). */
export function pareto(scale: number, shape: number): Distribution {
  check(scale > 0 && shape > 0, `pareto(scale, shape): both must be > 0, got ${scale}, ${shape}`);
  return (random) => scale / Math.pow(1 - random(), 1 / shape);
}

/**
 * A weighted mix, e.g. the "5% of calls take 1 s" dependency:
 * `mixture([[0.95, uniform(8, 12)], [0.05, fixed(1000)]])`. Weights are normalised.
 */
export function mixture(parts: ReadonlyArray<readonly [weight: number, distribution: Distribution]>): Distribution {
  check(parts.length > 0 && parts.every(([w, d]) => w >= 0 && typeof d === 'function'), 'mixture: need [weight >= 0, distribution] pairs');
  const total = parts.reduce((sum, [w]) => sum + w, 0);
  check(total > 0, 'mixture: weights must not all be 0');
  const cumulative: number[] = [];
  let acc = 0;
  for (const [w] of parts) cumulative.push((acc += w / total));
  return (random) => {
    const u = random();
    for (let i = 0; i < parts.length - 1; i++) if (u < cumulative[i]!) return parts[i]![1](random);
    return parts[parts.length - 1]![1](random);
  };
}

/** Box–Muller: one standard normal value from two uniform draws. */
function standardNormal(random: Random): number {
  const u = 1 - random(); // (0, 1]: log(0) impossible
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}
