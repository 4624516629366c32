import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { faultInjection } from './fault.js';

test('fault injection reports each injected fault with its type, position and label, and counts calls and injections per fault', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const chaos = faultInjection({
    clock,
    enabled: true,
    name: 'chaos',
    registry,
    faults: [
      { type: 'latency', rate: 1, ms: 30, name: 'slow-db' },
      { type: 'error', rate: 1, status: 503, when: (ctx) => ctx.tags.tenant === 'test' },
    ],
  });
  const seen: PolicyEvent[] = [];
  chaos.onEvent((e) => seen.push(e));

  const failed = assert.rejects(chaos.execute(() => 'ok', { tags: { tenant: 'test' } }), { code: 'FAULT_INJECTED' });
  await clock.advance(30);
  await failed;
  const passed = chaos.execute(() => 'ok', { tags: { tenant: 'real' } });
  await clock.advance(30);
  assert.equal(await passed, 'ok');

  assert.deepEqual(seen, [
    { kind: 'fault-injection', name: 'chaos', event: 'inject', attributes: { type: 'latency', index: 0, fault: 'slow-db', delayMs: 30 } },
    { kind: 'fault-injection', name: 'chaos', event: 'inject', attributes: { type: 'error', index: 1 } },
    { kind: 'fault-injection', name: 'chaos', event: 'inject', attributes: { type: 'latency', index: 0, fault: 'slow-db', delayMs: 30 } },
  ]);
  assert.deepEqual(chaos.stats(), { calls: 2, injected: [2, 1] });
  assert.equal(chaos.describe().name, 'chaos');
  assert.deepEqual(registry.policies(), [chaos]);
});
