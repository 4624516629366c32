// Heap bytes per key at N keys, measured in a child `node --expose-gc --import tsx` process
// (bench/suites/ratelimit.ts). argv: impl (bulwark | rate-limiter-flexible), keys.
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { MemoryRateLimiter } from '../memory.js';

const [impl, count] = process.argv.slice(2) as [string, string];
const n = Number(count);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
const used = () => { gc(); gc(); const m = process.memoryUsage(); return m.heapUsed + m.arrayBuffers; };
const keys = Array.from({ length: n }, (_, i) => `user:${i}`);
const before = used();
let keep: unknown;
if (impl === 'bulwark') {
  const limiter = new MemoryRateLimiter({ limit: 100, intervalMs: 60_000, maxKeys: n });
  for (const k of keys) limiter.consume(k);
  keep = limiter;
} else {
  const limiter = new RateLimiterMemory({ points: 100, duration: 60 });
  for (let i = 0; i < n; i += 10_000) await Promise.all(keys.slice(i, i + 10_000).map((k) => limiter.consume(k)));
  keep = limiter;
}
const after = used();
process.stdout.write(JSON.stringify({ bytesPerKey: Math.round((after - before) / n), keep: keep !== undefined }));
process.exit(0);
