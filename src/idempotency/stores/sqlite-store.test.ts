import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { VirtualClock } from '../../core/clock.js';
import { idempotencyStoreContract } from '../contract.js';
import { IdempotencyEngine } from '../engine.js';
import { SqliteIdempotencyStore, migrateSqliteIdempotency, sqliteIdempotencySchema } from './sqlite-store.js';

const dir = mkdtempSync(join(tmpdir(), 'bulwark-idem-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

idempotencyStoreContract('sqlite (file, WAL)', async () => {
  const clock = new VirtualClock(1_700_000_000_000);
  const store = new SqliteIdempotencyStore({ database: join(dir, 'contract.db'), clock });
  assert.equal(store.db.pragma('journal_mode', { simple: true }), 'wal');
  return { store, clock, leaseMs: 30_000, elapse: (ms) => clock.advance(ms), close: () => store.close() };
});

idempotencyStoreContract('sqlite (your own :memory: database)', async () => {
  const clock = new VirtualClock(1_700_000_000_000);
  const db = new Database(':memory:');
  migrateSqliteIdempotency(db, { table: 'my_idem' });
  const store = new SqliteIdempotencyStore({ database: db, table: 'my_idem', clock, sweepEveryMs: false });
  return { store, clock, leaseMs: 30_000, elapse: (ms) => clock.advance(ms), close: async () => { await store.close(); db.close(); } };
});

test('sqlite: a database without the table is an INVALID_OPTIONS error that says how to create it', () => {
  const db = new Database(':memory:');
  assert.throws(() => new SqliteIdempotencyStore({ database: db }), (e: any) => e.code === 'INVALID_OPTIONS' && /migrateSqliteIdempotency/.test(e.message));
  db.close();
});

test('sqlite: the SQL file is the schema the migration creates', () => {
  const file = readFileSync(new URL('../../../sql/idempotency-sqlite.sql', import.meta.url), 'utf8');
  assert.ok(file.includes(sqliteIdempotencySchema()));
  assert.throws(() => sqliteIdempotencySchema({ table: 'a"b' }), { code: 'INVALID_OPTIONS' });
});

test('sqlite: completed records survive a restart (reopening the file)', async () => {
  const path = join(dir, 'durable.db');
  const clock = new VirtualClock(1_700_000_000_000);
  const before = new SqliteIdempotencyStore({ database: path, clock });
  const engine = new IdempotencyEngine({ store: before, clock, renewEveryMs: false });
  const scope = { principal: 'p', method: 'POST', route: '/r', key: 'k' };
  const first = await engine.claim(scope, 'fp');
  if (first.kind === 'new') await first.lease.complete({ status: 201, body: { id: 1 } });
  await before.close();
  const reopened = new SqliteIdempotencyStore({ database: path, clock });
  const replay = await new IdempotencyEngine({ store: reopened, clock }).claim(scope, 'fp');
  assert.equal(replay.kind, 'completed');
  assert.deepEqual(replay.kind === 'completed' && replay.response.body, { id: 1 });
  await reopened.close();
});

test('sqlite: transactional completion commits with the business write, or neither does', async () => {
  const clock = new VirtualClock(1_700_000_000_000);
  const store = new SqliteIdempotencyStore({ database: join(dir, 'tx.db'), clock, sweepEveryMs: false });
  store.db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, idem_key TEXT NOT NULL)');
  const engine = new IdempotencyEngine({ store, clock, renewEveryMs: false, leaseMs: 1000 });
  const scope = { principal: 'p', method: 'POST', route: '/orders', key: 'k1' };
  const count = () => (store.db.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n;

  const slow = await engine.claim(scope, 'fp');
  await clock.advance(1001);
  const fast = await engine.claim(scope, 'fp');
  if (slow.kind !== 'new' || fast.kind !== 'new') throw new Error('expected two leases');
  store.transaction(fast.lease, (db) => {
    db.prepare('INSERT INTO orders (idem_key) VALUES (?)').run('k1');
    return { status: 201, body: 'fast' };
  });
  assert.throws(() => store.transaction(slow.lease, (db) => {
    db.prepare('INSERT INTO orders (idem_key) VALUES (?)').run('k1');
    return { status: 201, body: 'slow' };
  }), { code: 'LEASE_LOST' });
  assert.equal(count(), 1, 'the fenced-off worker\'s insert was rolled back');
  assert.equal(slow.lease.status, 'lost');
  assert.equal(fast.lease.status, 'completed');
  assert.throws(() => store.completeInTransaction(fast.lease, { body: 1 }), { code: 'LEASE_LOST' });
  await store.close();
});

test('sqlite: completeWithin takes only the store\'s own Database (another cannot share the transaction)', async () => {
  const store = new SqliteIdempotencyStore({ database: ':memory:', sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, renewEveryMs: false });
  const claimed = await engine.claim({ principal: 'p', method: 'POST', route: '/orders', key: 'k' }, 'fp');
  if (claimed.kind !== 'new') throw new Error('expected a lease');
  const other = new Database(':memory:');
  assert.throws(() => other.transaction(() => store.completeWithin(other, claimed.lease, { status: 201 }))(), { code: 'INVALID_INPUT' });
  // Outside a transaction is a wrong call too, not a wrong store configuration.
  assert.throws(() => store.completeInTransaction(claimed.lease, { status: 201 }), { code: 'INVALID_INPUT' });
  store.db.transaction(() => store.completeWithin(store.db, claimed.lease, { status: 201, body: 'ok' }))();
  assert.equal((await store.inspect(claimed.lease.id))?.state, 'completed');
  other.close();
  await store.close();
});

test('sqlite: the periodic sweep uses one unref\'d timer and removes expired rows', async () => {
  const clock = new VirtualClock(0);
  const store = new SqliteIdempotencyStore({ database: ':memory:', clock, sweepEveryMs: 1000 });
  assert.equal(clock.pendingTimers, 1);
  for (let i = 0; i < 3; i++) await store.claim({ id: `r${i}`, fingerprint: 'f', owner: 'o', leaseMs: 10, ttlMs: 500 });
  await clock.advance(1000);
  assert.equal((store.db.prepare('SELECT count(*) AS n FROM bulwark_idempotency').get() as { n: number }).n, 0);
  assert.equal(clock.pendingTimers, 1, 're-armed');
  await store.close();
  assert.equal(clock.pendingTimers, 0, 'close stops it');
});
