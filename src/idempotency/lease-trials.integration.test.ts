/**
 * Lease trials (see lease-trials.ts) on the stores behind a server, in real time: Redis (a
 * private durable redis-server SIGKILLed at random) and PostgreSQL (the store's connections
 * killed at random). One answer per key; one effect per key where the effect commits with the
 * completion (PostgreSQL). The in-process stores: lease-trials.test.ts. The full run:
 *   IDEMPOTENCY_LEASE_TRIALS=1000 node --import tsx --test --test-timeout=0 src/idempotency/lease-trials*.test.ts
 * A failure prints the seed; IDEMPOTENCY_SEED=<seed> reruns the same random decisions, and
 * IDEMPOTENCY_SEED=random draws a new seed.
 */
import { after, test } from 'node:test';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Redis } from 'ioredis';
import { systemClock } from '../core/clock.js';
import { StoreUnavailableError, hasCode } from '../core/errors.js';
import { IdempotencyEngine } from './engine.js';
import { defaultStoreGuard } from './store-guard.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency } from './stores/postgres-store.js';
import { RedisIdempotencyStore } from './stores/redis-store.js';
import { CrashedInside, runIdempotencyTrials, type TrialKit } from './lease-trials.js';
import type { IdempotencyStore } from './types.js';
import { checkTrials, completingKit, trialCount, trialOptions } from './test/lease-trial-kits.js';
import { PrivateRedis } from '../../test/support/private-redis.js';
import { requireService } from '../clients/test/support.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => { for (const fn of cleanup.reverse()) await fn(); });

test('lease trials: Redis store, one answer per key that survives the redis-server being SIGKILLed (private durable server)', async () => {
  const server = new PrivateRedis(0, { durable: true });
  cleanup.push(() => server.stop());
  await server.start();
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 20 });
  redis.on('error', () => {});
  cleanup.push(() => redis.disconnect());
  const store = new RedisIdempotencyStore({ client: redis, prefix: `trials:${randomUUID().slice(0, 8)}` });
  const engines = Array.from({ length: 3 }, () => new IdempotencyEngine({
    store, leaseMs: 300, renewEveryMs: false, guard: defaultStoreGuard(store, { timeoutMs: 500, openMs: 100 }),
  }));
  const kit = completingKit('redis', { clock: systemClock, engine: (n) => engines[n]!, restart: () => server.restart() });
  checkTrials(await runIdempotencyTrials(kit, trialOptions(trialCount(60), 300, { restartEveryMs: 1_500 })));
});

test('lease trials: PostgreSQL store, one answer and one effect per key (transactional effects; the store\'s connections are killed at random)', async () => {
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `bw_trials_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
  const application = `bulwark-trials-${randomUUID().slice(0, 8)}`;
  const admin = new pg.Pool({ connectionString: url, max: 2 });
  await requireService('PostgreSQL', url, () => admin.query(`CREATE SCHEMA ${schema}`));
  cleanup.push(async () => { await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`); await admin.end(); });
  await migratePostgresIdempotency(admin, { schema });
  await admin.query(`CREATE TABLE ${schema}.effects (idem_key text NOT NULL, body text NOT NULL)`);
  const pool = new pg.Pool({ connectionString: url, max: 6, application_name: application });
  pool.on('error', () => {}); // idle connections killed by the "restarts"
  cleanup.push(() => pool.end());
  const store: IdempotencyStore & PostgresIdempotencyStore = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engines = Array.from({ length: 3 }, () => new IdempotencyEngine({
    store, leaseMs: 400, renewEveryMs: false, guard: defaultStoreGuard(store, { timeoutMs: 1_000, openMs: 100 }),
  }));
  const kit: TrialKit = {
    name: 'postgres',
    clock: systemClock,
    engine: (n) => engines[n]!,
    async commit(_engine, lease, key, body, crashInside) {
      try {
        await store.transaction(lease, async (client) => {
          await client.query(`INSERT INTO ${schema}.effects (idem_key, body) VALUES ($1, $2)`, [key, body]);
          if (crashInside) throw new CrashedInside(); // rolled back, as when the process dies
          return { status: 201, body };
        });
      } catch (error) {
        if (error instanceof CrashedInside || hasCode(error, 'LEASE_LOST')) throw error;
        throw new StoreUnavailableError('postgres', error);
      }
    },
    effects: async (key) => (await admin.query(`SELECT body FROM ${schema}.effects WHERE idem_key = $1`, [key])).rows.map((r) => r.body as string),
    async restart() {
      // Only this test's own connections: the shared server is never touched.
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [application]);
    },
  };
  checkTrials(await runIdempotencyTrials(kit, trialOptions(trialCount(60), 400, { restartEveryMs: 1_500 })));
});
