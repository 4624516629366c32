import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import pg from 'pg';
import { eventually } from '../fetch/test/server.js';
import { MemoryIdempotencyStore } from '../idempotency/stores/memory-store.js';
import { migratePostgresIdempotency, PostgresIdempotencyStore } from '../idempotency/stores/postgres-store.js';
import { RedisIdempotencyStore } from '../idempotency/stores/redis-store.js';
import { migrateSqliteIdempotency, SqliteIdempotencyStore } from '../idempotency/stores/sqlite-store.js';
import type { IdempotencyStore } from '../idempotency/types.js';
import { IdempotencyProtection, type IdempotencyOutcomeEvent } from './core/idempotency.js';
import { ADAPTERS, startApp, type AppResult, type AppRoute, type RunningApp } from './test/apps.js';
import { post as postOrder, slowOrders } from './test/idempotency-app.js';

/**
 * Idempotency keys through every adapter with the real stores: a key stays held while its
 * handler runs past a 504, and the transactional path, where the handler writes its business
 * row and the completion in one database transaction (`request.idempotency.complete(...)`).
 */

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bw_idem_http_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: url, max: 8 });
const dir = mkdtempSync(join(tmpdir(), 'bulwark-idem-http-'));
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 1 });

const running: RunningApp[] = [];

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
  await Promise.all(running.map((app) => app.close()));
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await pool.end();
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

/** What a test asks of the handler for one request. */
interface Plan {
  /** Roll the transaction back after `complete` (the handler then throws). */
  rollBack?: boolean;
}

/** One database behind the same order-taking handler: the business insert and the completion in one transaction. */
interface Backend {
  name: string;
  store: IdempotencyStore;
  /** BEGIN, insert an order for `key`, complete, COMMIT (or roll back); the response. */
  order(run: NonNullable<import('./core/request-context.js').RequestContext['idempotency']>, plan: Plan): Promise<AppResult> | AppResult;
  orders(key: string): Promise<number>;
}

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

function sqliteBackend(kind: string): Backend {
  const db = new Database(join(dir, `${kind}.db`));
  db.pragma('journal_mode = WAL');
  migrateSqliteIdempotency(db);
  db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL, amount INTEGER NOT NULL)');
  const insert = db.prepare('INSERT INTO orders (idem_key, amount) VALUES (?, ?)');
  const count = db.prepare('SELECT count(*) AS n FROM orders WHERE idem_key = ?');
  return {
    name: 'sqlite',
    store: new SqliteIdempotencyStore({ database: db, sweepEveryMs: false }),
    order(run, plan) {
      return db.transaction(() => {
        const response = { status: 201, body: { id: Number(insert.run(run.key, 5).lastInsertRowid) } };
        run.complete(db, response);
        if (plan.rollBack) throw new Error('the payment provider said no');
        return response;
      })();
    },
    orders: async (key) => (count.get(key) as { n: number }).n,
  };
}

const principal = () => 'tenant-1';

async function orderApp(kind: (typeof ADAPTERS)[number], backend: Backend) {
  const plans = new Map<string, Plan>();
  const outcomes: IdempotencyOutcomeEvent[] = [];
  let runs = 0;
  // The handler completed inside its transaction: the adapter must not store the answer again.
  const store = backend.store;
  const storeComplete = store.complete.bind(store);
  let adapterCompletions = 0;
  store.complete = (input) => { adapterCompletions++; return storeComplete(input); };
  const protection = new IdempotencyProtection({ store, principal });
  protection.onOutcome((event) => outcomes.push(event));
  const routes: AppRoute[] = [{
    method: 'POST', path: '/orders', config: { name: 'orders' },
    handler: (request) => {
      runs++;
      const run = request!.idempotency!;
      return backend.order(run, plans.get(run.key) ?? {});
    },
  }];
  const app = await startApp(kind, routes, { idempotency: protection });
  running.push(app);
  const post = (key: string) => fetch(`${app.url}/orders`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: '{"amount":5}',
  });
  return { post, plans, outcomes, runs: () => runs, adapterCompletions: () => adapterCompletions };
}

for (const kind of ADAPTERS) {
  for (const makeBackend of [postgresBackend, () => sqliteBackend(kind)]) {
    const backend = makeBackend();
    describe(`${kind} + ${backend.name}: completion in the handler's transaction`, () => {
      test('the business row and the completion commit together; a duplicate replays the completed response', async () => {
        const { post, outcomes, runs, adapterCompletions } = await orderApp(kind, backend);
        const key = `order-${randomUUID()}`;
        const first = await post(key);
        assert.equal(first.status, 201);
        const created = await first.json() as { id: number };
        assert.equal(await backend.orders(key), 1);
        const duplicate = await post(key);
        assert.equal(duplicate.status, 201);
        assert.equal(duplicate.headers.get('idempotent-replayed'), 'true');
        assert.deepEqual(await duplicate.json(), created);
        assert.equal(runs(), 1);
        assert.equal(await backend.orders(key), 1);
        await eventually(() => outcomes.length > 0, 'the outcome');
        assert.deepEqual(outcomes.map((o) => [o.kind, o.status]), [['stored', 201]]);
        assert.equal(adapterCompletions(), 0, 'stored once, by the handler');
      });

      test('a transaction rolled back after complete: no row, no completion, the key is released and the retry runs', async () => {
        const { post, plans, outcomes, runs } = await orderApp(kind, backend);
        const key = `order-${randomUUID()}`;
        plans.set(key, { rollBack: true });
        const failed = await post(key);
        assert.equal(failed.status, 500);
        assert.equal(await backend.orders(key), 0);
        await eventually(() => outcomes.some((o) => o.kind === 'released'), 'the key to be released');
        plans.delete(key);
        const retry = await post(key);
        assert.equal(retry.status, 201);
        assert.equal(retry.headers.get('idempotent-replayed'), null);
        assert.equal(runs(), 2);
        assert.equal(await backend.orders(key), 1);
      });
    });
  }

  const stores: [string, () => IdempotencyStore][] = [
    ['postgres', () => new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false })],
    ['sqlite', () => new SqliteIdempotencyStore({ database: join(dir, `${kind}-deadline.db`), sweepEveryMs: false })],
    ['redis', () => new RedisIdempotencyStore({ client: redis, prefix: `bw:test:${randomUUID()}` })],
  ];
  for (const [name, makeStore] of stores) {
    test(`${kind} + ${name}: a 504 at the deadline leaves the key held until the handler settles; its result replays`, async () => {
      const slow = await slowOrders(kind, { store: makeStore() });
      running.push(slow.app);
      const { app, clock, outcomes, release, entered, state } = slow;
      const key = `deadline-${randomUUID()}`;
      const first = postOrder(app, key, '{"sku":"a"}', { 'x-request-timeout-ms': '200' });
      await entered.wait;
      await clock.advance(200);
      assert.equal((await first).status, 504);
      assert.equal((await postOrder(app, key, '{"sku":"a"}')).status, 409);
      release.open();
      await eventually(() => outcomes.some((o) => o.kind === 'stored'), 'the handler\'s result to be stored');
      const replay = await postOrder(app, key, '{"sku":"a"}');
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(await replay.json(), { order: 1 });
      assert.equal(state.runs, 1);
    });
  }

  test(`${kind}: complete() on the memory and Redis stores is a clear INVALID_INPUT error`, async () => {
    for (const store of [new MemoryIdempotencyStore(), new RedisIdempotencyStore({ client: redis, prefix: `bw:test:${randomUUID()}` })]) {
      const routes: AppRoute[] = [{
        method: 'POST', path: '/orders',
        handler: (request) => {
          try {
            request!.idempotency!.complete(undefined, { status: 201 });
            return { status: 201, body: 'completed?' };
          } catch (error) {
            return { status: 200, body: { code: (error as { code?: string }).code, message: (error as Error).message } };
          }
        },
      }];
      const app = await startApp(kind, routes, { idempotency: new IdempotencyProtection({ store, principal }) });
      running.push(app);
      const res = await fetch(`${app.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: '{}' });
      const answer = await res.json() as { code: string; message: string };
      assert.equal(answer.code, 'INVALID_INPUT', store.name);
      assert.match(answer.message, new RegExp(`the ${store.name} store cannot write a completion inside your transaction`));
    }
  });

  test(`${kind}: no key, no run: request.idempotency is undefined`, async () => {
    let seen: unknown = 'unset';
    const routes: AppRoute[] = [{ method: 'POST', path: '/orders', handler: (request) => { seen = request!.idempotency; return { status: 201 }; } }];
    const app = await startApp(kind, routes, { idempotency: new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal }) });
    running.push(app);
    assert.equal((await fetch(`${app.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 201);
    assert.equal(seen, undefined);
  });
}
