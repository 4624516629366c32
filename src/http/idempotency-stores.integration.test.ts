import { after, before } from 'node:test';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { migratePostgresIdempotency, PostgresIdempotencyStore } from '../idempotency/stores/postgres-store.js';
import { RedisIdempotencyStore } from '../idempotency/stores/redis-store.js';
import { ADAPTERS, type RunningApp } from './test/apps.js';
import { heldPastDeadlineTest, transactionalCompletionTests, transactionRefusedTest, type Backend } from './test/idempotency-store-cases.js';
import { requireService } from '../clients/test/support.js';

/**
 * Idempotency keys through every adapter with the stores behind a server (PostgreSQL, Redis):
 * the cases of test/idempotency-store-cases.ts. SQLite and memory: idempotency-stores.test.ts.
 */

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bw_idem_http_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: url, max: 8 });
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });

const running: RunningApp[] = [];

before(async () => {
  await requireService('PostgreSQL', url, () => pool.query(`CREATE SCHEMA ${schema}`));
  await migratePostgresIdempotency(pool, { schema });
  await pool.query(`CREATE TABLE ${schema}.orders (id serial PRIMARY KEY, idem_key text NOT NULL, amount int NOT NULL)`);
});

after(async () => {
  await Promise.all(running.map((app) => app.close()));
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await pool.end();
  redis.disconnect();
});

function postgresBackend(): Backend {
  const table = `${schema}.orders`;
  return {
    name: 'postgres',
    store: new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false }),
    async order(run, plan) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query(`INSERT INTO ${table} (idem_key, amount) VALUES ($1, $2) RETURNING id`, [run.key, 5]);
        const response = { status: 201, body: { id: rows[0].id as number } };
        await run.complete(client, response);
        if (plan.rollBack) throw new Error('the payment provider said no');
        await client.query('COMMIT');
        return response;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    },
    async orders(key) {
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE idem_key = $1`, [key]);
      return rows[0].n as number;
    },
  };
}

for (const kind of ADAPTERS) {
  transactionalCompletionTests(kind, postgresBackend(), running);
  heldPastDeadlineTest(kind, 'postgres', () => new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false }), running);
  heldPastDeadlineTest(kind, 'redis', () => new RedisIdempotencyStore({ client: redis, prefix: `bw:test:${randomUUID()}` }), running);
  transactionRefusedTest(kind, () => new RedisIdempotencyStore({ client: redis, prefix: `bw:test:${randomUUID()}` }), running);
}
