// The replica router's decisions on fake servers and a VirtualClock: staleness bounds from the
// probe's WAL readings, read-your-writes sessions, stale reads when the primary is down, option
// checks. The real primary and streaming replica are in replica-router.integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { degradation } from '../core/degraded.js';
import { PolicyRegistry, type PolicyEvent } from '../core/telemetry.js';
import { formatWalPosition, parseWalPosition, replicaRouter, type ProbeErrorEvent, type ReadTarget, type ReplicaRouterOptions } from './replica-router.js';

const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' });
const syntaxError = (): Error => Object.assign(new Error('syntax error at or near "SELEC"'), { code: '42601', severity: 'ERROR' });

/**
 * A server that answers the probe's position queries from `position()` (a WAL position in
 * bytes, or null) and every other statement with its own name, unless `down` is set.
 */
class FakeServer implements ReadTarget {
  down: Error | undefined;
  readonly statements: string[] = [];
  constructor(readonly name: string, public position: () => bigint | null) {}

  async query(text: any): Promise<any> {
    if (this.down) throw this.down;
    const sql = String(text);
    if (sql.includes('pg_current_wal_lsn') || sql.includes('pg_last_wal_replay_lsn')) {
      const p = this.position();
      return { rows: [{ lsn: p === null ? null : formatWalPosition(p) }] };
    }
    this.statements.push(sql);
    if (sql.startsWith('SELEC ')) throw syntaxError();
    return { rows: [{ server: this.name }] };
  }
}

/**
 * A primary written to without pause (its position is the clock's time, one byte a ms) and a
 * replica replaying `delayMs` behind it: the replica's data is exactly `delayMs` old.
 */
function cluster(options: Partial<ReplicaRouterOptions> & { delays?: number[] } = {}) {
  const clock = new VirtualClock(1_000_000);
  const delays = options.delays ?? [0];
  const primary = new FakeServer('primary', () => BigInt(clock.now()));
  const replicas = delays.map((_, i) => new FakeServer(`replica-${i}`, () => BigInt(clock.now() - delays[i]!)));
  const router = replicaRouter({ primary, replicas, maxLagMs: 5000, probeIntervalMs: 1000, clock, ...options });
  const served = async (read: Promise<any>) => ((await read).rows[0] as { server: string }).server;
  return { clock, primary, replicas, delays, router, served };
}

test('bounded staleness: a replica 2 s behind serves reads under maxLagMs 5 s, one 30 s behind sends them to the primary', async () => {
  const { clock, router, delays, served } = cluster({ delays: [2000] });
  await router.probe();
  // The probe reads the primary at t and the replica at 2 s behind: the newest primary reading the
  // replica has reached is the one taken 2 s ago, so the bound is exactly 2000 ms.
  await clock.advance(3000);
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 2000 });
  assert.equal(await served(router.read('SELECT 1')), 'replica-0');
  // Between probes the bound only grows: 999 ms after a probe it is 2999 ms.
  await clock.advance(999);
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 2999 });

  delays[0] = 30_000; // replay falls 30 s behind
  await clock.advance(30_001);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'replicas-lagging' });
  assert.equal(router.stats().replicas[0]!.lagMs, 30_000);
  assert.equal(await served(router.read('SELECT 1')), 'primary');
  assert.deepEqual(router.stats().reads, { replica: 1, primary: 1, staleOnError: 0, replicaFailedOver: 0 });
  router.close();
});

test('the bound is strict: lag equal to maxLagMs goes to the primary, one ms less to the replica', async () => {
  const { clock, router } = cluster({ delays: [4000], probeIntervalMs: 1000 });
  // The replica reaches the first primary reading 4 s after it was taken.
  await clock.advance(3000);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'lag-unknown' });
  await clock.advance(1000);
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 4000 });
  await clock.advance(999);
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 4999 });
  router.close();
  await clock.advance(1);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'replicas-lagging' });
});

test('an idle primary: no writes for 10 minutes, the caught-up replica keeps serving with a bound of at most one probe interval', async () => {
  const clock = new VirtualClock(0);
  const primary = new FakeServer('primary', () => 0x3016098n);
  const replica = new FakeServer('replica', () => 0x3016098n);
  const router = replicaRouter({ primary, replicas: [replica], maxLagMs: 5000, probeIntervalMs: 1000, clock });
  let worst = 0;
  for (let t = 0; t < 600_000; t += 250) {
    await clock.advance(250);
    const route = router.route();
    assert.equal(route.to, 'replica', `at ${t} ms`);
    if (route.to === 'replica') worst = Math.max(worst, route.lagMs);
  }
  // Checked every 250 ms, probed every 1000 ms: the bound peaks at 750 ms, just before a probe.
  assert.equal(worst, 750);
  router.close();
});

test('before the first probe, and after probes fail, reads go to the primary; a replica that stops answering ages out', async () => {
  const { clock, router, replicas, served } = cluster({ delays: [0] });
  const errors: ProbeErrorEvent[] = [];
  router.onProbeError((e) => errors.push(e));
  assert.deepEqual(router.route(), { to: 'primary', reason: 'lag-unknown' }, 'nothing measured yet');
  await router.probe();
  assert.equal(router.route().to, 'replica');

  replicas[0]!.down = refused();
  await clock.advance(4999); // the last good reading ages with the clock
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 4999 });
  await clock.advance(1);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'replicas-lagging' });
  assert.equal(await served(router.read('SELECT 1')), 'primary');
  assert.equal(errors.length, 5);
  assert.deepEqual(errors.map((e) => e.target), ['replica-0', 'replica-0', 'replica-0', 'replica-0', 'replica-0']);
  assert.match(String(router.stats().replicas[0]!.lastError), /ECONNREFUSED/);

  replicas[0]!.down = undefined;
  await clock.advance(1000);
  assert.equal(router.route().to, 'replica', 'back once a probe succeeds');
  assert.equal(router.stats().replicas[0]!.lastError, undefined);
  router.close();
});

test('a replica whose probe hangs does not hold back the others\' readings', async () => {
  const { clock, router, replicas } = cluster({ delays: [0, 0] });
  await router.probe();
  replicas[1]!.query = () => new Promise(() => {}); // never answers
  await clock.advance(10_000);
  assert.deepEqual(router.route(), { to: 'replica', replica: 'replica-0', lagMs: 0 });
  assert.deepEqual(router.stats().replicas.map((r) => r.lagMs), [0, 10_000]);
  router.close();
});

test('a replica that answers reads but is not a standby (no replay position) is never used', async () => {
  const clock = new VirtualClock(0);
  const primary = new FakeServer('primary', () => 100n);
  const notReplica = new FakeServer('not-a-replica', () => null);
  const router = replicaRouter({ primary, replicas: [notReplica], maxLagMs: 5000, clock });
  const errors: ProbeErrorEvent[] = [];
  router.onProbeError((e) => errors.push(e));
  await clock.advance(1000);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'lag-unknown' });
  assert.match(String((errors[0]!.error as Error).message), /not-a-replica reported no WAL position/);
  router.close();
});

test('read-your-writes: a session reads from the primary until a replica has replayed its write, then from the replica', async () => {
  const clock = new VirtualClock(0);
  let written = 0x3000000n;
  let replayed = 0x3000000n;
  const primary = new FakeServer('primary', () => written);
  const replica = new FakeServer('replica', () => replayed);
  const router = replicaRouter({ primary, replicas: [replica], maxLagMs: 5000, probeIntervalMs: 1000, clock });
  await router.probe();
  const served = async (read: Promise<any>) => ((await read).rows[0] as { server: string }).server;

  const session = router.session();
  assert.equal(session.token, undefined);
  written = 0x3016030n; // the write's commit record ends here
  await session.write('INSERT INTO orders VALUES (1)');
  assert.equal(session.token, '0/3016030');
  assert.deepEqual(primary.statements, ['INSERT INTO orders VALUES (1)']);

  await clock.advance(1000); // the replica is measured fresh (the primary stopped writing) but has not replayed the write
  assert.deepEqual(router.route(session), { to: 'primary', reason: 'session-behind' });
  assert.equal(await served(session.read('SELECT * FROM orders')), 'primary');
  assert.equal(await served(router.read('SELECT * FROM orders')), 'replica', 'other readers are not held back');

  // The same guarantee in the next request, from the token alone.
  const next = router.session(session.token);
  assert.equal(await served(next.read('SELECT * FROM orders')), 'primary');

  replayed = 0x3016030n;
  assert.equal(await served(session.read('SELECT * FROM orders')), 'primary', 'known only after the next probe');
  await clock.advance(1000);
  assert.equal(await served(session.read('SELECT * FROM orders')), 'replica');
  assert.equal(await served(next.read('SELECT * FROM orders')), 'replica');
  router.close();
});

test('read-your-writes: a position that cannot be read after a write pins the session to the primary until one is recorded', async () => {
  const clock = new VirtualClock(0);
  const primary = new FakeServer('primary', () => 0x5000n);
  const replica = new FakeServer('replica', () => 0x5000n);
  const router = replicaRouter({ primary, replicas: [replica], maxLagMs: 5000, clock });
  await router.probe();
  const session = router.session('0/4000');
  assert.equal(router.route(session).to, 'replica');
  // The write succeeds; the position query after it fails.
  const query = primary.query.bind(primary);
  primary.query = async (text: any) => (String(text).includes('pg_current_wal_lsn') ? Promise.reject(refused()) : query(text));
  const result = await session.write('UPDATE carts SET n = n + 1');
  assert.deepEqual(result.rows, [{ server: 'primary' }], 'the write\'s result is returned');
  assert.deepEqual(router.route(session), { to: 'primary', reason: 'session-behind' });
  assert.equal(session.token, '0/4000', 'the token still holds the last known position');
  primary.query = query;
  await session.recordWrite();
  assert.equal(session.token, '0/5000');
  assert.equal(router.route(session).to, 'replica');
  router.close();
});

test('a malformed session token is rejected with INVALID_INPUT; positions round-trip through pg_lsn text', () => {
  const { router } = cluster();
  for (const bad of ['', 'abc', '0/', '/1', '123456789/0', '0/16B3748 ', '-1/0']) {
    assert.throws(() => router.session(bad), { code: 'INVALID_INPUT' }, JSON.stringify(bad));
  }
  assert.equal(parseWalPosition('16/B374D848'), (0x16n << 32n) | 0xb374d848n);
  assert.equal(formatWalPosition(parseWalPosition('16/B374D848')!), '16/B374D848');
  assert.equal(formatWalPosition(parseWalPosition('0/0')!), '0/0');
  assert.equal(router.session('ffffffff/ffffffff').token, 'FFFFFFFF/FFFFFFFF');
  router.close();
});

test('primary down while the replica lags: the primary\'s error by default; with staleIfErrorMs, the replica\'s answer marked stale', async () => {
  for (const staleIfErrorMs of [0, 60_000]) {
    const { clock, router, primary, replicas } = cluster({ delays: [30_000], staleIfErrorMs });
    await clock.advance(31_000);
    assert.deepEqual(router.route(), { to: 'primary', reason: 'replicas-lagging' });
    primary.down = refused();
    if (staleIfErrorMs === 0) {
      await assert.rejects(router.read('SELECT 1'), { code: 'ECONNREFUSED' });
    } else {
      const result = await router.read('SELECT 1');
      assert.deepEqual(result.rows, [{ server: 'replica-0' }]);
      // The primary is unreachable, so nothing new is measured: the replica's bound keeps
      // growing from its last reading, taken 30 s behind the primary 0 ms ago.
      assert.deepEqual(degradation(result), { source: 'stale-replica', ageMs: 30_000, reason: primary.down });
      assert.equal(router.stats().reads.staleOnError, 1);
      // Replay stops too: the bound grows to maxLagMs + staleIfErrorMs (65 s), and then not
      // even a stale answer is given.
      const stopped = replicas[0]!.position();
      replicas[0]!.position = () => stopped;
      await clock.advance(34_999);
      assert.equal(degradation(await router.read('SELECT 1'))?.ageMs, 64_999);
      await clock.advance(1);
      await assert.rejects(router.read('SELECT 1'), { code: 'ECONNREFUSED' });
    }
    router.close();
  }
});

test('a stale answer never breaks read-your-writes, and a wrong statement is never answered stale', async () => {
  const clock = new VirtualClock(0);
  let written = 0x1000n;
  const primary = new FakeServer('primary', () => written);
  const replica = new FakeServer('replica', () => 0x1000n);
  const router = replicaRouter({ primary, replicas: [replica], maxLagMs: 5000, staleIfErrorMs: Infinity, clock });
  await router.probe();
  const session = router.session();
  written = 0x2000n;
  await session.write('INSERT INTO t VALUES (1)');
  await clock.advance(1000);
  primary.down = refused();
  await assert.rejects(session.read('SELECT * FROM t'), { code: 'ECONNREFUSED' }, 'the replica lacks the session\'s write');
  assert.deepEqual((await router.read('SELECT * FROM t')).rows, [{ server: 'replica' }], 'a fresh replica serves others as usual');

  primary.down = undefined;
  await clock.advance(1000);
  // The replica (stuck at 0x1000) has stopped covering the primary's position: it lags again.
  await clock.advance(5000);
  assert.deepEqual(router.route(), { to: 'primary', reason: 'replicas-lagging' });
  await assert.rejects(router.read('SELEC 1'), { code: '42601' });
  assert.deepEqual(replica.statements, ['SELECT * FROM t'], 'the statement error came from the primary and was not retried stale');
  router.close();
});

test('a replica that fails a read hands it to the primary; a wrong statement is not handed over', async () => {
  const { router, replicas, primary, served } = cluster({ delays: [0] });
  await router.probe();
  replicas[0]!.query = async (text: any) => (String(text).includes('wal') ? { rows: [{ lsn: '0/0' }] } : Promise.reject(refused()));
  assert.equal(await served(router.read('SELECT 1')), 'primary');
  assert.equal(router.stats().reads.replicaFailedOver, 1);
  replicas[0]!.query = async (text: any) => (String(text).includes('wal') ? { rows: [{ lsn: '0/0' }] } : Promise.reject(syntaxError()));
  await assert.rejects(router.read('SELEC 1'), { code: '42601' });
  assert.deepEqual(primary.statements, ['SELECT 1']);
  router.close();
});

test('fresh replicas take turns; a lagging one is skipped', async () => {
  const { clock, router, delays, served } = cluster({ delays: [0, 0, 0] });
  await router.probe();
  const order: string[] = [];
  for (let i = 0; i < 6; i++) order.push(await served(router.read('SELECT 1')));
  assert.deepEqual(order, ['replica-0', 'replica-1', 'replica-2', 'replica-0', 'replica-1', 'replica-2']);
  delays[1] = 10_000;
  await clock.advance(10_000);
  order.length = 0;
  for (let i = 0; i < 4; i++) order.push(await served(router.read('SELECT 1')));
  assert.deepEqual(order, ['replica-0', 'replica-2', 'replica-0', 'replica-2']);
  router.close();
});

test('probes run every probeIntervalMs, never overlap, and stop at close()', async () => {
  const clock = new VirtualClock(0);
  let probes = 0;
  const primary = new FakeServer('primary', () => { probes++; return 1n; });
  const replica = new FakeServer('replica', () => 1n);
  const router = replicaRouter({ primary, replicas: [replica], maxLagMs: 2000, clock });
  assert.equal(router.probeIntervalMs, 500, 'default: a quarter of maxLagMs, at most 1 s');
  await clock.advance(5000);
  assert.equal(probes, 11, 'one at start, then one per 500 ms');
  await Promise.all([router.probe(), router.probe()]);
  assert.equal(probes, 12, 'concurrent probe() calls share one round');
  router.close();
  assert.equal(clock.pendingTimers, 0);
  await clock.advance(5000);
  assert.equal(probes, 12);
});

test('options are checked when the router is built', () => {
  const primary = new FakeServer('primary', () => 1n);
  const replica = new FakeServer('replica', () => 1n);
  const clock = new VirtualClock();
  const base = { primary, replicas: [replica], maxLagMs: 5000, clock };
  const invalid = (options: unknown, message: RegExp) => assert.throws(() => replicaRouter(options as ReplicaRouterOptions), { code: 'INVALID_OPTIONS', message });
  invalid(undefined, /needs \{ primary, replicas, maxLagMs \}/);
  invalid({ ...base, maxLagMs: undefined }, /needs maxLagMs/);
  invalid({ ...base, maxLagMs: 0 }, /maxLagMs must be a number > 0/);
  invalid({ ...base, replicas: [] }, /replicas must be a non-empty array/);
  invalid({ ...base, primary: {} }, /primary must be a guarded pool/);
  invalid({ ...base, replicas: [{ query() {}, connect() {} }] }, /replicas\[0\] is a plain pg Pool: wrap it with guardPool/);
  invalid({ ...base, probeIntervalMs: 5000 }, /probeIntervalMs \(5000\) must be below maxLagMs \(5000\)/);
  invalid({ ...base, probeIntervalMs: -1 }, /probeIntervalMs must be a number > 0/);
  invalid({ ...base, staleIfErrorMs: -1 }, /staleIfErrorMs must be a number >= 0/);
  invalid({ ...base, name: '' }, /name must be a non-empty string/);
  invalid({ ...base, replicas: [replica, new FakeServer('replica', () => 1n)] }, /need distinct names \(guardPool\(pool, \{ name \}\)\), got primary, replica, replica/);
  const router = replicaRouter({ ...base, staleIfErrorMs: Infinity });
  assert.equal(router.staleIfErrorMs, Infinity);
  router.close();
});

test('a named router is in the registry, and its probe errors come in the uniform shape with the server and the error code', async () => {
  const registry = new PolicyRegistry();
  const { clock, router, replicas } = cluster({ delays: [0], name: 'orders-db', registry });
  const unnamed = cluster({ delays: [0], registry }).router;
  assert.deepEqual(registry.policies(), [router], 'only the named router joins');
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  await router.probe();
  replicas[0]!.down = refused();
  await clock.advance(1000);
  assert.deepEqual(seen, [{ kind: 'replica-router', name: 'orders-db', event: 'probe-error', outcome: 'failure', attributes: { target: 'replica-0', code: 'ECONNREFUSED' } }]);
  router.close();
  unnamed.close();
});
