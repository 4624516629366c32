import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import type { Priority } from '../core/context.js';
import type { ShedReason, ShedRejection } from './shedder.js';
import { ShedWaitQueue, type ShedQueueConfig } from './wait-queue.js';

function setup(config: Partial<ShedQueueConfig> = {}) {
  const clock = new VirtualClock();
  const shed: string[] = [];
  const overload: boolean[] = [];
  const reject = (reason: ShedReason, priority: Priority): ShedRejection => {
    shed.push(`${priority}:${reason}`);
    return { admitted: false, reason, retryAfterMs: 0, priority, utilisation: NaN };
  };
  const queue = new ShedWaitQueue<{ readonly admitted: true }>(
    { maxSize: 3, maxQueueTimeMs: 1000, mode: 'fifo', targetMs: 5, intervalMs: 100, ...config },
    clock, reject, (o) => overload.push(o),
  );
  return { clock, queue, shed, overload };
}

test('ShedWaitQueue: FIFO by default; a full queue answers queue-full; waits end at maxQueueTimeMs or the last useful moment', async () => {
  const { clock, queue, shed } = setup();
  void queue.enqueue('low', Infinity, undefined);
  await clock.advance(1);
  void queue.enqueue('normal', 500, undefined);
  void queue.enqueue('high', Infinity, undefined);
  assert.equal((await queue.enqueue('best-effort', Infinity, undefined)).admitted, false);
  assert.deepEqual(shed, ['best-effort:queue-full']);
  assert.equal(queue.size, 3);
  assert.equal(queue.oldestWaitMs(clock.now()), 1);
  assert.equal(queue.take(clock.now())!.priority, 'low', 'oldest first');
  await clock.advance(499);
  assert.deepEqual(shed, ['best-effort:queue-full', 'normal:deadline'], 'its own deadline came first');
  await clock.advance(501);
  assert.deepEqual(shed, ['best-effort:queue-full', 'normal:deadline', 'high:queue-timeout']);
  assert.equal(queue.size, 0);
  assert.equal(queue.oldestWaitMs(clock.now()), 0);
});

test('ShedWaitQueue: CoDel drops the waits past target once the queue stands; an abort leaves the queue', async () => {
  const { clock, queue, shed, overload } = setup({ mode: 'codel', maxSize: 10 });
  for (let i = 0; i < 4; i++) void queue.enqueue('normal', Infinity, undefined);
  await clock.advance(10);
  assert.equal(queue.take(clock.now())!.enqueuedAt, 0, 'above target, but not for a whole interval yet: served');
  await clock.advance(100);
  const fresh = new AbortController();
  void queue.enqueue('high', Infinity, fresh.signal);
  void queue.enqueue('low', Infinity, undefined);
  assert.equal(queue.take(clock.now())!.priority, 'high', 'standing: the older waiters are dropped, the fresh one served');
  assert.deepEqual(shed, ['normal:codel', 'normal:codel', 'normal:codel']);
  assert.deepEqual(overload, [true]);
  assert.equal(queue.overloaded, true);
  const aborted = new AbortController();
  void queue.enqueue('critical', Infinity, aborted.signal);
  aborted.abort();
  assert.deepEqual(shed.slice(3), ['critical:aborted']);
  assert.equal(queue.take(clock.now())!.priority, 'low');
  assert.equal(queue.size, 0);
  assert.deepEqual(overload, [true, false], 'an empty queue is a good queue');
});
