/**
 * Tail latency and graceful degradation: hedging on a heavy-tail dependency, coalescing a hot
 * key, cached reads, and the cost of disabled fault injection.
 *
 *   npm run bench -- tail [--json] [--quick]
 *
 * Comparisons: `coalesce-hot-key` against a plain Map-based single-flight written below
 * (`map-singleflight`: the usual hand-rolled version; there is no maintained single-flight
 * package among our dependencies), `cache-hit` against lru-cache's `fetch` with allowStale.
 */
import { LRUCache } from 'lru-cache';
import { nsPerOp, percentile, round, type BenchContext } from '../harness.js';
import { VirtualClock } from '../../src/core/clock.js';
import { CallContext } from '../../src/core/context.js';
import { BasePolicy, pipeline, type Next, type PolicyDescription } from '../../src/core/policy.js';
import { seededRandom, type Random } from '../../src/core/random.js';
import { coalesce, distributions, faultInjection, hedge, staleCache, type HedgeOptions } from '../../src/index.js';

export default async function tail(ctx: BenchContext): Promise<void> {
  await hedgeP99(ctx);
  await hedgeFastPath(ctx);
  await coalesceHotKey(ctx);
  await cacheHit(ctx);
  await faultDisabled(ctx);
}

/**
 * A dependency where 95% of attempts take 8–12 ms and 5% take 800–1200 ms (a GC pause, a
 * cold cache, a slow replica), one request per virtual ms, on the virtual clock.
 */
async function hedgeP99(ctx: BenchContext): Promise<void> {
  const requests = ctx.quick ? 5_000 : 20_000;
  const latency = distributions.mixture([[0.95, distributions.uniform(8, 12)], [0.05, distributions.uniform(800, 1200)]]);
  const configs: Array<[string, HedgeOptions | undefined]> = [
    ['none', undefined],
    // Adaptive: hedge after the observed p90 (≈ the fast mode's top), up to two hedges.
    ['bulwark', { percentile: 90, minDelayMs: 5, delayMs: 50, minSamples: 200, maxOutstanding: 3, idempotent: true }],
    // The textbook fixed 50 ms delay with a single hedge, for reference.
    ['bulwark-fixed-50ms', { delayMs: 50, maxOutstanding: 2, idempotent: true }],
  ];
  for (const [impl, options] of configs) {
    const result = await simulateHedging(requests, latency, seededRandom(42), options);
    ctx.report({
      case: 'hedge-p99',
      impl,
      requests,
      p50Ms: round(result.p50),
      p99Ms: round(result.p99),
      p999Ms: round(result.p999),
      extraLoad: round(result.extraLoad, 4),
      config: options ? JSON.stringify({ ...options, idempotent: undefined }) : 'no hedging',
    });
  }
}

async function simulateHedging(requests: number, latency: (r: Random) => number, random: Random, options: HedgeOptions | undefined) {
  const clock = new VirtualClock();
  const policy = options ? hedge({ ...options, clock }) : undefined;
  let calls = 0;
  const operation = (context: CallContext) => {
    calls++;
    const ms = latency(random);
    return new Promise<void>((resolve, reject) => {
      const signal = context.signal;
      const timer = clock.setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve(); }, ms);
      const onAbort = () => { clock.clearTimeout(timer); reject(signal.reason); };
      signal.addEventListener('abort', onAbort, { once: true });
    });
  };
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  for (let i = 0; i < requests; i++) {
    const start = clock.now();
    const call = policy ? policy.execute(operation) : operation(CallContext.root(clock, operation, new AbortController().signal));
    pending.push(call.then(() => { latencies.push(clock.now() - start); }));
    await clock.advance(1);
  }
  await clock.runAll();
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    p999: percentile(latencies, 99.9),
    extraLoad: calls / requests - 1,
  };
}

/** What hedging costs a fast call that never needs a hedge (the common case). */
async function hedgeFastPath(ctx: BenchContext): Promise<void> {
  const op = () => 1;
  const bare = pipeline();
  const hedged = pipeline(hedge({ delayMs: 50, idempotent: true }));
  await interleaved(ctx, 'hedge-fast-path', [
    ['none', () => bare.execute(op)],
    ['bulwark', () => hedged.execute(op)],
  ], ctx.quick ? 20_000 : 200_000, ctx.quick ? 3 : 5);
}

/** The usual hand-rolled single-flight: share the in-flight promise per key. */
function mapSingleflight<T>() {
  const inflight = new Map<string, Promise<T>>();
  return (key: string, fn: () => Promise<T>): Promise<T> => {
    let p = inflight.get(key);
    if (p !== undefined) return p;
    p = fn().finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  };
}

/**
 * Bursts of 1,000 concurrent calls on one key (16 keys in rotation), the backend answering on
 * the next tick. Implementations alternate over several rounds; the median round is reported.
 */
async function coalesceHotKey(ctx: BenchContext): Promise<void> {
  const waiters = 1000;
  const bursts = ctx.quick ? 100 : 1000;
  const rounds = ctx.quick ? 3 : 5;
  const value = { id: 42 };
  let backendCalls = 0;
  const backend = async (): Promise<{ id: number }> => {
    backendCalls++;
    await null;
    return value;
  };

  const single = mapSingleflight<{ id: number }>();
  const coalescer = coalesce();
  const viaPipeline = pipeline(coalesce());
  const optionsByKey = new Map<string, { tags: { key: string } }>();
  const abortable = coalesce();
  // Each waiter with its own caller signal (as each HTTP request has): the per-waiter path.
  const signals = Array.from({ length: waiters }, () => new AbortController().signal);
  const impls: Array<[string, (key: string, i: number) => Promise<unknown>]> = [
    ['map-singleflight', (key) => single(key, backend)],
    ['bulwark', (key) => coalescer.execute(key, backend)],
    ['bulwark-pipeline', (key) => {
      let options = optionsByKey.get(key);
      if (!options) optionsByKey.set(key, (options = { tags: { key } }));
      return viaPipeline.execute(backend, options);
    }],
    ['bulwark-abortable-waiters', (key, i) => abortable.execute(key, backend, signals[i]!)],
  ];

  const measure = async (call: (key: string, i: number) => Promise<unknown>, count: number) => {
    const start = process.hrtime.bigint();
    for (let b = 0; b < count; b++) {
      const key = `key:${b % 16}`;
      const calls = new Array<Promise<unknown>>(waiters);
      for (let i = 0; i < waiters; i++) calls[i] = call(key, i);
      await Promise.all(calls);
    }
    return (count * waiters) / (Number(process.hrtime.bigint() - start) / 1e9);
  };

  const samples = new Map<string, number[]>(impls.map(([name]) => [name, []]));
  const backendCallsPerBurst = new Map<string, number>();
  for (const [, call] of impls) await measure(call, Math.min(50, bursts)); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const [name, call] of impls) {
      backendCalls = 0;
      samples.get(name)!.push(await measure(call, bursts));
      backendCallsPerBurst.set(name, backendCalls / bursts);
    }
  }
  for (const [name] of impls) {
    const sorted = samples.get(name)!.sort((a, b) => a - b);
    ctx.report({
      case: 'coalesce-hot-key',
      impl: name,
      waitersPerKey: waiters,
      callsPerSec: Math.round(sorted[Math.floor(sorted.length / 2)]!),
      backendCallsPerBurst: backendCallsPerBurst.get(name)!,
    });
  }
}

/** Fresh hits over 64 hot keys of 1,000 cached: the cost of a read that needs no load. */
async function cacheHit(ctx: BenchContext): Promise<void> {
  const iterations = ctx.quick ? 50_000 : 300_000;
  const rounds = ctx.quick ? 3 : 5;
  const value = { id: 1 };
  const load = async () => value;
  const lru = new LRUCache<string, { id: number }>({ max: 1000, ttl: 60_000, allowStale: true, fetchMethod: load });
  const cache = staleCache({ ttlMs: 60_000, staleWhileRevalidateMs: 60_000, staleIfErrorMs: 300_000, maxEntries: 1000 });
  for (let i = 0; i < 1000; i++) {
    await lru.fetch(`k${i}`);
    await cache.execute(`k${i}`, load);
  }
  const keys = Array.from({ length: 64 }, (_, i) => `k${i * 7}`);
  let i = 0;
  const impls: Array<[string, () => unknown]> = [
    ['lru-cache', () => lru.fetch(keys[i++ & 63]!, { allowStale: true })],
    ['bulwark', () => cache.execute(keys[i++ & 63]!, load)],
  ];
  await interleaved(ctx, 'cache-hit', impls, iterations, rounds);
}

/** Alternates implementations round by round and reports each one's median nsPerOp. */
async function interleaved(ctx: BenchContext, name: string, impls: Array<[string, () => unknown]>, iterations: number, rounds: number): Promise<void> {
  const samples = new Map<string, number[]>(impls.map(([impl]) => [impl, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [impl, fn] of impls) samples.get(impl)!.push(await nsPerOp(fn, { iterations, rounds: 1, warmup: r === 0 ? iterations : 1000 }));
  }
  for (const [impl] of impls) {
    const sorted = samples.get(impl)!.sort((a, b) => a - b);
    ctx.report({ case: name, impl, nsPerOp: sorted[Math.floor(sorted.length / 2)]! });
  }
}

/** The thinnest possible policy: what any extra pipeline layer costs. */
class Passthrough extends BasePolicy {
  readonly kind = 'passthrough';
  constructor() {
    super(undefined);
  }
  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    return next(context);
  }
  stats(): object {
    return {};
  }
  describe(): PolicyDescription {
    return { kind: this.kind, options: {} };
  }
}

/**
 * A disabled fault-injection policy in a pipeline, against the same pipeline without it
 * (`baseline`) and with an empty pass-through layer instead (`passthrough`): disabled
 * injection should cost what any layer costs, nothing more.
 */
async function faultDisabled(ctx: BenchContext): Promise<void> {
  const iterations = ctx.quick ? 50_000 : 300_000;
  const op = () => 1;
  const baseline = pipeline();
  const layer = pipeline(new Passthrough());
  const withFaults = pipeline(faultInjection({ faults: [{ type: 'error', rate: 0.5 }, { type: 'latency', rate: 0.5, ms: 100 }] }));
  await interleaved(ctx, 'fault-disabled', [
    ['baseline', () => baseline.execute(op)],
    ['passthrough', () => layer.execute(op)],
    ['bulwark', () => withFaults.execute(op)],
  ], iterations, ctx.quick ? 3 : 7);
}
