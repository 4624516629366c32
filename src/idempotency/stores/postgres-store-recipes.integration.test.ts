/**
 * The application-side recipes of docs/patterns/idempotency.md ("What idempotency keys do not
 * guarantee: recipes in PostgreSQL"), run against a real PostgreSQL (DATABASE_URL) in a schema
 * of their own: the idempotency key protects one request from being repeated; the business
 * facts need their own constraints.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { guardPool } from '../../clients/guarded-postgres.js';
import { idempotencyHttp, type IdempotencyHttpResponse } from '../http.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency } from './postgres-store.js';
import { requireService } from '../../clients/test/support.js';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bw_recipes_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: url, max: 4 });
const db = guardPool(pool, { name: 'recipes', retry: { maxAttempts: 3 } });

before(async () => {
  await requireService('PostgreSQL', url, () => pool.query(`CREATE SCHEMA ${schema}`));
  await migratePostgresIdempotency(pool, { schema });
  await pool.query(`
    CREATE TABLE ${schema}.bookings (
      id serial PRIMARY KEY, show_id int NOT NULL, seat text NOT NULL, customer text NOT NULL,
      UNIQUE (show_id, seat))`);
  await pool.query(`
    CREATE TABLE ${schema}.payments (
      id serial PRIMARY KEY, idempotency_key text NOT NULL UNIQUE, amount int NOT NULL)`);
  await pool.query(`
    CREATE TABLE ${schema}.accounts (id int PRIMARY KEY, balance int NOT NULL, version int NOT NULL)`);
});

after(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await pool.end();
});

const uniqueViolation = (error: unknown): boolean => (error as { code?: unknown }).code === '23505';

test('two different keys book the same seat: the second fails on the unique constraint (23505), is not retried, answers 409 and its key is released', async () => {
  const idem = idempotencyHttp({ store: new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false }) });
  let retries = 0;
  db.retry!.onRetry(() => retries++);
  let attempts = 0;
  let handlerRuns = 0;

  const book = (key: string, customer: string): Promise<IdempotencyHttpResponse> => idem.handle({
    method: 'POST', path: '/shows/7/seats/A12', route: '/shows/:id/seats/:seat',
    headers: { 'idempotency-key': key }, body: { seat: 'A12' }, principal: customer,
  }, async () => {
    handlerRuns++;
    try {
      // `safe`: the whole transaction may be replayed after a transient failure (never after 23505).
      const id = await db.transaction(async (client) => {
        attempts++;
        const { rows } = await client.query(
          `INSERT INTO ${schema}.bookings (show_id, seat, customer) VALUES (7, 'A12', $1) RETURNING id`, [customer]);
        return rows[0].id as number;
      }, { safe: true });
      return { status: 201, headers: {}, body: { booking: id } };
    } catch (error) {
      // The business constraint, not the idempotency key, says no: a final answer for this seat.
      if (uniqueViolation(error)) return { status: 409, headers: {}, body: { code: 'SEAT_TAKEN' } };
      throw error;
    }
  });

  const first = await book('key-alice', 'alice');
  assert.equal(first.status, 201);
  const second = await book('key-bob', 'bob');
  assert.equal(second.status, 409);
  assert.deepEqual(second.body, { code: 'SEAT_TAKEN' });
  assert.equal(attempts, 2, 'one attempt each: 23505 is the caller\'s fault, never retried');
  assert.equal(retries, 0);

  // 409 is not a stored status (it means "conflict, try later"): bob's key is released, so his
  // retry runs again and meets the same constraint; alice's 201 is stored and replayed.
  const bobAgain = await book('key-bob', 'bob');
  assert.equal(bobAgain.status, 409);
  assert.equal(bobAgain.headers['idempotent-replayed'], undefined, 'not a replay: the handler ran again');
  const aliceAgain = await book('key-alice', 'alice');
  assert.equal(aliceAgain.status, 201);
  assert.equal(aliceAgain.headers['idempotent-replayed'], 'true');
  assert.deepEqual(aliceAgain.body, first.body);
  assert.equal(handlerRuns, 3, 'alice once, bob twice');
  const { rows } = await pool.query(`SELECT customer FROM ${schema}.bookings WHERE show_id = 7 AND seat = 'A12'`);
  assert.deepEqual(rows, [{ customer: 'alice' }], 'one booking for the seat');
});

test('a duplicate upsert (INSERT … ON CONFLICT (idempotency_key) DO NOTHING) inserts no row; the first row answers both', async () => {
  const pay = async (key: string, amount: number): Promise<{ id: number; inserted: boolean }> => {
    const inserted = await db.query(
      `INSERT INTO ${schema}.payments (idempotency_key, amount) VALUES ($1, $2)
       ON CONFLICT (idempotency_key) DO NOTHING RETURNING id`, [key, amount], { safe: true });
    if (inserted.rowCount === 1) return { id: inserted.rows[0].id, inserted: true };
    const existing = await db.query(`SELECT id FROM ${schema}.payments WHERE idempotency_key = $1`, [key], { safe: true });
    return { id: existing.rows[0].id, inserted: false };
  };
  const first = await pay('pay-1', 100);
  const duplicate = await pay('pay-1', 100);
  assert.equal(first.inserted, true);
  assert.equal(duplicate.inserted, false, 'rowCount 0: no row inserted');
  assert.equal(duplicate.id, first.id);
  const { rows } = await pool.query(`SELECT count(*)::int AS n, sum(amount)::int AS total FROM ${schema}.payments WHERE idempotency_key = 'pay-1'`);
  assert.deepEqual(rows, [{ n: 1, total: 100 }]);
});

test('an optimistic UPDATE … WHERE version = $v affects 1 row, then 0 rows the second time (stale version)', async () => {
  await pool.query(`INSERT INTO ${schema}.accounts (id, balance, version) VALUES (1, 500, 3)`);
  const debit = (amount: number, version: number) => db.query(
    `UPDATE ${schema}.accounts SET balance = balance - $1, version = version + 1 WHERE id = 1 AND version = $2`,
    [amount, version], { safe: true });
  const read = await db.query(`SELECT balance, version FROM ${schema}.accounts WHERE id = 1`);
  assert.deepEqual(read.rows, [{ balance: 500, version: 3 }]);
  assert.equal((await debit(200, 3)).rowCount, 1);
  assert.equal((await debit(200, 3)).rowCount, 0, 'the repeat carries the version it read: 0 rows, no second debit');
  const { rows } = await pool.query(`SELECT balance, version FROM ${schema}.accounts WHERE id = 1`);
  assert.deepEqual(rows, [{ balance: 300, version: 4 }]);
});
