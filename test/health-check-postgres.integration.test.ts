/**
 * A PostgreSQL readiness check as the health-check guide writes it: through guardPool, whose
 * query takes the check's signal and cancels the statement on the server when the check times
 * out. pg's own pool.query has no signal option and lets the statement run on.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { healthChecks } from '../src/http/core/health.js';
import { guardPool } from '../src/clients/guarded-postgres.js';
import { DATABASE_URL, eventually, requireService } from '../src/clients/test/support.js';

const tag = randomUUID();
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 1 });
after(async () => {
  await admin.query(`SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%probe-${tag}%' AND pid <> pg_backend_pid()`).catch(() => {});
  await pool.end();
  await admin.end();
});

/** Backends still running the probe statement marked with `marker`. */
async function running(marker: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1 AND pid <> pg_backend_pid()`,
    [`%${marker}%`],
  );
  return rows[0]!.n;
}

test('a readiness check through guardPool cancels its statement on the server at the check timeout', async () => {
  await requireService('PostgreSQL', DATABASE_URL, () => admin.query('SELECT 1'));
  const db = guardPool(pool, { name: 'db', timeoutMs: 5000 });
  const marker = `probe-${tag}-guarded`;
  const health = healthChecks({ checks: { db: { check: (signal) => db.query(`SELECT pg_sleep(5), '${marker}'`, [], { signal }), timeoutMs: 300 } } });
  const started = Date.now();
  const report = await health.ready();
  assert.equal(report.status, 503);
  assert.ok(Date.now() - started < 2000, 'the check answers at its timeout');
  await eventually('the probe statement is cancelled on the server', async () => (await running(marker)) === 0, 3000);
});

test('pg pool.query ignores a signal: the timed-out probe keeps running on the server', async () => {
  await requireService('PostgreSQL', DATABASE_URL, () => admin.query('SELECT 1'));
  const marker = `probe-${tag}-plain`;
  const health = healthChecks({ checks: { db: { check: (signal) => pool.query({ text: `SELECT pg_sleep(5), '${marker}'`, signal } as pg.QueryConfig), timeoutMs: 300 } } });
  const report = await health.ready();
  assert.equal(report.status, 503);
  assert.equal(await running(marker), 1, 'still running after the check gave up');
});
