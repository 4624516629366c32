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
 * @node-idempotency over the same node-redis client (as in the `idempotency` suite), and one
 * plain `SET key value PX ttl` as the unit of measure.
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
import { createClient } from 'redis';
import { percentile, type BenchContext } from '../harness.js';
import { PrivateRedis } from '../../test/support/private-redis.js';
import { RedisIdempotencyStore } from '../../src/idempotency/stores/redis.js';
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
  try {
    await redis.connect();
    const callgrind = new Callgrind(server.pid!, outFile);
    const iterations = ctx.quick ? 50 : 300;
    const blocks = ctx.quick ? 1 : 3;
    const prefix = `bench:idem:${randomUUID().slice(0, 8)}`;
    const impls: Impl[] = [
      bulwarkImpl('bulwark-redis', new RedisIdempotencyStore({ client: redis, prefix }), iterations),
      nodeIdempotencyImpl('node-idempotency-redis', new RedisStorage(redis.withCommandOptions({ timeout: undefined }) as RedisClient), iterations, `${prefix}:ni`),
    ];
    const value = 'x'.repeat(200);
    let setKeys = 0;
    const reference: Impl = {
      impl: 'SET-PX', iterations, usesRedis: true, calls: () => setKeys,
      async firstRequest() {
        await redis.sendCommand(['SET', `${prefix}:set:${setKeys++}`, value, 'PX', '60000']);
      },
      async replay() {},
    };

    ctx.log('warm-up (the server runs under valgrind: slow)');
    for (const impl of impls) {
      await impl.replay(); // stores the record that replays read
      for (let i = 0; i < 50; i++) await impl.firstRequest(-1 - i);
      for (let i = 0; i < 50; i++) await impl.replay();
    }
    const counters = new Map<Impl, number>();
    const measure = async (impl: Impl, run: (impl: Impl) => Promise<void>) => {
      const calls = impl.calls();
      await callgrind.zero();
      for (let i = 0; i < iterations; i++) await run(impl);
      return { instructions: (await callgrind.dump()) / iterations, calls: (impl.calls() - calls) / iterations };
    };
    const cases = [
      ['first-request', (impl: Impl) => { const n = counters.get(impl) ?? 0; counters.set(impl, n + 1); return impl.firstRequest(n); }],
      ['replay', (impl: Impl) => impl.replay()],
    ] as const;
    const samples = new Map<string, { instructions: number[]; calls: number }>();
    for (let b = 0; b < blocks; b++) {
      const order = b % 2 === 0 ? impls : [...impls].reverse();
      for (const impl of order) {
        for (const [name, run] of cases) {
          const { instructions, calls } = await measure(impl, run);
          const key = `${name}\u0000${impl.impl}`;
          const entry = samples.get(key) ?? { instructions: [], calls };
          entry.instructions.push(instructions);
          samples.set(key, entry);
        }
      }
    }
    const report = (name: string, impl: string, instructions: number[], calls: number) => ctx.report({
      case: name, impl,
      redisInstructionsPerOp: Math.round(percentile([...instructions].sort((a, b) => a - b), 50)),
      storeCalls: Math.round(calls * 100) / 100,
    });
    for (const [name] of cases) {
      for (const impl of impls) {
        const entry = samples.get(`${name}\u0000${impl.impl}`)!;
        report(name, impl.impl, entry.instructions, entry.calls);
      }
    }
    const set: number[] = [];
    for (let b = 0; b < blocks; b++) set.push((await measure(reference, (impl) => impl.firstRequest(0))).instructions);
    report('reference', 'SET-PX', set, 1);
  } finally {
    if (redis.isOpen) await redis.quit();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
