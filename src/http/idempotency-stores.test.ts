import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MemoryIdempotencyStore } from '../idempotency/stores/memory-store.js';
import { migrateSqliteIdempotency, SqliteIdempotencyStore } from '../idempotency/stores/sqlite-store.js';
import { IdempotencyProtection } from './core/idempotency.js';
import { ADAPTERS, startApp, type AppRoute, type RunningApp } from './test/apps.js';
import { heldPastDeadlineTest, singleTenant, transactionalCompletionTests, transactionRefusedTest, type Backend } from './test/idempotency-store-cases.js';

/**
 * Idempotency keys through every adapter with the in-process stores (SQLite, memory): the cases
 * of test/idempotency-store-cases.ts, and what the request's idempotency handle refuses.
 * PostgreSQL and Redis: idempotency-stores.integration.test.ts.
 */

const dir = mkdtempSync(join(tmpdir(), 'bulwark-idem-http-'));
const running: RunningApp[] = [];

after(async () => {
  await Promise.all(running.map((app) => app.close()));
  rmSync(dir, { recursive: true, force: true });
});

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

for (const kind of ADAPTERS) {
  transactionalCompletionTests(kind, sqliteBackend(kind), running);
  heldPastDeadlineTest(kind, 'sqlite', () => new SqliteIdempotencyStore({ database: join(dir, `${kind}-deadline.db`), sweepEveryMs: false }), running);

  transactionRefusedTest(kind, () => new MemoryIdempotencyStore(), running);

  test(`${kind}: no key, no run: request.idempotency is undefined`, async () => {
    let seen: unknown = 'unset';
    const routes: AppRoute[] = [{ method: 'POST', path: '/orders', handler: (request) => { seen = request!.idempotency; return { status: 201 }; } }];
    const app = await startApp(kind, routes, { idempotency: new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal: singleTenant }) });
    running.push(app);
    assert.equal((await fetch(`${app.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 201);
    assert.equal(seen, undefined);
  });
}
