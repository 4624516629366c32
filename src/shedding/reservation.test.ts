import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtualClock } from '../core/clock.js';
import { ShedError } from '../core/errors.js';
import { allocateCapacity, reservationGate, type ReservationPermit, type ReservationPlan } from './reservation.js';

const examplePlan: ReservationPlan = {
  total: 1000,
  shares: { critical: 0.2, normal: 0.6, batch: 0.1 },
  lending: [{ from: 'batch', to: 'critical' }],
};

test('1000 split 20% / 60% / 10%: critical 200, normal 600, batch 100, headroom 100; in failure mode batch lends to critical: 300 / 600 / 0 / 100', () => {
  assert.deepEqual(allocateCapacity(examplePlan), { classes: { critical: 200, normal: 600, batch: 100 }, headroom: 100, failureMode: false });
  assert.deepEqual(allocateCapacity(examplePlan, true), { classes: { critical: 300, normal: 600, batch: 0 }, headroom: 100, failureMode: true });
});

test('allocation: partial lending, rounding leftovers go to headroom, validation', () => {
  const plan: ReservationPlan = { total: 999, shares: { a: 0.5, b: 0.25, c: 0.25 }, lending: [{ from: 'c', to: 'a', fraction: 0.5 }] };
  assert.deepEqual(allocateCapacity(plan), { classes: { a: 499, b: 249, c: 249 }, headroom: 2, failureMode: false });
  assert.deepEqual(allocateCapacity(plan, true), { classes: { a: 623, b: 249, c: 125 }, headroom: 2, failureMode: true });
  assert.throws(() => allocateCapacity({ total: 10, shares: { a: 0.7, b: 0.4 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => allocateCapacity({ total: 0, shares: { a: 1 } }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => allocateCapacity({ total: 10, shares: {} }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => allocateCapacity({ total: 10, shares: { a: 0.5 }, lending: [{ from: 'a', to: 'z' }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => allocateCapacity({ total: 10, shares: { a: 0.5 }, lending: [{ from: 'a', to: 'a' }] }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => allocateCapacity({ total: 10, shares: { a: 0.5, b: 0.2, c: 0.2 }, lending: [{ from: 'a', to: 'b', fraction: 0.6 }, { from: 'a', to: 'c', fraction: 0.6 }] }), { code: 'INVALID_OPTIONS' });
  fc.assert(fc.property(fc.integer({ min: 1, max: 100_000 }), fc.array(fc.double({ min: 0, max: 0.25, noNaN: true }), { minLength: 1, maxLength: 4 }), fc.boolean(), (total, shares, failure) => {
    const plan: ReservationPlan = { total, shares: Object.fromEntries(shares.map((s, i) => [`c${i}`, s])), lending: shares.length > 1 ? [{ from: 'c1', to: 'c0' }] : [] };
    const a = allocateCapacity(plan, failure);
    const sum = Object.values(a.classes).reduce((x, y) => x + y, 0);
    return sum + a.headroom === total && a.headroom >= 0 && Object.values(a.classes).every((v) => v >= 0);
  }), { numRuns: 200, seed: 7 });
});

test('the gate enforces each class at its reservation; classes cannot take each other\'s share', () => {
  const gate = reservationGate({ ...examplePlan, total: 10 }); // critical 2, normal 6, batch 1, headroom 1
  const take = (cls: string, n: number) => Array.from({ length: n }, () => gate.tryAcquire(cls));
  const critical = take('critical', 3);
  assert.deepEqual(critical.map((d) => d.acquired), [true, true, false]);
  const rejected = critical[2]!;
  if (!rejected.acquired) {
    assert.equal(rejected.reason, 'reservation');
    assert.equal(rejected.className, 'critical');
    assert.equal(rejected.limit, 2);
    assert.equal(rejected.retryAfterMs, 1000);
  }
  assert.deepEqual(take('normal', 7).map((d) => d.acquired), [true, true, true, true, true, true, false]);
  assert.deepEqual(take('batch', 2).map((d) => d.acquired), [true, false]);
  assert.equal(gate.stats().classes.normal!.inflight, 6);
  assert.throws(() => gate.tryAcquire('vip'), { code: 'INVALID_INPUT' });
});

test('failure mode: batch lends its share to critical; borrowed slots become usable as batch drains, and come back the same way', () => {
  const gate = reservationGate(examplePlan);
  const modes: boolean[] = [];
  gate.onModeChange((e) => modes.push(e.failureMode));
  const held = (cls: string, n: number) => {
    const out: ReservationPermit[] = [];
    for (let i = 0; i < n; i++) {
      const d = gate.tryAcquire(cls);
      assert.ok(d.acquired, `${cls} ${i + 1}/${n}`);
      out.push(d);
    }
    return out;
  };
  const critical = held('critical', 200);
  const batch = held('batch', 100);
  assert.equal(gate.tryAcquire('critical').acquired, false);

  gate.setFailureMode(true);
  assert.deepEqual(gate.allocation().classes, { critical: 300, normal: 600, batch: 0 });
  assert.equal(gate.tryAcquire('batch').acquired, false, 'batch is paused');
  assert.equal(gate.limitFor('critical'), 200, 'batch still has 100 in flight: nothing borrowed yet');
  assert.equal(gate.tryAcquire('critical').acquired, false);
  for (const p of batch.slice(0, 40)) p.release();
  assert.equal(gate.limitFor('critical'), 240);
  critical.push(...held('critical', 40));
  assert.equal(gate.tryAcquire('critical').acquired, false);
  for (const p of batch.slice(40)) p.release();
  critical.push(...held('critical', 60));
  assert.equal(gate.stats().classes.critical!.inflight, 300);
  assert.equal(gate.tryAcquire('critical').acquired, false);

  gate.setFailureMode(false);
  assert.deepEqual(gate.allocation().classes, { critical: 200, normal: 600, batch: 100 });
  assert.equal(gate.limitFor('batch'), 0, 'critical still holds the 100 it borrowed');
  assert.equal(gate.tryAcquire('batch').acquired, false);
  for (const p of critical.splice(0, 30)) p.release();
  assert.equal(gate.limitFor('batch'), 30);
  assert.equal(gate.tryAcquire('critical').acquired, false, 'critical is above its normal allocation');
  assert.deepEqual(modes, [true, false]);
  // normal was never touched by any of this
  assert.equal(gate.limitFor('normal'), 600);
});

test('property: total in flight never exceeds total − headroom, and no class exceeds its allocation (except draining)', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('acquire' as const), cls: fc.constantFrom('critical', 'normal', 'batch') }),
    fc.record({ kind: fc.constant('release' as const), index: fc.nat() }),
    fc.record({ kind: fc.constant('mode' as const), on: fc.boolean() }),
  );
  fc.assert(fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
    const gate = reservationGate({ ...examplePlan, total: 20 }); // 4 / 12 / 2 / headroom 2
    const held: ReservationPermit[] = [];
    for (const o of ops) {
      if (o.kind === 'acquire') {
        const d = gate.tryAcquire(o.cls);
        if (d.acquired) {
          held.push(d);
          const inflight = gate.stats().classes[o.cls]!.inflight;
          if (inflight > gate.allocation().classes[o.cls]!) return false; // admitted beyond allocation
        }
      } else if (o.kind === 'release' && held.length > 0) {
        held.splice(o.index % held.length, 1)[0]!.release();
      } else if (o.kind === 'mode') {
        gate.setFailureMode(o.on);
      }
      const total = Object.values(gate.stats().classes).reduce((s, c) => s + c.inflight, 0);
      if (total > 18) return false;
    }
    return true;
  }), { numRuns: 300, seed: 11 });
});

test('policy form: class from tags or priority; over-reservation throws ShedError reason reservation', async () => {
  const clock = new VirtualClock();
  const gate = reservationGate({ total: 2, shares: { critical: 0.5, normal: 0.5 }, clock, retryAfterMs: 250 });
  const slow = () => new Promise((resolve) => clock.setTimeout(() => resolve('ok'), 10));
  const a = gate.execute(slow, { priority: 'critical' });
  const b = gate.execute(slow, { tags: { class: 'normal' } });
  await assert.rejects(gate.execute(slow, { priority: 'critical' }), (e: unknown) => e instanceof ShedError && e.reason === 'reservation' && e.retryAfterMs === 250);
  await assert.rejects(gate.execute(slow, { priority: 'low' }), { code: 'INVALID_INPUT' });
  await clock.advance(10);
  assert.deepEqual(await Promise.all([a, b]), ['ok', 'ok']);
  assert.equal(gate.stats().classes.critical!.inflight, 0);
  await assert.rejects(gate.execute(() => { throw new Error('sync'); }, { priority: 'normal' }), /sync/);
  assert.equal(gate.stats().classes.normal!.inflight, 0);
  assert.equal(gate.describe().kind, 'reservation');
  assert.equal(clock.pendingTimers, 0);
});
