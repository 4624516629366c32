// The replica router against a real primary and streaming replica, started by this file on free
// ports (initdb, pg_basebackup -R, pg_ctl) and removed at the end. Lag is made on purpose by
// pausing WAL replay on the replica (pg_wal_replay_pause()). Real time: this is real I/O.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { degradation } from '../core/degraded.js';
import { guardPool, type GuardedPool } from './guarded-postgres.js';
import { replicaRouter, type ReplicaRouter } from './replica-router.js';
import { PrivateReplication } from './test/private-replication.js';
import { eventually, sleep } from './test/support.js';

const cluster = new PrivateReplication();
const pools: pg.Pool[] = [];
const routers: ReplicaRouter[] = [];
let primaryAdmin: pg.Pool;
let replicaAdmin: pg.Pool;

function newPool(port: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: cluster.url(port), max: 4, connectionTimeoutMillis: 2000 });
  pool.on('error', () => {}); // idle connections die when the primary is stopped on purpose
  pools.push(pool);
  return pool;
}

function guarded(name: 'primary' | 'replica'): GuardedPool {
  return guardPool(newPool(name === 'primary' ? cluster.primaryPort : cluster.replicaPort), { name, timeoutMs: 2000, retry: false });
}

function router(maxLagMs: number, staleIfErrorMs = 0): ReplicaRouter {
  const r = replicaRouter({ primary: guarded('primary'), replicas: [guarded('replica')], maxLagMs, probeIntervalMs: 100, staleIfErrorMs });
  routers.push(r);
  return r;
}

/** Which server answered, and how many rows of `t` it sees. */
const WHO = 'SELECT pg_is_in_recovery() AS standby, (SELECT count(*)::int FROM t) AS n';
type Who = { standby: boolean; n: number };

async function replicaRows(): Promise<number> {
  return (await replicaAdmin.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n;
}

async function pauseReplay(): Promise<void> {
  await replicaAdmin.query('SELECT pg_wal_replay_pause()');
  await eventually('replay paused', async () => (await replicaAdmin.query('SELECT pg_get_wal_replay_pause_state() AS s')).rows[0].s === 'paused');
}

async function resumeReplay(): Promise<void> {
  await replicaAdmin.query('SELECT pg_wal_replay_resume()');
}

before(async () => {
  await cluster.start();
  primaryAdmin = newPool(cluster.primaryPort);
  replicaAdmin = newPool(cluster.replicaPort);
  await primaryAdmin.query('CREATE TABLE t (id serial PRIMARY KEY)');
  await primaryAdmin.query('INSERT INTO t DEFAULT VALUES');
  await eventually('the replica has the table', async () => (await replicaAdmin.query("SELECT to_regclass('t') AS r")).rows[0].r !== null && (await replicaRows()) === 1, 10_000);
});

after(async () => {
  for (const r of routers) r.close();
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  await cluster.stop();
});

test('bounded staleness: a paused replica serves reads only while the write it lacks is under maxLagMs old, then the primary does', async () => {
  const maxLagMs = 1500;
  const db = router(maxLagMs);
  await eventually('the replica is measured fresh', () => db.route().to === 'replica');
  assert.deepEqual((await db.read<Who>(WHO)).rows[0], { standby: true, n: 1 });

  await pauseReplay();
  const before = (await primaryAdmin.query<{ n: number }>('SELECT count(*)::int AS n FROM t')).rows[0]!.n;
  await primaryAdmin.query('INSERT INTO t DEFAULT VALUES');
  const wroteAt = db.clock.now();

  // A read that misses the write must have started within maxLagMs of it; every read started
  // maxLagMs or more after it must see it (so the router has turned to the primary).
  let staleReads = 0;
  let switchedAfter: number | undefined;
  while (switchedAfter === undefined) {
    const sinceWrite = db.clock.now() - wroteAt;
    const who = (await db.read<Who>(WHO)).rows[0]!;
    if (who.n === before) {
      staleReads++;
      assert.equal(who.standby, true);
      assert.ok(sinceWrite < maxLagMs, `a read started ${sinceWrite} ms after the write missed it`);
    } else {
      assert.equal(who.standby, false, 'the paused replica cannot have the write');
      switchedAfter = sinceWrite;
    }
    assert.ok(db.clock.now() - wroteAt < maxLagMs + 2000, 'the router never turned to the primary');
    await sleep(50);
  }
  assert.deepEqual(db.route(), { to: 'primary', reason: 'replicas-lagging' });
  assert.equal(await replicaRows(), before, 'the replica really is behind');
  assert.ok(db.stats().replicas[0]!.lagMs! >= maxLagMs);
  console.log(`# stale reads within the bound: ${staleReads}; turned to the primary ${Math.round(switchedAfter)} ms after the write (maxLagMs ${maxLagMs})`);

  await resumeReplay();
  await eventually('the replica serves again once it has replayed', () => db.route().to === 'replica');
  assert.deepEqual((await db.read<Who>(WHO)).rows[0], { standby: true, n: before + 1 });
});

test('an idle primary: with no writes for three times maxLagMs the caught-up replica keeps serving, though its last replayed commit grows old', async () => {
  const maxLagMs = 1000;
  const db = router(maxLagMs);
  await eventually('the replica is measured fresh', () => db.route().to === 'replica');
  let worst = 0;
  const start = Date.now();
  while (Date.now() - start < 3 * maxLagMs) {
    const route = db.route();
    assert.equal(route.to, 'replica', JSON.stringify(route));
    if (route.to === 'replica') worst = Math.max(worst, route.lagMs);
    await sleep(50);
  }
  // The replay-timestamp measure would have called this replica 3 s stale.
  const { rows } = await replicaAdmin.query<{ ms: number }>('SELECT (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::int AS ms');
  assert.ok(rows[0]!.ms >= 3 * maxLagMs, `last replayed commit ${rows[0]!.ms} ms old`);
  console.log(`# idle primary: worst lag bound ${Math.round(worst)} ms over ${3 * maxLagMs} ms; replay-timestamp age ${rows[0]!.ms} ms`);
  assert.ok(worst < maxLagMs);
});

test('read-your-writes: a session sees its own write at once (primary) while the replica lags, and moves to the replica once it has replayed it', async () => {
  const db = router(30_000);
  await eventually('the replica is measured fresh', () => db.route().to === 'replica');
  await pauseReplay();
  const session = db.session();
  const { rows } = await session.write<{ id: number }>('INSERT INTO t DEFAULT VALUES RETURNING id');
  const id = rows[0]!.id;
  const token = session.token!;
  assert.match(token, /^[0-9A-F]+\/[0-9A-F]+$/);

  const own = await session.read<{ n: number; standby: boolean }>('SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM t WHERE id = $1', [id]);
  assert.deepEqual(own.rows[0], { n: 1, standby: false }, 'its own write, from the primary');
  const other = await db.read<{ n: number; standby: boolean }>('SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM t WHERE id = $1', [id]);
  assert.deepEqual(other.rows[0], { n: 0, standby: true }, 'a reader without the session may see the replica without it (within 30 s)');
  // The next request carries only the token.
  const next = db.session(token);
  assert.deepEqual(db.route(next), { to: 'primary', reason: 'session-behind' });

  await resumeReplay();
  await eventually('the replica has replayed past the token', () => db.route(next).to === 'replica');
  const replayed = await replicaAdmin.query<{ passed: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS passed', [token]);
  assert.equal(replayed.rows[0]!.passed, true);
  const later = await next.read<{ n: number; standby: boolean }>('SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM t WHERE id = $1', [id]);
  assert.deepEqual(later.rows[0], { n: 1, standby: true });
});

test('primary down while the replica lags: an error by default, the replica\'s answer marked stale with staleIfErrorMs', async () => {
  const strict = router(500);
  const lenient = router(500, 60_000);
  await eventually('the replica is measured fresh', () => strict.route().to === 'replica' && lenient.route().to === 'replica');
  await cluster.stopPrimary();
  // No primary reading can be taken now: the replica's bound grows past maxLagMs.
  await eventually('reads go to the primary', () => strict.route().to === 'primary' && lenient.route().to === 'primary');
  await assert.rejects(strict.read(WHO), (error: Error & { code?: string }) => /ECONNREFUSED|CIRCUIT_OPEN|terminat|connect/i.test(`${error.code} ${error.message}`));
  const stale = await lenient.read<Who>(WHO);
  assert.equal(stale.rows[0]!.standby, true);
  const mark = degradation(stale);
  assert.equal(mark?.source, 'stale-replica');
  assert.ok(mark!.ageMs! >= 500 && mark!.ageMs! < 60_500, `age ${mark!.ageMs}`);
  console.log(`# primary down: stale answer from the replica, age bound ${Math.round(mark!.ageMs!)} ms`);
});
