/**
 * `npm run demo` — the retry-storm showdown.
 *
 * A server with fixed capacity suffers a 2 s outage while clients keep sending at a steady
 * rate. Run 1: naive clients (3 immediate retries, no breaker, no budget). Run 2: Bulwark
 * clients (retry budget, jittered exponential backoff, circuit breaker, attempt timeout).
 * Same server, same load, fresh server process per run. Compares what the server received
 * against what the clients sent (amplification), success rate, and time to recover.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { circuitBreaker, pipeline, ratioBudget, retry, timeout, timeWindow, type Pipeline } from '../../src/index.js';

const RATE = Number(process.env.DEMO_RATE ?? 400); // logical requests per second
const HEALTHY_MS = 3000;
const OUTAGE_MS = 2000;
const AFTER_MS = 8000;
const TOTAL_MS = HEALTHY_MS + OUTAGE_MS + AFTER_MS;
const ATTEMPT_TIMEOUT_MS = 1000;
const BUCKET_MS = 500;

interface Outcome { startedAt: number; ok: boolean }
interface ServerStats { received: number; ok: number; failed: number; maxQueue: number; queued: number; active: number }

class DemoServer {
  readonly #child: ChildProcess;
  readonly ready: Promise<{ port: number; capacityRps: number }>;
  #pending: ((stats: ServerStats) => void)[] = [];

  constructor() {
    this.#child = fork(fileURLToPath(new URL('./server.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.ready = new Promise((resolve, reject) => {
      this.#child.once('error', reject);
      this.#child.on('message', (m: { type: string } & Record<string, number>) => {
        if (m.type === 'ready') resolve({ port: m.port!, capacityRps: m.capacityRps! });
        if (m.type === 'stats') this.#pending.shift()?.(m as unknown as ServerStats);
      });
    });
  }

  outage(on: boolean): void { this.#child.send({ type: 'outage', value: on }); }
  stats(): Promise<ServerStats> {
    return new Promise((resolve) => { this.#pending.push(resolve); this.#child.send({ type: 'stats' }); });
  }
  stop(): Promise<void> {
    return new Promise((resolve) => {
      this.#child.once('exit', () => resolve());
      this.#child.send({ type: 'stop' });
      setTimeout(() => this.#child.kill('SIGKILL'), 2000).unref();
    });
  }
}

class HttpStatusError extends Error {
  constructor(readonly status: number) { super(`HTTP ${status}`); }
}

type Client = (signal?: AbortSignal) => Promise<void>;

function makeAttempt(agent: Agent, url: string) {
  return async (signal: AbortSignal): Promise<void> => {
    const res = await request(url, { dispatcher: agent, signal });
    await res.body.dump();
    if (res.statusCode !== 200) throw new HttpStatusError(res.statusCode);
  };
}

/** What many services do today: retry at once, three times, on anything. */
function naiveClient(agent: Agent, url: string): Client {
  const attempt = makeAttempt(agent, url);
  return async () => {
    let lastError: unknown;
    for (let i = 0; i < 4; i++) {
      try {
        return await attempt(AbortSignal.timeout(ATTEMPT_TIMEOUT_MS));
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  };
}

/** The same call with Bulwark: budgeted, jittered retries; a breaker; a timeout per attempt. */
function bulwarkClient(agent: Agent, url: string): { client: Client; policy: Pipeline } {
  const attempt = makeAttempt(agent, url);
  const policy = pipeline(
    retry({ maxAttempts: 3, backoff: { kind: 'exponential', baseDelayMs: 50, maxDelayMs: 1000, jitter: 'full' }, budget: ratioBudget({ ratio: 0.1 }) }),
    circuitBreaker({ strategy: timeWindow({ windowMs: 2000, failureRateThreshold: 0.5, minimumCalls: 20 }), openMs: 500 }),
    timeout({ ms: ATTEMPT_TIMEOUT_MS, graceMs: 100 }),
  );
  return { policy, client: () => policy.execute((ctx) => attempt(ctx.signal)) };
}

interface RunResult {
  name: string;
  sent: number;
  received: number;
  succeeded: number;
  recoveryMs: number | undefined;
  maxQueue: number;
}

async function run(name: string, make: (agent: Agent, url: string) => Client): Promise<RunResult> {
  const server = new DemoServer();
  const { port, capacityRps } = await server.ready;
  const agent = new Agent({ connections: 2048, pipelining: 1, keepAliveTimeout: 30_000 });
  const client = make(agent, `http://127.0.0.1:${port}/`);
  console.log(`\n▶ ${name}: ${RATE} req/s offered to a server with capacity ≈ ${capacityRps} req/s; outage from ${HEALTHY_MS / 1000}s to ${(HEALTHY_MS + OUTAGE_MS) / 1000}s`);

  const outcomes: Outcome[] = [];
  const inFlight = new Set<Promise<void>>();
  const start = performance.now();
  let sent = 0;
  let lastReceived = 0;
  let lastOk = 0;
  let outageOn = false;

  await new Promise<void>((done) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - start;
      if (!outageOn && elapsed >= HEALTHY_MS && elapsed < HEALTHY_MS + OUTAGE_MS) { outageOn = true; server.outage(true); }
      if (outageOn && elapsed >= HEALTHY_MS + OUTAGE_MS) { outageOn = false; server.outage(false); }
      if (elapsed >= TOTAL_MS) { clearInterval(tick); clearInterval(progress); done(); return; }
      const due = Math.floor((elapsed / 1000) * RATE) - sent;
      for (let i = 0; i < due; i++) {
        sent++;
        const startedAt = performance.now() - start;
        const p: Promise<void> = client().then(
          () => { outcomes.push({ startedAt, ok: true }); },
          () => { outcomes.push({ startedAt, ok: false }); },
        ).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
    }, 5);
    const progress = setInterval(async () => {
      const s = await server.stats();
      const second = Math.round((performance.now() - start) / 1000);
      const phase = outageOn ? 'OUTAGE ' : second * 1000 <= HEALTHY_MS ? 'healthy' : 'after  ';
      console.log(`  t=${String(second).padStart(2)}s ${phase} server got ${String(s.received - lastReceived).padStart(5)} req/s, served ok ${String(s.ok - lastOk).padStart(4)}/s, queue ${String(s.queued).padStart(5)}, client in-flight ${inFlight.size}`);
      lastReceived = s.received;
      lastOk = s.ok;
    }, 1000);
  });

  // Let in-flight calls finish (bounded: naive calls can take 4 × the attempt timeout).
  await Promise.race([Promise.allSettled([...inFlight]), new Promise((r) => setTimeout(r, 4 * ATTEMPT_TIMEOUT_MS + 500))]);
  const stats = await server.stats();
  await server.stop();
  await agent.destroy().catch(() => {});

  return {
    name,
    sent,
    received: stats.received,
    succeeded: outcomes.filter((o) => o.ok).length,
    recoveryMs: recoveryTime(outcomes),
    maxQueue: stats.maxQueue,
  };
}

/** Time from the end of the outage until requests succeed again (≥ 95% per bucket, and it stays that way). */
function recoveryTime(outcomes: Outcome[]): number | undefined {
  const end = HEALTHY_MS + OUTAGE_MS;
  const buckets: { ok: number; total: number }[] = [];
  for (const o of outcomes) {
    if (o.startedAt < end || o.startedAt >= TOTAL_MS) continue;
    const b = Math.floor((o.startedAt - end) / BUCKET_MS);
    (buckets[b] ??= { ok: 0, total: 0 }).total++;
    if (o.ok) buckets[b]!.ok++;
  }
  let recoveredAt: number | undefined;
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i];
    const healthy = b !== undefined && b.total > 0 && b.ok / b.total >= 0.95;
    if (healthy && recoveredAt === undefined) recoveredAt = i * BUCKET_MS;
    if (!healthy) recoveredAt = undefined;
  }
  return recoveredAt;
}

function table(results: RunResult[]): void {
  const rows = results.map((r) => [
    r.name,
    String(r.sent),
    String(r.received),
    `${(r.received / r.sent).toFixed(2)}x`,
    `${((100 * r.succeeded) / r.sent).toFixed(1)}%`,
    r.recoveryMs === undefined ? `not within ${AFTER_MS / 1000}s` : `${(r.recoveryMs / 1000).toFixed(1)}s`,
    String(r.maxQueue),
  ]);
  const header = ['client', 'sent', 'server received', 'amplification', 'success', 'recovery after outage', 'peak server queue'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('\nRetry-storm showdown');
  console.log(line(header));
  console.log('  ' + widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

const naive = await run('naive (3 immediate retries)', naiveClient);
const bulwark = await run('bulwark (budget + backoff + breaker)', (agent, url) => bulwarkClient(agent, url).client);
table([naive, bulwark]);
console.log('\nAmplification = requests the server received / requests clients sent. Recovery = time from the end of the outage until ≥95% of new requests succeed for good.');
