import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { circuitBreaker, type CircuitBreakerPolicy } from './breaker.js';
import { InvalidSnapshotError, parseSnapshot, type BreakerSnapshot } from './snapshot.js';
import { countWindow, timeWindow } from './strategies.js';

const down = () => { throw new Error('down'); };

async function fail(breaker: CircuitBreakerPolicy, times: number): Promise<void> {
  for (let i = 0; i < times; i++) await assert.rejects(breaker.execute(down), /down/);
}

/** Through JSON, as a snapshot travels through a file or Redis. */
function travel(snapshot: BreakerSnapshot): unknown {
  return JSON.parse(JSON.stringify(snapshot));
}

test('export → import round trip continues the same behaviour (consecutive window)', async () => {
  const clock = new VirtualClock(1_000);
  const a = circuitBreaker({ clock, name: 'db' });
  await fail(a, 3);
  const snapshot = a.exportState();
  assert.deepEqual(snapshot, { version: 1, name: 'db', at: 1_000, state: { kind: 'closed' }, window: { kind: 'consecutive', consecutiveFailures: 3 } });
  const b = circuitBreaker({ clock, name: 'db' });
  b.importState(travel(snapshot));
  await fail(b, 1);
  assert.equal(b.state.kind, 'closed');
  await fail(b, 1);
  assert.equal(b.state.kind, 'open', '3 imported + 2 new = 5 in a row');
});

test('an open breaker restored elsewhere rejects with the same retryAfter and probes at the same time', async () => {
  const clock = new VirtualClock();
  const a = circuitBreaker({ clock, openMs: 10_000, openBackoff: { factor: 2 } });
  await fail(a, 5);
  await clock.advance(10_000);
  await fail(a, 1); // failed probe: second trip, open for 20 s
  await clock.advance(5_000);
  const snapshot = travel(a.exportState());
  const b = circuitBreaker({ clock, openMs: 10_000, openBackoff: { factor: 2 }, initialState: snapshot as BreakerSnapshot });
  await assert.rejects(b.execute(() => 'x'), (e: any) => e.state === 'open' && e.retryAfterMs === 15_000);
  await clock.advance(15_000);
  await fail(b, 1); // the probe fails again: third trip keeps the imported history
  const s = b.state;
  assert.ok(s.kind === 'open' && s.trips === 3 && s.reopensAt - s.openedAt === 40_000, JSON.stringify(s));
});

test('count window (32 000 calls) and time window round trips keep the statistics', async () => {
  const clock = new VirtualClock();
  const strategy = countWindow({ size: 32_000, failureRateThreshold: 0.5 });
  const a = circuitBreaker({ clock, strategy });
  for (let i = 0; i < 32_000; i++) {
    const permit = a.tryAcquire();
    if (permit instanceof Error) throw permit;
    if (i % 4 === 0) permit.failure(); else permit.success();
  }
  const b = circuitBreaker({ clock, strategy, initialState: travel(a.exportState()) as BreakerSnapshot });
  assert.deepEqual(b.stats().window, a.stats().window);
  assert.equal(b.stats().window.failures, 8_000);

  const tw = timeWindow({ windowMs: 10_000, minimumCalls: 10 });
  const c = circuitBreaker({ clock, strategy: tw });
  await fail(c, 4);
  await clock.advance(3_000);
  await fail(c, 4);
  const d = circuitBreaker({ clock, strategy: tw });
  d.importState(travel(c.exportState()));
  assert.equal(d.stats().window.failures, 8);
  await clock.advance(7_000);
  assert.equal(d.stats().window.failures, 4, 'the imported buckets age like local ones');
  await fail(d, 6);
  assert.equal(d.state.kind, 'open', '4 imported + 6 new = 10 = minimumCalls, all failures');
});

test('isolated and half-open states survive a round trip (probes in flight stay with the exporter)', async () => {
  const clock = new VirtualClock();
  const a = circuitBreaker({ clock });
  a.isolate();
  const b = circuitBreaker({ clock, initialState: travel(a.exportState()) as BreakerSnapshot });
  await assert.rejects(b.execute(() => 'x'), (e: any) => e.state === 'isolated');

  const c = circuitBreaker({ clock, openMs: 100, halfOpen: { maxProbes: 2 } });
  await fail(c, 5);
  await clock.advance(100);
  void c.execute(() => new Promise(() => {})); // one probe in flight here
  const snapshot = c.exportState();
  assert.deepEqual(snapshot.state, { kind: 'half-open', trips: 1 });
  const d = circuitBreaker({ clock, halfOpen: { maxProbes: 2 } });
  d.importState(travel(snapshot));
  const s = d.state;
  assert.ok(s.kind === 'half-open' && s.inFlight === 0 && s.trips === 1);
});

test('a window from another kind of strategy is not translated: the state is restored, the window starts empty', async () => {
  const clock = new VirtualClock();
  const a = circuitBreaker({ clock });
  await fail(a, 3);
  const b = circuitBreaker({ clock, strategy: countWindow({ size: 4, minimumCalls: 4 }) });
  b.importState(travel(a.exportState()));
  assert.equal(b.state.kind, 'closed');
  assert.equal(b.stats().window.calls, 0);
});

test('importState emits a state change, and calls in flight at import time no longer count', async () => {
  const clock = new VirtualClock();
  const a = circuitBreaker({ clock });
  await fail(a, 5);
  const b = circuitBreaker({ clock, strategy: countWindow({ size: 1, minimumCalls: 1 }) });
  const reasons: string[] = [];
  b.onStateChange((e) => reasons.push(`${e.from}->${e.to}:${e.reason}`));
  let release!: (v: unknown) => void;
  const inFlight = b.execute(() => new Promise((_, reject) => { release = reject; }));
  b.importState(travel(a.exportState()));
  assert.deepEqual(reasons, ['closed->open:imported']);
  b.reset();
  release(new Error('late'));
  await assert.rejects(inFlight, /late/);
  assert.equal(b.state.kind, 'closed', 'the late failure belonged to an earlier epoch');
});

test('malformed snapshots fail with INVALID_INPUT and change nothing; as initialState with INVALID_OPTIONS', async () => {
  const clock = new VirtualClock();
  const good = circuitBreaker({ clock }).exportState();
  const bad: unknown[] = [
    null,
    'open',
    [],
    { ...good, version: 2 },
    { ...good, at: 'now' },
    { ...good, state: { kind: 'melted' } },
    { ...good, state: { kind: 'open', openedAt: 10, reopensAt: 5, trips: 1 } },
    { ...good, state: { kind: 'open', openedAt: 0, reopensAt: NaN, trips: 1 } },
    { ...good, state: { kind: 'open', openedAt: 0, reopensAt: 5, trips: 0 } },
    { ...good, state: { kind: 'half-open', trips: 1.5 } },
    { ...good, window: null },
    { ...good, window: { kind: 'consecutive', consecutiveFailures: -1 } },
    { ...good, window: { kind: 'count', outcomes: '0124' } },
    { ...good, window: { kind: 'count', outcomes: 12 } },
    { ...good, window: { kind: 'time', bucketMs: 0, buckets: [] } },
    { ...good, window: { kind: 'time', bucketMs: 1000, buckets: [[0, 1, 2, 0]] } },
    { ...good, window: { kind: 'time', bucketMs: 1000, buckets: [[0, 1]] } },
    { ...good, window: { kind: 'time', bucketMs: 1000, buckets: 'lots' } },
  ];
  const breaker = circuitBreaker({ clock });
  await fail(breaker, 2);
  for (const value of bad) {
    assert.throws(() => breaker.importState(value), (e: any) => e instanceof InvalidSnapshotError && e.code === 'INVALID_INPUT', JSON.stringify(value));
    assert.throws(() => circuitBreaker({ clock, initialState: value as BreakerSnapshot }), { code: 'INVALID_OPTIONS' });
  }
  assert.equal(breaker.state.kind, 'closed');
  assert.deepEqual(breaker.exportState().window, { kind: 'consecutive', consecutiveFailures: 2 }, 'the window survived every bad import');
  assert.deepEqual(parseSnapshot(travel(good)), good);
});
