import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock } from './clock.js';
import { CallContext } from './context.js';
import { deadlineHeaders } from './deadline-headers.js';

const NOW = 1_700_000_000_000;

test('deadlineHeaders: remaining minus margin, as an integer', () => {
  const clock = new VirtualClock(NOW);
  const ctx = { deadline: NOW + 1000, clock };
  assert.deepEqual(deadlineHeaders(ctx), { 'x-request-timeout-ms': '990' });
  assert.deepEqual(deadlineHeaders(ctx, { marginMs: 0 }), { 'x-request-timeout-ms': '1000' });
  assert.deepEqual(deadlineHeaders({ deadline: NOW + 100.7, clock }, { marginMs: 0 }), { 'x-request-timeout-ms': '100' });
  assert.deepEqual(
    deadlineHeaders(ctx, { includeAbsolute: true }),
    { 'x-request-timeout-ms': '990', 'x-request-deadline': String(NOW + 990) },
  );
});

test('deadlineHeaders works with a Bulwark CallContext', () => {
  const clock = new VirtualClock(NOW);
  const ctx = CallContext.root(clock, () => 1, { timeoutMs: 500 });
  assert.deepEqual(deadlineHeaders(ctx, { marginMs: 20 }), { 'x-request-timeout-ms': '480' });
});

test('known defect: no deadline sends no header at all (never "X-Deadline: None")', () => {
  const clock = new VirtualClock(NOW);
  assert.deepEqual(deadlineHeaders(undefined), {});
  assert.deepEqual(deadlineHeaders({ deadline: Infinity, clock }), {});
  assert.deepEqual(deadlineHeaders({ deadline: Number.NaN, clock }), {});
  assert.deepEqual(deadlineHeaders(CallContext.root(clock, () => 1)), {});
  fc.assert(fc.property(fc.integer({ min: 1, max: 10_000_000 }), fc.integer({ min: 0, max: 1000 }), (budget, margin) => {
    if (budget <= margin) return true;
    const value = deadlineHeaders({ deadline: NOW + budget, clock }, { marginMs: margin })['x-request-timeout-ms'];
    return value !== undefined && /^[0-9]+$/.test(value) && Number(value) > 0;
  }), { seed: 7 });
});

test('deadlineHeaders refuses an exhausted budget with DEADLINE_EXCEEDED (no call should be made)', () => {
  const clock = new VirtualClock(NOW);
  assert.throws(() => deadlineHeaders({ deadline: NOW + 5, clock }), { code: 'DEADLINE_EXCEEDED' });
  assert.throws(() => deadlineHeaders({ deadline: NOW - 1, clock }, { marginMs: 0 }), { code: 'DEADLINE_EXCEEDED' });
  assert.throws(() => deadlineHeaders({ deadline: NOW, clock }, { marginMs: 0 }), { code: 'DEADLINE_EXCEEDED' });
});
