/**
 * Benchmark plumbing shared by every suite: timing loops and result reporting.
 * A suite reports rows; `bench/run.ts` prints them as a table or, with --json, one JSON
 * object per line: {"suite":..., "case":..., "impl":..., ...fields}.
 */
export interface BenchRow {
  case: string;
  impl: string;
  [field: string]: string | number | boolean | undefined;
}

export interface BenchContext {
  suite: string;
  json: boolean;
  /** Quick mode (fewer iterations), for smoke runs in tests. */
  quick: boolean;
  report(row: BenchRow): void;
  /** Progress lines go to stderr so stdout stays machine-readable with --json. */
  log(message: string): void;
}

export type Suite = (ctx: BenchContext) => Promise<void>;

/**
 * Nanoseconds per call of an async (or sync) function: warm-up, then several timed rounds
 * of `iterations` sequential calls; the median round is reported to resist GC noise.
 */
export async function nsPerOp(fn: () => unknown, options: { iterations?: number; rounds?: number; warmup?: number } = {}): Promise<number> {
  const iterations = options.iterations ?? 200_000;
  const rounds = options.rounds ?? 5;
  const warmup = options.warmup ?? Math.min(iterations, 50_000);
  for (let i = 0; i < warmup; i++) await fn();
  const results: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) await fn();
    const elapsed = Number(process.hrtime.bigint() - start);
    results.push(elapsed / iterations);
  }
  results.sort((a, b) => a - b);
  return round(results[Math.floor(results.length / 2)]!);
}

/** Same as nsPerOp for synchronous functions (no await in the loop). */
export function nsPerOpSync(fn: () => unknown, options: { iterations?: number; rounds?: number; warmup?: number } = {}): number {
  const iterations = options.iterations ?? 1_000_000;
  const rounds = options.rounds ?? 5;
  const warmup = options.warmup ?? Math.min(iterations, 100_000);
  let sink: unknown;
  for (let i = 0; i < warmup; i++) sink = fn();
  const results: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) sink = fn();
    results.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  if (sink === Symbol.for('never')) console.log(sink);
  results.sort((a, b) => a - b);
  return round(results[Math.floor(results.length / 2)]!);
}

/** Percentile of a sample (p in 0..100), nearest-rank. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
