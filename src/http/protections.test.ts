import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadShedder } from '../shedding/shedder.js';
import { AdmissionControl } from './core/admission.js';
import { HttpGuard } from './core/http-guard.js';
import { healthChecks } from './core/health.js';
import { RateLimitProtection } from './core/rate-limit.js';
import { ADAPTERS, startApp, type AppRoute, type RunningApp } from './test/apps.js';
import { InvalidOptionsError } from '../core/errors.js';

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

async function start(...args: Parameters<typeof startApp>): Promise<RunningApp> {
  const app = await startApp(...args);
  running.push(app);
  return app;
}

/** Three routes, each named (so every adapter keys them the same way). */
function threeRoutes(): AppRoute[] {
  return [
    { method: 'GET', path: '/a', config: { name: 'a' }, handler: () => ({ body: 'a' }) },
    { method: 'GET', path: '/b', config: { name: 'b' }, handler: () => ({ body: 'b' }) },
    { method: 'POST', path: '/c', config: { name: 'c' }, handler: () => ({ status: 201, body: 'c' }) },
  ];
}

function call(app: RunningApp, method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}${path}`, {
    method,
    headers: { ...(method === 'POST' ? { 'content-type': 'application/json' } : {}), ...headers },
    ...(method === 'POST' ? { body: '{}' } : {}),
  });
}

for (const kind of ADAPTERS) {
  describe(`${kind}: rate limiting`, () => {
    test('per-IP limits: per route, independent, standard headers, 429 problem; spoofed X-Forwarded-For is ignored', async () => {
      const app = await start(kind, threeRoutes(), {
        rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limit: 3, intervalMs: 60_000 }] },
      });
      for (let i = 0; i < 3; i++) {
        const res = await call(app, 'GET', '/a', { 'x-forwarded-for': `10.0.0.${i}` });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('ratelimit-limit'), '3');
        assert.equal(res.headers.get('ratelimit-remaining'), String(2 - i));
        const reset = Number(res.headers.get('ratelimit-reset'));
        assert.ok(reset >= 1 && reset <= 60, `reset ${reset}`);
        assert.equal(res.headers.get('ratelimit-policy'), '3;w=60');
        await res.arrayBuffer();
      }
      const denied = await call(app, 'GET', '/a', { 'x-forwarded-for': '203.0.113.77' });
      assert.equal(denied.status, 429, 'a new X-Forwarded-For does not buy a new budget without trustProxy');
      assert.equal(denied.headers.get('content-type'), 'application/problem+json');
      const retryAfter = Number(denied.headers.get('retry-after'));
      assert.ok(retryAfter >= 1 && retryAfter <= 20, `retry-after ${retryAfter}`); // one token of 3/min: 20 s
      assert.equal(denied.headers.get('ratelimit-remaining'), '0');
      assert.equal(denied.headers.get('ratelimit-limit'), '3');
      const problem = await denied.json() as any;
      assert.equal(problem.code, 'RATE_LIMITED');
      assert.equal(problem.status, 429);
      // The other two routes have their own budgets.
      for (let i = 0; i < 3; i++) {
        assert.equal((await call(app, 'GET', '/b')).status, 200);
        assert.equal((await call(app, 'POST', '/c')).status, 201);
      }
      assert.equal((await call(app, 'GET', '/b')).status, 429);
      assert.equal((await call(app, 'POST', '/c')).status, 429);
    });

    test('per-user limits: each user has a budget per route; anonymous callers count by IP; the most restrictive limit sets the headers', async () => {
      const app = await start(kind, threeRoutes(), {
        rateLimit: {
          user: (request) => request.headers['x-user'] as string | undefined,
          limits: [
            { name: 'per-ip', key: 'ip', limit: 100, intervalMs: 60_000 },
            { name: 'per-user', key: 'user', limit: 2, intervalMs: 60_000 },
          ],
        },
      });
      const alice = { 'x-user': 'alice' };
      const first = await call(app, 'GET', '/a', alice);
      assert.equal(first.headers.get('ratelimit-limit'), '2', 'the per-user limit (1 left) is more restrictive than per-IP (99 left)');
      assert.equal(first.headers.get('ratelimit-remaining'), '1');
      assert.equal((await call(app, 'GET', '/a', alice)).status, 200);
      const denied = await call(app, 'GET', '/a', alice);
      assert.equal(denied.status, 429);
      assert.equal(denied.headers.get('ratelimit-limit'), '2');
      assert.equal((await call(app, 'GET', '/a', { 'x-user': 'bob' })).status, 200, 'another user is not affected');
      assert.equal((await call(app, 'GET', '/b', alice)).status, 200, 'another route is not affected');
      assert.equal((await call(app, 'POST', '/c', alice)).status, 201);
      // Anonymous: by IP, 2 per route as well.
      assert.equal((await call(app, 'GET', '/a')).status, 200);
      assert.equal((await call(app, 'GET', '/a')).status, 200);
      assert.equal((await call(app, 'GET', '/a')).status, 429);
    });

    test('with trustProxy the X-Forwarded-For client is the key', async () => {
      const app = await start(kind, threeRoutes(), {
        trustProxy: 1,
        rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limit: 1, intervalMs: 60_000 }] },
      });
      assert.equal((await call(app, 'GET', '/a', { 'x-forwarded-for': '198.51.100.1' })).status, 200);
      assert.equal((await call(app, 'GET', '/a', { 'x-forwarded-for': '198.51.100.1' })).status, 429);
      assert.equal((await call(app, 'GET', '/a', { 'x-forwarded-for': '198.51.100.2' })).status, 200);
    });
  });

  describe(`${kind}: admission control`, () => {
    test('with capacity saturated, low and normal routes get 503 + Retry-After + Bulwark-Retry: no; critical routes and health pass', async () => {
      const shedder = loadShedder({ capacity: 2, retryAfterMs: 2000 });
      const holds: (() => void)[] = [];
      let started = 0;
      const routes: AppRoute[] = [
        {
          method: 'GET', path: '/work', config: { name: 'work', priority: 'high' },
          handler: async () => {
            started++;
            await new Promise<void>((resolve) => holds.push(resolve));
            return { body: 'worked' };
          },
        },
        { method: 'GET', path: '/report', config: { name: 'report', priority: 'low' }, handler: () => ({ body: 'report' }) },
        { method: 'GET', path: '/page', config: { name: 'page' }, handler: () => ({ body: 'page' }) },
        { method: 'POST', path: '/auth/login', config: { name: 'login', critical: true }, handler: () => ({ body: 'token' }) },
      ];
      const health = healthChecks();
      const app = await start(kind, routes, { health, admission: { shedder, priorityHeader: 'x-priority' } });

      assert.equal((await call(app, 'GET', '/report')).status, 200, 'idle: low is admitted');
      const inflight = [call(app, 'GET', '/work'), call(app, 'GET', '/work')];
      for (let i = 0; i < 200 && started < 2; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(started, 2);
      assert.equal(shedder.inflight, 2);

      for (const path of ['/report', '/page']) {
        const res = await call(app, 'GET', path);
        assert.equal(res.status, 503, `${path} is shed at full capacity`);
        assert.equal(res.headers.get('retry-after'), '2');
        assert.equal(res.headers.get('bulwark-retry'), 'no');
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
        assert.equal((await res.json() as any).code, 'SHED');
      }
      const login = await call(app, 'POST', '/auth/login');
      assert.equal(login.status, 200, 'a critical route is never shed');
      assert.equal((await fetch(`${app.url}/health/live`)).status, 200);
      assert.equal(shedder.stats().shed.priority, 2);

      for (const release of holds) release();
      for (const res of await Promise.all(inflight)) assert.equal(res.status, 200);
      for (let i = 0; i < 100 && shedder.inflight > 0; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(shedder.inflight, 0, 'every permit was released when its response ended');
      assert.equal((await call(app, 'GET', '/report')).status, 200, 'recovered');
    });

    test('priority from a header: it may lower the route priority; unknown values and "critical" are ignored', async () => {
      const shedder = loadShedder({ capacity: 4 });
      const holds: (() => void)[] = [];
      const routes: AppRoute[] = [
        { method: 'GET', path: '/hold', config: { name: 'hold', priority: 'high' }, handler: async () => { await new Promise<void>((r) => holds.push(r)); return { body: 1 }; } },
        { method: 'GET', path: '/page', config: { name: 'page' }, handler: () => ({ body: 'page' }) },
      ];
      const app = await start(kind, routes, { admission: { shedder, priorityHeader: 'x-priority' } });
      const held = [call(app, 'GET', '/hold'), call(app, 'GET', '/hold')];
      for (let i = 0; i < 200 && shedder.inflight < 2; i++) await new Promise((r) => setTimeout(r, 5));
      // utilisation 0.5: normal (0.75) passes, low (0.5) is shed.
      assert.equal((await call(app, 'GET', '/page')).status, 200);
      assert.equal((await call(app, 'GET', '/page', { 'x-priority': 'low' })).status, 503);
      assert.equal((await call(app, 'GET', '/page', { 'x-priority': 'LOW ' })).status, 503, 'case and spaces tolerated');
      assert.equal((await call(app, 'GET', '/page', { 'x-priority': 'urgent!!' })).status, 200, 'unknown value: route priority');
      assert.equal((await call(app, 'GET', '/page', { 'x-priority': '' })).status, 200);
      for (const release of holds) release();
      await Promise.all(held);
    });
  });
}

test('a header cannot make a request critical or raise it unless headerMayRaise', () => {
  const shedder = loadShedder({ capacity: 1 });
  const strict = new AdmissionControl({ shedder, priorityHeader: 'X-Priority' });
  const lenient = new AdmissionControl({ shedder, priorityHeader: 'x-priority', headerMayRaise: true });
  const request = (priority: string, header: string | string[] | undefined, critical = false) => ({
    priority, critical, headers: { 'x-priority': header },
  }) as never;
  assert.equal(strict.priorityOf(request('low', 'high')), 'low');
  assert.equal(strict.priorityOf(request('high', 'low')), 'low');
  assert.equal(strict.priorityOf(request('low', 'critical')), 'low');
  assert.equal(strict.priorityOf(request('normal', ['low', 'low'])), 'normal', 'a repeated header is ignored');
  assert.equal(strict.priorityOf(request('low', 'high', true)), 'critical');
  assert.equal(lenient.priorityOf(request('low', 'high')), 'high');
  assert.equal(lenient.priorityOf(request('low', 'critical')), 'low');
});

test('protection options are validated when the guard is built', () => {
  assert.throws(() => new HttpGuard({ admission: {} as never }), InvalidOptionsError);
  assert.throws(() => new HttpGuard({ rateLimit: { limits: [] } }), InvalidOptionsError);
  assert.throws(() => new HttpGuard({ rateLimit: { limits: [{ name: 'x', key: 'ip' }] } }), /limit/);
  assert.throws(() => new HttpGuard({ rateLimit: { limits: [{ name: 'x', key: 'user', limit: 1 }] } }), /user option/);
  assert.throws(() => new HttpGuard({ rateLimit: { limits: [{ name: 'x', key: 'ip', limit: 1 }, { name: 'x', key: 'ip', limit: 2 }] } }), /duplicate/);
  assert.throws(() => new HttpGuard({ rateLimit: { limits: [{ name: 'x', key: 'nope' as never, limit: 1 }] } }), InvalidOptionsError);
  assert.throws(() => new HttpGuard({ idempotency: { store: undefined } as never }), /principal/);
  assert.doesNotThrow(() => new RateLimitProtection({ limits: [{ name: 'x', key: 'route', limit: 0 + 1, routes: ['a'] }] }));
});

test('limits[].routes entries that can never match fail when the guard is built (INVALID_OPTIONS)', () => {
  const limit = (routes: unknown) => () => new RateLimitProtection({ limits: [{ name: 'x', key: 'ip', limit: 1, routes: routes as string[] }] });
  for (const bad of [[''], ['  '], [42], [null], ['POST /a b'], ['POST login'], ['GET  /x y'], 'POST /login']) {
    assert.throws(limit(bad), { code: 'INVALID_OPTIONS' }, JSON.stringify(bad));
  }
  for (const good of [['POST /login'], ['post /login'], ['/admin/*'], ['GET /orders/:id'], ['checkout']]) {
    assert.doesNotThrow(limit(good), JSON.stringify(good));
  }
});
