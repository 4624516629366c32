/**
 * Overload: what a server with a known capacity serves when offered 0.5x, 1x, 2x and 5x that
 * capacity, with no protection, with @fastify/under-pressure, and with Bulwark's admission
 * control. `npm run bench -- overload [--json] [--quick]`.
 *
 * The server (a child process, so it never shares an event loop with the load generator) is
 * Fastify with one route whose cost is fixed: a pool of WORKERS workers, each request holding
 * one for WORK_MS of timer time, and an unbounded FIFO wait for a worker (like most servers:
 * it never notices that a queued client has given up). Capacity = WORKERS × 1000 / WORK_MS,
 * measured first with a closed loop.
 *
 * The generator is open-loop: requests are issued at a fixed arrival rate whatever the server
 * does (undici, up to MAX_CONNECTIONS sockets; latency counts from the intended send time, so
 * client-side queueing is not hidden). Goodput = 2xx answers per second that arrived within the
 * client timeout; p99 is over those accepted requests.
 *
 * Also `fastify-overhead`: the closed-loop rps of a hello-world route, bare Fastify vs the full
 * Bulwark plugin (memory rate limit + admission + deadline), measured with autocannon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { percentile, round, type BenchContext } from '../harness.js';

const WORKERS = 10;
const WORK_MS = 50;
const CLIENT_TIMEOUT_MS = 1000;
const MAX_CONNECTIONS = 512;
const LOADS = [0.5, 1, 2, 5] as const;
const IMPLS = ['none', 'under-pressure', 'bulwark'] as const;
type Impl = (typeof IMPLS)[number] | 'fastify' | 'bulwark-full';

// ---------------------------------------------------------------------------------------------
// Server role (this same file, run as a child with BULWARK_OVERLOAD_SERVER=<impl>)
// ---------------------------------------------------------------------------------------------

async function serve(impl: Impl): Promise<void> {
  const { default: Fastify } = await import('fastify');
  const app = Fastify({ logger: false });
  let active = 0;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> | undefined => {
    if (active < WORKERS) {
      active++;
      return undefined;
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else active--;
  };

  if (impl === 'under-pressure') {
    const { default: underPressure } = await import('@fastify/under-pressure');
    await app.register(underPressure, {
      // The usual settings, plus the best signal it can be given here: a health check that
      // reports the worker queue (sampled every 100 ms; it cannot decide per request).
      maxEventLoopDelay: 100,
      maxEventLoopUtilization: 0.95,
      retryAfter: 1,
      healthCheck: async () => waiting.length < WORKERS,
      healthCheckInterval: 100,
    });
  } else if (impl === 'bulwark' || impl === 'bulwark-full') {
    const { fastifyBulwark } = await import('../../src/http/fastify.js');
    const { loadShedder } = await import('../../src/shedding/shedder.js');
    // One class of traffic: admit while a worker is free (threshold 1.0), never queue.
    const shedder = loadShedder({ capacity: impl === 'bulwark' ? WORKERS : 100_000, thresholds: { normal: 1 }, retryAfterMs: 1000 });
    await app.register(fastifyBulwark, {
      defaults: { deadlineMs: CLIENT_TIMEOUT_MS },
      admission: { shedder },
      ...(impl === 'bulwark-full'
        ? { rateLimit: { limits: [{ name: 'per-ip', key: 'ip' as const, limit: 1e9, intervalMs: 1000 }] } }
        : {}),
    });
  }

  app.get('/work', async () => {
    const wait = acquire();
    if (wait) await wait;
    await sleep(WORK_MS);
    release();
    return 'ok';
  });
  app.get('/hello', async () => ({ hello: 'world' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
}

if (process.env.BULWARK_OVERLOAD_SERVER) await serve(process.env.BULWARK_OVERLOAD_SERVER as Impl);

// ---------------------------------------------------------------------------------------------
// Driver role
// ---------------------------------------------------------------------------------------------

interface Server {
  url: string;
  child: ChildProcess;
}

async function startServer(impl: Impl): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    env: { ...process.env, BULWARK_OVERLOAD_SERVER: impl },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server ${impl} did not start`)), 20_000);
    child.stdout!.on('data', (chunk) => {
      out += chunk;
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.once('exit', (code) => reject(new Error(`server ${impl} exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGKILL');
  await exited;
}

interface LoadResult {
  sent: number;
  ok: number;
  shed: number;
  timeouts: number;
  errors: number;
  goodputRps: number;
  p50Ms: number;
  p99Ms: number;
}

/** Open loop: `rate` requests per second for `durationMs`, each with the client timeout. */
async function openLoop(url: string, rate: number, durationMs: number): Promise<LoadResult> {
  const { Pool } = await import('undici');
  const pool = new Pool(url, { connections: MAX_CONNECTIONS, pipelining: 1, headersTimeout: CLIENT_TIMEOUT_MS * 2, bodyTimeout: CLIENT_TIMEOUT_MS * 2 });
  const latencies: number[] = [];
  let sent = 0;
  let shed = 0;
  let timeouts = 0;
  let errors = 0;
  const pending = new Set<Promise<void>>();
  const fire = (scheduledAt: number): void => {
    sent++;
    const signal = AbortSignal.timeout(Math.max(1, Math.ceil(CLIENT_TIMEOUT_MS - (performance.now() - scheduledAt))));
    const p = pool.request({ path: '/work', method: 'GET', signal }).then(async (res) => {
      await res.body.dump();
      const latency = performance.now() - scheduledAt;
      if (res.statusCode >= 200 && res.statusCode < 300) {
        if (latency <= CLIENT_TIMEOUT_MS) latencies.push(latency);
        else timeouts++;
      } else if (res.statusCode === 503) shed++;
      else errors++;
    }, (error: unknown) => {
      if ((error as { name?: string }).name === 'TimeoutError' || (error as { code?: string }).code === 'UND_ERR_ABORTED') timeouts++;
      else if (signal.aborted) timeouts++;
      else errors++;
    }).finally(() => pending.delete(p));
    pending.add(p);
  };
  const start = performance.now();
  const interval = 1000 / rate;
  let next = start;
  while (next < start + durationMs) {
    const now = performance.now();
    while (next <= now && next < start + durationMs) {
      fire(next);
      next += interval;
    }
    await sleep(1);
  }
  await Promise.allSettled([...pending]);
  await pool.destroy();
  latencies.sort((a, b) => a - b);
  return {
    sent,
    ok: latencies.length,
    shed,
    timeouts,
    errors,
    goodputRps: round(latencies.length / (durationMs / 1000)),
    p50Ms: round(percentile(latencies, 50)),
    p99Ms: round(percentile(latencies, 99)),
  };
}

/** Closed loop with plenty of concurrency: the throughput the route can sustain. */
async function measureCapacity(url: string, durationMs: number): Promise<number> {
  const { Pool } = await import('undici');
  const pool = new Pool(url, { connections: WORKERS * 4 });
  let done = 0;
  const end = performance.now() + durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const res = await pool.request({ path: '/work', method: 'GET' });
      await res.body.dump();
      if (res.statusCode === 200) done++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: WORKERS * 4 }, worker));
  const elapsed = performance.now() - start;
  await pool.destroy();
  return round(done / (elapsed / 1000));
}

async function helloRps(url: string, durationS: number): Promise<number> {
  // autocannon ships no types; this is the part used here.
  const name = 'autocannon';
  const { default: autocannon } = (await import(name)) as { default: (o: object) => Promise<{ requests: { average: number } }> };
  const result = await autocannon({ url: `${url}/hello`, connections: 50, duration: durationS });
  return result.requests.average;
}

export default async function (ctx: BenchContext): Promise<void> {
  const durationMs = ctx.quick ? 2000 : 5000;

  // Capacity and unloaded latency, on the unprotected server.
  const base = await startServer('none');
  let capacityRps: number;
  let unloadedP99: number;
  try {
    await openLoop(base.url, 50, 500); // warm-up (JIT, connections)
    capacityRps = await measureCapacity(base.url, ctx.quick ? 1500 : 3000);
    const light = await openLoop(base.url, capacityRps * 0.2, ctx.quick ? 1500 : 3000);
    unloadedP99 = light.p99Ms;
  } finally {
    await stopServer(base);
  }
  ctx.log(`capacity ${capacityRps} rps (theory ${(WORKERS * 1000) / WORK_MS}), unloaded p99 ${unloadedP99} ms`);
  ctx.report({ case: 'capacity', impl: 'none', capacityRps, unloadedP99Ms: unloadedP99, workers: WORKERS, workMs: WORK_MS, clientTimeoutMs: CLIENT_TIMEOUT_MS });

  for (const load of LOADS) {
    for (const impl of IMPLS) {
      // A fresh server per run: an unprotected server can take minutes to drain a 5x backlog.
      const server = await startServer(impl);
      try {
        await openLoop(server.url, Math.min(50, capacityRps * 0.25), 300); // warm-up
        await sleep(WORK_MS * 2);
        const rate = capacityRps * load;
        const r = await openLoop(server.url, rate, durationMs);
        ctx.report({
          case: `load-${load}x`, impl,
          goodputRps: r.goodputRps, p99Ms: r.p99Ms, capacityRps,
          goodputPct: round((r.goodputRps / capacityRps) * 100),
          p99VsUnloaded: round(r.p99Ms / unloadedP99, 2),
          offeredRps: round(rate), shed: r.shed, timeouts: r.timeouts, errors: r.errors,
        });
      } finally {
        await stopServer(server);
      }
    }
  }

  // Overhead of the full plugin on a hello-world route (closed loop, autocannon), alternated.
  const rps: Record<'fastify' | 'bulwark', number[]> = { fastify: [], bulwark: [] };
  const rounds = ctx.quick ? 1 : 2;
  for (let i = 0; i < rounds; i++) {
    for (const impl of ['fastify', 'bulwark'] as const) {
      const server = await startServer(impl === 'fastify' ? 'fastify' : 'bulwark-full');
      try {
        await helloRps(server.url, 1); // warm-up
        rps[impl].push(await helloRps(server.url, ctx.quick ? 2 : 4));
      } finally {
        await stopServer(server);
      }
    }
  }
  const best = { fastify: Math.max(...rps.fastify), bulwark: Math.max(...rps.bulwark) };
  ctx.report({ case: 'fastify-overhead', impl: 'fastify', rps: round(best.fastify) });
  ctx.report({ case: 'fastify-overhead', impl: 'bulwark', rps: round(best.bulwark), overheadPct: round((1 - best.bulwark / best.fastify) * 100) });
}
