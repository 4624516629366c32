import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flushPromises } from '../core/clock.js';
import { creditStream } from './credit-stream.js';

/** An infinite source that counts how often it was advanced. */
function counter() {
  const state = { produced: 0, closed: false };
  async function* source() {
    try {
      for (;;) {
        yield state.produced++;
      }
    } finally {
      state.closed = true;
    }
  }
  return { state, source: source() };
}

test('the source yields no more than was requested', async () => {
  const { state, source } = counter();
  const stream = creditStream(source);
  await flushPromises();
  assert.equal(state.produced, 0, 'nothing requested, nothing produced');
  stream.request(3);
  await flushPromises();
  assert.equal(state.produced, 3);
  assert.deepEqual(stream.stats(), { outstanding: 0, buffered: 3, pulled: 3, delivered: 0, done: false });
  const taken = [await stream.next(), await stream.next(), await stream.next()].map((r) => r.value);
  assert.deepEqual(taken, [0, 1, 2]);
  let fourth: IteratorResult<number> | undefined;
  void stream.next().then((r) => { fourth = r; });
  await flushPromises();
  assert.equal(fourth, undefined, 'the consumer waits: no credit, no item');
  assert.equal(state.produced, 3, 'and the producer is not advanced');
  stream.request(2);
  await flushPromises();
  assert.deepEqual(fourth, { done: false, value: 3 });
  assert.equal(state.produced, 5);
  await stream.cancel();
  assert.equal(state.closed, true, 'cancel closes the source');
  assert.deepEqual(await stream.next(), { done: true, value: undefined });
});

test('a slow consumer with prefetch keeps at most `prefetch` items buffered, however fast the producer', async () => {
  const { state, source } = counter();
  const stream = creditStream(source, { prefetch: 4 });
  const got: number[] = [];
  let maxAhead = 0;
  for await (const item of stream) {
    got.push(item);
    await flushPromises(); // let the producer run as far as it may
    maxAhead = Math.max(maxAhead, state.produced - got.length);
    if (got.length === 50) break; // break cancels the source
  }
  assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
  assert.ok(maxAhead <= 4, `producer ran ${maxAhead} ahead`);
  assert.equal(state.closed, true);
});

test('finite sources end; errors reach the consumer after the items pulled before them', async () => {
  const finite = creditStream([1, 2, 3], { initialRequest: 10 });
  const all: number[] = [];
  for await (const x of finite) all.push(x);
  assert.deepEqual(all, [1, 2, 3]);
  assert.equal(finite.stats().pulled, 3);

  async function* failing() {
    yield 'a';
    yield 'b';
    throw new Error('source broke');
  }
  const stream = creditStream(failing(), { initialRequest: 5 });
  await flushPromises();
  assert.deepEqual(await stream.next(), { done: false, value: 'a' });
  assert.deepEqual(await stream.next(), { done: false, value: 'b' });
  await assert.rejects(stream.next(), /source broke/);
  assert.deepEqual(await stream.next(), { done: true, value: undefined });
});

test('request(n) takes a positive integer or Infinity (Reactive Streams §3.9)', async () => {
  const stream = creditStream([1, 2]);
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => stream.request(bad), { code: 'INVALID_INPUT' });
  stream.request(Infinity);
  const all: number[] = [];
  for await (const x of stream) all.push(x);
  assert.deepEqual(all, [1, 2]);
  assert.throws(() => creditStream(42 as any), { code: 'INVALID_OPTIONS' });
});
