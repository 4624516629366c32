// Entry point `bulwark/postgres`: PostgreSQL integrations (the application brings its own `pg` Pool).

// A pg Pool guarded by a resilience pipeline, with server-side query cancellation.
export {
  guardPool, GuardedPool,
  type GuardPoolOptions, type GuardedPoolStats, type TransactionOptions, type CancelMode, type QueryCancelEvent,
  type PgClientLike, type PgPoolLike,
} from './clients/guarded-postgres.js';
export { isPostgresFailure, isPostgresTransient, sqlStateOf, TRANSIENT_SQLSTATES } from './clients/postgres-errors.js';
export type { GuardOptions, GuardBulkheadOptions, GuardedCallOptions } from './clients/dependency-pipeline.js';

// The idempotency store on PostgreSQL, and its schema.
export {
  postgresIdempotencyStore, PostgresIdempotencyStore, migratePostgresIdempotency, postgresIdempotencySchema,
  type PostgresIdempotencyStoreOptions, type PostgresTableOptions, type IdempotencyPgPool, type PgQueryable,
  type PgPoolClientLike,
} from './idempotency/stores/postgres-store.js';

// Reads routed to streaming replicas: bounded staleness and read-your-writes sessions.
export {
  replicaRouter, ReplicaRouter, ReadSession, parseWalPosition, formatWalPosition,
  type ReplicaRouterOptions, type ReadTarget, type RoutedReadOptions, type ReadRoute, type ReplicaStats,
  type ReplicaRouterStats, type ProbeErrorEvent,
} from './clients/replica-router.js';
