/**
 * What the lease-trial tests share (see ../lease-trials.ts): the trial count and seed from the
 * environment, the report check, and the kit for stores whose effect is not transactional.
 *   IDEMPOTENCY_LEASE_TRIALS=<n>: n trials per store instead of the small CI count;
 *   IDEMPOTENCY_SEED=<n> reruns a reported failure; IDEMPOTENCY_SEED=random explores new ones.
 */
import assert from 'node:assert/strict';
import type { IdempotencyEngine, Lease } from '../engine.js';
import { CrashedInside, describeTrialReport, type TrialKit, type TrialOptions, type TrialReport } from '../lease-trials.js';

const FULL = process.env.IDEMPOTENCY_LEASE_TRIALS === undefined ? undefined : Number(process.env.IDEMPOTENCY_LEASE_TRIALS);
// A fixed seed keeps CI deterministic (for the virtual-time kits; real I/O still varies in timing).
const SEED_ENV = process.env.IDEMPOTENCY_SEED;
const SEED = SEED_ENV === undefined ? 20_250_102 : SEED_ENV === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(SEED_ENV);

/** `ci` trials, or IDEMPOTENCY_LEASE_TRIALS when set. */
export const trialCount = (ci: number): number => FULL ?? ci;

export const trialOptions = (trials: number, leaseMs: number, extra: Partial<TrialOptions> = {}): TrialOptions => ({
  trials, seed: SEED, leaseMs, crashRate: 0.2, slowRate: 0.1, lostResponseRate: 0.1, ...extra,
});

/** Prints the report and fails on any violation, naming the seed that reproduces it. */
export function checkTrials(report: TrialReport): void {
  console.log(`# ${report.kit}: ${describeTrialReport({ ...report, violations: [] })}`);
  assert.deepEqual(report.violations, [], `seed ${report.seed} (rerun with IDEMPOTENCY_SEED=${report.seed}): ${describeTrialReport(report)}`);
  assert.ok(report.executions >= report.trials, 'every trial ran its handler at least once');
  assert.ok(report.crashes > 0 || report.trials < 20, 'crashes were injected');
}

/** Engines that just complete: no effect of their own to count (that needs a real process to kill). */
export function completingKit(name: string, base: Omit<TrialKit, 'name' | 'commit' | 'effects'>): TrialKit {
  return {
    name,
    ...base,
    async commit(engine: IdempotencyEngine, lease: Lease, _key: string, body: string, crashInside: boolean) {
      if (crashInside) throw new CrashedInside();
      await engine.complete(lease, { status: 201, body });
    },
  };
}
