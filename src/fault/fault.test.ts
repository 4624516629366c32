import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { seededRandom, type Random } from '../core/random.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { distributions, faultInjection, FaultInjectedError } from '../index.js';

const ok = () => 'ok';

test('off by default: a disabled policy draws no random number, calls no allow-list, changes nothing', async () => {
  let draws = 0;
  let allowListCalls = 0;
  const random: Random = () => { draws++; return 0; };
  const policy = faultInjection({ random, faults: [{ type: 'error', rate: 1, when: () => { allowListCalls++; return true; } }] });
  assert.equal(policy.enabled, false);
  for (let i = 0; i < 10_000; i++) assert.equal(await policy.execute(ok), 'ok');
  assert.equal(draws, 0);
  assert.equal(allowListCalls, 0);
  assert.deepEqual(policy.stats(), { calls: 0, injected: [0] });
  policy.enable();
  await assert.rejects(policy.execute(ok), { code: 'FAULT_INJECTED' });
  policy.disable();
  assert.equal(await policy.execute(ok), 'ok');
});

test('the observed injection rate matches the configured rate over 10,000 calls (fixed seed), reproducibly', async () => {
  const run = async (seed: number) => {
    const policy = faultInjection({ enabled: true, random: seededRandom(seed), faults: [{ type: 'error', rate: 0.05 }, { type: 'result', rate: 0.2, result: () => 'replaced' }] });
    const pattern: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      pattern.push(await policy.execute(ok).catch((e: FaultInjectedError) => e.code));
    }
    return { pattern, stats: policy.stats() };
  };
  const a = await run(2024);
  const errors = a.pattern.filter((x) => x === 'FAULT_INJECTED').length;
  // Binomial(10000, 0.05): sd ≈ 21.8; 4 sd ≈ 87.
  assert.ok(Math.abs(errors - 500) < 87, `errors ${errors}`);
  // Result replacement is drawn for every call (independently), applied only to successes.
  assert.ok(Math.abs(a.stats.injected[1]! - 2000) < 160, `result faults ${a.stats.injected[1]}`);
  const replaced = a.pattern.filter((x) => x === 'replaced').length;
  assert.ok(Math.abs(replaced - 10_000 * 0.95 * 0.2) < 160, `replaced ${replaced}`);
  assert.equal(a.stats.calls, 10_000);
  const b = await run(2024);
  assert.deepEqual(b.pattern, a.pattern, 'same seed, same injected calls');
  const c = await run(7);
  assert.notDeepEqual(c.pattern, a.pattern);
});

test('the allow-list is honoured: only allowed calls are eligible, the rate applies among them', async () => {
  const policy = faultInjection({
    enabled: true,
    random: seededRandom(9),
    faults: [{ type: 'error', rate: 0.5, status: 503, when: (ctx) => ctx.tags.user === 'tester' }],
  });
  let testerErrors = 0;
  let otherErrors = 0;
  for (let i = 0; i < 2000; i++) {
    const user = i % 2 === 0 ? 'tester' : 'customer';
    await policy.execute(ok, { tags: { user } }).catch((e: FaultInjectedError) => {
      assert.equal(e.status, 503);
      assert.equal(e.statusCode, 503);
      if (user === 'tester') testerErrors++; else otherErrors++;
    });
  }
  assert.equal(otherErrors, 0);
  assert.ok(Math.abs(testerErrors - 500) < 90, `tester errors ${testerErrors}`); // Binomial(1000, .5): sd ≈ 15.8
});

test('latency faults wait on the injected clock (fixed or a distribution) and are abortable', async () => {
  const clock = new VirtualClock();
  const policy = faultInjection({ enabled: true, clock, faults: [{ type: 'latency', rate: 1, ms: 250 }] });
  let called = -1;
  const p = policy.execute(() => { called = clock.now(); return 'ok'; });
  await clock.advance(249);
  assert.equal(called, -1);
  await clock.advance(1);
  assert.equal(await p, 'ok');
  assert.equal(called, 250);

  const caller = new AbortController();
  const q = policy.execute(ok, { signal: caller.signal });
  await clock.advance(10);
  caller.abort(new Error('gone'));
  await assert.rejects(q, { code: 'ABORTED' });
  assert.equal(clock.pendingTimers, 0, 'the latency timer was cleared');

  const delays: number[] = [];
  const dist = faultInjection({ enabled: true, clock, random: seededRandom(4), faults: [{ type: 'latency', rate: 1, ms: distributions.uniform(100, 200) }] });
  dist.onInjected((e) => delays.push(e.delayMs!));
  for (let i = 0; i < 50; i++) {
    const r = dist.execute(ok);
    await clock.advance(200);
    await r;
  }
  assert.ok(delays.every((d) => d >= 100 && d < 200));
  assert.ok(Math.max(...delays) - Math.min(...delays) > 50, 'drawn, not fixed');
});

test('error faults: default FAULT_INJECTED error, a given error, or a factory; the dependency is not called', async () => {
  const given = new Error('ECONNREFUSED');
  let calls = 0;
  const op = () => { calls++; return 'ok'; };
  const policy = faultInjection({ enabled: true, faults: [{ type: 'error', rate: 1, name: 'boom' }] });
  await assert.rejects(policy.execute(op), (e: any) => e instanceof FaultInjectedError && e.code === 'FAULT_INJECTED' && /boom/.test(e.message));
  policy.setFaults([{ type: 'error', rate: 1, error: given }]);
  await assert.rejects(policy.execute(op), (e) => e === given);
  policy.setFaults([{ type: 'error', rate: 1, error: (ctx: any) => new Error(`for ${ctx.tags.user}`) }]);
  await assert.rejects(policy.execute(op, { tags: { user: 'ann' } }), /for ann/);
  assert.equal(calls, 0);
});

test('abort faults: a reset before the call, or after it (the side effect happened, the answer is lost)', async () => {
  let sideEffects = 0;
  const op = () => { sideEffects++; return 'ok'; };
  const before = faultInjection({ enabled: true, faults: [{ type: 'abort', rate: 1 }] });
  await assert.rejects(before.execute(op), (e: any) => e.code === 'ECONNRESET' && e.injected === true);
  assert.equal(sideEffects, 0);
  const after = faultInjection({ enabled: true, faults: [{ type: 'abort', rate: 1, phase: 'after' }] });
  await assert.rejects(after.execute(op), { code: 'ECONNRESET' });
  assert.equal(sideEffects, 1);
});

test('timeout faults hang until the caller\'s timeout aborts them, or fail with TIMEOUT after ms', async () => {
  const clock = new VirtualClock();
  let calls = 0;
  const hole = faultInjection({ enabled: true, clock, faults: [{ type: 'timeout', rate: 1, ms: 5000 }] });
  const guarded = pipeline(timeout({ ms: 100, clock }), hole);
  const p = assert.rejects(guarded.execute(() => { calls++; return 1; }), (e: any) => e.code === 'TIMEOUT' && e.timeoutMs === 100);
  await clock.advance(100);
  await p;
  const bare = hole.execute(() => { calls++; return 1; });
  const q = assert.rejects(bare, (e: any) => e.code === 'TIMEOUT' && e.timeoutMs === 5000);
  await clock.advance(5000);
  await q;
  assert.equal(calls, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('a throwing allow-list rejects the call instead of throwing synchronously', async () => {
  const policy = faultInjection({ enabled: true, faults: [{ type: 'error', rate: 1, when: () => { throw new Error('bad predicate'); } }] });
  let p: Promise<unknown> | undefined;
  assert.doesNotThrow(() => { p = policy.execute(ok); });
  await assert.rejects(p!, /bad predicate/);
});

test('result faults replace successful answers', async () => {
  const policy = faultInjection({ enabled: true, faults: [{ type: 'result', rate: 1, result: (v) => ({ corrupted: v }) }] });
  assert.deepEqual(await policy.execute(() => 41), { corrupted: 41 });
  await assert.rejects(policy.execute(() => { throw new Error('real'); }), /real/);
});

test('faults are validated when the policy is built (rate required, types known)', () => {
  assert.throws(() => faultInjection({} as never), { code: 'INVALID_OPTIONS' });
  assert.throws(() => faultInjection({ faults: [{ type: 'error' } as never] }), { code: 'INVALID_OPTIONS', message: 'faultInjection.faults[0].rate is required: a number between 0 and 1' });
  assert.throws(() => faultInjection({ faults: [{ type: 'error', rate: 1.5 }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => faultInjection({ faults: [{ type: 'explode', rate: 1 } as never] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => faultInjection({ faults: [{ type: 'latency', rate: 1, ms: -1 }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => faultInjection({ faults: [{ type: 'result', rate: 1 } as never] }), { code: 'INVALID_OPTIONS', message: 'faultInjection.faults[0].result is required: a function (value, context) => replacement' });
  assert.throws(() => faultInjection({ faults: [{ type: 'error', rate: 1, when: 'always' as never }] }), { code: 'INVALID_OPTIONS', message: 'faultInjection.faults[0].when must be a function, got "always"' });
  assert.throws(() => faultInjection({ faults: [{ type: 'error', rate: 1, status: 42 }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => faultInjection({ faults: [{ type: 'abort', rate: 1, phase: 'during' as never }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => distributions.uniform(5, 1), { code: 'INVALID_OPTIONS' });
  assert.ok(faultInjection({ faults: [{ type: 'error', rate: 0 }] }), 'rate 0 is legal');
  assert.deepEqual(faultInjection({ faults: [{ type: 'error', rate: 0.1, when: () => true }] }).describe().options, {
    enabled: false, faults: [{ type: 'error', rate: 0.1, allowList: true }],
  });
});

test('distributions: means and tails as documented', () => {
  const random = seededRandom(99);
  const sample = (d: (r: Random) => number, n = 20_000) => Array.from({ length: n }, () => d(random)).sort((a, b) => a - b);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(Math.abs(mean(sample(distributions.exponential(50))) - 50) < 2);
  const ln = sample(distributions.logNormal(20, 0.5));
  assert.ok(Math.abs(ln[10_000]! - 20) < 1, `median ${ln[10_000]}`);
  assert.ok(ln[19_800]! / ln[10_000]! > 2.8 && ln[19_800]! / ln[10_000]! < 3.6, 'p99 ≈ 3.2x median');
  const mix = sample(distributions.mixture([[0.95, distributions.fixed(10)], [0.05, distributions.fixed(1000)]]));
  const slow = mix.filter((x) => x === 1000).length / mix.length;
  assert.ok(Math.abs(slow - 0.05) < 0.006, `slow share ${slow}`);
  assert.ok(sample(distributions.pareto(10, 2)).every((x) => x >= 10));
});
