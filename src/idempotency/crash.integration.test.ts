/**
 * Crash tests with real processes: a worker is SIGKILLed in the middle of its handler. After
 * the lease expires, a retry runs the handler once more; exactly one effect is committed
 * (PostgreSQL: the effect and the completion share a transaction); a late completion with the
 * dead owner's token is rejected. Real time and real I/O, generous bounds.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Redis } from 'ioredis';
import { IdempotencyEngine, type Lease } from './engine.js';
import type { IdempotencyScope, IdempotencyStore } from './types.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency } from './stores/postgres-store.js';
import { RedisIdempotencyStore } from './stores/redis-store.js';
import { DATABASE_URL, requireService } from '../clients/test/support.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const schema = `bw_crash_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
const prefix = `test:idem-crash:${randomUUID().slice(0, 8)}`;
const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 4 });
const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
const worker = fileURLToPath(new URL('./test/crash-worker.ts', import.meta.url));
const LEASE_MS = 500;

before(async () => {
  await requireService('PostgreSQL', DATABASE_URL, () => pool.query(`CREATE SCHEMA ${schema}`));
  await migratePostgresIdempotency(pool, { schema });
  await pool.query(`CREATE TABLE ${schema}.effects (id serial PRIMARY KEY, idem_key text NOT NULL, worker text NOT NULL)`);
  try {
    await redis.connect();
  } catch (error) {
    throw new Error(`Redis is required at ${REDIS_URL} (set REDIS_URL): ${(error as Error).message}`, { cause: error });
  }
});

after(async () => {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
  await pool.end();
  const keys = await redis.keys(`${prefix}*`).catch(() => [] as string[]);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

interface InHandler { id: string; owner: string; fence: number }

/**
 * The dead worker's lease as it held it (its owner token and fence), granted by an engine whose
 * claim answers as the store did for the dead worker; every other call goes to the real store.
 */
async function zombieLease(store: IdempotencyStore, dead: InHandler, scope: IdempotencyScope): Promise<Lease> {
  const replaying: IdempotencyStore = {
    name: store.name,
    remote: store.remote,
    claim: async () => ({ kind: 'acquired', fence: dead.fence, takeover: false, leaseExpiresAt: Infinity, steps: {} }),
    complete: (input, signal) => store.complete(input, signal),
    release: (input, signal) => store.release(input, signal),
    renew: (input, signal) => store.renew(input, signal),
    saveStep: (input, signal) => store.saveStep(input, signal),
    inspect: (id) => store.inspect(id),
  };
  const outcome = await new IdempotencyEngine({ store: replaying, renewEveryMs: false, newOwnerToken: () => dead.owner }).claim(scope, 'fingerprint-1');
  assert.ok(outcome.kind === 'new' && outcome.lease.id === dead.id && outcome.lease.owner === dead.owner);
  return outcome.lease;
}

/**
 * Starts the worker, waits until it is inside its handler, SIGKILLs it. `claimedAt`: when the
 * worker began its claim, the earliest its lease can have started (the time this process reads
 * the worker's line can be much later on a loaded machine, so it is no bound).
 */
async function crashWorker(env: Record<string, string>): Promise<{ dead: InHandler; claimedAt: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', worker], {
    env: { ...process.env, ...env, LEASE_MS: String(LEASE_MS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, signal) => resolve(signal)));
  const lines = createInterface({ input: child.stdout! });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  try {
    for await (const line of lines) {
      const message = JSON.parse(line) as { event: string; claimingAt: number } & InHandler;
      if (message.event !== 'in-handler') throw new Error(`worker said ${line}`);
      child.kill('SIGKILL');
      assert.equal(await exited, 'SIGKILL');
      return { dead: { id: message.id, owner: message.owner, fence: message.fence }, claimedAt: message.claimingAt };
    }
    throw new Error('worker exited before reaching its handler');
  } finally {
    clearTimeout(timer);
    lines.close();
  }
}

/** Retries like a client would until the key can be run (the dead worker's lease expired). */
async function retryUntilRun(engine: IdempotencyEngine, key: string): Promise<{ lease: Lease; conflicts: number }> {
  let conflicts = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const outcome = await engine.claim({ principal: 'crash-test', method: 'POST', route: '/orders', key }, 'fingerprint-1');
    if (outcome.kind === 'new') return { lease: outcome.lease, conflicts };
    assert.equal(outcome.kind, 'in-progress');
    conflicts++;
    await sleep(50);
  }
  throw new Error('the dead worker\'s lease never expired');
}

test('PostgreSQL: a SIGKILLed worker\'s request is retried once after its lease expires; exactly one effect; its late completion is rejected', async () => {
  const key = randomUUID();
  const { dead, claimedAt } = await crashWorker({ STORE: 'postgres', DATABASE_URL, SCHEMA: schema, KEY: key });
  const store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  const engine = new IdempotencyEngine({ store, leaseMs: 5_000 });
  const countEffects = async () => (await pool.query(`SELECT worker FROM ${schema}.effects WHERE idem_key = $1`, [key])).rows.map((r) => r.worker as string);

  const { lease, conflicts } = await retryUntilRun(engine, key);
  assert.ok(Date.now() - claimedAt >= LEASE_MS - 10, 'no takeover before the lease ran out');
  assert.ok(conflicts >= 1 || Date.now() - claimedAt >= LEASE_MS, 'duplicates during the lease were refused');
  assert.equal(lease.takeover, true);
  assert.equal(lease.fence, dead.fence + 1);
  assert.deepEqual(await countEffects(), [], 'the dead worker\'s uncommitted effect vanished with it');

  await store.transaction(lease, async (client) => {
    await client.query(`INSERT INTO ${schema}.effects (idem_key, worker) VALUES ($1, 'retry')`, [key]);
    return { status: 201, body: { order: 'retry' } };
  });

  // The dead owner's late completion (its token, its lease object) is fenced off.
  assert.equal(await store.complete({ id: dead.id, owner: dead.owner, response: '{}', ttlMs: 60_000 }), false);
  const zombie = await zombieLease(store, dead, lease.scope);
  await assert.rejects(store.transaction(zombie, async (client) => {
    await client.query(`INSERT INTO ${schema}.effects (idem_key, worker) VALUES ($1, 'zombie')`, [key]);
    return { status: 201, body: { order: 'zombie' } };
  }), { code: 'LEASE_LOST' });

  assert.deepEqual(await countEffects(), ['retry'], 'exactly one effect');
  const replay = await engine.claim(lease.scope, 'fingerprint-1');
  assert.deepEqual(replay.kind === 'completed' && replay.response.body, { order: 'retry' });
});

test('Redis: a SIGKILLed worker\'s lease expires on the server clock; the retry takes over; the dead owner is fenced off', async () => {
  const key = randomUUID();
  const { dead, claimedAt } = await crashWorker({ STORE: 'redis', REDIS_URL, PREFIX: prefix, KEY: key });
  const store = new RedisIdempotencyStore({ client: redis, prefix });
  const engine = new IdempotencyEngine({ store, leaseMs: 5_000 });
  const { lease } = await retryUntilRun(engine, key);
  assert.ok(Date.now() - claimedAt >= LEASE_MS - 10, 'no takeover before the lease ran out');
  assert.equal(lease.fence, dead.fence + 1);
  assert.equal(await store.complete({ id: dead.id, owner: dead.owner, response: '{}', ttlMs: 60_000 }), false);
  assert.equal(await store.saveStep({ id: dead.id, owner: dead.owner, name: 'x', value: '{}' }), false);
  await lease.complete({ status: 201, body: 'retry' });
  const zombie = await zombieLease(store, dead, lease.scope);
  await assert.rejects(zombie.complete({ body: 'zombie' }), { code: 'LEASE_LOST' });
  const replay = await engine.claim(lease.scope, 'fingerprint-1');
  assert.equal(replay.kind === 'completed' && replay.response.body, 'retry');
});
