// A separate process hammering one key (used by redis-limiter.integration.test.ts to prove zero overshoot across processes).
// argv: redisUrl prefix key algorithms(comma-separated) attempts; prints { algorithm: { allowed, degraded } }
import { Redis } from 'ioredis';
import { RedisRateLimiter } from '../redis-limiter.js';
import type { AlgorithmKind } from '../types.js';

const [url, prefix, key, algorithms, attempts] = process.argv.slice(2) as [string, string, string, string, string];
const client = new Redis(url, { maxRetriesPerRequest: 1 });
const result: Record<string, { allowed: number; degraded: number }> = {};
for (const algorithm of algorithms.split(',') as AlgorithmKind[]) {
  const limiter = new RedisRateLimiter({ client, prefix: `${prefix}:${algorithm}`, algorithm, limit: 1, intervalMs: 3_600_000, capacity: 50, timeoutMs: 10_000, failMode: 'closed', breaker: false });
  let allowed = 0;
  let degraded = 0;
  const n = Number(attempts);
  for (let done = 0; done < n; done += 25) {
    const batch = await Promise.all(Array.from({ length: Math.min(25, n - done) }, () => limiter.consume(key)));
    for (const d of batch) { if (d.allowed) allowed++; if (d.degraded) degraded++; }
  }
  result[algorithm] = { allowed, degraded };
}
process.stdout.write(JSON.stringify(result));
await client.quit();
