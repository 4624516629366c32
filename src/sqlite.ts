// Entry point `bulwark/sqlite`: embedded, durable stores on better-sqlite3.

// The idempotency store on SQLite, and its schema.
export {
  sqliteIdempotencyStore, SqliteIdempotencyStore, migrateSqliteIdempotency, sqliteIdempotencySchema,
  type SqliteIdempotencyStoreOptions, type SqliteTableOptions, type SqliteDatabase,
} from './idempotency/stores/sqlite-store.js';
