import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VirtualClock } from '../core/clock.js';
import { boundedQueue, type OverflowPolicy } from './bounded-queue.js';
import { QueueFullError } from './errors.js';

test('reject: offer returns a value, push throws QUEUE_FULL (stack-less); nothing is lost or reordered', async () => {
  const q = boundedQueue<number>({ capacity: 2, policy: 'reject' });
  assert.deepEqual(q.offer(1), { accepted: true });
  await q.push(2);
  assert.deepEqual(q.offer(3), { accepted: false, reason: 'full' });
  await assert.rejects(q.push(4), (e: unknown) => e instanceof QueueFullError && e.code === 'QUEUE_FULL' && e.reason === 'full' && e.stack!.split('\n').length === 1);
  assert.equal(q.size, 2);
  assert.deepEqual([q.shift(), q.shift(), q.shift()], [1, 2, undefined]);
  assert.equal(q.stats().rejected, 2);
});

test('drop-oldest evicts and reports the evicted item; drop-newest discards the incoming one', async () => {
  const oldest = boundedQueue<string>({ capacity: 2, policy: 'drop-oldest' });
  const drops: string[] = [];
  oldest.onDrop((e) => drops.push(`${e.reason}:${e.item}`));
  oldest.offer('a');
  oldest.offer('b');
  assert.deepEqual(oldest.offer('c'), { accepted: true, evicted: 'a' });
  assert.deepEqual(await oldest.push('d'), { accepted: true, evicted: 'b' });
  assert.deepEqual([oldest.shift(), oldest.shift()], ['c', 'd']);

  const newest = boundedQueue<string>({ capacity: 2, policy: 'drop-newest' });
  newest.onDrop((e) => drops.push(`${e.reason}:${e.item}`));
  newest.offer('a');
  newest.offer('b');
  assert.deepEqual(newest.offer('c'), { accepted: false, reason: 'dropped' });
  assert.deepEqual(await newest.push('d'), { accepted: false, reason: 'dropped' });
  assert.deepEqual([newest.shift(), newest.shift()], ['a', 'b']);
  assert.deepEqual(drops, ['drop-oldest:a', 'drop-oldest:b', 'drop-newest:c', 'drop-newest:d']);
  assert.equal(newest.stats().dropped, 2);
});

test('block: a producer waits for space, in order; timeouts and aborts end the wait; one shared timer', async () => {
  const clock = new VirtualClock();
  const q = boundedQueue<number>({ capacity: 1, policy: 'block', clock });
  await q.push(1);
  const order: string[] = [];
  const p2 = q.push(2).then(() => order.push('2 in'));
  const p3 = q.push(3, { timeoutMs: 50 }).catch((e: QueueFullError) => order.push(`3 ${e.reason}`));
  const controller = new AbortController();
  const p4 = q.push(4, { signal: controller.signal }).catch((e) => order.push(`4 ${e.code}`));
  assert.deepEqual(q.offer(9), { accepted: false, reason: 'full' }, 'offer never waits');
  assert.equal(q.stats().waitingProducers, 3);
  assert.equal(clock.pendingTimers, 1);
  controller.abort();
  await clock.advance(50);
  assert.deepEqual(order, ['4 ABORTED', '3 timeout']);
  assert.equal(q.size, 1, 'never above capacity while producers wait');
  assert.equal(q.shift(), 1);
  await p2;
  assert.equal(q.size, 1);
  assert.equal(q.shift(), 2);
  await Promise.all([p3, p4]);
  assert.equal(q.stats().waitingProducers, 0);
  assert.equal(clock.pendingTimers, 0, 'no timer left behind');
  const aborted = new AbortController();
  aborted.abort();
  q.offer(5);
  await assert.rejects(q.push(6, { signal: aborted.signal }), { code: 'ABORTED' });
  await assert.rejects(q.push(6, { timeoutMs: -1 }), { code: 'INVALID_INPUT' });
});

test('pull waits for an item (handed over directly), times out, aborts; async iteration ends after close and drain', async () => {
  const clock = new VirtualClock();
  const q = boundedQueue<string>({ capacity: 4, clock });
  const first = q.pull();
  q.offer('x');
  assert.deepEqual(await first, { done: false, value: 'x' });
  assert.equal(q.size, 0, 'handed straight to the waiting consumer');
  const timed = q.pull({ timeoutMs: 20 });
  const check = assert.rejects(timed, { code: 'TIMEOUT' });
  await clock.advance(20);
  await check;
  const c = new AbortController();
  const aborted = q.pull({ signal: c.signal });
  c.abort();
  await assert.rejects(aborted, { code: 'ABORTED' });

  const consumed: string[] = [];
  const consumer = (async () => {
    for await (const item of q) consumed.push(item);
  })();
  q.offer('a');
  await q.push('b');
  q.offer('c');
  await clock.advance(0);
  q.close();
  await consumer;
  assert.deepEqual(consumed, ['a', 'b', 'c']);
  assert.deepEqual(q.offer('late'), { accepted: false, reason: 'closed' });
  await assert.rejects(q.push('late'), (e: unknown) => e instanceof QueueFullError && e.reason === 'closed');
  assert.equal(clock.pendingTimers, 0);
});

test('close wakes blocked producers with QUEUE_FULL (closed); remaining items can still be drained', async () => {
  const q = boundedQueue<number>({ capacity: 1 });
  q.offer(1);
  const blocked = q.push(2);
  q.close();
  await assert.rejects(blocked, (e: unknown) => e instanceof QueueFullError && e.reason === 'closed');
  assert.deepEqual(await q.pull(), { done: false, value: 1 });
  assert.deepEqual(await q.pull(), { done: true, value: undefined });
});

test('high-water alert at the watermark, once, re-armed at the low-water mark', async () => {
  const q = boundedQueue<number>({ capacity: 10, highWaterMark: 8, lowWaterMark: 3, policy: 'drop-oldest' });
  const events: string[] = [];
  q.onHighWater((e) => events.push(`high@${e.size}`));
  q.onLowWater((e) => events.push(`low@${e.size}`));
  for (let i = 0; i < 12; i++) q.offer(i);
  assert.deepEqual(events, ['high@8']);
  while (q.size > 4) q.shift();
  assert.deepEqual(events, ['high@8']);
  q.shift();
  assert.deepEqual(events, ['high@8', 'low@3']);
  for (let i = 0; i < 5; i++) q.offer(i);
  assert.deepEqual(events, ['high@8', 'low@3', 'high@8']);
  const defaults = boundedQueue({ capacity: 10 });
  assert.deepEqual([defaults.highWaterMark, defaults.lowWaterMark, defaults.policy], [8, 4, 'block']);
  assert.throws(() => boundedQueue({ capacity: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => boundedQueue({ capacity: 5, highWaterMark: 6 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => boundedQueue({ capacity: 5, highWaterMark: 3, lowWaterMark: 3 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => boundedQueue({ capacity: 5, policy: 'spill' as any }), { code: 'INVALID_OPTIONS' });
});

test('property: the queue never exceeds its capacity under any policy, and keeps FIFO order of what it accepted', async () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('offer' as const) }),
    fc.record({ kind: fc.constant('push' as const), timeoutMs: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }) }),
    fc.record({ kind: fc.constant('shift' as const) }),
    fc.record({ kind: fc.constant('pull' as const) }),
    fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 20 }) }),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<OverflowPolicy>('block', 'reject', 'drop-oldest', 'drop-newest'),
      fc.integer({ min: 1, max: 6 }),
      fc.array(op, { maxLength: 120 }),
      async (policy, capacity, ops) => {
        const clock = new VirtualClock();
        const q = boundedQueue<number>({ capacity, policy, clock });
        let maxSize = 0;
        q.onHighWater((e) => { maxSize = Math.max(maxSize, e.size); });
        const out: number[] = []; // taken synchronously: shift() and the final drain
        const pulled: number[] = []; // observed when the pull's promise settles
        let next = 0;
        for (const o of ops) {
          if (o.kind === 'offer') q.offer(next++);
          else if (o.kind === 'push') q.push(next++, { timeoutMs: o.timeoutMs }).catch(() => {});
          else if (o.kind === 'shift') { const v = q.shift(); if (v !== undefined) out.push(v); }
          else if (o.kind === 'pull') void q.pull({ timeoutMs: 5 }).then((r) => { if (!r.done) pulled.push(r.value); }, () => {});
          else await clock.advance(o.ms);
          if (q.size > capacity) return false;
        }
        q.close();
        await clock.runAll();
        while (q.size > 0) out.push(q.shift()!);
        // Whatever came out came out in the order it went in (drops only remove items), exactly once.
        for (const seq of [out, pulled]) for (let i = 1; i < seq.length; i++) if (seq[i]! <= seq[i - 1]!) return false;
        if (new Set([...out, ...pulled]).size !== out.length + pulled.length) return false;
        const s = q.stats();
        const evicted = policy === 'drop-oldest' ? s.dropped : 0; // accepted, then evicted
        if (out.length + pulled.length !== s.accepted - evicted) return false;
        return maxSize <= capacity && clock.pendingTimers === 0 && s.waitingProducers === 0 && s.waitingConsumers === 0;
      },
    ),
    { numRuns: 200, seed: 3 },
  );
});

test('an idle process with a blocked producer and a waiting consumer (real clock) exits on its own', () => {
  const module = fileURLToPath(new URL('./bounded-queue.ts', import.meta.url));
  const script = `
    const { boundedQueue } = await import(${JSON.stringify(module)});
    const full = boundedQueue({ capacity: 1 });
    full.offer(1);
    full.push(2, { timeoutMs: 60000 }).catch(() => {});
    boundedQueue({ capacity: 1 }).pull({ timeoutMs: 60000 }).catch(() => {});
    console.log('waiting', full.stats().waitingProducers);
  `;
  const started = Date.now();
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(child.status, 0, child.stderr);
  assert.match(child.stdout, /waiting 1/);
  assert.ok(Date.now() - started < 20_000, 'exited without waiting for the 60 s timers');
});
