-- Bulwark idempotency records, PostgreSQL (bulwark/postgres).
-- Apply at deploy time, or call migratePostgresIdempotency(pool, { schema, table }) which runs
-- exactly this (with your schema/table names). The store never creates tables implicitly.
--
-- state:            'in_progress' (a lease: owner token + lease_expires_at) or 'completed'.
-- owner:            the fencing token of the current lease owner; '' after a release.
-- fence:            1 for the first owner, +1 for each takeover of an expired lease.
-- lease_expires_at: the only lease expiry (database clock); NULL once completed.
-- response:         the stored response (JSON text written by the engine).
-- steps:            saved step results of multi-step operations, {"name": "<json>"}.
-- expires_at:       when the record may be deleted (created/completed + TTL); swept by sweep().
--
-- Housekeeping: PostgresIdempotencyStore deletes expired rows every minute (sweepEveryMs);
-- or run: DELETE FROM bulwark_idempotency WHERE expires_at <= now();

CREATE TABLE IF NOT EXISTS "bulwark_idempotency" (
  id               text        PRIMARY KEY,
  fingerprint      text        NOT NULL,
  state            text        NOT NULL CHECK (state IN ('in_progress', 'completed')),
  owner            text        NOT NULL,
  fence            integer     NOT NULL,
  lease_expires_at timestamptz,
  response         text,
  completed_at     timestamptz,
  steps            jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at       timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS "bulwark_idempotency_expires_at" ON "bulwark_idempotency" (expires_at);
