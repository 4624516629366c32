-- Bulwark idempotency records, SQLite (bulwark/sqlite, better-sqlite3).
-- Apply once, or call migrateSqliteIdempotency(db, { table }) which runs exactly this.
-- Recommended pragmas (set by the store when it opens the file itself):
--   PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
-- Times are epoch milliseconds from the store's clock. Columns as in idempotency-postgres.sql.

CREATE TABLE IF NOT EXISTS "bulwark_idempotency" (
  id               TEXT    PRIMARY KEY,
  fingerprint      TEXT    NOT NULL,
  state            TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed')),
  owner            TEXT    NOT NULL,
  fence            INTEGER NOT NULL,
  lease_expires_at INTEGER NOT NULL,
  response         TEXT,
  completed_at     INTEGER,
  steps            TEXT    NOT NULL DEFAULT '{}',
  created_at       INTEGER NOT NULL,
  expires_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "bulwark_idempotency_expires_at" ON "bulwark_idempotency" (expires_at);
