import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { circuitBreaker, type HalfOpenOptions } from './breaker.js';
import { consecutive, countWindow, timeWindow } from './strategies.js';

type Command =
  | { kind: 'call' }
  | { kind: 'settle'; pick: number; ok: boolean }
  | { kind: 'advance'; ms: number }
  | { kind: 'isolate' }
  | { kind: 'reset' };

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.constant<Command>({ kind: 'call' }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('settle' as const), pick: fc.nat(), ok: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 1500 }) }) },
  { weight: 1, arbitrary: fc.constant<Command>({ kind: 'isolate' }) },
  { weight: 1, arbitrary: fc.constant<Command>({ kind: 'reset' }) },
);

const config = fc.record({
  maxProbes: fc.integer({ min: 1, max: 3 }),
  rateMode: fc.boolean(),
  openMs: fc.constantFrom(0, 100, 1000),
  strategy: fc.constantFrom('consecutive', 'count', 'time'),
});

test('property: half-open never has more than maxProbes calls in flight, and an open breaker never calls the operation', async () => {
  await fc.assert(
    fc.asyncProperty(config, fc.array(command, { minLength: 1, maxLength: 60 }), async (cfg, commands) => {
      const clock = new VirtualClock();
      const halfOpen: HalfOpenOptions = cfg.rateMode
        ? { maxProbes: cfg.maxProbes, sampleSize: cfg.maxProbes + 1, failureRateThreshold: 0.5 }
        : { maxProbes: cfg.maxProbes, successThreshold: 2 };
      const strategy = cfg.strategy === 'consecutive' ? consecutive({ threshold: 2 })
        : cfg.strategy === 'count' ? countWindow({ size: 4, minimumCalls: 2 })
          : timeWindow({ windowMs: 1000, buckets: 4, minimumCalls: 2 });
      const breaker = circuitBreaker({ clock, openMs: cfg.openMs, halfOpen, strategy });

      // A "period" is the time between two state changes; calls are attributed to the period
      // (and the state) in which their operation actually started.
      let period = 0;
      let periodKind: string = 'closed';
      breaker.onStateChange((e) => { period++; periodKind = e.to; });
      const startedInPeriod = new Map<number, number>();
      const pending: Array<{ period: number; resolve: (v: string) => void; reject: (e: Error) => void; done: Promise<unknown> }> = [];

      for (const cmd of commands) {
        switch (cmd.kind) {
          case 'call': {
            const before = breaker.state; // applies a due open → half-open, as the call itself would
            let invoked = false;
            let resolve!: (v: string) => void;
            let reject!: (e: Error) => void;
            const done = breaker.execute(() => {
              invoked = true;
              assert.notEqual(periodKind, 'open', 'operation called while open');
              assert.notEqual(periodKind, 'isolated', 'operation called while isolated');
              const n = (startedInPeriod.get(period) ?? 0) + 1;
              startedInPeriod.set(period, n);
              if (periodKind === 'half-open') assert.ok(n <= cfg.maxProbes, `${n} probes started in one half-open period (max ${cfg.maxProbes})`);
              return new Promise<string>((res, rej) => { resolve = res; reject = rej; });
            }).catch((e: unknown) => e);
            if (before.kind === 'open' || before.kind === 'isolated') assert.equal(invoked, false, `called while ${before.kind}`);
            if (before.kind === 'half-open' && before.inFlight >= cfg.maxProbes) assert.equal(invoked, false, 'called with every probe slot taken');
            if (invoked) pending.push({ period, resolve, reject, done });
            else assert.equal(((await done) as { code?: string }).code, 'CIRCUIT_OPEN');
            break;
          }
          case 'settle': {
            if (pending.length === 0) break;
            const [call] = pending.splice(cmd.pick % pending.length, 1);
            startedInPeriod.set(call!.period, startedInPeriod.get(call!.period)! - 1);
            if (cmd.ok) call!.resolve('ok');
            else call!.reject(new Error('down'));
            await call!.done;
            await flushPromises();
            break;
          }
          case 'advance':
            await clock.advance(cmd.ms);
            break;
          case 'isolate':
            breaker.isolate();
            break;
          case 'reset':
            breaker.reset();
            break;
        }
        const s = breaker.state;
        if (s.kind === 'half-open') {
          assert.ok(s.inFlight >= 0 && s.inFlight <= cfg.maxProbes, `inFlight ${s.inFlight}`);
          assert.ok(s.inFlight <= (startedInPeriod.get(period) ?? 0), 'the breaker\'s probe count matches the probes actually running');
        }
        if (s.kind === 'open') assert.ok(s.reopensAt >= s.openedAt);
      }
      for (const call of pending) call.resolve('late');
      await Promise.all(pending.map((c) => c.done));
      assert.equal(clock.pendingTimers, 0);
    }),
    { numRuns: 300, seed: 20240611 },
  );
});
