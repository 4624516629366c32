import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VirtualClock } from '../core/clock.js';
import { PRIORITIES, type Priority } from '../core/context.js';
import { DeadlineExceededError } from '../core/errors.js';
import { seededRandom } from '../core/random.js';
import { DEFAULT_SHED_THRESHOLDS, priorityAdmits, redDropProbability } from './priority.js';
import { eventLoopDelayMonitor } from './signals.js';
import { loadShedder, type ShedDecision, type LoadShedder, type ShedPermit, type ShedReason } from './shedder.js';

function hold(shedder: LoadShedder, n: number, priority: Priority = 'critical'): ShedPermit[] {
  const out: ShedPermit[] = [];
  for (let i = 0; i < n; i++) {
    const a = shedder.tryAdmit(priority);
    assert.ok(a.admitted, `hold ${i + 1}`);
    out.push(a);
  }
  return out;
}

/** Which classes a shedder admits right now (each admission released at once). */
function admittedClasses(shedder: LoadShedder): Priority[] {
  return PRIORITIES.filter((p) => {
    const a = shedder.tryAdmit(p);
    if (a.admitted) a.release();
    return a.admitted;
  });
}

test('default thresholds: critical 1.0 / high 0.9 / normal 0.75 / low 0.5 / best-effort 0.25, and loadShedder uses them', () => {
  assert.deepEqual({ ...DEFAULT_SHED_THRESHOLDS }, { critical: 1, high: 0.9, normal: 0.75, low: 0.5, 'best-effort': 0.25 });
  assert.deepEqual({ ...loadShedder({ capacity: 10 }).thresholds }, { ...DEFAULT_SHED_THRESHOLDS });
});

test('priority matrix at 0.3 / 0.6 / 0.8 utilisation', () => {
  const expected: Record<string, Priority[]> = {
    '0.3': ['critical', 'high', 'normal', 'low'],
    '0.6': ['critical', 'high', 'normal'],
    '0.8': ['critical', 'high'],
  };
  for (const [u, classes] of Object.entries(expected)) {
    // the pure rule
    assert.deepEqual(PRIORITIES.filter((p) => priorityAdmits(Number(u), p)), classes, `pure, at ${u}`);
    // the enforcing shedder, with in-flight / capacity = u
    const shedder = loadShedder({ capacity: 10, clock: new VirtualClock() });
    const held = hold(shedder, Number(u) * 10);
    assert.equal(shedder.utilisation(), Number(u));
    assert.deepEqual(admittedClasses(shedder), classes, `shedder, at ${u}`);
    for (const p of held) p.release();
    assert.equal(shedder.inflight, 0);
  }
  // and the rejection says why
  const shedder = loadShedder({ capacity: 10 });
  hold(shedder, 8);
  const r = shedder.tryAdmit('normal');
  assert.equal(r.admitted, false);
  if (!r.admitted) {
    assert.equal(r.reason, 'priority');
    assert.equal(r.priority, 'normal');
    assert.equal(r.utilisation, 0.8);
    assert.equal(r.retryAfterMs, 1000);
  }
  assert.deepEqual(shedder.stats().shed.priority, 1);
});

test('critical is admitted at 100% and beyond (never shed for load) and still counts toward in-flight', () => {
  const shedder = loadShedder({ capacity: 4, red: { min: 0.5, max: 0.9 }, random: seededRandom(1) });
  hold(shedder, 4, 'critical');
  assert.equal(shedder.utilisation(), 1);
  const extra = hold(shedder, 4, 'critical');
  assert.equal(shedder.inflight, 8);
  assert.equal(shedder.utilisation(), 2);
  assert.deepEqual(admittedClasses(shedder), ['critical']);
  extra.forEach((p) => p.release());
  assert.throws(() => loadShedder({ capacity: 4, thresholds: { critical: 0.5 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 4, red: { min: 0.5, max: 0.9, priorities: ['critical'] } }), { code: 'INVALID_OPTIONS' });
});

test('RED: drop probability rises linearly from 0 at min to 1 at max (0.5 at 70% with 0.5 / 0.9)', () => {
  const curve = [0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.2].map((u) => Math.round(redDropProbability(u, 0.5, 0.9) * 1e9) / 1e9);
  assert.deepEqual(curve, [0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1]);

  // Enforced with a seeded random: at 70% about half of the high-priority requests are dropped.
  const measure = (u: number): number => {
    const shedder = loadShedder({ capacity: 100, red: { min: 0.5, max: 0.9 }, thresholds: { high: 1 }, random: seededRandom(2024) });
    hold(shedder, u * 100);
    let dropped = 0;
    for (let i = 0; i < 4000; i++) {
      const a = shedder.tryAdmit('high');
      if (a.admitted) a.release();
      else {
        assert.equal(a.reason, 'red');
        dropped++;
      }
    }
    return dropped / 4000;
  };
  assert.equal(measure(0.4), 0);
  const at60 = measure(0.6), at70 = measure(0.7), at80 = measure(0.8);
  assert.ok(Math.abs(at60 - 0.25) < 0.03, `p(0.6) ≈ 0.25, got ${at60}`);
  assert.ok(Math.abs(at70 - 0.5) < 0.03, `p(0.7) ≈ 0.5, got ${at70}`);
  assert.ok(Math.abs(at80 - 0.75) < 0.03, `p(0.8) ≈ 0.75, got ${at80}`);
  assert.equal(measure(0.95), 1);
  assert.equal(measure(0.7), at70, 'deterministic with a seeded random');
});

test('a request whose deadline has passed is dropped before it runs (reason deadline, DEADLINE_EXCEEDED as a policy), critical included', async () => {
  const clock = new VirtualClock(1000);
  const shedder = loadShedder({ capacity: 10, clock });
  const late = shedder.tryAdmit('critical', 999);
  assert.equal(late.admitted, false);
  if (!late.admitted) {
    assert.equal(late.reason, 'deadline');
    assert.equal(late.retryAfterMs, 0);
  }
  assert.equal(shedder.tryAdmit('normal', 1000).admitted, false, 'deadline = now is already too late');
  const ok = shedder.tryAdmit('normal', 1001);
  assert.ok(ok.admitted);
  ok.release();

  let called = false;
  // As a policy it means what the timeout and the bulkhead mean by it: DEADLINE_EXCEEDED, not overload.
  await assert.rejects(shedder.execute(() => { called = true; }, { deadline: 900, priority: 'high' }), (e: unknown) => e instanceof DeadlineExceededError && e.code === 'DEADLINE_EXCEEDED' && e.deadline === 900);
  assert.equal(called, false);

  // Don't start work that cannot finish: minRemainingMs.
  const strict = loadShedder({ capacity: 10, clock, minRemainingMs: 50 });
  assert.equal(strict.tryAdmit('normal', 1030).admitted, false);
  const fine = strict.tryAdmit('normal', 1051);
  assert.ok(fine.admitted);
  fine.release();
  await assert.rejects(strict.execute(() => { called = true; }, { deadline: 1050 }), { code: 'DEADLINE_EXCEEDED', message: /minRemainingMs/ });
  assert.equal(called, false);
  assert.equal(await strict.execute(() => 'served', { deadline: 1051 }), 'served');
  assert.equal(strict.stats().shed.deadline, 2);
  assert.equal(shedder.inflight, 0);
});

test('fifo queue: waits for a slot in arrival order; maxQueueTime and deadlines shed waiters with one shared timer', async () => {
  const clock = new VirtualClock();
  const shedder = loadShedder({ capacity: 1, queue: { maxSize: 10, maxQueueTimeMs: 100, mode: 'fifo' }, clock });
  const [slot] = hold(shedder, 1, 'normal');
  const order: string[] = [];
  const track = (name: string, p: Promise<ShedDecision>) => p.then((a) => { order.push(`${name}:${a.admitted ? 'in' : a.reason}`); return a; });
  const a = track('a', shedder.admit('normal'));
  const b = track('b', shedder.admit('high', 50));
  const c = track('c', shedder.admit('normal'));
  assert.equal(shedder.queued, 3);
  assert.equal(clock.pendingTimers, 1, 'one timer guards every waiter');
  assert.equal(shedder.tryAdmit('normal').admitted, false, 'tryAdmit never waits');

  await clock.advance(10);
  slot!.release();
  const first = await a;
  assert.ok(first.admitted, 'oldest first');
  await clock.advance(40);
  assert.deepEqual(order, ['a:in', 'b:deadline'], 'b expired at its deadline (50)');
  await clock.advance(50);
  assert.deepEqual(order, ['a:in', 'b:deadline', 'c:queue-timeout']);
  assert.equal((await b).admitted, false);
  await c;
  assert.equal(shedder.queued, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer left behind');
  (first as ShedPermit).release();
  (first as ShedPermit).release(); // idempotent
  assert.equal(shedder.inflight, 0);
  const stats = shedder.stats();
  assert.equal(stats.shed['queue-timeout'], 1);
  assert.equal(stats.shed.deadline, 1);
});

test('aborting while queued removes the waiter (reason aborted); the policy form throws ABORTED', async () => {
  const clock = new VirtualClock();
  const shedder = loadShedder({ capacity: 1, queue: { maxSize: 5, maxQueueTimeMs: 1000 }, clock });
  const [slot] = hold(shedder, 1, 'normal');
  const controller = new AbortController();
  const waiting = shedder.admit('normal', undefined, controller.signal);
  assert.equal(shedder.queued, 1);
  controller.abort();
  const result = await waiting;
  assert.equal(result.admitted, false);
  if (!result.admitted) assert.equal(result.reason, 'aborted');
  assert.equal(shedder.queued, 0);
  assert.ok((await clock.runAll()) <= 1, 'at most the idle shared queue timer is left');

  const caller = new AbortController();
  let ran = false;
  const p = shedder.execute(() => { ran = true; }, { signal: caller.signal, priority: 'high' });
  await clock.advance(1);
  assert.equal(shedder.queued, 1);
  caller.abort(new Error('client went away'));
  await assert.rejects(p, { code: 'ABORTED' });
  assert.equal(ran, false);
  slot!.release();
  assert.equal(shedder.inflight, 0);
  const pre = new AbortController();
  pre.abort();
  hold(shedder, 1, 'normal');
  const r = await shedder.admit('normal', undefined, pre.signal);
  assert.equal(!r.admitted && r.reason, 'aborted');
});

test('policy form: queued calls run when a slot frees; errors and values pass through; slots are released', async () => {
  const clock = new VirtualClock();
  const shedder = loadShedder({ capacity: 2, queue: { maxSize: 4, maxQueueTimeMs: 500 }, clock });
  const work = (ms: number, value: string) => () => new Promise<string>((resolve) => clock.setTimeout(() => resolve(value), ms));
  const calls = [
    shedder.execute(work(30, 'a')),
    shedder.execute(() => Promise.reject(new Error('b failed'))),
    shedder.execute(work(30, 'c')),
    shedder.execute(work(30, 'd')),
  ];
  const settled = Promise.allSettled(calls);
  assert.equal(shedder.inflight + shedder.queued, 4);
  await clock.advance(100);
  const results = await settled;
  assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)), ['a', 'b failed', 'c', 'd']);
  assert.equal(shedder.inflight, 0);
  assert.equal(shedder.queued, 0);
  assert.ok((await clock.runAll()) <= 1, 'at most the idle shared queue timer is left');
});

test('CoDel: drops start after an interval of standing queue time above target and stop when waits fall', async () => {
  const clock = new VirtualClock();
  const shedder = loadShedder({ capacity: 1, queue: { maxSize: 100, maxQueueTimeMs: 10_000, mode: 'codel', targetMs: 5, intervalMs: 100 }, clock });
  const overload: boolean[] = [];
  shedder.onOverload((e) => overload.push(e.overloaded));
  const outcomes: { at: number; outcome: string; waited: number }[] = [];
  const enqueue = () => {
    const at = clock.now();
    void shedder.admit('high').then((a) => {
      outcomes.push({ at: clock.now(), outcome: a.admitted ? 'in' : a.reason, waited: clock.now() - at });
      if (a.admitted) current = a;
    });
  };
  let current: ShedPermit | undefined = hold(shedder, 1, 'high')[0];
  // A standing queue: three requests ahead at all times; one arrives and one completes every 10 ms.
  enqueue(); enqueue(); enqueue();
  for (let t = 10; t <= 150; t += 10) {
    await clock.advance(10);
    enqueue();
    current!.release();
    await clock.advance(0);
  }
  const codelDrops = outcomes.filter((o) => o.outcome === 'codel');
  const firstDropAt = Math.min(...codelDrops.map((o) => o.at));
  assert.ok(codelDrops.length > 0, 'a standing queue gets drops');
  assert.equal(firstDropAt, 110, 'first seen above target at 10 ms; dropping starts one interval (100 ms) later');
  assert.ok(outcomes.filter((o) => o.at < 110).every((o) => o.outcome === 'in'), 'no drops before the interval');
  assert.ok(codelDrops.every((o) => o.waited >= 5), 'only requests that waited past the target are dropped');
  assert.deepEqual(overload, [true, false], 'overload detected, then cleared once the queue drained');

  // After the purge, arrivals are served promptly: waits are below target and nothing is dropped.
  const before = outcomes.length;
  for (let i = 0; i < 10; i++) {
    await clock.advance(10);
    enqueue();
    current!.release();
    await clock.advance(0);
  }
  const after = outcomes.slice(before);
  assert.ok(after.length >= 10);
  assert.ok(after.every((o) => o.outcome === 'in' && o.waited < 5), JSON.stringify(after));
  assert.equal(shedder.overloaded, false);
  current!.release();
  assert.ok((await clock.runAll()) <= 1, 'at most the idle shared queue timer is left');
});

test('LIFO under overload: FIFO normally, newest first once the queue is standing', async () => {
  const clock = new VirtualClock();
  const shedder = loadShedder({ capacity: 1, queue: { maxSize: 10, maxQueueTimeMs: 10_000, mode: 'lifo-under-overload', targetMs: 5, intervalMs: 100 }, clock });
  const served: string[] = [];
  const permits = new Map<string, ShedPermit>();
  const enqueue = (name: string) => void shedder.admit('normal').then((a) => { if (a.admitted) { served.push(name); permits.set(name, a); } });
  const [slot] = hold(shedder, 1, 'normal');
  enqueue('A'); enqueue('B'); enqueue('C');
  await clock.advance(10);
  slot!.release(); // oldest (A) has waited 10 ms > target: first observation, not yet overloaded → FIFO
  await clock.advance(0);
  enqueue('D');
  await clock.advance(110);
  permits.get('A')!.release(); // the queue has stood above target for > 100 ms: overloaded → newest
  await clock.advance(0);
  assert.equal(shedder.overloaded, true);
  permits.get('D')!.release();
  await clock.advance(0);
  permits.get('C')!.release();
  await clock.advance(0);
  assert.deepEqual(served, ['A', 'D', 'C', 'B']);
  permits.get('B')!.release();
  assert.equal(shedder.overloaded, false, 'empty queue: overload over');
  assert.ok((await clock.runAll()) <= 1, 'at most the idle shared queue timer is left');
});

test('queue-full: refused when the queue is full; under LIFO overload the oldest waiter is evicted instead', async () => {
  const clock = new VirtualClock();
  const fifo = loadShedder({ capacity: 1, occupancy: false, queue: { maxSize: 2, maxQueueTimeMs: 1000, mode: 'fifo' }, clock });
  hold(fifo, 1, 'normal');
  void fifo.admit('normal');
  void fifo.admit('normal');
  const third = await fifo.admit('normal');
  assert.equal(!third.admitted && third.reason, 'queue-full');

  const lifo = loadShedder({ capacity: 1, occupancy: false, queue: { maxSize: 2, maxQueueTimeMs: 1000, mode: 'lifo-under-overload', targetMs: 5, intervalMs: 10 }, clock });
  const [slot] = hold(lifo, 1, 'normal');
  const results: string[] = [];
  const permits = new Map<string, ShedPermit>();
  const add = (name: string) => void lifo.admit('normal').then((a) => {
    results.push(`${name}:${a.admitted ? 'in' : a.reason}`);
    if (a.admitted) permits.set(name, a);
  });
  add('w1'); add('w2'); add('w3');
  await clock.advance(0);
  assert.deepEqual(results, ['w3:queue-full'], 'not overloaded: the newcomer is refused');
  await clock.advance(20);
  slot!.release(); // w1 waited 20 ms: first seen above target → FIFO still
  await clock.advance(0);
  add('w4');
  await clock.advance(20);
  permits.get('w1')!.release(); // standing for ≥ interval: overloaded → newest (w4)
  await clock.advance(0);
  assert.equal(lifo.overloaded, true);
  add('w5'); // queue: w2, w5 (full)
  add('w6'); // full and overloaded: the oldest (w2) is evicted to make room
  await clock.advance(0);
  assert.deepEqual(results, ['w3:queue-full', 'w1:in', 'w4:in', 'w2:queue-full']);
  assert.equal(lifo.queued, 2);
  assert.equal(lifo.stats().shed['queue-full'], 2);
  await clock.runAll();
});

test('utilisation signals: event-loop delay and queue time (max of the configured signals)', async () => {
  const clock = new VirtualClock();
  let delay = 0;
  const shedder = loadShedder({ capacity: 100, eventLoopDelay: { targetMs: 100, source: { read: () => delay } }, clock });
  assert.equal(shedder.utilisation(), 0);
  delay = 30;
  assert.equal(shedder.utilisation(), 0.3);
  assert.deepEqual(admittedClasses(shedder), ['critical', 'high', 'normal', 'low']);
  delay = 80;
  assert.deepEqual(admittedClasses(shedder), ['critical', 'high']);
  delay = 0;
  hold(shedder, 60);
  assert.equal(shedder.utilisation(), 0.6, 'occupancy wins when it is higher');

  const queued = loadShedder({ capacity: 1, queue: { maxSize: 100, maxQueueTimeMs: 10_000 }, queueTime: { targetMs: 100 }, clock });
  hold(queued, 1, 'normal');
  void queued.admit('high');
  await clock.advance(60);
  assert.equal(queued.utilisation(), 0.6, 'the oldest request has waited 60 of 100 ms');
  assert.equal(queued.tryAdmit('low').admitted, false);
  await clock.runAll();
});

test('retry-after hints, events, stats, describe, bad input', () => {
  const clock = new VirtualClock();
  const seen: ShedReason[] = [];
  const shedder = loadShedder({ capacity: 2, clock, retryAfterMs: (reason, u) => (reason === 'priority' ? Math.round(u * 1000) : 7), name: 'api' });
  shedder.onShed((e) => seen.push(e.reason));
  hold(shedder, 2);
  const r = shedder.tryAdmit('high');
  assert.equal(!r.admitted && r.retryAfterMs, 1000);
  const d = shedder.tryAdmit('high', -1);
  assert.equal(!d.admitted && d.retryAfterMs, 7);
  assert.deepEqual(seen, ['priority', 'deadline']);
  assert.equal(shedder.describe().kind, 'load-shedder');
  assert.equal(shedder.describe().name, 'api');
  assert.throws(() => shedder.tryAdmit('urgent' as Priority), { code: 'INVALID_INPUT' });
  assert.throws(() => shedder.tryAdmit('high', Number.NaN), { code: 'INVALID_INPUT' });
  assert.throws(() => loadShedder({ capacity: 1, random: 0.5 as never }), { code: 'INVALID_OPTIONS', message: 'loadShedder.random must be a function returning [0, 1), got 0.5' });
  assert.throws(() => loadShedder({} as never), { code: 'INVALID_OPTIONS', message: 'loadShedder.capacity is required: an integer >= 1' });
  assert.throws(() => loadShedder({ capacity: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 1, thresholds: { normal: 2 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 1, thresholds: { urgent: 0.5 } as any }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 1, red: { min: 0.9, max: 0.5 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 1, queue: { maxSize: 1, maxQueueTimeMs: 10, mode: 'random' as any } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => loadShedder({ capacity: 1, queueTime: { targetMs: 10 } }), { code: 'INVALID_OPTIONS' });
  assert.equal(loadShedder({ capacity: 1, retryAfterMs: 0, minRemainingMs: 0, thresholds: { 'best-effort': 0 } }).tryAdmit('best-effort').admitted, false, '0 is a legal threshold and retry-after');
});

test('an idle process with a shedder (real clock, event-loop monitor, a queued waiter) exits on its own', () => {
  const module = fileURLToPath(new URL('./shedder.ts', import.meta.url));
  const script = `
    const { loadShedder } = await import(${JSON.stringify(module)});
    const s = loadShedder({ capacity: 1, queue: { maxSize: 5, maxQueueTimeMs: 60000 }, eventLoopDelay: { targetMs: 100 } });
    s.tryAdmit('normal');
    s.admit('normal');
    console.log('queued', s.queued);
  `;
  const started = Date.now();
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  assert.match(child.stdout, /queued 1/);
  assert.ok(Date.now() - started < 20_000, 'exited without waiting for the 60 s queue timer');
});

test('eventLoopDelayMonitor measures a blocked event loop (real time, generous bounds) and stops on close', async () => {
  const monitor = eventLoopDelayMonitor({ resolutionMs: 10, windowMs: 0 });
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await sleep(50);
  const end = performance.now() + 150;
  while (performance.now() < end) {
    // keep the loop busy: the monitor's timer cannot run
  }
  await sleep(50);
  const delay = monitor.read();
  assert.ok(delay >= 60, `a 150 ms block shows as event-loop delay, got ${delay}`);
  monitor.close?.();
  assert.equal(monitor.read(), delay, 'closed: the last value stays, nothing is measured');
});
