import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flushPromises, VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { boundedQueue } from './bounded-queue.js';
import { creditStream } from './credit-stream.js';

test('a bounded queue reports watermarks, drops and refusals (with their reason) as uniform events, and joins the registry when named', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const jobs = boundedQueue<number>({ capacity: 4, highWaterMark: 3, lowWaterMark: 1, clock, name: 'jobs', registry });
  const ticks = boundedQueue<number>({ capacity: 1, policy: 'drop-oldest', clock, name: 'ticks', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));

  for (const n of [1, 2, 3, 4]) jobs.offer(n);
  const timedOut = assert.rejects(jobs.push(5, { timeoutMs: 10 }), { code: 'QUEUE_FULL', reason: 'timeout' });
  await clock.advance(10);
  await timedOut;
  const leaving = new AbortController();
  const aborted = assert.rejects(jobs.push(6, { signal: leaving.signal }), { code: 'ABORTED' });
  leaving.abort();
  await aborted;
  assert.deepEqual(jobs.offer(7), { accepted: false, reason: 'full' });
  jobs.shift();
  jobs.shift();
  jobs.shift();
  jobs.close();
  assert.deepEqual(jobs.offer(8), { accepted: false, reason: 'closed' });
  ticks.offer(1);
  ticks.offer(2);

  const reject = { kind: 'bounded-queue', name: 'jobs', event: 'reject', outcome: 'rejected' } as const;
  assert.deepEqual(seen, [
    { kind: 'bounded-queue', name: 'jobs', event: 'high-water', attributes: { size: 3, capacity: 4 } },
    { ...reject, attributes: { reason: 'timeout' } },
    { ...reject, attributes: { reason: 'aborted' } },
    { ...reject, attributes: { reason: 'full' } },
    { kind: 'bounded-queue', name: 'jobs', event: 'low-water', attributes: { size: 1, capacity: 4 } },
    { ...reject, attributes: { reason: 'closed' } },
    { kind: 'bounded-queue', name: 'ticks', event: 'high-water', attributes: { size: 1, capacity: 1 } },
    { kind: 'bounded-queue', name: 'ticks', event: 'drop', attributes: { reason: 'drop-oldest' } },
  ]);
  assert.deepEqual(jobs.stats(), { size: 1, capacity: 4, waitingProducers: 0, waitingConsumers: 0, accepted: 4, dropped: 0, rejected: 4, highWater: false, closed: true });
  assert.deepEqual(registry.policies(), [jobs, ticks]);
  assert.deepEqual(registry.policies().map((p) => p.kind), ['bounded-queue', 'bounded-queue']);
});

test('a credit stream reports how it ended (completed, cancelled, or failed with the error\'s code) once, as a uniform event', async () => {
  const registry = new PolicyRegistry();
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  async function* failing() {
    yield 1;
    throw new TypeError('bad row');
  }
  const rows = creditStream(failing(), { initialRequest: 5, name: 'rows', registry });
  assert.deepEqual(await rows.next(), { done: false, value: 1 });
  await assert.rejects(rows.next(), TypeError);
  await rows.cancel(); // already ended: no second event

  const all = creditStream([1, 2], { prefetch: 1, name: 'all', registry });
  const taken: number[] = [];
  for await (const n of all) taken.push(n);
  assert.deepEqual(taken, [1, 2]);

  const some = creditStream([1, 2, 3], { initialRequest: 3, name: 'some', registry });
  await flushPromises();
  await some.cancel();

  assert.deepEqual(seen, [
    { kind: 'credit-stream', name: 'rows', event: 'end', outcome: 'failure', attributes: { reason: 'error', code: 'TypeError' } },
    { kind: 'credit-stream', name: 'all', event: 'end', outcome: 'success', attributes: { reason: 'complete' } },
    { kind: 'credit-stream', name: 'some', event: 'end', attributes: { reason: 'cancel' } },
  ]);
  assert.deepEqual(all.stats(), { outstanding: 0, buffered: 0, pulled: 2, delivered: 2, done: true });
  assert.deepEqual(registry.policies().map((p) => p.name), ['rows', 'all', 'some']);
});
