import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { systemClock, VirtualClock } from './clock.js';
import { CountingClock } from '../../test/support/counting-clock.js';
import { hedge } from '../hedge/hedge.js';
import { DeadlineEntry, DeadlineQueue } from './deadline-queue.js';

// A full collection on demand, without starting the test process with --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** True once `ref`'s target has been collected (weak references clear between turns). */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  for (let i = 0; i < 10 && ref.deref() !== undefined; i++) {
    await new Promise((resolve) => setImmediate(resolve));
    gc();
  }
  return ref.deref() === undefined;
}

const noop = (): void => {};

test('an idle queue is collectable at once although its timer is still armed (policies built per request)', async () => {
  const ref = (() => {
    const queue = new DeadlineQueue(systemClock);
    const entry = new DeadlineEntry(systemClock.now() + 60_000, noop);
    queue.add(entry);
    queue.remove(entry);
    return new WeakRef(queue);
  })();
  assert.equal(await collected(ref), true);
});

test('a dropped hedge policy is collectable once its calls settled, not when its delay passes', async () => {
  const ref = await (async () => {
    const policy = hedge({ delayMs: 60_000, idempotent: true });
    for (let i = 0; i < 3; i++) assert.equal(await policy.execute(async () => 'fast'), 'fast');
    return new WeakRef(policy);
  })();
  assert.equal(await collected(ref), true);
});

test('sequential entries share one timer: an idle queue keeps it armed instead of arming one per entry', async () => {
  const clock = new CountingClock();
  const queue = new DeadlineQueue(clock);
  for (let i = 0; i < 100; i++) {
    const entry = new DeadlineEntry(clock.now() + 100, noop);
    queue.add(entry);
    await clock.advance(1);
    queue.remove(entry);
  }
  assert.ok(clock.armed <= 2, `armed ${clock.armed} timers for 100 sequential entries`);
});

test('a timer that fired while the queue was idle is replaced: the next entry still expires on time', async () => {
  const clock = new VirtualClock();
  const queue = new DeadlineQueue(clock);
  const first = new DeadlineEntry(100, noop);
  queue.add(first);
  queue.remove(first);
  await clock.advance(150); // the idle timer fires, reaching nothing
  const expired: number[] = [];
  queue.add(new DeadlineEntry(clock.now() + 100, () => expired.push(clock.now())));
  await clock.advance(100);
  assert.deepEqual(expired, [250]);
  assert.equal(queue.size, 0);
});

test('an idle timer that has not fired yet serves the next entry, earlier or later', async () => {
  const clock = new VirtualClock();
  const queue = new DeadlineQueue(clock);
  const first = new DeadlineEntry(100, noop);
  queue.add(first);
  queue.remove(first);
  const expired: string[] = [];
  queue.add(new DeadlineEntry(300, () => expired.push(`late@${clock.now()}`)));
  queue.add(new DeadlineEntry(50, () => expired.push(`early@${clock.now()}`)));
  await clock.advance(400);
  assert.deepEqual(expired, ['early@50', 'late@300']);
  assert.equal(clock.pendingTimers, 0, 'nothing left once the last entry expired');
});
