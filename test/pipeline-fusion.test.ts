/**
 * The pipeline runs adjacent retry / breaker / bulkhead as one fused layer (core/policy.ts,
 * FusablePolicy). These tests hold it to the plain layered composition: the same calls on the
 * same virtual clock must give the same results and the same events at the same times.
 * Calls start one after another, but work a timeout abandoned still ends later, while another call
 * runs; the fused path settles in fewer microtask hops, so the events of two such flows at the
 * same instant may interleave differently. The comparison is therefore: every call's result, in
 * order; every policy's own events, in order (what its state evolves by); and at each instant the
 * same events.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CallContext, bulkhead, circuitBreaker, consecutive, constantBackoff, countWindow, pipeline, retry, ratioBudget, timeout,
  type BulkheadPolicy, type CircuitBreakerPolicy, type Policy, type RetryPolicy,
} from '../src/index.js';
import { VirtualClock, seededRandom } from '../src/testing.js';
// The fused path's hooks are internal: in no entry point, and left out of the published types.
import { invokeOperation, NOT_FUSED, type FusablePolicy } from '../src/core/policy.js';

// The policies no longer say `implements FusablePolicy` (the published types would name an
// interface they leave out), so their hooks' shape is checked here instead.
const fusable: [RetryPolicy, CircuitBreakerPolicy, BulkheadPolicy] extends FusablePolicy[] ? true : never = true;
void fusable;

/** hang: takes 100 ms unless aborted; stuck: takes 100 ms and ignores aborts (the timeout abandons it). */
type Step = 'ok' | 'e503' | 'e400' | 'hang' | 'stuck' | 'throw';
type Kind = 'retry' | 'breaker' | 'breaker-rate' | 'bulkhead' | 'timeout';

interface Scenario {
  kinds: Kind[];
  /** Per call: the pause before it starts and what each attempt does (the last entry repeats). */
  calls: { gap: number; steps: Step[]; durationMs: number }[];
}

/** Builds the policies of a scenario, wiring every event into `log` with the clock time. */
function build(kinds: Kind[], clock: VirtualClock, log: string[]): Policy[] {
  const at = () => `@${clock.now()}`;
  return kinds.map((kind, i) => {
    const tag = `${kind}#${i}`;
    switch (kind) {
      case 'retry': {
        const budget = ratioBudget({ ratio: 0.5, minRetriesPerSecond: 1, clock });
        const p = retry({ maxAttempts: 3, backoff: constantBackoff(5), budget, clock, random: seededRandom(7) });
        p.onRetry((e) => log.push(`${tag} retry ${e.attempt} ${e.delayMs} ${at()}`));
        p.onGiveUp((e) => log.push(`${tag} give-up ${e.attempts} ${e.reason} ${at()}`));
        p.onSuccess((e) => log.push(`${tag} success ${e.attempts} ${at()}`));
        return p;
      }
      case 'breaker':
      case 'breaker-rate': {
        const strategy = kind === 'breaker' ? consecutive({ threshold: 3 }) : countWindow({ size: 6, minimumCalls: 4, failureRateThreshold: 0.5 });
        const p = circuitBreaker({ strategy, openMs: 40, halfOpen: { maxProbes: 2 }, clock });
        p.onStateChange((e) => log.push(`${tag} ${e.from}->${e.to} ${e.reason} ${at()}`));
        p.onSuccess((e) => log.push(`${tag} ok probe=${e.probe} ${at()}`));
        p.onFailure((e) => log.push(`${tag} fail probe=${e.probe} ${at()}`));
        p.onReject(() => log.push(`${tag} reject ${at()}`));
        return p;
      }
      case 'bulkhead': {
        const p = bulkhead({ maxConcurrent: 2, maxQueue: 2, queueTimeoutMs: 15, clock });
        p.onReject((e) => log.push(`${tag} reject ${e.reason} ${at()}`));
        p.onQueued(() => log.push(`${tag} queued ${at()}`));
        return p;
      }
      case 'timeout': {
        const p = timeout({ ms: 12, graceMs: 3, clock });
        p.onTimeout((e) => log.push(`${tag} timeout abandoned=${e.abandoned} ${at()}`));
        return p;
      }
    }
  });
}

/** An operation following the script: each attempt reads its step from the call's attempt number. */
function operation(call: Scenario['calls'][number], clock: VirtualClock, index: number) {
  return (context: CallContext): Promise<string> => {
    const step = call.steps[Math.min(context.attempt, call.steps.length) - 1]!;
    if (step === 'throw') throw Object.assign(new Error('sync throw'), { status: 503 });
    return new Promise((resolve, reject) => {
      const finish = () => {
        if (step === 'e503' || step === 'e400') reject(Object.assign(new Error(step), { status: step === 'e503' ? 503 : 400 }));
        else resolve(`v${index}.${context.attempt}`);
      };
      clock.setTimeout(finish, step === 'hang' || step === 'stuck' ? 100 : call.durationMs);
      // Aborted work ends a little later, as real I/O does (unless it is stuck).
      if (step !== 'stuck') context.signal.addEventListener('abort', () => clock.setTimeout(() => reject(context.signal.reason), 1), { once: true });
    });
  };
}

/** Runs a scenario through `execute` (fused) or through the layered `run` chain, returning the log. */
async function runScenario(scenario: Scenario, fused: boolean): Promise<string[]> {
  const clock = new VirtualClock();
  const log: string[] = [];
  const policies = build(scenario.kinds, clock, log);
  const chain = pipeline(...policies);
  for (const [i, call] of scenario.calls.entries()) {
    await clock.advance(call.gap);
    const op = operation(call, clock, i);
    const result = fused ? chain.execute(op) : chain.run(CallContext.root(clock, op), invokeOperation);
    let done = false;
    void result.then(
      (value) => { done = true; log.push(`call ${i} -> ${value} @${clock.now()}`); },
      (error) => { done = true; log.push(`call ${i} -> ${error.code ?? error.message} attempts=${error.attempts ?? '-'} @${clock.now()}`); },
    );
    while (!done) await clock.advance(1);
  }
  return log;
}

const kindsArb = fc.array(fc.constantFrom<Kind>('retry', 'breaker', 'breaker-rate', 'bulkhead', 'timeout'), { minLength: 1, maxLength: 5 });
const callsArb = fc.array(fc.record({
  gap: fc.integer({ min: 0, max: 60 }),
  steps: fc.array(fc.constantFrom<Step>('ok', 'ok', 'e503', 'e400', 'hang', 'stuck', 'throw'), { minLength: 1, maxLength: 3 }),
  durationMs: fc.integer({ min: 0, max: 20 }),
}), { minLength: 1, maxLength: 25 });

/** The time of a log line (`... @115`). */
const timeOf = (line: string): number => Number(line.slice(line.lastIndexOf('@') + 1));

/** The same behaviour, as the header says: results in order, each policy's events in order, and the same events at each instant. */
function assertSameBehaviour(fused: string[], layered: string[]): void {
  const calls = (log: string[]) => log.filter((line) => line.startsWith('call '));
  const byPolicy = (log: string[]) => {
    const out: Record<string, string[]> = {};
    for (const line of log) if (!line.startsWith('call ')) (out[line.slice(0, line.indexOf(' '))] ??= []).push(line);
    return out;
  };
  const byInstant = (log: string[]) => [...log].sort((a, b) => timeOf(a) - timeOf(b) || (a < b ? -1 : a > b ? 1 : 0));
  assert.deepEqual(calls(fused), calls(layered));
  assert.deepEqual(byPolicy(fused), byPolicy(layered));
  assert.deepEqual(byInstant(fused), byInstant(layered));
}

test('property: a fused pipeline behaves exactly as the layered chain (results, events, times)', async () => {
  await fc.assert(fc.asyncProperty(kindsArb, callsArb, async (kinds, calls) => {
    const scenario = { kinds, calls };
    assertSameBehaviour(await runScenario(scenario, true), await runScenario(scenario, false));
  }), { numRuns: 300 });
});

test('work a timeout abandoned ends while the next call waits in the bulkhead: the same behaviour, though two flows interleave differently at that instant', async () => {
  // Found by the property above: the stuck calls end at 115 ms, when the last call gets its slot.
  const scenario: Scenario = {
    kinds: ['timeout', 'breaker-rate', 'bulkhead', 'breaker-rate'],
    calls: [
      { gap: 0, steps: ['ok'], durationMs: 14 }, { gap: 0, steps: ['throw', 'ok'], durationMs: 0 }, { gap: 0, steps: ['ok'], durationMs: 0 },
      { gap: 0, steps: ['stuck', 'ok'], durationMs: 0 }, { gap: 0, steps: ['stuck'], durationMs: 0 }, { gap: 16, steps: ['ok'], durationMs: 0 },
      { gap: 14, steps: ['ok'], durationMs: 0 }, { gap: 4, steps: ['ok'], durationMs: 0 },
    ],
  };
  const fused = await runScenario(scenario, true);
  const layered = await runScenario(scenario, false);
  assertSameBehaviour(fused, layered);
  assert.deepEqual(fused.filter((line) => timeOf(line) === 115).sort(), [
    'breaker-rate#1 closed->open threshold @115', 'breaker-rate#1 ok probe=false @115',
    'breaker-rate#3 closed->open threshold @115', 'breaker-rate#3 ok probe=false @115', 'breaker-rate#3 reject @115',
    'call 7 -> CIRCUIT_OPEN attempts=- @115',
  ]);
});

test('the usual pipeline takes the fused path, and falls back per policy when one cannot admit at once', async () => {
  const clock = new VirtualClock();
  const log: string[] = [];
  const [r, b, k, t] = build(['retry', 'breaker', 'bulkhead', 'timeout'], clock, log);
  const chain = pipeline(r!, b!, k!, t!);
  const bh = k as ReturnType<typeof bulkhead>;
  // Watch the bulkhead's fast-path admission: what it answers, call by call.
  const answers: string[] = [];
  const enter = bh.fusedEnter.bind(bh);
  bh.fusedEnter = (context) => {
    const ticket = enter(context);
    answers.push(ticket === NOT_FUSED ? 'not-fused' : 'admitted');
    return ticket;
  };
  // Two slow calls take the bulkhead's two slots on the fast path; the third cannot, so it goes
  // through the bulkhead's own run and queues.
  const slow = () => new Promise<string>((resolve) => clock.setTimeout(() => resolve('slow'), 10));
  const calls = [chain.execute(slow), chain.execute(slow), chain.execute(slow)];
  assert.deepEqual(answers, ['admitted', 'admitted', 'not-fused']);
  assert.equal(bh.active, 2);
  assert.equal(bh.queued, 1);
  await clock.advance(30);
  assert.deepEqual(await Promise.all(calls), ['slow', 'slow', 'slow']);
  assert.equal(bh.active, 0);
  assert.deepEqual(log.filter((l) => l.startsWith('retry')), ['retry#0 success 1 @10', 'retry#0 success 1 @10', 'retry#0 success 1 @20']);
});
