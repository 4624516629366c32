/**
 * Redis server work per request, counted in CPU instructions by callgrind: exact and
 * repeatable, where timings on a shared 2-core machine move ±20 % between runs. Use it to judge
 * a change to a Lua script or a command sequence before trusting a latency difference.
 *
 * A private redis-server runs under `valgrind --tool=callgrind` (never the shared one on 6379);
 * around each block of requests its counters are zeroed and dumped with `callgrind_control`,
 * so a row is the server's instructions per request: command parsing, execution, scripts,
 * replies, expiry — everything the server process does in user space (kernel time, such as
 * socket syscalls, is not counted). `hz 1` keeps the server's own cron out of the counts.
 *
 * Rows: the idempotency first request and replay, Bulwark's Redis store next to
 * @node-idempotency over the same node-redis client (as in the `idempotency` suite); a rate-limit
 * decision, Bulwark's RedisRateLimiter next to rate-limiter-flexible's RateLimiterRedis over one
 * ioredis client, for one caller (one decision per call) and for 64 concurrent callers (Bulwark
 * batches the decisions of a tick into one script call); one plain `SET key value PX ttl` as the
 * unit of measure.
 *
 *   npm run bench -- redis-instructions [--json] [--quick]
 *
 * Needs valgrind (Debian package `valgrind`, which brings callgrind_control) and redis-server.
 */
import { execFile as execFileCallback, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { percentile, type BenchContext } from '../harness.js';
import { PrivateRedis } from '../../test/support/private-redis.js';
import { RedisIdempotencyStore } from '../../src/idempotency/stores/redis-store.js';
import { RedisRateLimiter } from '../../src/ratelimit/redis-limiter.js';
import { RedisStorage, bulwarkImpl, nodeIdempotencyImpl, type Impl, type RedisClient } from './idempotency.js';

const execFile = promisify(execFileCallback);

/** Zeroes and dumps the counters of one callgrind-run process; reads each dump's total. */
class Callgrind {
  #dumps = 0;
  constructor(readonly pid: number, readonly outFile: string) {}

  zero(): Promise<unknown> {
    return execFile('callgrind_control', ['--zero', String(this.pid)]);
  }

  /** Dumps the counters since the last zero and returns their instruction total. */
  async dump(): Promise<number> {
    await execFile('callgrind_control', ['--dump', String(this.pid)]);
    this.#dumps++;
    const file = `${this.outFile}.${this.#dumps}`;
    const summary = /^summary: (\d+)/m.exec(readFileSync(file, 'utf8'));
    if (summary === null) throw new Error(`callgrind dump ${file} has no summary line`);
    rmSync(file);
    return Number(summary[1]);
  }
}

function requireTool(command: string, args: string[]): void {
  const probe = spawnSync(command, args, { stdio: 'ignore' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(`redis-instructions needs \`${command}\` (Debian: apt-get install valgrind redis-server): ${probe.error?.message ?? `exit ${probe.status}`}`);
  }
}

/** One row: `op(i)` is one request; `concurrency` callers share the block's `ops`. */
interface Case {
  case: string;
  impl: string;
  op(i: number): Promise<unknown>;
  /** Store round trips so far (for storeCalls), when the implementation counts them. */
  calls?: () => number;
  concurrency?: number;
}

export default async function redisInstructions(ctx: BenchContext): Promise<void> {
  requireTool('valgrind', ['--version']);
  requireTool('callgrind_control', ['--help']);
  const dir = mkdtempSync(join(tmpdir(), 'bench-callgrind-'));
  const outFile = join(dir, 'callgrind.out');
  const server = new PrivateRedis(0, {
    launcher: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${outFile}`],
    args: ['--hz', '1'],
    startTimeoutMs: 60_000,
  });
  await server.start();
  const redis: RedisClient = createClient({ url: server.url });
  const ioredis = new Redis(server.url, { maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await redis.connect();
    await ioredis.connect();
    const callgrind = new Callgrind(server.pid!, outFile);
    const ops = ctx.quick ? 64 : 320;
    const blocks = ctx.quick ? 1 : 3;
    const prefix = `bench:${randomUUID().slice(0, 8)}`;

    const idempotency: Impl[] = [
      bulwarkImpl('bulwark-redis', new RedisIdempotencyStore({ client: redis, prefix: `${prefix}:idem` }), ops),
      nodeIdempotencyImpl('node-idempotency-redis', new RedisStorage(redis.withCommandOptions({ timeout: undefined }) as RedisClient), ops, `${prefix}:ni`),
    ];
    let firstRequests = 0;
    const limiter = (batch: 'none' | 'tick') => new RedisRateLimiter({ client: ioredis, prefix: `${prefix}:rl-${batch}`, limit: 1e6, intervalMs: 60_000, timeoutMs: 10_000, batch });
    const rlf = new RateLimiterRedis({ storeClient: ioredis, keyPrefix: `${prefix}:rlf`, points: 1e6, duration: 60 });
    const [unbatched, batched] = [limiter('none'), limiter('tick')];
    const user = (i: number) => `user:${i % 1000}`;
    const value = 'x'.repeat(200);
    const cases: Case[] = [
      ...idempotency.flatMap((impl): Case[] => [
        { case: 'idempotency-first-request', impl: impl.impl, op: () => impl.firstRequest(firstRequests++), calls: impl.calls },
        { case: 'idempotency-replay', impl: impl.impl, op: () => impl.replay(), calls: impl.calls },
      ]),
      { case: 'ratelimit-consume', impl: 'bulwark', op: (i) => unbatched.consume(user(i)) },
      { case: 'ratelimit-consume', impl: 'rate-limiter-flexible', op: (i) => rlf.consume(user(i)).catch((r: unknown) => r) },
      { case: 'ratelimit-consume-64-callers', impl: 'bulwark', op: (i) => batched.consume(user(i)), concurrency: 64 },
      { case: 'ratelimit-consume-64-callers', impl: 'rate-limiter-flexible', op: (i) => rlf.consume(user(i)).catch((r: unknown) => r), concurrency: 64 },
      { case: 'reference', impl: 'SET-PX', op: (i) => redis.sendCommand(['SET', `${prefix}:set:${i}`, value, 'PX', '60000']) },
    ];

    ctx.log('warm-up (the server runs under valgrind: slow)');
    for (const impl of idempotency) await impl.replay(); // stores the record that replays read
    for (const c of cases) for (let i = 0; i < 50; i++) await c.op(-1 - i);

    let next = 0;
    const drive = async (c: Case): Promise<void> => {
      const end = next + ops;
      await Promise.all(Array.from({ length: c.concurrency ?? 1 }, async () => {
        while (next < end) await c.op(next++);
      }));
    };
    const samples = new Map<Case, { instructions: number[]; calls: number }>(cases.map((c) => [c, { instructions: [], calls: 0 }]));
    for (let b = 0; b < blocks; b++) {
      for (const c of b % 2 === 0 ? cases : [...cases].reverse()) {
        const calls = c.calls?.() ?? 0;
        await callgrind.zero();
        await drive(c);
        const sample = samples.get(c)!;
        sample.instructions.push((await callgrind.dump()) / ops);
        sample.calls = ((c.calls?.() ?? 0) - calls) / ops;
      }
    }
    for (const c of cases) {
      const { instructions, calls } = samples.get(c)!;
      ctx.report({
        case: c.case, impl: c.impl,
        redisInstructionsPerOp: Math.round(percentile([...instructions].sort((x, y) => x - y), 50)),
        ...(c.calls !== undefined ? { storeCalls: Math.round(calls * 100) / 100 } : {}),
      });
    }
  } finally {
    if (redis.isOpen) await redis.quit();
    ioredis.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
