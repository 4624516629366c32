import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../../core/clock.js';
import { PolicyRegistry, type PolicyEvent } from '../../core/telemetry.js';
import { HttpGuard, type GuardDecision, type RequestView } from './http-guard.js';
import type { Protection } from './protection.js';
import { channel, FakeResponse } from './test/fake-response.js';

const START = 1_700_000_000_000;

const view = (overrides: Partial<RequestView> = {}): RequestView =>
  ({ method: 'GET', url: '/orders/7', headers: {}, socketAddress: '192.0.2.7', ...overrides });

const kindOf = (admission: GuardDecision | Promise<GuardDecision>): string => (admission as GuardDecision).kind;

test('HttpGuard: rejections and deadlines are uniform events by route (never by client or URL); stats count them by reason', async () => {
  const clock = new VirtualClock(START);
  const registry = new PolicyRegistry();
  const closed: Protection = { name: 'maintenance', check: (request) => (request.method === 'DELETE' ? { status: 503, headers: {}, body: 'later' } : undefined) };
  const guard = new HttpGuard({
    clock,
    name: 'api',
    registry,
    protections: [closed],
    routes: { 'GET /orders/:id': {}, 'DELETE /orders/:id': {}, '/metrics': { bypass: true } },
  });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));

  assert.equal(kindOf(guard.admit(view({ url: '/metrics' }), channel, new FakeResponse())), 'bypass');
  assert.equal(kindOf(guard.admit(view({ headers: { 'x-request-timeout-ms': 'soon' } }), channel, new FakeResponse())), 'reject');
  assert.equal(kindOf(guard.admit(view({ headers: { 'x-request-timeout-ms': '0' } }), channel, new FakeResponse())), 'reject');
  assert.equal(kindOf(guard.admit(view({ method: 'DELETE' }), channel, new FakeResponse())), 'reject');
  const slow = new FakeResponse();
  assert.equal(kindOf(guard.admit(view({ headers: { 'x-request-timeout-ms': '250' } }), channel, slow)), 'proceed');
  await clock.advance(250);
  assert.equal(slow.sent?.status, 504);

  assert.deepEqual(seen, [
    { kind: 'http-guard', name: 'api', event: 'reject', outcome: 'rejected', attributes: { reason: 'invalid-deadline', status: 400, route: 'GET /orders/:id' } },
    { kind: 'http-guard', name: 'api', event: 'reject', outcome: 'rejected', attributes: { reason: 'deadline-expired', status: 504, route: 'GET /orders/:id' } },
    { kind: 'http-guard', name: 'api', event: 'reject', outcome: 'rejected', attributes: { reason: 'protection', status: 503, route: 'DELETE /orders/:id', protection: 'maintenance' } },
    { kind: 'http-guard', name: 'api', event: 'deadline-exceeded', outcome: 'failure', durationMs: 250, attributes: { route: 'GET /orders/:id', responded: true } },
  ]);
  assert.deepEqual(guard.stats(), {
    requests: 5,
    bypassed: 1,
    admitted: 1,
    rejected: { 'invalid-deadline': 1, 'deadline-expired': 1, protection: 1, 'client-gone': 0 },
    deadlineExceeded: 1,
    deadlineAnswered: 1,
  });
  assert.deepEqual(registry.policies(), [guard]);
});
