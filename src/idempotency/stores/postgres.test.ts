import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { systemClock } from '../../core/clock.js';
import { idempotencyStoreContract } from '../contract.js';
import { IdempotencyEngine } from '../engine.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency, postgresIdempotencySchema, type PgQueryable } from './postgres.js';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bw_idem_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: url, max: 8 });

before(async () => {
  try {
    await pool.query(`CREATE SCHEMA ${schema}`);
  } catch (error) {
    throw new Error(`PostgreSQL is required at ${url} (set DATABASE_URL): ${(error as Error).message}`, { cause: error });
  }
  await migratePostgresIdempotency(pool, { schema });
  await pool.query(`CREATE TABLE ${schema}.orders (id serial PRIMARY KEY, idem_key text NOT NULL, amount int NOT NULL)`);
});

after(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await pool.end();
});

idempotencyStoreContract('postgres', async () => ({
  store: new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false }),
  clock: systemClock,
  leaseMs: 400,
  elapse: (ms) => sleep(ms),
  close: async () => {},
}));

test('postgres: the SQL file is the schema the migration creates', () => {
  const file = readFileSync(new URL('../../../sql/idempotency-postgres.sql', import.meta.url), 'utf8');
  assert.ok(file.includes(postgresIdempotencySchema()), 'sql/idempotency-postgres.sql contains postgresIdempotencySchema() verbatim');
  assert.throws(() => postgresIdempotencySchema({ table: 'x; DROP TABLE y' }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new PostgresIdempotencyStore({ pool, schema: 'Bad-Name' }), { code: 'INVALID_OPTIONS' });
});

test('postgres: migrate is explicit and idempotent', async () => {
  await migratePostgresIdempotency(pool, { schema });
  await migratePostgresIdempotency(pool, { schema, table: 'second_table' });
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`, [schema]);
  assert.equal(rows[0].n, 3);
});

/** Counts statements sent to the database. */
function countingPool(): { pool: typeof pool; calls: () => number } {
  let n = 0;
  const proxy = new Proxy(pool, {
    get(target, prop, receiver) {
      if (prop === 'query') return (...args: unknown[]) => { n++; return (target.query as (...a: unknown[]) => unknown).apply(target, args); };
      return Reflect.get(target, prop, receiver);
    },
  });
  return { pool: proxy, calls: () => n };
}

test('postgres: a first request costs 2 round trips (claim, complete), a replay 1', async () => {
  const counted = countingPool();
  const store = new PostgresIdempotencyStore({ pool: counted.pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const scope = { principal: 'p', method: 'POST', route: '/rt', key: randomUUID() };
  const first = await engine.claim(scope, 'fp');
  assert.equal(first.kind, 'new');
  if (first.kind === 'new') await first.lease.complete({ body: 1 });
  assert.equal(counted.calls(), 2);
  assert.equal((await engine.claim(scope, 'fp')).kind, 'completed');
  assert.equal(counted.calls(), 3);
});

test('postgres: the completion commits with the business write, or neither does', async () => {
  const store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const key = randomUUID();
  const scope = { principal: 'p', method: 'POST', route: '/orders', key };
  const effects = async () => (await pool.query(`SELECT count(*)::int AS n FROM ${schema}.orders WHERE idem_key = $1`, [key])).rows[0].n as number;

  // The business write fails after the insert: both roll back, the key can be retried.
  const first = await engine.claim(scope, 'fp');
  assert.equal(first.kind, 'new');
  if (first.kind !== 'new') return;
  await assert.rejects(store.transaction(first.lease, async (client: PgQueryable) => {
    await client.query(`INSERT INTO ${schema}.orders (idem_key, amount) VALUES ($1, 10)`, [key]);
    throw new Error('payment declined');
  }), /payment declined/);
  assert.equal(await effects(), 0);
  assert.equal((await store.inspect(first.lease.id))?.state, 'in_progress');
  await first.lease.release();

  const second = await engine.claim(scope, 'fp');
  assert.equal(second.kind, 'new');
  if (second.kind !== 'new') return;
  const response = await store.transaction(second.lease, async (client) => {
    const { rows } = await client.query(`INSERT INTO ${schema}.orders (idem_key, amount) VALUES ($1, 10) RETURNING id`, [key]);
    return { status: 201, body: { orderId: rows[0].id } };
  });
  assert.equal(second.lease.status, 'completed');
  assert.equal(engine.inFlight, 0);
  await second.lease.complete(response); // a no-op now
  assert.equal(await effects(), 1);
  const replay = await engine.claim(scope, 'fp');
  assert.deepEqual(replay.kind === 'completed' && replay.response.body, response.body);
});

test('postgres: a worker whose lease was taken over cannot commit its effect (LEASE_LOST rolls it back)', async () => {
  const store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false, leaseMs: 300 });
  const key = randomUUID();
  const scope = { principal: 'p', method: 'POST', route: '/orders', key };
  const slow = await engine.claim(scope, 'fp');
  assert.equal(slow.kind, 'new');
  await sleep(400);
  const fast = await engine.claim(scope, 'fp');
  assert.equal(fast.kind, 'new');
  if (slow.kind !== 'new' || fast.kind !== 'new') return;
  await store.transaction(fast.lease, async (client) => {
    await client.query(`INSERT INTO ${schema}.orders (idem_key, amount) VALUES ($1, 1)`, [key]);
    return { status: 201, body: 'fast' };
  });
  await assert.rejects(store.transaction(slow.lease, async (client) => {
    await client.query(`INSERT INTO ${schema}.orders (idem_key, amount) VALUES ($1, 1)`, [key]);
    return { status: 201, body: 'slow' };
  }), { code: 'LEASE_LOST' });
  assert.equal(slow.lease.status, 'lost', 'the fenced-off lease is marked lost (renewal stops, its signal aborts)');
  assert.equal(slow.lease.signal.aborted, true);
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${schema}.orders WHERE idem_key = $1`, [key]);
  assert.equal(rows[0].n, 1, 'exactly one effect');
});

test('postgres: sweep deletes expired records in batches', async () => {
  const store = new PostgresIdempotencyStore({ pool, schema, table: 'second_table', sweepEveryMs: false, sweepBatch: 2 });
  for (let i = 0; i < 5; i++) await store.claim({ id: `sw-${i}`, fingerprint: 'f', owner: 'o', leaseMs: 50, ttlMs: 50 });
  await store.claim({ id: 'sw-live', fingerprint: 'f', owner: 'o', leaseMs: 60_000, ttlMs: 60_000 });
  await sleep(120);
  assert.equal(await store.sweep(), 5);
  const { rows } = await pool.query(`SELECT id FROM ${schema}.second_table`);
  assert.deepEqual(rows.map((r) => r.id), ['sw-live']);
});

test('postgres: completeWithin needs the pg client the transaction runs on', async () => {
  const store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const claimed = await engine.claim({ principal: 'p', method: 'POST', route: '/within', key: randomUUID() }, 'fp');
  if (claimed.kind !== 'new') throw new Error('expected a lease');
  await assert.rejects(store.completeWithin(undefined, claimed.lease, { status: 201 }), { code: 'INVALID_OPTIONS' });
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await store.completeWithin(client, claimed.lease, { status: 201, body: 'ok' });
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  assert.equal((await store.inspect(claimed.lease.id))?.state, 'completed');
  await engine.release(claimed.lease); // still active locally: the release is fenced off by the completed record
  assert.equal((await store.inspect(claimed.lease.id))?.state, 'completed');
});
