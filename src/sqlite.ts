// Entry point `bulwark/sqlite`: embedded, durable stores on better-sqlite3.
export * from './idempotency/stores/sqlite-store.js';
