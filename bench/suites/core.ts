/**
 * `npm run bench -- core`: the cost of each policy on the success path, and of a failing call
 * through a breaker whose window holds 100 vs 32 000 failures, side by side with cockatiel and
 * opossum. nsPerOp is the whole call (baseline = a bare `await fn()`). Also `retry-herd`: 1,000
 * clients failing at the same instant, the most retries in one 10 ms bucket per backoff strategy
 * (virtual clock, seeded: a count, not a timing).
 */
import CircuitBreaker from 'opossum';
import * as cockatiel from 'cockatiel';
import { bulkhead, circuitBreaker, countWindow, pipeline, retry, timeout } from '../../src/index.js';
import { nsPerOp, type BenchContext } from '../harness.js';
import { HERD_STRATEGIES, retryHerd } from '../../test/support/retry-herd.js';

const ok = async (): Promise<number> => 1;
const failure = new Error('dependency failed');
const fail = async (): Promise<never> => { throw failure; };
const swallow = (): void => {};

export default async function core(ctx: BenchContext): Promise<void> {
  const iterations = ctx.quick ? 20_000 : 200_000;
  const rounds = ctx.quick ? 3 : 7;
  const measure = (fn: () => Promise<unknown>) => nsPerOp(fn, { iterations, rounds });
  const report = (name: string, impl: string, ns: number) => ctx.report({ case: name, impl, nsPerOp: ns });
  const opossumBreakers: { shutdown(): void }[] = [];
  const opossum = <A extends unknown[], T>(fn: (...args: A) => Promise<T>, options: CircuitBreaker.Options = {}) => {
    const breaker = new CircuitBreaker<A, T>(fn, { timeout: false, resetTimeout: 30_000, ...options });
    opossumBreakers.push(breaker);
    return breaker;
  };

  ctx.log('baseline');
  report('baseline', 'baseline', await measure(() => ok()));

  ctx.log('retry-success');
  const bRetry = retry({ maxAttempts: 3 });
  const cRetry = cockatiel.retry(cockatiel.handleAll, { maxAttempts: 2, backoff: new cockatiel.ExponentialBackoff() });
  report('retry-success', 'bulwark', await measure(() => bRetry.execute(ok)));
  report('retry-success', 'cockatiel', await measure(() => cRetry.execute(ok)));

  ctx.log('breaker-success');
  const bBreaker = circuitBreaker();
  const cBreaker = cockatiel.circuitBreaker(cockatiel.handleAll, { halfOpenAfter: 30_000, breaker: new cockatiel.ConsecutiveBreaker(5) });
  const oBreaker = opossum(ok);
  report('breaker-success', 'bulwark', await measure(() => bBreaker.execute(ok)));
  report('breaker-success', 'cockatiel', await measure(() => cBreaker.execute(ok)));
  report('breaker-success', 'opossum', await measure(() => oBreaker.fire()));

  ctx.log('timeout-success');
  const bTimeout = timeout({ ms: 1000 });
  const cTimeout = cockatiel.timeout(1000, cockatiel.TimeoutStrategy.Cooperative);
  const oTimeout = opossum(ok, { timeout: 1000 });
  report('timeout-success', 'bulwark', await measure(() => bTimeout.execute(ok)));
  report('timeout-success', 'cockatiel', await measure(() => cTimeout.execute(ok)));
  report('timeout-success', 'opossum', await measure(() => oTimeout.fire()));

  ctx.log('bulkhead-success');
  const bBulkhead = bulkhead({ maxConcurrent: 10, maxQueue: 10 });
  const cBulkhead = cockatiel.bulkhead(10, 10);
  report('bulkhead-success', 'bulwark', await measure(() => bBulkhead.execute(ok)));
  report('bulkhead-success', 'cockatiel', await measure(() => cBulkhead.execute(ok)));

  ctx.log('pipeline-success (timeout + retry + breaker + bulkhead)');
  const bPipeline = pipeline(retry({ maxAttempts: 3 }), circuitBreaker(), bulkhead({ maxConcurrent: 10, maxQueue: 10 }), timeout({ ms: 1000 }));
  const cPipeline = cockatiel.wrap(
    cockatiel.retry(cockatiel.handleAll, { maxAttempts: 2, backoff: new cockatiel.ExponentialBackoff() }),
    cockatiel.circuitBreaker(cockatiel.handleAll, { halfOpenAfter: 30_000, breaker: new cockatiel.ConsecutiveBreaker(5) }),
    cockatiel.bulkhead(10, 10),
    cockatiel.timeout(1000, cockatiel.TimeoutStrategy.Cooperative),
  );
  const oPipeline = opossum(ok, { timeout: 1000 });
  report('pipeline-success', 'bulwark', await measure(() => bPipeline.execute(ok)));
  report('pipeline-success', 'cockatiel', await measure(() => cPipeline.execute(ok)));
  report('pipeline-success', 'opossum', await measure(() => oPipeline.fire()));

  // A failing call recorded into a rate window that already holds N failures. Successes are
  // interleaved one-for-one so the failure rate stays at 50% (below the 99% threshold) and the
  // breaker stays closed while it keeps N failures in its window; nsPerOp is per call.
  for (const failures of [100, 32_000]) {
    const name = `breaker-failure-${failures === 100 ? '100' : '32k'}`;
    ctx.log(name);
    const size = failures * 2;
    const bRate = circuitBreaker({ strategy: countWindow({ size, minimumCalls: size, failureRateThreshold: 0.99 }) });
    const cRate = cockatiel.circuitBreaker(cockatiel.handleAll, {
      halfOpenAfter: 30_000,
      breaker: new cockatiel.CountBreaker({ threshold: 0.99, size, minimumNumberOfCalls: size }),
    });
    const oRate = opossum((shouldFail: boolean): Promise<number> => (shouldFail ? fail() : ok()), {
      errorThresholdPercentage: 99, volumeThreshold: size, rollingCountTimeout: 3_600_000, rollingCountBuckets: 10,
    } as CircuitBreaker.Options);
    const pair = {
      bulwark: async () => { await bRate.execute(fail).catch(swallow); await bRate.execute(ok); },
      cockatiel: async () => { await cRate.execute(fail).catch(swallow); await cRate.execute(ok); },
      opossum: async () => { await oRate.fire(true).catch(swallow); await oRate.fire(false); },
    };
    for (const [impl, fn] of Object.entries(pair)) {
      for (let i = 0; i < failures; i++) await fn(); // fill the window: N failures, N successes
      // opossum's failure path costs milliseconds here: each failure reads `stats`, which concatenates
      // and sorts every latency in the window (O(n log n) per call), so it gets fewer iterations.
      const n = impl === 'opossum' ? 200 : Math.floor(iterations / 2);
      const ns = await nsPerOp(fn, { iterations: n, rounds, warmup: impl === 'opossum' ? 50 : 1000 });
      const state = impl === 'bulwark' ? bRate.state.kind : impl === 'cockatiel' ? String(cRate.state) : (oRate.opened ? 'open' : 'closed');
      if (state !== 'closed' && state !== String(cockatiel.CircuitState.Closed)) ctx.log(`warning: ${impl} breaker is ${state} after ${name}`);
      report(name, impl, Math.round((ns / 2) * 10) / 10);
    }
  }

  for (const breaker of opossumBreakers) breaker.shutdown();

  ctx.log('retry-herd (1,000 clients fail together; largest 10 ms bucket of retries)');
  for (const [strategy, make] of Object.entries(HERD_STRATEGIES)) {
    const { largestBucket, spanMs } = await retryHerd(make());
    ctx.report({ case: 'retry-herd', impl: strategy, largestBucket, spanMs: Math.round(spanMs) });
  }
}
