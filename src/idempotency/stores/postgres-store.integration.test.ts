import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { systemClock } from '../../core/clock.js';
import { guardPool } from '../../clients/guarded-postgres.js';
import { eventually, freePort, requireService } from '../../clients/test/support.js';
import { idempotencyStoreContract } from '../contract.js';
import { IdempotencyEngine } from '../engine.js';
import { recordId } from '../scope.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency, type PgQueryable } from './postgres-store.js';

const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `bw_idem_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const pool = new pg.Pool({ connectionString: url, max: 8 });

before(async () => {
  await requireService('PostgreSQL', url, () => pool.query(`CREATE SCHEMA ${schema}`));
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

test('postgres: migrate is explicit and idempotent', async () => {
  await migratePostgresIdempotency(pool, { schema });
  await migratePostgresIdempotency(pool, { schema, table: 'second_table' });
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`, [schema]);
  assert.equal(rows[0].n, 3);
});

/**
 * `target` seen through a proxy: `override(prop, value)` may replace a property or method
 * (methods come bound to `target`, so pg's internals keep working).
 */
function overriding<T extends object>(target: T, override: (prop: string | symbol, value: unknown) => unknown): T {
  return new Proxy(target, {
    get(object, prop) {
      const value = Reflect.get(object, prop) as unknown;
      return override(prop, typeof value === 'function' ? value.bind(object) : value);
    },
  });
}

type ConnectCallback = (error: unknown, client: object | undefined, done: unknown) => void;

/** `target` whose callback-form `connect` hands out `wrap(client)` instead of each client. */
function wrappingClients(target: pg.Pool, wrap: (client: object) => object): pg.Pool {
  return overriding(target, (prop, value) => (prop !== 'connect' ? value : (callback: ConnectCallback) =>
    (value as (cb: ConnectCallback) => void)((error, client, done) => callback(error, client && wrap(client), done))));
}

/** Counts statements sent to the database, on the pool and on the connections it hands out. */
function countingPool(target: pg.Pool = pool): { pool: pg.Pool; calls: () => number } {
  let n = 0;
  const counting = <T extends object>(object: T): T => overriding(object, (prop, value) => (prop !== 'query' ? value : (...args: unknown[]) => {
    n++;
    return (value as (...a: unknown[]) => unknown)(...args);
  }));
  return { pool: counting(wrappingClients(target, counting)), calls: () => n };
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

/**
 * A second connection holding `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` inside an open
 * transaction: every statement on the table waits for it. `unlock()` commits.
 */
async function lockTable(table: string): Promise<{ unlock: () => Promise<void> }> {
  const locker = new pg.Client({ connectionString: url });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query(`LOCK TABLE ${schema}.${table} IN ACCESS EXCLUSIVE MODE`);
  return {
    unlock: async () => {
      await locker.query('COMMIT');
      await locker.end();
    },
  };
}

/** Backends other than ours waiting for a lock on `table`. */
async function waitingOn(table: string): Promise<number> {
  const { rows } = await pool.query(
    `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
     JOIN pg_namespace s ON s.oid = c.relnamespace
     WHERE NOT l.granted AND s.nspname = $1 AND c.relname = $2`,
    [schema, table],
  );
  return rows[0].n as number;
}

test('postgres: a claim that timed out behind a lock is cancelled, so it leaves no record and the retry runs', async () => {
  const table = 'locked_claim';
  await migratePostgresIdempotency(pool, { schema, table });
  const store = new PostgresIdempotencyStore({ pool, schema, table, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false, storeTimeoutMs: 300 });
  const scope = { principal: 'p', method: 'POST', route: '/orders', key: randomUUID() };

  const lock = await lockTable(table);
  try {
    await assert.rejects(engine.claim(scope, 'fp'), (error: any) => error.code === 'STORE_UNAVAILABLE' && error.cause?.code === 'TIMEOUT');
  } finally {
    await lock.unlock(); // the caller has its 503 by now
  }
  // A claim still queued behind the lock would commit now.
  await eventually('nothing waits on the table', async () => (await waitingOn(table)) === 0);
  await sleep(100);

  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${schema}.${table}`);
  assert.equal(rows[0].n, 0, 'the abandoned claim left no record');
  const retry = await engine.claim(scope, 'fp');
  assert.equal(retry.kind, 'new', 'the retry runs instead of getting 409 for the whole lease');
});

test('postgres: store calls that time out give their connections back, so a shared pool keeps serving other queries', async () => {
  const table = 'locked_pool';
  await migratePostgresIdempotency(pool, { schema, table });
  const small = new pg.Pool({ connectionString: url, max: 2 });
  small.on('error', () => {});
  const db = guardPool(small, { name: 'shared', timeoutMs: 1000, retry: false });
  const store = new PostgresIdempotencyStore({ pool: small, schema, table, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false, storeTimeoutMs: 300 });
  const lock = await lockTable(table);
  try {
    // As many claims as the pool has connections, all stuck behind the lock until the bound fires.
    const claims = [1, 2].map(() => engine.claim({ principal: 'p', method: 'POST', route: '/orders', key: randomUUID() }, 'fp'));
    for (const claim of claims) await assert.rejects(claim, { code: 'STORE_UNAVAILABLE' });
    // An unrelated query on the same pool, while the idempotency table is still locked.
    const { rows } = await db.query<{ n: number }>('SELECT 1 AS n');
    assert.equal(rows[0]!.n, 1);
    assert.equal(await waitingOn(table), 0, 'the timed-out statements were cancelled on the server');
  } finally {
    await lock.unlock();
    await small.end();
  }
});

test('postgres: a call that times out while waiting for a connection runs nothing, and the connection goes back unused', async () => {
  const single = new pg.Pool({ connectionString: url, max: 1 });
  single.on('error', () => {});
  const counted = countingPool(single);
  const store = new PostgresIdempotencyStore({ pool: counted.pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false, storeTimeoutMs: 200 });
  const scope = { principal: 'p', method: 'POST', route: '/orders', key: randomUUID() };
  try {
    const busy = await single.connect(); // the pool's only connection
    try {
      await assert.rejects(engine.claim(scope, 'fp'), (error: any) => error.code === 'STORE_UNAVAILABLE' && error.cause?.code === 'TIMEOUT');
    } finally {
      busy.release();
    }
    await eventually('the connection is back in the pool', () => single.idleCount === 1 && single.waitingCount === 0);
    await sleep(50);
    assert.equal(counted.calls(), 0, 'the claim never ran');
    assert.equal(await store.inspect(recordId(scope)), undefined);
    assert.equal((await engine.claim(scope, 'fp')).kind, 'new');
  } finally {
    await single.end();
  }
});

test('postgres: a cancel that fails or misses still frees the connection (closed, at the latest after cancelTimeoutMs)', async () => {
  const table = 'locked_uncancellable';
  await migratePostgresIdempotency(pool, { schema, table });
  const closedPort = await freePort();
  const misdirections: Array<[string, string, unknown]> = [
    ['sent to a port where nothing listens (the cancel fails)', 'port', closedPort],
    ['for a backend that does not exist (the server ignores it)', 'processID', 0x7ffffff0],
  ];
  for (const [what, prop, value] of misdirections) {
    const single = new pg.Pool({ connectionString: url, max: 1 });
    single.on('error', () => {});
    const misdirected = wrappingClients(single, (client) => overriding(client, (p, v) => (p === prop ? value : v)));
    const store = new PostgresIdempotencyStore({ pool: misdirected, schema, table, sweepEveryMs: false, cancelTimeoutMs: 200 });
    const engine = new IdempotencyEngine({ store, renewEveryMs: false, storeTimeoutMs: 200 });
    const lock = await lockTable(table);
    try {
      await assert.rejects(engine.claim({ principal: 'p', method: 'POST', route: '/orders', key: randomUUID() }, 'fp'), { code: 'STORE_UNAVAILABLE' });
      const { rows } = await guardPool(single, { name: 'other-queries', timeoutMs: 1500, retry: false }).query<{ n: number }>('SELECT 1 AS n');
      assert.equal(rows[0]!.n, 1, `a cancel ${what}: the pool's only connection came back`);
    } finally {
      await lock.unlock();
      await single.end();
    }
  }
});

test('postgres: completeWithin needs the pg client the transaction runs on', async () => {
  const store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const claimed = await engine.claim({ principal: 'p', method: 'POST', route: '/within', key: randomUUID() }, 'fp');
  if (claimed.kind !== 'new') throw new Error('expected a lease');
  await assert.rejects(store.completeWithin(undefined, claimed.lease, { status: 201 }), { code: 'INVALID_INPUT' });
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
