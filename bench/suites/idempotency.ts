/**
 * Idempotency keys: cost of a first request (claim + run + store the response) and of a
 * replay, per store, next to @node-idempotency/core. Both go through their HTTP-level API
 * (key header, body fingerprint, store): Bulwark `begin` + `finish`, node-idempotency
 * `onRequest` + `onResponse`. `storeCalls` counts store round trips per request,
 * `cpuUsPerOp` this process's CPU per request (user + system, node-redis, sockets and GC
 * included) and `redisCpuUsPerOp`, when the Redis server runs on this machine, its main thread's.
 * `pairedRatio` (Bulwark rows): Bulwark's time over the competitor's, block pair by block pair,
 * median (< 1: Bulwark faster) — the comparison to read on a noisy machine.
 *
 * @node-idempotency's storage adapters are separate packages that are not installed here; the
 * suite implements its published `StorageAdapter` interface the way its memory and Redis
 * adapters do (a Map with expiry; node-redis SET NX PX / GET / SET PX). Both Redis
 * implementations use the same node-redis client.
 *
 *   npm run bench -- idempotency [--json] [--quick]
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createClient } from 'redis';
import { Idempotency } from '@node-idempotency/core';
import type { StorageAdapter } from '@node-idempotency/storage';
import { nsPerOp, type BenchContext } from '../harness.js';
import { IdempotencyHttp, type IdempotentRequest } from '../../src/idempotency/http.js';
import { MemoryIdempotencyStore } from '../../src/idempotency/stores/memory-store.js';
import { RedisIdempotencyStore } from '../../src/idempotency/stores/redis-store.js';
import { PostgresIdempotencyStore, migratePostgresIdempotency } from '../../src/idempotency/stores/postgres-store.js';
import { SqliteIdempotencyStore } from '../../src/idempotency/stores/sqlite-store.js';
import type { IdempotencyStore } from '../../src/idempotency/types.js';

const BODY = { amount: 100, currency: 'EUR', customer: 'cus_123', description: 'order #42' };
const RESPONSE = { status: 201, headers: { 'content-type': 'application/json' }, body: { id: 'ord_1', status: 'created' } };

export type RedisClient = ReturnType<typeof createClient>;

/** Counts store operations (each is one round trip for Redis and PostgreSQL). */
function counted(store: IdempotencyStore): { store: IdempotencyStore; calls: () => number } {
  let n = 0;
  const wrap = <K extends 'claim' | 'complete' | 'release' | 'renew' | 'saveStep'>(name: K) => {
    const fn = store[name].bind(store) as (input: never, signal?: AbortSignal) => Promise<unknown>;
    return ((input: never, signal?: AbortSignal) => { n++; return fn(input, signal); }) as IdempotencyStore[K];
  };
  return {
    store: {
      name: store.name, remote: store.remote, cancellable: store.cancellable, inspect: (id) => store.inspect(id),
      claim: wrap('claim'), complete: wrap('complete'), release: wrap('release'), renew: wrap('renew'), saveStep: wrap('saveStep'),
    },
    calls: () => n,
  };
}

/** @node-idempotency's StorageAdapter over a Map, as its memory adapter does it. */
class MapStorage implements StorageAdapter {
  readonly #items = new Map<string, { value: string; expiresAt: number | undefined }>();
  calls = 0;
  async setIfNotExists(key: string, value: string, { ttl }: { ttl?: number } = {}): Promise<boolean> {
    this.calls++;
    if (this.#items.get(key)) return false;
    this.#items.set(key, { value, expiresAt: ttl === undefined ? undefined : Date.now() + ttl });
    return true;
  }
  async set(key: string, value: string, { ttl }: { ttl?: number }): Promise<void> {
    this.calls++;
    this.#items.set(key, { value, expiresAt: ttl === undefined ? undefined : Date.now() + ttl });
  }
  async get(key: string): Promise<string | undefined> {
    this.calls++;
    const item = this.#items.get(key);
    if (item?.expiresAt !== undefined && Date.now() > item.expiresAt) {
      this.#items.delete(key);
      return undefined;
    }
    return item?.value;
  }
}

/** @node-idempotency's StorageAdapter over node-redis, as its Redis adapter does it. */
export class RedisStorage implements StorageAdapter {
  calls = 0;
  constructor(private readonly client: RedisClient) {}
  async setIfNotExists(key: string, value: string, { ttl }: { ttl?: number } = {}): Promise<boolean> {
    this.calls++;
    return (await this.client.set(key, value, ttl === undefined ? { NX: true } : { NX: true, PX: ttl })) !== null;
  }
  async set(key: string, value: string, { ttl }: { ttl?: number }): Promise<void> {
    this.calls++;
    await this.client.set(key, value, ttl === undefined ? {} : { PX: ttl });
  }
  async get(key: string): Promise<string | undefined> {
    this.calls++;
    return (await this.client.get(key)) ?? undefined;
  }
}

export interface Impl {
  impl: string;
  firstRequest(i: number): Promise<void>;
  replay(): Promise<void>;
  calls(): number;
  iterations: number;
  /** Its store is the Redis server (whose CPU the suite samples). */
  usesRedis: boolean;
}

export function bulwarkImpl(impl: string, rawStore: IdempotencyStore, iterations: number): Impl {
  const { store, calls } = counted(rawStore);
  const idem = new IdempotencyHttp({ store });
  const run = randomUUID().slice(0, 8);
  const request = (key: string): IdempotentRequest => ({ method: 'POST', path: '/orders', headers: { 'idempotency-key': key }, body: BODY, principal: 'user_1' });
  const replayRequest = request(`${run}-replay`);
  return {
    impl,
    iterations,
    calls,
    usesRedis: rawStore.name === 'redis',
    async firstRequest(i) {
      const begun = await idem.begin(request(`${run}-${i}`));
      if (begun.action !== 'run' || begun.lease === undefined) throw new Error(`expected a first execution, got ${JSON.stringify(begun)}`);
      await idem.finish(begun, RESPONSE);
    },
    async replay() {
      const begun = await idem.begin(replayRequest);
      if (begun.action === 'run') {
        await idem.finish(begun, RESPONSE); // the first call stores it
        return;
      }
      if (begun.reason !== 'replay') throw new Error(`expected a replay, got ${begun.reason}`);
    },
  };
}

export function nodeIdempotencyImpl(impl: string, storage: MapStorage | RedisStorage, iterations: number, cacheKeyPrefix: string): Impl {
  const idempotency = new Idempotency(storage, { cacheKeyPrefix });
  const run = randomUUID().slice(0, 8);
  const request = (key: string) => ({ method: 'POST', path: '/orders', headers: { 'idempotency-key': key }, body: BODY });
  const replayRequest = request(`${run}-replay`);
  const response = { body: RESPONSE.body, additional: { status: RESPONSE.status, headers: RESPONSE.headers } };
  return {
    impl,
    iterations,
    calls: () => storage.calls,
    usesRedis: storage instanceof RedisStorage,
    async firstRequest(i) {
      const req = request(`${run}-${i}`);
      const cached = await idempotency.onRequest(req);
      if (cached !== undefined) throw new Error('expected a first execution');
      await idempotency.onResponse(req, response);
    },
    async replay() {
      const cached = await idempotency.onRequest(replayRequest);
      if (cached === undefined) await idempotency.onResponse(replayRequest, response);
    },
  };
}

/** One case of one implementation: per-block samples and store calls. */
interface Samples {
  nsPerOp: number[];
  /** This process's CPU (user + system) per op: the client side, node-redis and sockets included. */
  cpuUsPerOp: number[];
  /** The Redis server's main-thread CPU per op, when it runs on this machine. */
  redisCpuUsPerOp: number[];
  calls: number;
  ops: number;
}

/**
 * The machine is shared and its load drifts, so implementations that are compared are measured
 * in many short interleaved blocks, in alternating order (A B, B A, A B, ...: neither always
 * runs right after the other's garbage), and each reports its median block. CPU is sampled per
 * block too, so a difference in latency can be told apart: client work or server work.
 *
 * With `versus` (impls = [Bulwark, competitor]), Bulwark's rows also get `pairedRatio`: the
 * median over blocks of its time divided by the competitor's in the same block pair (< 1:
 * faster). Neighbouring blocks share the machine's mood, so this ratio moves much less from run
 * to run than the ratio of the two medians.
 */
async function compare(ctx: BenchContext, impls: Impl[], options: { redisCpuUs?: (() => number) | undefined; versus?: boolean } = {}): Promise<void> {
  const { redisCpuUs, versus = false } = options;
  const blocks = ctx.quick ? 2 : 31;
  const iterationsOf = (impl: Impl) => (ctx.quick ? Math.max(50, Math.floor(impl.iterations / 20)) : impl.iterations);
  const samples = () => ({ nsPerOp: [], cpuUsPerOp: [], redisCpuUsPerOp: [], calls: 0, ops: 0 }) as Samples;
  const first = impls.map(samples);
  const replay = impls.map(samples);
  const counters = impls.map(() => 0);
  for (const impl of impls) {
    await impl.replay(); // stores the record that replays read
    const warm = Math.min(iterationsOf(impl), 500);
    for (let i = 0; i < warm; i++) await impl.firstRequest(-1 - i);
    for (let i = 0; i < warm; i++) await impl.replay();
  }
  const block = async (into: Samples, impl: Impl, iterations: number, fn: () => Promise<void>): Promise<void> => {
    const calls = impl.calls();
    const cpu = process.cpuUsage();
    const server = impl.usesRedis ? redisCpuUs?.() : undefined;
    into.nsPerOp.push(await nsPerOp(fn, { iterations, rounds: 1, warmup: 0 }));
    const used = process.cpuUsage(cpu);
    into.cpuUsPerOp.push((used.user + used.system) / iterations);
    if (server !== undefined) into.redisCpuUsPerOp.push((redisCpuUs!() - server) / iterations);
    into.calls += impl.calls() - calls;
    into.ops += iterations;
  };
  for (let b = 0; b < blocks; b++) {
    const order = [...impls.entries()];
    if (b % 2 === 1) order.reverse();
    for (const [k, impl] of order) {
      const iterations = iterationsOf(impl);
      await block(first[k]!, impl, iterations, () => impl.firstRequest(counters[k]!++));
      await block(replay[k]!, impl, iterations, () => impl.replay());
    }
  }
  for (const [name, results] of [['first-request', first], ['replay', replay]] as const) {
    for (const [k, impl] of impls.entries()) {
      const r = results[k]!;
      ctx.report({
        case: name, impl: impl.impl, nsPerOp: median(r.nsPerOp), storeCalls: round2(r.calls / r.ops),
        cpuUsPerOp: round2(median(r.cpuUsPerOp)),
        ...(r.redisCpuUsPerOp.length > 0 ? { redisCpuUsPerOp: round2(median(r.redisCpuUsPerOp)) } : {}),
        ...(versus && k === 0 ? { pairedRatio: Math.round(median(r.nsPerOp.map((ns, b) => ns / results[1]!.nsPerOp[b]!)) * 1000) / 1000 } : {}),
      });
    }
  }
}

/**
 * A reader of the Redis server's main-thread CPU time in µs, from `/proc` (nanosecond
 * resolution), when the server runs on this machine; undefined otherwise. Its command execution
 * runs on the main thread (no I/O threads by default).
 */
async function redisCpuReader(redis: RedisClient): Promise<(() => number) | undefined> {
  const info = String(await redis.sendCommand(['INFO', 'server']));
  const pid = /process_id:(\d+)/.exec(info)?.[1];
  const path = `/proc/${pid}/task/${pid}/schedstat`;
  const read = () => Number(readFileSync(path, 'utf8').split(' ')[0]) / 1000;
  try {
    return pid !== undefined && Number.isFinite(read()) ? read : undefined;
  } catch {
    return undefined; // another machine, or a container we cannot see into
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}

export default async function idempotency(ctx: BenchContext): Promise<void> {
  const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
  const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
  const redis: RedisClient = createClient({ url: redisUrl });
  await redis.connect();
  const schema = `bench_idem_${randomUUID().replace(/-/g, '').slice(0, 10)}`;
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 4 });
  await pool.query(`CREATE SCHEMA ${schema}`);
  await migratePostgresIdempotency(pool, { schema });
  const dir = mkdtempSync(join(tmpdir(), 'bench-idem-'));
  const sqlite = new SqliteIdempotencyStore({ database: join(dir, 'idem.db') });
  const prefix = `bench:idem:${randomUUID().slice(0, 8)}`;
  const postgres = new PostgresIdempotencyStore({ pool, schema, sweepEveryMs: false });
  try {
    ctx.log('memory');
    await compare(ctx, [
      bulwarkImpl('bulwark-memory', new MemoryIdempotencyStore(), 10_000),
      nodeIdempotencyImpl('node-idempotency-memory', new MapStorage(), 10_000, `${prefix}:ni`),
    ], { versus: true });
    ctx.log('redis');
    await compare(ctx, [
      bulwarkImpl('bulwark-redis', new RedisIdempotencyStore({ client: redis, prefix }), 500),
      // Their Redis adapter depends on redis ^4.6, which has no per-command timeout; node-redis
      // v6's default one (an AbortSignal.timeout per command, ~15 µs of CPU each here) is taken
      // off for them, as their adapter would have it. Bulwark keeps the client's bound, on one
      // shared timer (see redis-client.ts).
      nodeIdempotencyImpl('node-idempotency-redis', new RedisStorage(redis.withCommandOptions({ timeout: undefined }) as RedisClient), 500, `${prefix}:ni`),
    ], { redisCpuUs: await redisCpuReader(redis), versus: true });
    ctx.log('postgres, sqlite');
    await compare(ctx, [bulwarkImpl('bulwark-postgres', postgres, 150), bulwarkImpl('bulwark-sqlite', sqlite, 250)]);
  } finally {
    await postgres.close();
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
    const keys: string[] = [];
    for await (const batch of redis.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...(Array.isArray(batch) ? batch : [batch]));
    for (let i = 0; i < keys.length; i += 500) await redis.del(keys.slice(i, i + 500));
    await redis.quit();
    await pool.query(`DROP SCHEMA ${schema} CASCADE`);
    await pool.end();
  }
}
