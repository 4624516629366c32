import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { TimeoutError } from '../core/errors.js';
import { pipeline } from '../core/policy.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { circuitBreaker } from './breaker.js';
import { keyedBreaker } from './keyed.js';
import { consecutive } from './strategies.js';

const up = () => 'ok';
const timedOut = () => { throw new TimeoutError(50); };
const down = () => { throw new Error('connect ECONNREFUSED 10.0.0.7:5432'); };

test('a breaker reports calls, its trip, rejections and its recovery as uniform events, and counts them', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const breaker = circuitBreaker({ name: 'inventory', registry, clock, strategy: consecutive({ threshold: 2 }), openMs: 1000 });
  const seen: PolicyEvent[] = [];
  breaker.onEvent((e) => seen.push(e));

  assert.equal(await breaker.execute(up), 'ok');
  await assert.rejects(breaker.execute(timedOut), { code: 'TIMEOUT' });
  await assert.rejects(breaker.execute(timedOut), { code: 'TIMEOUT' });
  await assert.rejects(breaker.execute(up), { code: 'CIRCUIT_OPEN' });
  await clock.advance(1000);
  assert.equal(await breaker.execute(up), 'ok'); // the probe closes it

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'circuit-breaker', name: 'inventory', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('success', { outcome: 'success', attributes: { probe: false } }),
    event('failure', { outcome: 'failure', attributes: { probe: false, code: 'TIMEOUT' } }),
    event('state-change', { attributes: { from: 'closed', to: 'open', reason: 'threshold' } }),
    event('failure', { outcome: 'failure', attributes: { probe: false, code: 'TIMEOUT' } }), // the call that tripped it
    event('reject', { outcome: 'rejected', attributes: { state: 'open', retryAfterMs: 1000 } }),
    event('state-change', { attributes: { from: 'open', to: 'half-open', reason: 'open-elapsed' } }),
    event('state-change', { attributes: { from: 'half-open', to: 'closed', reason: 'probes-succeeded' } }),
    event('success', { outcome: 'success', attributes: { probe: true } }),
  ]);
  const { window, ...stats } = breaker.stats();
  assert.equal(window.consecutiveFailures, 0, 'the window restarted empty on close');
  assert.deepEqual(stats, {
    name: 'inventory', state: 'closed', trips: 1, consecutiveTrips: 0, probesInFlight: 0, successes: 2, failures: 2, ignored: 0, rejections: 1,
  });
  assert.equal(breaker.describe().name, 'inventory');
  assert.deepEqual(registry.policies(), [breaker]);
});

test('a keyed breaker reports every key\'s breaker as itself, never per key, and sums their counters (evicted ones included)', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const hosts = keyedBreaker<string>({ name: 'hosts', registry, clock, maxKeys: 2, options: { strategy: consecutive({ threshold: 1 }), openMs: 1000 } });
  const stack = pipeline(hosts.policy((context) => String(context.tags.host)));
  const seen: PolicyEvent[] = [];
  stack.onEvent((e) => {
    if (e.kind !== 'pipeline') seen.push(e); // the pipeline's own 'call' events are its business
  });

  await assert.rejects(stack.execute(down, { tags: { host: 'a.example' } }), /ECONNREFUSED/);
  await assert.rejects(stack.execute(up, { tags: { host: 'a.example' } }), { code: 'CIRCUIT_OPEN', breaker: 'hosts:a.example' });
  assert.equal(await stack.execute(up, { tags: { host: 'b.example' } }), 'ok');
  assert.equal(await hosts.execute('c.example', up), 'ok'); // evicts b, the least recently used closed breaker

  const event = (name: string, fields: Partial<PolicyEvent>): PolicyEvent => ({ kind: 'keyed-circuit-breaker', name: 'hosts', event: name, attributes: {}, ...fields });
  assert.deepEqual(seen, [
    event('state-change', { attributes: { from: 'closed', to: 'open', reason: 'threshold' } }),
    event('failure', { outcome: 'failure', attributes: { probe: false, code: 'Error' } }),
    event('reject', { outcome: 'rejected', attributes: { state: 'open', retryAfterMs: 1000 } }),
    event('success', { outcome: 'success', attributes: { probe: false } }),
    event('success', { outcome: 'success', attributes: { probe: false } }),
  ]);
  const stats = { size: 2, maxKeys: 2, notClosed: 1, evictions: 1, overflowed: 0, trips: 1, successes: 2, failures: 1, ignored: 0, rejections: 1 };
  assert.deepEqual(hosts.stats(), stats);
  assert.deepEqual(stack.stats().policies[0], { kind: 'keyed-circuit-breaker', name: 'hosts', stats });
  assert.equal(stack.describe().policies![0]!.name, 'hosts');
  assert.deepEqual(registry.policies(), [hosts], 'the keyed breaker registers; its breakers never do');
});
