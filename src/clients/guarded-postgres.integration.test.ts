// Guarded pg Pool against the real PostgreSQL (DATABASE_URL). Every test uses its own pools
// inside one random schema, dropped at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { seededRandom } from '../core/random.js';
import { guardPool, type QueryCancelEvent } from './guarded-postgres.js';
import { DATABASE_URL, eventually, requireService } from './test/support.js';

const schema = `bw_clients_${randomUUID().replaceAll('-', '')}`;
const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 3 });
const pools: pg.Pool[] = [];

function newPool(max: number): pg.Pool {
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max, options: `-c search_path=${schema}` });
  pool.on('error', () => {}); // a backend we terminate on purpose must not crash the test process
  pools.push(pool);
  return pool;
}

/** Backends (other than ours) whose current statement contains `marker`, with their state. */
async function backendsRunning(marker: string): Promise<Array<{ pid: number; state: string }>> {
  const { rows } = await admin.query(
    'SELECT pid, state FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND position($1 in query) > 0',
    [marker],
  );
  return rows as Array<{ pid: number; state: string }>;
}

/**
 * Waits until no backend runs `marker`. pg_stat_activity is each backend's own report, written
 * after it has sent its answer, so a cancelled statement can still read 'active' for a moment
 * after its client saw the error; the wait stays far below the 10 s the statement would run.
 */
async function stopsRunning(marker: string): Promise<void> {
  await eventually(`no backend runs ${marker}`, async () => (await backendsRunning(marker)).every((b) => b.state !== 'active'));
}

before(async () => {
  await requireService('PostgreSQL', DATABASE_URL, () => admin.query('SELECT 1'));
  await admin.query(`CREATE SCHEMA ${schema}`);
});

after(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => {})));
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await admin.end();
});

test('a query blocked by pg_sleep times out with TIMEOUT and is cancelled on the server', async () => {
  const pool = newPool(2);
  const db = guardPool(pool, { name: 'sleepy', timeoutMs: 300 });
  const cancels: QueryCancelEvent[] = [];
  db.onCancel((e) => cancels.push(e));
  const marker = `m_${randomUUID().slice(0, 8)}`;

  const started = Date.now();
  await assert.rejects(db.query(`SELECT pg_sleep(10) /* ${marker} */`), (error: any) => {
    assert.equal(error.code, 'TIMEOUT');
    assert.equal(error.abandoned, false, 'the statement really ended');
    assert.equal(error.cause?.code, '57014', 'the server reported "canceling statement due to user request"');
    return true;
  });
  const elapsed = Date.now() - started;
  // Never before the 300 ms timeout; the upper bound only tells the cancel from pg_sleep(10) ending.
  assert.ok(elapsed >= 290 && elapsed < 5000, `timed out after ${elapsed} ms`);

  // The call ended once the cancel request had completed, so its event came first.
  assert.equal(cancels.length, 1);
  assert.equal(cancels[0]!.method, 'request');
  assert.equal(cancels[0]!.reason, 'timeout');
  assert.equal(cancels[0]!.ok, true);
  assert.equal(typeof cancels[0]!.pid, 'number');
  // The statement stops on the server (pg's query_timeout would leave it running for 10 s); the
  // connection was discarded (no cancel can leak onto the next statement), and its backend exits.
  await stopsRunning(marker);
  await eventually('the cancelled backend exits', async () => (await backendsRunning(marker)).length === 0);
  const stats = db.stats();
  assert.equal(stats.cancels.requested, 1);
  assert.equal(stats.connectionsDiscarded, 1);
  assert.equal(stats.bulkhead.active, 0);
  assert.equal(stats.breaker.failures, 1, 'a timeout is a breaker failure');

  // The pool still works.
  const { rows } = await db.query<{ n: number }>('SELECT 1 AS n');
  assert.equal(rows[0]!.n, 1);
});

test('the breaker opens after the configured timeouts, then fails fast without touching the pool', async () => {
  const pool = newPool(3);
  let checkouts = 0;
  const counting = { options: pool.options, connect: () => { checkouts++; return pool.connect(); } };
  const db = guardPool(counting, { name: 'flaky', timeoutMs: 150, breaker: { openMs: 60_000 } });
  const threshold = 5; // the breaker default: 5 consecutive failures
  for (let i = 0; i < threshold; i++) {
    await assert.rejects(db.query('SELECT pg_sleep(5)'), { code: 'TIMEOUT' });
  }
  assert.equal(db.breaker.state.kind, 'open');
  assert.equal(checkouts, threshold);

  const started = Date.now();
  await assert.rejects(db.query('SELECT 1'), (error: any) => error.code === 'CIRCUIT_OPEN' && error.retryAfterMs > 0);
  const rejectedAfter = Date.now() - started;
  assert.ok(rejectedAfter < 100, `rejected without waiting (took ${rejectedAfter} ms)`);
  assert.equal(checkouts, threshold, 'no connection was checked out while open');
  assert.equal(db.stats().cancels.requested, threshold);
});

test('the request path keeps serving while the background pool is saturated', async () => {
  // Two pools, two guards: separate connections, bulkheads and breakers (docs/adr/0003).
  const requestPath = guardPool(newPool(4), { name: 'db-request-path', timeoutMs: 1000 });
  const background = guardPool(newPool(2), { name: 'db-background', timeoutMs: 8000, bulkhead: { maxConcurrent: 2, maxQueue: 2, queueTimeoutMs: 5000 } });
  await requestPath.query('SELECT 1'); // warm one connection, as a running service would have

  const stop = new AbortController();
  const marker = `bg_${randomUUID().slice(0, 8)}`;
  const jobs = Array.from({ length: 4 }, () => background.query(`SELECT pg_sleep(6) /* ${marker} */`, [], { signal: stop.signal, priority: 'low' }));
  const jobOutcomes = Promise.allSettled(jobs);
  await eventually('both background connections are busy in pg_sleep', async () => (await backendsRunning(marker)).filter((b) => b.state === 'active').length === 2);
  assert.equal(background.stats().bulkhead.active, 2);
  assert.equal(background.stats().bulkhead.queued, 2);
  // A fifth job is turned away at once: the background queue is full.
  await assert.rejects(background.query('SELECT 1', [], { priority: 'low' }), { code: 'BULKHEAD_FULL' });

  const latencies: number[] = [];
  for (let i = 0; i < 20; i++) {
    const started = Date.now();
    const { rows } = await requestPath.query<{ ok: number }>('SELECT $1::int AS ok', [i]);
    latencies.push(Date.now() - started);
    assert.equal(rows[0]!.ok, i);
  }
  const worst = Math.max(...latencies);
  assert.ok(worst < 500, `request path stayed fast (worst ${worst} ms)`);
  assert.equal(requestPath.stats().bulkhead.rejected, 0);
  assert.equal(requestPath.breaker.state.kind, 'closed');

  // Shutting the jobs down: the running sleepers are cancelled on the server, the queued ones leave the queue.
  stop.abort(new Error('shutting down background jobs'));
  const results = await jobOutcomes;
  // Running or queued, every job ends the same way: ABORTED, the shutdown reason as cause.
  assert.deepEqual(
    results.map((r) => (r.status === 'rejected' ? `${(r.reason as any).code}: ${(r.reason as any).cause?.message}` : 'ok')),
    Array(4).fill('ABORTED: shutting down background jobs'),
  );
  assert.equal(background.breaker.stats().failures, 0, 'a caller abort does not count against the database');
  assert.equal(background.stats().cancels.requested, 2);
});

test('a unique violation (23505) is the caller\'s fault: not a breaker failure and never retried', async () => {
  await admin.query(`CREATE TABLE ${schema}.users (email text PRIMARY KEY)`);
  const db = guardPool(newPool(2), { name: 'users', timeoutMs: 2000, breaker: { openMs: 60_000 }, random: seededRandom(1) });
  let retries = 0;
  db.retry!.onRetry(() => retries++);
  await db.query('INSERT INTO users (email) VALUES ($1)', ['a@example.com']);
  for (let i = 0; i < 6; i++) {
    await assert.rejects(
      db.query('INSERT INTO users (email) VALUES ($1)', ['a@example.com'], { safe: true }),
      (error: any) => error.code === '23505' && error.constraint === 'users_pkey',
    );
  }
  assert.equal(retries, 0);
  const breaker = db.breaker.stats();
  assert.equal(breaker.state, 'closed', 'six duplicates do not open a breaker that trips on five failures');
  assert.equal(breaker.failures, 0);
  assert.equal(breaker.successes, 7);
  // Syntax errors (42601) are the caller's too.
  await assert.rejects(db.query('SELEC 1', [], { safe: true }), { code: '42601' });
  assert.equal(db.breaker.stats().failures, 0);
  assert.equal(retries, 0);
});

test('a safe read is retried after its backend is terminated (57P01); an unmarked one is not', async () => {
  await admin.query(`CREATE SEQUENCE ${schema}.attempts`);
  const db = guardPool(newPool(2), { name: 'reads', timeoutMs: 5000, random: seededRandom(7), retry: { backoff: { kind: 'constant', baseDelayMs: 10, jitter: 'none' } } });
  const retried: unknown[] = [];
  db.retry!.onRetry((e) => retried.push(e.error));
  const marker = `r_${randomUUID().slice(0, 8)}`;
  // The first attempt sleeps (and gets killed); later attempts answer at once.
  const read = (options?: { safe?: boolean }) => db.query<{ v: string }>(
    `SELECT CASE WHEN nextval('attempts') = 1 THEN (SELECT 'slow' FROM pg_sleep(5)) ELSE 'ok' END AS v /* ${marker} */`,
    [],
    options,
  );
  const killer = async (): Promise<void> => {
    await eventually('the first attempt is running', async () => (await backendsRunning(marker)).some((b) => b.state === 'active'));
    const [victim] = (await backendsRunning(marker)).filter((b) => b.state === 'active');
    await admin.query('SELECT pg_terminate_backend($1)', [victim!.pid]);
  };

  const [result] = await Promise.all([read({ safe: true }), killer()]);
  assert.equal(result.rows[0]!.v, 'ok');
  assert.equal(retried.length, 1);
  assert.equal((retried[0] as any).code, '57P01', 'terminating connection due to administrator command');
  assert.equal(db.breaker.stats().failures, 1, 'an admin shutdown counts against the database');

  // Without `safe`, the same failure surfaces unchanged.
  await admin.query(`SELECT setval('${schema}.attempts', 1, false)`);
  const [unsafe] = await Promise.allSettled([read(), killer()]);
  assert.equal(unsafe.status, 'rejected');
  assert.equal(((unsafe as PromiseRejectedResult).reason as any).code, '57P01');
  assert.equal(retried.length, 1);
});

test('withClient / transaction: a timeout cancels the statement, rolls back, and the connection is never reused', async () => {
  await admin.query(`CREATE TABLE ${schema}.ledger (id serial PRIMARY KEY, amount int NOT NULL)`);
  const pool = newPool(2);
  const db = guardPool(pool, { name: 'ledger', timeoutMs: 400 });
  const marker = `t_${randomUUID().slice(0, 8)}`;
  let pid = 0;
  await assert.rejects(
    db.transaction(async (client) => {
      pid = (await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      await client.query('INSERT INTO ledger (amount) VALUES (100)');
      await client.query(`SELECT pg_sleep(10) /* ${marker} */`);
    }),
    { code: 'TIMEOUT' },
  );
  assert.ok(pid > 0, 'the transaction ran on a backend');
  await stopsRunning(marker);
  const { rows } = await admin.query(`SELECT count(*)::int AS n FROM ${schema}.ledger`);
  assert.equal(rows[0].n, 0, 'the insert was rolled back');
  await eventually('the connection is discarded', async () => {
    const r = await admin.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
    return r.rows[0].n === 0;
  });
  assert.equal(db.stats().bulkhead.active, 0);

  // A callback that returns with a transaction still open does not poison the pool.
  await db.withClient(async (client) => { await client.query('BEGIN'); });
  assert.equal(db.stats().connectionsDiscarded, 2);
  const committed = await db.transaction(async (client) => (await client.query('INSERT INTO ledger (amount) VALUES (5) RETURNING amount')).rows[0].amount);
  assert.equal(committed, 5);
  // A business exception rolls back; it is not the database's failure and the connection is reused.
  const failuresBefore = db.breaker.stats().failures;
  await assert.rejects(db.transaction(async (client) => {
    await client.query('INSERT INTO ledger (amount) VALUES (-1000)');
    throw new Error('insufficient funds');
  }), /insufficient funds/);
  assert.equal(db.breaker.stats().failures, failuresBefore);
  assert.equal(db.stats().connectionsDiscarded, 2);
  const after = await db.query('SELECT sum(amount)::int AS total FROM ledger');
  assert.equal(after.rows[0].total, 5);
  assert.equal(pool.totalCount - pool.idleCount, 0, 'every connection is back in the pool');
});

test('the caller aborting cancels the statement, and the abort is not held against the database', async () => {
  const db = guardPool(newPool(2), { name: 'abortable', timeoutMs: 5000 });
  const cancels: QueryCancelEvent[] = [];
  db.onCancel((e) => cancels.push(e));
  const marker = `a_${randomUUID().slice(0, 8)}`;
  const caller = new AbortController();
  const running = db.query(`SELECT pg_sleep(10) /* ${marker} */`, [], { signal: caller.signal });
  await eventually('the statement is running', async () => (await backendsRunning(marker)).some((b) => b.state === 'active'));
  const started = Date.now();
  caller.abort(new Error('client went away'));
  await assert.rejects(running, /client went away/);
  const cancelledAfter = Date.now() - started;
  assert.ok(cancelledAfter < 1000, `the abort ended the call in ${cancelledAfter} ms`);
  // The call ends after the CancelRequest has completed: the server has signalled the backend.
  assert.deepEqual(cancels.map((e) => [e.method, e.reason, e.ok]), [['request', 'aborted', true]]);
  await stopsRunning(marker);
  const breaker = db.breaker.stats();
  assert.equal(breaker.failures, 0);
  assert.equal(breaker.ignored, 1);
});
