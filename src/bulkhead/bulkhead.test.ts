import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { VirtualClock, flushPromises } from '../core/clock.js';
import { CallContext, type Priority } from '../core/context.js';
import { pipeline } from '../core/policy.js';
import { timeout } from '../timeout/timeout.js';
import { bulkhead, type BulkheadRejectEvent } from './bulkhead.js';

/** Operations on a virtual clock that record when they run and how many run at once. */
function harness(clock: VirtualClock) {
  const h = {
    running: 0,
    maxRunning: 0,
    started: [] as string[],
    /** An operation that takes `ms` of virtual time (and stops early if its signal aborts). */
    op(label: string, ms: number) {
      return (ctx: CallContext) => {
        h.started.push(label);
        h.running++;
        h.maxRunning = Math.max(h.maxRunning, h.running);
        return new Promise<string>((resolve, reject) => {
          const signal = ctx.signal;
          const onAbort = () => { clock.clearTimeout(timer); h.running--; reject(signal.reason); };
          const timer = clock.setTimeout(() => { signal.removeEventListener('abort', onAbort); h.running--; resolve(label); }, ms);
          signal.addEventListener('abort', onAbort, { once: true });
        });
      };
    },
  };
  return h;
}

/** Records how a promise settled, without an unhandled rejection. */
function outcome<T>(promise: Promise<T>) {
  const o: { settled: boolean; value?: T; error?: any; at?: number } = { settled: false };
  promise.then((v) => { o.settled = true; o.value = v; }, (e) => { o.settled = true; o.error = e; });
  return o;
}

test('at most maxConcurrent calls run; the rest wait in FIFO order and run as slots free up', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 2, maxQueue: 10, clock });
  const finished: [string, number][] = [];
  const calls = ['a', 'b', 'c', 'd', 'e'].map((l) => policy.execute(h.op(l, 100)).then((v) => { finished.push([v, clock.now()]); }));
  await flushPromises();
  assert.equal(h.running, 2);
  assert.equal(policy.active, 2);
  assert.equal(policy.queued, 3);
  await clock.advance(300);
  await Promise.all(calls);
  assert.deepEqual(finished, [['a', 100], ['b', 100], ['c', 200], ['d', 200], ['e', 300]]);
  assert.equal(h.maxRunning, 2);
  assert.equal(policy.active, 0);
  assert.equal(policy.queued, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('the queue serves priority classes in order, FIFO within a class', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 10, clock });
  const all = [policy.execute(h.op('busy', 10))];
  const arrivals: [string, Priority][] = [
    ['low-1', 'low'], ['normal-1', 'normal'], ['critical-1', 'critical'], ['normal-2', 'normal'],
    ['best-effort-1', 'best-effort'], ['high-1', 'high'], ['low-2', 'low'], ['critical-2', 'critical'],
  ];
  for (const [label, priority] of arrivals) all.push(policy.execute(h.op(label, 10), { priority }));
  assert.deepEqual(policy.queuedByPriority(), { critical: 2, high: 1, normal: 2, low: 2, 'best-effort': 1 });
  await clock.advance(1000);
  await Promise.all(all);
  assert.deepEqual(h.started, ['busy', 'critical-1', 'critical-2', 'high-1', 'normal-1', 'normal-2', 'low-1', 'low-2', 'best-effort-1']);
});

test('a full queue: a more important newcomer evicts the newest least important waiter; others are rejected', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 2, clock });
  const rejects: BulkheadRejectEvent[] = [];
  policy.onReject((e) => rejects.push(e));
  const busy = outcome(policy.execute(h.op('busy', 100)));
  const low1 = outcome(policy.execute(h.op('low-1', 10), { priority: 'low' }));
  const low2 = outcome(policy.execute(h.op('low-2', 10), { priority: 'low' }));
  await clock.advance(5);
  const high = outcome(policy.execute(h.op('high', 10), { priority: 'high' }));
  await flushPromises();
  assert.equal(low2.error?.code, 'BULKHEAD_FULL', 'the newest low waiter made room');
  assert.equal(low1.settled, false);
  assert.equal(policy.queued, 2);

  const low3 = outcome(policy.execute(h.op('low-3', 10), { priority: 'low' }));
  await flushPromises();
  assert.equal(low3.error?.code, 'BULKHEAD_FULL', 'an equally unimportant newcomer does not evict');

  const normal = outcome(policy.execute(h.op('normal', 10), { priority: 'normal' }));
  await flushPromises();
  assert.equal(low1.error?.code, 'BULKHEAD_FULL');
  assert.deepEqual(rejects.map((r) => [r.reason, r.priority, r.waitedMs]), [
    ['evicted', 'low', 5], ['full', 'low', 0], ['evicted', 'low', 5],
  ]);

  await clock.advance(200);
  assert.deepEqual(h.started, ['busy', 'high', 'normal']);
  assert.equal(busy.value, 'busy');
  assert.equal(high.value, 'high');
  assert.equal(normal.value, 'normal');
  const stats = policy.stats();
  assert.equal(stats.admitted, 3);
  assert.equal(stats.rejected, 3);
  assert.equal(stats.queued, 0);
});

test('regression: a waiter that times out leaves the queue, and a later release does not go to its ghost', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 50, clock });
  policy.execute(h.op('busy', 100));
  const ghost = outcome(policy.execute(h.op('ghost', 10)));
  assert.equal(policy.queued, 1);
  await clock.advance(50);
  assert.equal(ghost.error?.code, 'BULKHEAD_QUEUE_TIMEOUT');
  assert.equal(ghost.error?.waitedMs, 50);
  assert.equal(policy.queued, 0, 'the timed-out waiter is gone from the queue');

  await clock.advance(10);
  const later = outcome(policy.execute(h.op('later', 10)));
  await clock.advance(40); // busy ends at 100: its slot must go to `later`, not to the ghost
  assert.deepEqual(h.started, ['busy', 'later']);
  await clock.advance(10);
  assert.equal(later.value, 'later');
  assert.equal(policy.active, 0);
  const stats = policy.stats();
  assert.equal(stats.queueTimeouts, 1);
  assert.equal(stats.rejected, 1);
  assert.deepEqual(stats.waitMs, { count: 2, mean: 45, max: 50 });
  assert.equal(clock.pendingTimers, 0, 'the shared queue timer is gone once nobody waits');
});

test('abort while queued removes the waiter and rejects with ABORTED (the reason as cause); no listener is left behind', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5, clock });
  const reasons: string[] = [];
  policy.onReject((e) => reasons.push(e.reason));
  policy.execute(h.op('busy', 100));
  const caller = new AbortController();
  const aborted = outcome(policy.execute(h.op('aborted', 10), { signal: caller.signal }));
  const kept = new AbortController();
  const served = outcome(policy.execute(h.op('served', 10), { signal: kept.signal }));
  assert.equal(getEventListeners(caller.signal, 'abort').length, 1, 'one listener while waiting');
  await clock.advance(20);
  caller.abort(new Error('client gone'));
  await flushPromises();
  assert.equal(aborted.error?.code, 'ABORTED');
  assert.match(aborted.error?.cause?.message, /client gone/);
  assert.equal(policy.queued, 1);
  assert.equal(getEventListeners(caller.signal, 'abort').length, 0);
  await clock.advance(80);
  assert.equal(getEventListeners(kept.signal, 'abort').length, 1, 'only the operation\'s own listener remains');
  await clock.advance(10);
  assert.equal(served.value, 'served');
  assert.deepEqual(h.started, ['busy', 'served']);
  assert.deepEqual(reasons, ['aborted']);

  // Already aborted on arrival at a full bulkhead: rejected at once.
  policy.execute(h.op('busy-2', 100));
  const gone = new AbortController();
  gone.abort();
  const late = outcome(policy.execute(h.op('never', 10), { signal: gone.signal }));
  await flushPromises();
  assert.equal(late.error?.code, 'ABORTED');
  assert.equal(policy.queued, 0);
  await clock.runAll();
  assert.equal(policy.active, 0);
});

test('the call deadline bounds the queue wait (DEADLINE_EXCEEDED), the queue timeout when it is shorter', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 60, clock });
  const reasons: string[] = [];
  policy.onReject((e) => reasons.push(e.reason));
  policy.execute(h.op('busy', 1000));
  const byDeadline = outcome(policy.execute(h.op('x', 1), { timeoutMs: 30 }));
  const byQueueTimeout = outcome(policy.execute(h.op('y', 1), { timeoutMs: 500 }));
  await clock.advance(29);
  assert.equal(byDeadline.settled, false);
  await clock.advance(1);
  assert.equal(byDeadline.error?.code, 'DEADLINE_EXCEEDED');
  assert.equal(byQueueTimeout.settled, false);
  await clock.advance(30);
  assert.equal(byQueueTimeout.error?.code, 'BULKHEAD_QUEUE_TIMEOUT');
  const expired = outcome(policy.execute(h.op('z', 1), { deadline: clock.now() }));
  await flushPromises();
  assert.equal(expired.error?.code, 'DEADLINE_EXCEEDED', 'an expired deadline never queues');
  assert.deepEqual(reasons, ['deadline', 'queue-timeout', 'deadline']);
  assert.equal(policy.queued, 0);
  assert.equal(policy.stats().queueTimeouts, 1);
});

test('regression: a freed slot is handed to the queued waiter, never to a newcomer in between (active <= max)', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 1, clock });
  let finishFirst!: () => void;
  const first = policy.execute(() => new Promise<string>((resolve) => { finishFirst = () => resolve('first'); }));
  const waiter = outcome(policy.execute(h.op('waiter', 10)));
  await flushPromises();
  finishFirst();
  // Newcomers arrive at every microtask turn around the release, where a naive
  // "active--, then the waiter re-acquires" bulkhead lets one slip in.
  const newcomers: ReturnType<typeof outcome<string>>[] = [];
  for (let i = 0; i < 6; i++) {
    newcomers.push(outcome(policy.execute(h.op(`new-${i}`, 10))));
    assert.ok(policy.active <= 1, `active ${policy.active} > 1`);
    await null;
  }
  assert.equal(await first, 'first');
  await clock.runAll();
  assert.equal(waiter.value, 'waiter');
  assert.equal(h.maxRunning, 1);
  assert.equal(h.started[0], 'waiter', 'the waiter ran first');
  assert.equal(policy.stats().peakActive, 1);
  assert.equal(newcomers.filter((n) => n.error?.code === 'BULKHEAD_FULL').length, 5);
  assert.equal(newcomers.filter((n) => n.value !== undefined).length, 1, 'one newcomer took the freed queue place');
});

test('regression (|| defaults): maxQueue 0 means no queue and queueTimeoutMs 0 means no wait', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const noQueue = bulkhead({ maxConcurrent: 1, maxQueue: 0, queueTimeoutMs: 1000, clock });
  assert.equal(bulkhead({ maxConcurrent: 1, clock }).maxQueue, 0, 'no queue by default');
  noQueue.execute(h.op('busy', 100));
  await assert.rejects(noQueue.execute(h.op('x', 1)), (e: any) => e.code === 'BULKHEAD_FULL' && e.maxQueue === 0 && e.stack.split('\n').length <= 1);
  assert.equal(noQueue.queued, 0);

  const noWait = bulkhead({ maxConcurrent: 1, maxQueue: 10, queueTimeoutMs: 0, clock });
  assert.deepEqual(noWait.describe().options, { maxConcurrent: 1, maxQueue: 10, queueTimeoutMs: 0 });
  noWait.execute(h.op('busy', 100));
  const timersBefore = clock.pendingTimers;
  await assert.rejects(noWait.execute(h.op('y', 1)), (e: any) => e.code === 'BULKHEAD_QUEUE_TIMEOUT' && e.waitedMs === 0);
  assert.equal(clock.now(), 0, 'rejected without waiting');
  assert.equal(clock.pendingTimers, timersBefore, 'no timer armed');
  assert.equal(noWait.stats().queueTimeouts, 1);
  await clock.runAll();
});

test('stats: counts, peaks and queue wait times', async () => {
  const clock = new VirtualClock();
  const h = harness(clock);
  const policy = bulkhead({ maxConcurrent: 2, maxQueue: 2, clock, name: 'payments' });
  const queuedEvents: number[] = [];
  policy.onQueued((e) => queuedEvents.push(e.queued));
  assert.deepEqual(policy.stats(), {
    active: 0, queued: 0, maxConcurrent: 2, maxQueue: 2, peakActive: 0, peakQueued: 0,
    admitted: 0, rejected: 0, queueTimeouts: 0, rejectionRate: 0, waitMs: { count: 0, mean: 0, max: 0 },
  });
  const calls = [100, 300, 10, 10, 10].map((ms, i) => policy.execute(h.op(`c${i}`, ms)).catch((e) => e.code));
  await flushPromises();
  assert.deepEqual(queuedEvents, [1, 2]);
  await clock.runAll();
  assert.deepEqual(await Promise.all(calls), ['c0', 'c1', 'c2', 'c3', 'BULKHEAD_FULL']);
  const stats = policy.stats();
  assert.deepEqual(stats, {
    active: 0, queued: 0, maxConcurrent: 2, maxQueue: 2, peakActive: 2, peakQueued: 2,
    admitted: 4, rejected: 1, queueTimeouts: 0, rejectionRate: 0.2, waitMs: { count: 2, mean: 105, max: 110 },
  });
  assert.deepEqual(policy.describe(), { kind: 'bulkhead', name: 'payments', options: { maxConcurrent: 2, maxQueue: 2, queueTimeoutMs: Infinity } });
});

test('an operation that throws synchronously or rejects still releases its slot', async () => {
  const clock = new VirtualClock();
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 1, clock });
  await assert.rejects(policy.execute(() => { throw new Error('sync boom'); }), /sync boom/);
  assert.equal(policy.active, 0);
  await assert.rejects(policy.execute(async () => { throw new Error('async boom'); }), /async boom/);
  assert.equal(policy.active, 0);
  // A `next` that throws synchronously (a broken inner policy) releases too.
  await assert.rejects(policy.run(CallContext.root(clock, () => 'unused'), () => { throw new Error('next threw'); }), /next threw/);
  assert.equal(policy.active, 0);
  // And a queued call whose operation throws hands the slot on.
  let release!: () => void;
  const busy = policy.execute(() => new Promise<void>((r) => { release = r; }));
  const queued = policy.execute(() => { throw new Error('queued boom'); });
  const after = policy.execute(() => 'fine').catch((e) => e.code);
  release();
  await busy;
  await assert.rejects(queued, /queued boom/);
  assert.equal(await after, 'BULKHEAD_FULL', 'the queue (size 1) was full when it arrived');
  assert.equal(await policy.execute(() => 'ok'), 'ok');
  assert.equal(policy.active, 0);
  assert.equal(policy.stats().peakActive, 1);
});

test('inside a pipeline with a timeout, the slot is held until the aborted work has really ended', async () => {
  const clock = new VirtualClock();
  const bh = bulkhead({ maxConcurrent: 1, maxQueue: 1, clock });
  const p = pipeline(bh, timeout({ ms: 100, clock }));
  let ended = -1;
  const slow = p.execute((ctx) => new Promise((_, reject) => {
    ctx.signal.addEventListener('abort', () => {
      clock.setTimeout(() => { ended = clock.now(); reject(new Error('cleaned up')); }, 30);
    });
  }));
  const next = outcome(p.execute(() => clock.now()));
  slow.catch(() => {});
  await clock.advance(110);
  assert.equal(bh.active, 1, 'still held: the work has not ended yet');
  assert.equal(next.settled, false);
  await clock.advance(20);
  assert.equal(ended, 130);
  await assert.rejects(slow, { code: 'TIMEOUT' });
  assert.equal(next.value, 130, 'the queued call ran when the work ended');
  assert.equal(bh.active, 0);
});

test('the uncontended path arms no timer and adds no abort listener', async () => {
  const clock = new VirtualClock();
  const policy = bulkhead({ maxConcurrent: 2, maxQueue: 5, queueTimeoutMs: 100, clock });
  const caller = new AbortController();
  let listenersDuringCall = -1;
  const result = await policy.execute(() => {
    listenersDuringCall = getEventListeners(caller.signal, 'abort').length;
    return 7;
  }, { signal: caller.signal, timeoutMs: 1000 });
  assert.equal(result, 7);
  assert.equal(listenersDuringCall, 0);
  assert.equal(clock.pendingTimers, 0);
});

test('an unknown priority is a clear INVALID_INPUT error when the call has to queue', async () => {
  const clock = new VirtualClock();
  const policy = bulkhead({ maxConcurrent: 1, maxQueue: 5, clock });
  let release!: () => void;
  const busy = policy.execute(() => new Promise<void>((r) => { release = r; }));
  await assert.rejects(policy.execute(() => 1, { priority: 'urgent' as Priority }), (e: any) => e.code === 'INVALID_INPUT' && /urgent/.test(e.message));
  await assert.rejects(policy.execute(() => 1, { priority: 'toString' as Priority }), { code: 'INVALID_INPUT' });
  assert.equal(policy.queued, 0);
  release();
  await busy;
});

test('bad options fail when the policy is built', () => {
  for (const maxConcurrent of [0, -1, 1.5, NaN, Infinity, undefined]) {
    assert.throws(() => bulkhead({ maxConcurrent: maxConcurrent as number }), { code: 'INVALID_OPTIONS' }, String(maxConcurrent));
  }
  assert.throws(() => bulkhead({ maxConcurrent: 1, maxQueue: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => bulkhead({ maxConcurrent: 1, maxQueue: 0.5 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => bulkhead({ maxConcurrent: 1, queueTimeoutMs: -1 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => bulkhead({ maxConcurrent: 1, queueTimeoutMs: NaN }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => bulkhead(undefined as never), { code: 'INVALID_OPTIONS' });
  assert.equal(bulkhead(3).maxConcurrent, 3);
  assert.equal(bulkhead({ maxConcurrent: 1, maxQueue: Infinity }).maxQueue, Infinity);
});

test('a call aborted before it arrives is refused with ABORTED, even with a free slot, and takes no slot', async () => {
  const clock = new VirtualClock();
  const policy = bulkhead({ clock, maxConcurrent: 1 });
  const rejects: BulkheadRejectEvent[] = [];
  policy.onReject((e) => rejects.push(e));
  let ran = 0;
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, AbortSignal.abort(new Error('client gone'))), { code: 'ABORTED', message: /client gone/ });
  await assert.rejects(policy.execute(() => { ran++; return 'x'; }, AbortSignal.abort()), { code: 'ABORTED' });
  assert.equal(ran, 0, 'the operation never ran');
  assert.deepEqual({ active: policy.active, admitted: policy.stats().admitted, rejected: policy.stats().rejected }, { active: 0, admitted: 0, rejected: 2 });
  assert.deepEqual(rejects.map((e) => e.reason), ['aborted', 'aborted']);
  assert.equal(await policy.execute(() => 'next'), 'next', 'the slot is still free');
  // Fused in a pipeline (the fast path) too.
  await assert.rejects(pipeline(policy).execute(() => { ran++; return 'x'; }, AbortSignal.abort()), { code: 'ABORTED' });
  assert.equal(ran, 0);
  assert.equal(policy.active, 0);
});
