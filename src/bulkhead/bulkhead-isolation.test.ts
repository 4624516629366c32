import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { BulkheadFullError } from '../core/errors.js';
import { seededRandom } from '../core/random.js';
import { bulkhead, type BulkheadPolicy } from './bulkhead.js';

// Three dependencies behind one service. A and B answer in BASELINE_MS; C hangs (never answers,
// as a dependency does when its socket stays open and nothing comes back). Each gets one call
// per millisecond for RUN_MS of virtual time, in a seeded random order within the millisecond (a
// slot freed by A goes to whichever caller comes next, as it would with real, unsynchronised
// traffic).
const DEPENDENCIES = ['A', 'B', 'C'] as const;
type Dependency = (typeof DEPENDENCIES)[number];
const BASELINE_MS = 20;
const RUN_MS = 1000;

interface RouteOutcome {
  ok: number;
  rejected: number;
  /** Successes in the last half of the run, when any pool C can fill is full. */
  okLate: number;
  maxLatencyMs: number;
}

async function run(poolOf: (dependency: Dependency) => BulkheadPolicy, clock: VirtualClock): Promise<Record<Dependency, RouteOutcome>> {
  const outcome = Object.fromEntries(DEPENDENCIES.map((d) => [d, { ok: 0, rejected: 0, okLate: 0, maxLatencyMs: 0 }])) as Record<Dependency, RouteOutcome>;
  const call = (dependency: Dependency): Promise<void> =>
    dependency === 'C' ? new Promise<void>(() => {}) : new Promise<void>((resolve) => clock.setTimeout(resolve, BASELINE_MS));
  const random = seededRandom(7);
  for (let t = 0; t < RUN_MS; t++) {
    const order = [...DEPENDENCIES];
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const dependency of order) {
      const start = clock.now();
      const o = outcome[dependency];
      poolOf(dependency)
        .execute(() => call(dependency))
        .then(
          () => {
            o.ok++;
            if (start >= RUN_MS / 2) o.okLate++;
            o.maxLatencyMs = Math.max(o.maxLatencyMs, clock.now() - start);
          },
          (error: unknown) => {
            assert.ok(error instanceof BulkheadFullError, `unexpected ${String(error)}`);
            o.rejected++;
          },
        );
    }
    await clock.advance(1);
  }
  await clock.advance(BASELINE_MS);
  return outcome;
}

test('one shared bulkhead(100) for three dependencies: the hanging one takes every slot and blocks all routes', async () => {
  const clock = new VirtualClock();
  const shared = bulkhead({ maxConcurrent: 100, clock });
  const outcome = await run(() => shared, clock);

  // C's calls never give their slot back, so every slot ends up held by C...
  assert.equal(shared.stats().active, 100);
  assert.equal(outcome.C.ok, 0);
  // ...and from then on A and B, healthy as they are, get nothing.
  assert.equal(outcome.A.okLate, 0);
  assert.equal(outcome.B.okLate, 0);
  assert.ok(outcome.A.rejected > RUN_MS * 0.9, `A rejected ${outcome.A.rejected}`);
  assert.ok(outcome.B.rejected > RUN_MS * 0.9, `B rejected ${outcome.B.rejected}`);
});

test('per-dependency bulkheads of 30/30/30: C fills only its own pool; A and B keep baseline latency with zero rejections', async () => {
  const clock = new VirtualClock();
  const pools = { A: bulkhead({ maxConcurrent: 30, clock }), B: bulkhead({ maxConcurrent: 30, clock }), C: bulkhead({ maxConcurrent: 30, clock }) };
  const outcome = await run((d) => pools[d], clock);

  for (const d of ['A', 'B'] as const) {
    assert.deepEqual(outcome[d], { ok: RUN_MS, rejected: 0, okLate: RUN_MS / 2, maxLatencyMs: BASELINE_MS }, d);
    // Little's law: 1 call/ms × 20 ms = 20 in flight, under the 30 slots.
    assert.equal(pools[d].stats().peakActive, BASELINE_MS);
  }
  // C: its first 30 calls hang in its own slots; every later one is refused at once.
  assert.equal(pools.C.stats().active, 30);
  assert.equal(outcome.C.rejected, RUN_MS - 30);
  assert.equal(pools.C.stats().rejectionRate, (RUN_MS - 30) / RUN_MS);
  assert.equal(pools.A.stats().rejectionRate, 0);
});
