/**
 * The server the kill trials SIGKILL (see kill-trials.ts): one adapter (Fastify, Express or
 * node:http) with idempotency keys on one store, and `POST /effects` whose handler has a real
 * side effect, an `effects` row (key, run). Run with tsx, configured by the environment:
 *
 *   ADAPTER  fastify | express | node
 *   STORE    postgres | sqlite | redis | memory
 *   RUN      this incarnation's id (written into every effect row and answer)
 *   LEASE_MS the idempotency lease
 *   WORK_MS  handlers work up to this long (seeded by SEED and RUN) before their effect
 *   DATABASE_URL + SCHEMA   the effects table (and the PostgreSQL store's tables)
 *   SQLITE_PATH             the SQLite file (store and effects table) when STORE=sqlite
 *   REDIS_URL + PREFIX      the Redis store
 *
 * Every store sits behind the adapter's idempotency step. PostgreSQL and SQLite take the
 * transactional path: the handler writes the effect and, through `request.idempotency`, the
 * completion in one transaction, then sends that same response. Redis and memory take the
 * plain path: the effect commits on its own, then the adapter stores the handler's response
 * before sending it.
 *
 * Stdout, one JSON object a line (pipes are written synchronously on Linux, so every line
 * written before the kill reaches the driver):
 *   {"event":"listening","port":n}
 *   {"event":"handler","key":k}                 the handler started (the driver times kills from these)
 *   {"event":"effect","key":k,"id":n,"at":ms}   the effect committed (plain path)
 *   {"event":"stored","key":k,"at":ms}          the adapter reports the completion stored (its onOutcome)
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { seededRandom } from '../../core/random.js';
import { IdempotencyProtection, type IdempotentRun } from '../../http/core/idempotency.js';
import type { RequestContext } from '../../http/core/request-context.js';
import type { IdempotencyHttpResponse } from '../http.js';
import type { SqliteIdempotencyStore } from '../stores/sqlite-store.js';
import type { IdempotencyStore } from '../types.js';

export type TrialAdapter = 'fastify' | 'express' | 'node';
export type TrialStore = 'postgres' | 'sqlite' | 'redis' | 'memory';

/** What a fresh execution answers; a replay answers the same body. */
export interface EffectAnswer {
  key: string;
  run: string;
  effect: number;
}

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined || value === '') throw new Error(`trial server: ${name} is required`);
  return value;
};

const adapter = env('ADAPTER') as TrialAdapter;
const storeKind = env('STORE') as TrialStore;
const run = env('RUN');
const leaseMs = Number(env('LEASE_MS'));
const workMs = Number(env('WORK_MS'));
const random = seededRandom((Number(env('SEED')) ^ Math.imul(Number(run) + 1, 0x85ebca6b)) >>> 0);
const say = (message: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(message)}\n`);
};

const pool = new pg.Pool({ connectionString: env('DATABASE_URL'), max: 8 });
pool.on('error', () => {});
const schema = env('SCHEMA');

// Only what this server uses is imported: a restart is on the clock of every kill.
let store: IdempotencyStore;
if (storeKind === 'postgres') {
  const { PostgresIdempotencyStore } = await import('../stores/postgres-store.js');
  store = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
} else if (storeKind === 'sqlite') {
  const { SqliteIdempotencyStore } = await import('../stores/sqlite-store.js');
  store = new SqliteIdempotencyStore({ database: env('SQLITE_PATH'), sweepEveryMs: false });
} else if (storeKind === 'redis') {
  const [{ Redis }, { RedisIdempotencyStore }] = await Promise.all([import('ioredis'), import('../stores/redis-store.js')]);
  const redis = new Redis(env('REDIS_URL'), { maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  store = new RedisIdempotencyStore({ client: redis, prefix: env('PREFIX') });
} else if (storeKind === 'memory') {
  const { MemoryIdempotencyStore } = await import('../stores/memory-store.js');
  store = new MemoryIdempotencyStore();
} else {
  throw new Error(`trial server: unknown STORE ${String(storeKind)}`);
}

const transactional = storeKind === 'postgres' || storeKind === 'sqlite';
const protection = new IdempotencyProtection({ store, leaseMs, principal: () => 'trials' });
protection.onOutcome((event) => {
  if (event.kind === 'stored' && event.key !== undefined) say({ event: 'stored', key: event.key, at: Date.now() });
});

function answer(body: EffectAnswer): IdempotencyHttpResponse {
  return { status: 201, headers: { 'content-type': 'application/json' }, body };
}

/** The plain path's effect: one autocommitted INSERT; the adapter stores the answer after it. */
async function plainEffect(key: string): Promise<IdempotencyHttpResponse> {
  const { rows } = await pool.query(`INSERT INTO ${schema}.effects (idem_key, run) VALUES ($1, $2) RETURNING id`, [key, run]);
  const effect = Number(rows[0].id);
  say({ event: 'effect', key, id: effect, at: Date.now() });
  return answer({ key, run, effect });
}

/** The transactional path: the effect and the completion in one transaction, then that same answer. */
async function transactionalEffect(idempotency: IdempotentRun, key: string): Promise<IdempotencyHttpResponse> {
  if (storeKind === 'sqlite') {
    const db = (store as SqliteIdempotencyStore).db;
    return db.transaction(() => {
      const id = db.prepare('INSERT INTO effects (idem_key, run) VALUES (?, ?)').run(key, run).lastInsertRowid;
      const response = answer({ key, run, effect: Number(id) });
      void idempotency.complete(db, response); // synchronous with SQLite
      return response;
    }).immediate();
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows } = await client.query(`INSERT INTO ${schema}.effects (idem_key, run) VALUES ($1, $2) RETURNING id`, [key, run]);
    const response = answer({ key, run, effect: Number((rows[0] as { id: string }).id) });
    await idempotency.complete(client, response);
    await client.query('COMMIT');
    return response;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** Framework-neutral route: the key from the body, the response to send. */
async function handle(request: RequestContext | undefined, body: unknown): Promise<IdempotencyHttpResponse> {
  const key = (body as { key?: unknown } | undefined)?.key;
  if (typeof key !== 'string') return { status: 400, headers: {}, body: { error: 'body.key must be a string' } };
  say({ event: 'handler', key });
  await sleep(random() * workMs); // the work before the effect: a kill here must not repeat anything
  if (!transactional) return plainEffect(key);
  const idempotency = request?.idempotency;
  if (idempotency === undefined) throw new Error('trial server: no idempotent run for this request (no Idempotency-Key?)');
  return transactionalEffect(idempotency, key);
}

const wire = (response: IdempotencyHttpResponse): { status: number; headers: Record<string, string>; body: string } => ({
  status: response.status,
  headers: { 'content-type': 'application/json', ...response.headers },
  body: typeof response.body === 'string' ? response.body : JSON.stringify(response.body),
});

const options = { idempotency: protection };
let port: number;
if (adapter === 'fastify') {
  const [{ default: Fastify }, { fastifyBulwark }] = await Promise.all([import('fastify'), import('../../http/fastify.js')]);
  const app = Fastify({ logger: false });
  await app.register(fastifyBulwark, options);
  app.post('/effects', async (request, reply) => {
    const out = wire(await handle(request.bulwark ?? undefined, request.body));
    return reply.code(out.status).headers(out.headers).send(out.body);
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
} else {
  let server: Server;
  if (adapter === 'express') {
    const [{ default: express }, { bulwarkErrorHandler, bulwarkMiddleware }] = await Promise.all([import('express'), import('../../http/express.js')]);
    const app = express();
    app.use(bulwarkMiddleware(options));
    app.use(express.json());
    app.post('/effects', async (req, res, next) => {
      try {
        const out = wire(await handle(req.bulwark, req.body));
        res.status(out.status).set(out.headers).send(out.body);
      } catch (error) {
        next(error);
      }
    });
    app.use(bulwarkErrorHandler());
    server = createServer(app);
  } else if (adapter === 'node') {
    const { bulwarkHandler, readJson } = await import('../../http/node.js');
    server = createServer(bulwarkHandler(async (req, res, request) => {
      if (req.method !== 'POST' || req.url !== '/effects') {
        res.writeHead(404).end();
        return;
      }
      const out = wire(await handle(request, await readJson(req)));
      res.writeHead(out.status, out.headers).end(out.body);
    }, options));
  } else {
    throw new Error(`trial server: unknown ADAPTER ${String(adapter)}`);
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
}
say({ event: 'listening', port });
// The driver holds our stdin open; when it dies (a test timeout, ^C) so do we, instead of serving on as an orphan.
process.stdin.on('end', () => process.exit(1)).resume();
