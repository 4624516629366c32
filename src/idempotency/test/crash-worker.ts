/**
 * A worker for the crash tests: claims an idempotency key, starts its effect, reports
 * "in-handler" on stdout and then hangs until the test SIGKILLs it.
 *   STORE=postgres: the effect is an INSERT inside an open transaction (never committed).
 *   STORE=redis:    the effect is only started (the point is the lease and fencing).
 * Env: KEY, LEASE_MS, DATABASE_URL + SCHEMA (postgres) or REDIS_URL + PREFIX (redis).
 */
import pg from 'pg';
import { Redis } from 'ioredis';
import { IdempotencyEngine } from '../engine.js';
import { PostgresIdempotencyStore, type PgQueryable } from '../stores/postgres-store.js';
import { RedisIdempotencyStore } from '../stores/redis-store.js';
import type { IdempotencyStore } from '../types.js';

const key = process.env.KEY!;
const leaseMs = Number(process.env.LEASE_MS);
const scope = { principal: 'crash-test', method: 'POST', route: '/orders', key };

let store: IdempotencyStore;
let begin: () => Promise<void>;
if (process.env.STORE === 'postgres') {
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 2 });
  const schema = process.env.SCHEMA!;
  store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  begin = async () => {
    const client: PgQueryable = await pool.connect();
    await client.query('BEGIN');
    await client.query(`INSERT INTO ${schema}.effects (idem_key, worker) VALUES ($1, 'crashed')`, [key]);
  };
} else {
  const redis = new Redis(process.env.REDIS_URL!);
  store = new RedisIdempotencyStore({ client: redis, prefix: process.env.PREFIX! });
  begin = async () => {};
}

// Renewal on, as in production: the lease lives while this process does, and not after.
const engine = new IdempotencyEngine({ store, leaseMs, renewEveryMs: leaseMs / 3 });
// The lease starts during the claim, so no earlier than this (same host clock as the store's).
const claimingAt = Date.now();
const outcome = await engine.claim(scope, 'fingerprint-1');
if (outcome.kind !== 'new') {
  process.stdout.write(`${JSON.stringify({ event: 'unexpected', outcome: outcome.kind })}\n`);
  process.exit(1);
}
await begin();
process.stdout.write(`${JSON.stringify({ event: 'in-handler', id: outcome.lease.id, owner: outcome.lease.owner, fence: outcome.lease.fence, claimingAt })}\n`);
setInterval(() => {}, 1_000); // hang "mid-handler" until killed
