import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../../core/clock.js';
import { loadShedder } from '../../shedding/shedder.js';
import { HttpGuard, type GuardDecision, type RequestView } from './http-guard.js';
import { channel, FakeResponse } from './test/fake-response.js';

const START = 1_700_000_000_000;

const view = (headers: Record<string, string> = {}): RequestView => ({ method: 'GET', url: '/orders/7', headers, socketAddress: '192.0.2.7' });

// Work whose caller has already given up is wasted: drop it at the door, and count it so the
// drop shows on a dashboard (the Google SRE book, "Addressing Cascading Failures": deadline
// propagation and dropping requests that cannot finish in time).
test('deadline shedding at the edge: an expired deadline is answered 504 and counted; ≤ 50 ms left is shed with 504 and counted; no header means 5 s', () => {
  const clock = new VirtualClock(START);
  const shedder = loadShedder({ capacity: 10, minRemainingMs: 50, clock });
  const guard = new HttpGuard({ clock, defaults: { deadlineMs: 5000 }, admission: { shedder } });
  const admit = (headers: Record<string, string>): GuardDecision => guard.admit(view(headers), channel, new FakeResponse()) as GuardDecision;

  // An absolute deadline already in the past: refused before any protection or handler runs.
  const expired = admit({ 'x-request-deadline': String(START - 1) });
  assert.equal(expired.kind, 'reject');
  assert.equal(expired.kind === 'reject' && expired.response.status, 504);
  assert.equal(guard.stats().rejected['deadline-expired'], 1);

  // 30 ms and exactly 50 ms left: too little to do useful work, shed (reason 'deadline').
  // Not overload, so not the shedder's 503: 504 DEADLINE_EXCEEDED with no Retry-After, as for an expired one.
  for (const budget of ['30', '50']) {
    const shed = admit({ 'x-request-timeout-ms': budget });
    assert.equal(shed.kind, 'reject', budget);
    if (shed.kind === 'reject') {
      assert.equal(shed.response.status, 504);
      assert.equal(JSON.parse(String(shed.response.body)).code, 'DEADLINE_EXCEEDED');
      assert.equal(shed.response.headers?.['retry-after'], undefined);
    }
  }
  assert.equal(shedder.stats().shed.deadline, 2);

  // 51 ms left is enough; and without a header the route default gives 5,000 ms.
  const enough = admit({ 'x-request-timeout-ms': '51' });
  assert.equal(enough.kind, 'proceed');
  const defaulted = admit({});
  assert.equal(defaulted.kind === 'proceed' && defaulted.context.deadline, START + 5000);

  // Every refusal is counted exactly once, in the place that made it.
  assert.deepEqual(guard.stats().rejected, { 'invalid-deadline': 0, 'deadline-expired': 1, protection: 2, 'client-gone': 0 });
  assert.equal(guard.stats().admitted, 2);
});
