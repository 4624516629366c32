// Entry point `bulwark/postgres`: PostgreSQL integrations (the user brings their own `pg` Pool).
export * from './clients/guarded-postgres.js';
export * from './idempotency/stores/postgres-store.js';
export * from './clients/replica-router.js';
