import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { pipeline } from '../core/policy.js';
import { MemoryRateLimiter } from './memory.js';
import { compositeRateLimiter } from './composite.js';
import { rateLimit } from './policy.js';
import type { Decision, RateLimiter } from './types.js';

interface Req { ip: string; user?: string; route: string }

function setup() {
  const clock = new VirtualClock();
  const perIp = new MemoryRateLimiter({ limit: 5, intervalMs: 1000, clock });
  const perUser = new MemoryRateLimiter({ limit: 3, intervalMs: 1000, clock });
  const perRoute = new MemoryRateLimiter({ algorithm: 'fixed-window', limit: 100, intervalMs: 1000, clock });
  const limits = compositeRateLimiter<Req>([
    { name: 'ip', limiter: perIp, key: (r) => r.ip },
    { name: 'user', limiter: perUser, key: (r) => r.user },
    { name: 'route', limiter: perRoute, key: (r) => r.route, cost: (r) => (r.route === '/search' ? 10 : 1) },
  ]);
  return { clock, perIp, perUser, perRoute, limits };
}

test('the most restrictive rule wins; a denial takes nothing from the other rules', () => {
  const { perIp, perRoute, limits } = setup();
  const req: Req = { ip: '1.2.3.4', user: 'alice', route: '/orders' };
  let d = limits.consume(req) as Awaited<ReturnType<typeof limits.consume>>;
  assert.equal(d.allowed, true);
  assert.equal(d.decidedBy, 'user');
  assert.equal(d.remaining, 2);
  assert.equal(d.results.length, 3);
  limits.consume(req);
  limits.consume(req);
  d = limits.consume(req) as Awaited<ReturnType<typeof limits.consume>>;
  assert.equal(d.allowed, false);
  assert.equal(d.decidedBy, 'user');
  assert.equal(d.retryAfterMs, 333.334, 'the per-user bucket refills one token in 1000 / 3 ms (rounded up to the µs)');
  // The denied request was refunded to the per-IP and per-route limits.
  assert.equal(perIp.peek('1.2.3.4', 0).remaining, 2);
  assert.equal(perRoute.peek('/orders', 0).remaining, 97);
  // An anonymous request skips the user rule and is limited by IP only.
  const anon = limits.consume({ ip: '1.2.3.4', route: '/search' }) as Awaited<ReturnType<typeof limits.consume>>;
  assert.equal(anon.allowed, true);
  assert.equal(anon.results.map((r) => r.name).join(), 'ip,route');
  assert.equal(perRoute.peek('/search', 0).remaining, 90, 'per-rule cost');
});

test('refund on success (e.g. login succeeded) and penalty on failure, per named rule', async () => {
  const { perUser, perIp, limits } = setup();
  const req: Req = { ip: '9.9.9.9', user: 'bob', route: '/login' };
  limits.consume(req);
  await limits.refund(req, ['user']);
  assert.equal(perUser.peek('bob', 0).remaining, 3);
  assert.equal(perIp.peek('9.9.9.9', 0).remaining, 4, 'ip rule not refunded');
  await limits.penalty(req, ['user'], 3);
  assert.equal((limits.consume(req) as Decision).allowed, false);
});

test('async limiters are awaited together and combined the same way', async () => {
  const clock = new VirtualClock();
  const memory = new MemoryRateLimiter({ limit: 1, clock });
  const slow: RateLimiter = {
    store: 'redis', clock, limit: 10,
    consume: async (key, cost) => memory.consume(key, cost),
    refund: async (key, cost) => memory.refund(key, cost),
    penalty: async () => {},
    acquire: async () => memory.consume('x'),
    reset: async () => {},
  };
  const limits = compositeRateLimiter<string>([
    { name: 'a', limiter: slow, key: (k) => `a:${k}` },
    { name: 'b', limiter: new MemoryRateLimiter({ limit: 5, clock }), key: (k) => `b:${k}` },
  ]);
  const first = limits.consume('x');
  assert.ok(first instanceof Promise);
  assert.equal((await first).allowed, true);
  const second = await limits.consume('x');
  assert.equal(second.allowed, false);
  assert.equal(second.decidedBy, 'a');
});

test('rateLimit policy rejects with RATE_LIMITED and retryAfterMs; with maxWaitMs it waits its turn', async () => {
  const clock = new VirtualClock();
  const limiter = new MemoryRateLimiter({ limit: 2, intervalMs: 1000, clock });
  const policy = pipeline(rateLimit({ limiter, key: (ctx) => String(ctx.tags.partner) }));
  const call = () => policy.execute(() => 'ok', { tags: { partner: 'acme' } });
  assert.equal(await call(), 'ok');
  assert.equal(await call(), 'ok');
  await assert.rejects(call(), (e: any) => e.code === 'RATE_LIMITED' && e.retryAfterMs === 500);

  const waiting = rateLimit({ limiter, maxWaitMs: 1000, key: () => 'acme' });
  let done = false;
  const p = waiting.execute(() => 'late').then((v) => { done = true; return v; });
  await clock.advance(499);
  assert.equal(done, false);
  await clock.advance(1);
  assert.equal(await p, 'late');
  assert.equal(waiting.describe().kind, 'rate-limit');
  assert.throws(() => rateLimit({} as any), { code: 'INVALID_OPTIONS' });
});
