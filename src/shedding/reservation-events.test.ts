import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { reservationGate } from './reservation.js';

test('a reservation gate reports refusals (class, limit, in flight) and failure mode switching, and keeps per-class stats', async () => {
  const registry = new PolicyRegistry();
  // 10 in total: critical 2, batch 1 (lent to critical in failure mode), headroom 7.
  const gate = reservationGate({ total: 10, shares: { critical: 0.2, batch: 0.1 }, lending: [{ from: 'batch', to: 'critical' }], clock: new VirtualClock(), name: 'ingest', registry });
  const seen: PolicyEvent[] = [];
  gate.onEvent((e) => seen.push(e));

  const held = [gate.tryAcquire('critical'), gate.tryAcquire('critical')];
  assert.equal(gate.tryAcquire('critical').acquired, false);
  gate.setFailureMode(true);
  assert.equal(gate.tryAcquire('critical').acquired, true, "batch's share is critical's now");
  await assert.rejects(gate.execute(() => 'ok', { tags: { class: 'batch' } }), { code: 'SHED' });
  for (const permit of held) if (permit.acquired) permit.release();

  assert.deepEqual(seen, [
    { kind: 'reservation', name: 'ingest', event: 'reject', outcome: 'rejected', attributes: { class: 'critical', limit: 2, inflight: 2 } },
    { kind: 'reservation', name: 'ingest', event: 'mode-change', attributes: { failureMode: true } },
    { kind: 'reservation', name: 'ingest', event: 'reject', outcome: 'rejected', attributes: { class: 'batch', limit: 0, inflight: 0 } },
  ]);
  assert.deepEqual(gate.stats(), {
    failureMode: true,
    classes: { critical: { allocation: 3, limit: 3, inflight: 1, rejected: 1 }, batch: { allocation: 0, limit: 0, inflight: 0, rejected: 1 } },
  });
  assert.equal(gate.describe().name, 'ingest');
});
