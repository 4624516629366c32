// The PostgreSQL store's checks that need no database: the shipped SQL file and bad options.
// Against a real PostgreSQL: postgres-store.integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { PostgresIdempotencyStore, postgresIdempotencySchema, type IdempotencyPgPool } from './postgres-store.js';

/** A pool the store must not touch while it validates its options. */
const untouchedPool: IdempotencyPgPool = {
  query: () => assert.fail('no statement while validating options'),
  connect: () => assert.fail('no connection while validating options'),
};

test('postgres: the SQL file is the schema the migration creates', () => {
  const file = readFileSync(new URL('../../../sql/idempotency-postgres.sql', import.meta.url), 'utf8');
  assert.ok(file.includes(postgresIdempotencySchema()), 'sql/idempotency-postgres.sql contains postgresIdempotencySchema() verbatim');
  assert.throws(() => postgresIdempotencySchema({ table: 'x; DROP TABLE y' }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new PostgresIdempotencyStore({ pool: untouchedPool, schema: 'Bad-Name' }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new PostgresIdempotencyStore({ pool: untouchedPool, cancelTimeoutMs: -1 }), { code: 'INVALID_OPTIONS' });
});
