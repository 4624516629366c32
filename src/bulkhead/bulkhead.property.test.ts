import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { PRIORITIES, type CallContext, type Priority } from '../core/context.js';
import { bulkhead } from './bulkhead.js';

type Arrival = {
  kind: 'arrive';
  priority: Priority;
  durationMs: number;
  /** The caller aborts this long after arriving (maybe while queued, maybe while running). */
  abortAfterMs: number | undefined;
  /** A deadline on the call, relative to its arrival. */
  timeoutMs: number | undefined;
  /** `manual` operations end only at a `finish` step, so releases also happen between timer flushes. */
  behaviour: 'cooperative' | 'ignores-abort' | 'throws-sync' | 'rejects' | 'manual';
};
type Step = Arrival | { kind: 'advance'; ms: number } | { kind: 'microtask' } | { kind: 'finish' };

const arrival: fc.Arbitrary<Arrival> = fc.record({
  kind: fc.constant('arrive' as const),
  priority: fc.constantFrom(...PRIORITIES),
  durationMs: fc.integer({ min: 0, max: 60 }),
  abortAfterMs: fc.option(fc.integer({ min: 0, max: 80 }), { nil: undefined }),
  timeoutMs: fc.option(fc.integer({ min: 0, max: 100 }), { nil: undefined }),
  behaviour: fc.constantFrom('cooperative', 'cooperative', 'ignores-abort', 'throws-sync', 'rejects', 'manual', 'manual'),
});

const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: arrival, weight: 5 },
  { arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 40 }) }), weight: 3 },
  { arbitrary: fc.constant({ kind: 'microtask' as const }), weight: 2 },
  { arbitrary: fc.constant({ kind: 'finish' as const }), weight: 2 },
);

const config = fc.record({
  maxConcurrent: fc.integer({ min: 1, max: 4 }),
  maxQueue: fc.oneof(fc.integer({ min: 0, max: 6 }), fc.constant(Infinity)),
  queueTimeoutMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 }), fc.constant(Infinity)),
});

const EXPECTED_CODES = new Set(['BULKHEAD_FULL', 'BULKHEAD_QUEUE_TIMEOUT', 'DEADLINE_EXCEEDED', 'ABORTED']);

test('property: under random arrivals, durations, aborts, deadlines and queue timeouts the bulkhead never exceeds its limits, never leaks a permit, and every caller settles', async () => {
  await fc.assert(
    fc.asyncProperty(config, fc.array(step, { minLength: 1, maxLength: 40 }), async (cfg, steps) => {
      const clock = new VirtualClock();
      const policy = bulkhead({ ...cfg, clock });
      let running = 0;
      let overLimit = 0;
      const settled: boolean[] = [];
      const results: Promise<void>[] = [];
      /** Running `manual` operations, oldest first: a `finish` step ends the oldest one. */
      const manual: (() => void)[] = [];

      const operation = (a: Arrival, index: number) => (ctx: CallContext): Promise<string> | string => {
        if (a.behaviour === 'throws-sync') throw new Error(`sync-${index}`);
        running++;
        if (running > cfg.maxConcurrent) overLimit++;
        if (a.behaviour === 'manual') {
          return new Promise<string>((resolve, reject) => {
            const signal = ctx.signal;
            const finish = () => { signal.removeEventListener('abort', onAbort); running--; resolve(`ok-${index}`); };
            const onAbort = () => { manual.splice(manual.indexOf(finish), 1); running--; reject(signal.reason); };
            manual.push(finish);
            signal.addEventListener('abort', onAbort, { once: true });
          });
        }
        if (a.behaviour === 'rejects') {
          return new Promise<string>((_, reject) => clock.setTimeout(() => { running--; reject(new Error(`rejected-${index}`)); }, a.durationMs));
        }
        return new Promise<string>((resolve, reject) => {
          const signal = ctx.signal;
          const onAbort = () => { clock.clearTimeout(timer); running--; reject(signal.reason); };
          const timer = clock.setTimeout(() => {
            if (a.behaviour === 'cooperative') signal.removeEventListener('abort', onAbort);
            running--;
            resolve(`ok-${index}`);
          }, a.durationMs);
          if (a.behaviour === 'cooperative') signal.addEventListener('abort', onAbort, { once: true });
        });
      };

      const checkLimits = (where: string) => {
        const s = policy.stats();
        assert.ok(s.active <= cfg.maxConcurrent, `${where}: active ${s.active} > ${cfg.maxConcurrent}`);
        assert.ok(s.queued <= cfg.maxQueue, `${where}: queued ${s.queued} > ${cfg.maxQueue}`);
        assert.ok(s.active >= 0 && s.queued >= 0, `${where}: negative counts`);
        assert.equal(overLimit, 0, `${where}: an operation started while ${cfg.maxConcurrent} were running`);
      };

      /** Once promises have settled, permits match running work exactly and waiters exist only when full. */
      const checkQuiescent = (where: string) => {
        checkLimits(where);
        assert.equal(policy.active, running, `${where}: ${policy.active} permits held for ${running} running operations`);
        if (policy.queued > 0) assert.equal(policy.active, cfg.maxConcurrent, `${where}: waiters while a slot is free`);
      };

      for (const [i, s] of steps.entries()) {
        if (s.kind === 'advance') {
          await clock.advance(s.ms);
          checkQuiescent(`step ${i} (advance ${s.ms})`);
          continue;
        }
        if (s.kind === 'finish') {
          manual.shift()?.(); // the release follows in a microtask: later steps land in that window
          checkLimits(`step ${i} (finish)`);
          continue;
        }
        if (s.kind === 'microtask') {
          await null;
          checkLimits(`step ${i} (microtask)`);
          continue;
        }
        const controller = new AbortController();
        if (s.abortAfterMs !== undefined) clock.setTimeout(() => controller.abort(new Error(`abort-${i}`)), s.abortAfterMs);
        const index = settled.length;
        settled.push(false);
        const options = { priority: s.priority, signal: controller.signal, ...(s.timeoutMs === undefined ? {} : { timeoutMs: s.timeoutMs }) };
        results.push(policy.execute(operation(s, i), options).then(
          (value) => { assert.equal(value, `ok-${i}`); settled[index] = true; },
          (error: any) => {
            const known = EXPECTED_CODES.has(error?.code) || /^(abort|sync|rejected)-\d+$/.test(error?.message ?? '');
            assert.ok(known, `unexpected rejection: ${String(error)}`);
            settled[index] = true;
          },
        ));
        checkLimits(`step ${i} (arrive)`);
      }

      for (;;) {
        await clock.runAll();
        await flushPromises();
        if (manual.length === 0) break;
        manual.shift()!();
      }
      await Promise.all(results); // also surfaces any assertion made inside the callbacks
      assert.ok(settled.every(Boolean), 'every caller settled');
      checkQuiescent('end');
      const stats = policy.stats();
      assert.equal(stats.active, 0);
      assert.equal(stats.queued, 0);
      assert.equal(running, 0);
      assert.equal(stats.admitted + stats.rejected, settled.length, 'each call was admitted or rejected exactly once');
      assert.ok(stats.peakActive <= cfg.maxConcurrent && stats.peakQueued <= cfg.maxQueue);
      assert.equal(clock.pendingTimers, 0, 'no timer left behind');
    }),
    { numRuns: 500, seed: Number(process.env.BULWARK_PROPERTY_SEED ?? 20240611) },
  );
});
