import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { loadShedder, type ShedDecision, type ShedPermit } from './shedder.js';

const permit = (admission: ShedDecision): ShedPermit => {
  assert.ok(admission.admitted);
  return admission;
};

test('a load shedder reports each shed request (reason, priority, utilisation) and the standing queue coming and going, and counts admissions and sheds', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const shedder = loadShedder({ capacity: 1, queue: { maxSize: 3, maxQueueTimeMs: 1000, mode: 'fifo', targetMs: 5, intervalMs: 10 }, clock, name: 'api', registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));

  const running = permit(shedder.tryAdmit('critical'));
  const waiting = [shedder.admit('high'), shedder.admit('high'), shedder.admit('high')];
  assert.equal(shedder.tryAdmit('low').admitted, false); // utilisation 4/4 is above low's 0.5
  assert.equal(shedder.tryAdmit('normal', clock.now() - 1).admitted, false); // its deadline has passed
  // Each waiter leaves the queue 20 ms after the previous: waits above the 5 ms target for longer
  // than the 10 ms interval make the queue standing, and it recovers once it is empty.
  await clock.advance(20);
  running.release();
  for (const next of waiting) {
    const admitted = permit(await next);
    await clock.advance(20);
    admitted.release();
  }

  const shed = { kind: 'load-shedder', name: 'api', event: 'shed', outcome: 'rejected' } as const;
  assert.deepEqual(seen, [
    { ...shed, attributes: { reason: 'priority', priority: 'low', utilisation: 1 } },
    { ...shed, attributes: { reason: 'deadline', priority: 'normal' } },
    { kind: 'load-shedder', name: 'api', event: 'overload', attributes: { overloaded: true } },
    { kind: 'load-shedder', name: 'api', event: 'overload', attributes: { overloaded: false } },
  ]);
  assert.deepEqual(shedder.stats(), {
    capacity: 1,
    inflight: 0,
    queued: 0,
    utilisation: 0,
    overloaded: false,
    admitted: 4,
    shed: { deadline: 1, priority: 1, red: 0, capacity: 0, 'queue-full': 0, 'queue-timeout': 0, codel: 0, aborted: 0 },
  });
  assert.equal(shedder.describe().name, 'api');
});
