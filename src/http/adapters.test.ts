import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { HttpGuard } from './core/http-guard.js';
import type { Protection } from './core/protection.js';
import { healthChecks } from './core/health.js';
import type { RequestOutcome } from './core/request-context.js';
import { ADAPTERS, sleep, startApp, type AppRoute, type RunningApp } from './test/apps.js';
import { fileURLToPath } from 'node:url';
import { exitsByItself } from '../../test/support/exits-by-itself.js';

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

async function start(...args: Parameters<typeof startApp>): Promise<RunningApp> {
  const app = await startApp(...args);
  running.push(app);
  return app;
}

for (const kind of ADAPTERS) {
  describe(`${kind} adapter`, () => {
    test('exposes the request context: budget, deadline source, route settings, client IP', async () => {
      const routes: AppRoute[] = [{
        method: 'GET',
        path: '/info',
        config: { priority: 'high', critical: true, name: 'info' },
        handler: (request) => ({
          body: {
            clientIp: request?.clientIp,
            source: request?.deadlineSource,
            remaining: request?.remaining(),
            priority: request?.priority,
            critical: request?.critical,
            route: request?.route.name,
          },
        }),
      }];
      const app = await start(kind, routes, { defaults: { deadlineMs: 30_000 } });
      const withHeader = await (await fetch(`${app.url}/info`, { headers: { 'x-request-timeout-ms': '5000' } })).json() as any;
      assert.equal(withHeader.clientIp, '127.0.0.1');
      assert.equal(withHeader.source, 'timeout-header');
      assert.ok(withHeader.remaining > 4000 && withHeader.remaining <= 5000, `remaining ${withHeader.remaining}`);
      assert.equal(withHeader.priority, 'high');
      assert.equal(withHeader.critical, true);
      assert.equal(withHeader.route, 'info');
      const byDefault = await (await fetch(`${app.url}/info`)).json() as any;
      assert.equal(byDefault.source, 'route-default');
      assert.ok(byDefault.remaining > 25_000);
    });

    test('expired or malformed deadline headers: 504 / 400 problem+json and the handler never runs', async () => {
      let runs = 0;
      const app = await start(kind, [{ method: 'POST', path: '/work', handler: () => { runs++; return { body: 'done' }; } }]);
      const post = (headers: Record<string, string>) => fetch(`${app.url}/work`, {
        method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{"a":1}',
      });
      const expired: Record<string, string>[] = [{ 'x-request-timeout-ms': '0' }, { 'x-request-deadline': String(Date.now() - 1000) }];
      for (const headers of expired) {
        const res = await post(headers);
        assert.equal(res.status, 504);
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
        assert.equal((await res.json() as any).code, 'DEADLINE_EXCEEDED');
      }
      const malformed: Record<string, string>[] = [{ 'x-request-timeout-ms': 'None' }, { 'x-request-deadline': '1712345678.5' }, { 'x-request-timeout-ms': '-1' }];
      for (const headers of malformed) {
        const res = await post(headers);
        assert.equal(res.status, 400);
        const problem = await res.json() as any;
        assert.equal(problem.code, 'INVALID_INPUT');
        assert.equal(problem.status, 400);
      }
      assert.equal(runs, 0);
      const ok = await post({ 'x-request-timeout-ms': '5000' });
      assert.equal(ok.status, 200);
      assert.equal(runs, 1);
    });

    test('at the deadline the handler signal aborts (DEADLINE_EXCEEDED) and the client gets 504', async () => {
      const guard = new HttpGuard();
      const seen: { code?: string; at?: number } = {};
      const app = await start(kind, [{
        method: 'GET',
        path: '/slow',
        handler: async (request) => {
          try {
            await sleep(10_000, request!.signal);
          } catch (error) {
            seen.code = (error as any).code;
            seen.at = performance.now();
            throw error;
          }
          return { body: 'too late' };
        },
      }], { guard });
      const started = performance.now();
      const res = await fetch(`${app.url}/slow`, { headers: { 'x-request-timeout-ms': '200' } });
      const elapsed = performance.now() - started;
      assert.equal(res.status, 504);
      assert.equal((await res.json() as any).code, 'DEADLINE_EXCEEDED');
      assert.ok(elapsed >= 190 && elapsed < 2000, `answered after ${elapsed} ms`);
      await sleep(20);
      assert.equal(seen.code, 'DEADLINE_EXCEEDED');
      // Timed from the request's sending, as the deadline is from its arrival (a loaded machine may
      // start the handler well after that).
      assert.ok(seen.at! - started >= 190 && seen.at! - started < 2000, `handler aborted ${seen.at! - started} ms after the request was sent`);
      assert.equal(guard.pendingDeadlines, 0, 'the deadline entry was released');
    });

    test('a client that disconnects aborts the handler signal (ABORTED) and releases the deadline', async () => {
      const guard = new HttpGuard();
      let reason: any;
      let handlerStarted!: () => void;
      const started = new Promise<void>((resolve) => { handlerStarted = resolve; });
      const app = await start(kind, [{
        method: 'GET',
        path: '/hang',
        handler: async (request) => {
          handlerStarted();
          await sleep(10_000, request!.signal).catch((error) => { reason = error; throw error; });
          return {};
        },
      }], { guard });
      const controller = new AbortController();
      const call = fetch(`${app.url}/hang`, { headers: { 'x-request-timeout-ms': '60000' }, signal: controller.signal }).catch(() => 'aborted');
      await started;
      assert.equal(guard.pendingDeadlines, 1);
      controller.abort();
      assert.equal(await call, 'aborted');
      for (let i = 0; i < 100 && reason === undefined; i++) await sleep(10);
      assert.equal(reason?.code, 'ABORTED');
      assert.equal(guard.pendingDeadlines, 0);
    });

    test('client IP: X-Forwarded-For is ignored by default and trusted per hop count when configured', async () => {
      const routes: AppRoute[] = [{ method: 'GET', path: '/ip', handler: (request) => ({ body: request?.clientIp }) }];
      const plain = await start(kind, routes);
      const proxied = await start(kind, routes, { trustProxy: 1 });
      const spoof = { 'x-forwarded-for': '6.6.6.6' };
      assert.equal(await (await fetch(`${plain.url}/ip`, { headers: spoof })).json(), '127.0.0.1');
      assert.equal(await (await fetch(`${proxied.url}/ip`, { headers: { 'x-forwarded-for': '6.6.6.6, 203.0.113.9' } })).json(), '203.0.113.9');
      assert.equal(await (await fetch(`${proxied.url}/ip`, { headers: { 'x-forwarded-for': 'garbage' } })).json(), '127.0.0.1');
      assert.equal(await (await fetch(`${proxied.url}/ip`, { headers: { 'x-forwarded-for': 'unknown, 203.0.113.9' } })).json(), '203.0.113.9', 'a malformed element left of the proxy\'s entry does not discard it');
      assert.equal(await (await fetch(`${proxied.url}/ip`, { headers: { 'x-forwarded-for': 'garbage, [2001:db8::5]:4711' } })).json(), '2001:db8::5');
    });

    test('protections: reject before the handler, add headers, and see the captured response at the end', async () => {
      const outcomes: RequestOutcome[] = [];
      const counts = new Map<string, number>();
      const limiter: Protection = {
        name: 'per-ip-test-limiter',
        check(request) {
          const n = (counts.get(request.clientIp) ?? 0) + 1;
          counts.set(request.clientIp, n);
          if (n > 2) return { status: 429, headers: { 'retry-after': '1', 'content-type': 'text/plain' }, body: 'limited' };
          request.setHeader('ratelimit-remaining', String(2 - n));
          request.captureResponse();
          request.onEnd((outcome) => outcomes.push(outcome));
          return undefined;
        },
      };
      let runs = 0;
      const app = await start(kind, [{
        method: 'POST',
        path: '/orders',
        handler: (_request, req) => { runs++; return { status: 201, body: { created: req.body }, headers: { 'x-order': '7' } }; },
      }], { protections: [limiter] });
      const order = (xff: string) => fetch(`${app.url}/orders`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-forwarded-for': xff }, body: '{"sku":"a"}',
      });
      const first = await order('1.1.1.1');
      assert.equal(first.status, 201);
      assert.equal(first.headers.get('ratelimit-remaining'), '1');
      assert.deepEqual(await first.json(), { created: { sku: 'a' } });
      await order('2.2.2.2');
      const third = await order('3.3.3.3');
      assert.equal(third.status, 429, 'rotating X-Forwarded-For does not dodge a per-IP limit');
      assert.equal(third.headers.get('retry-after'), '1');
      assert.equal(runs, 2);
      for (let i = 0; i < 50 && outcomes.length < 2; i++) await sleep(10);
      assert.equal(outcomes.length, 2);
      const outcome = outcomes[0]!;
      assert.equal(outcome.status, 201);
      assert.equal(outcome.completed, true);
      assert.equal(outcome.body?.toString(), '{"created":{"sku":"a"}}');
      assert.equal(outcome.headers?.['x-order'], '7');
      assert.match(String(outcome.headers?.['content-type']), /application\/json/);
    });

    test('per-route rate limits are kept per method and route: GET /orders does not spend the POST /orders budget', async () => {
      const ok = (_request: unknown) => ({ body: 'ok' });
      const app = await start(kind, [
        { method: 'GET', path: '/orders', handler: ok },
        { method: 'POST', path: '/orders', handler: ok },
        { method: 'GET', path: '/orders/:id', handler: ok },
      ], { rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limit: 1, intervalMs: 60_000 }] } });
      const call = (method: string, path = '/orders') => fetch(`${app.url}${path}`, { method });
      assert.equal((await call('GET')).status, 200);
      assert.equal((await call('POST')).status, 200, 'POST /orders has its own budget');
      assert.equal((await call('GET')).status, 429);
      assert.equal((await call('POST')).status, 429);
      // A routes-table entry for any method ("/items") names the route; the method still splits the budget.
      const table = await start(kind, [
        { method: 'GET', path: '/items', handler: ok },
        { method: 'POST', path: '/items', handler: ok },
      ], { routes: { '/items': { priority: 'normal' } }, rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limit: 1, intervalMs: 60_000 }] } });
      assert.equal((await fetch(`${table.url}/items`)).status, 200);
      assert.equal((await fetch(`${table.url}/items`, { method: 'POST' })).status, 200);
      assert.equal((await fetch(`${table.url}/items`)).status, 429);
    });

    test('limits[].routes entries written like route-table keys ("POST /login", "/admin/*", "GET /orders/:id") apply on every adapter', async () => {
      const ok = (_request: unknown) => ({ body: 'ok' });
      const app = await start(kind, [
        { method: 'POST', path: '/login', handler: ok },
        { method: 'GET', path: '/login', handler: ok },
        { method: 'GET', path: '/admin/users', handler: ok },
        { method: 'GET', path: '/orders/:id', handler: ok },
      ], {
        rateLimit: {
          limits: [
            { name: 'login', key: 'ip', limit: 1, intervalMs: 60_000, routes: ['POST /login'] },
            { name: 'admin', key: 'ip', limit: 1, intervalMs: 60_000, routes: ['/admin/*', 'GET /orders/:id'], scope: 'server' },
          ],
        },
      });
      const call = (method: string, path: string) => fetch(`${app.url}${path}`, { method }).then((r) => r.status);
      assert.equal(await call('POST', '/login'), 200);
      assert.equal(await call('POST', '/login'), 429, 'the "POST /login" entry applies');
      assert.equal(await call('GET', '/login'), 200);
      assert.equal(await call('GET', '/login'), 200, 'GET /login is not in the list');
      assert.equal(await call('GET', '/admin/users'), 200);
      assert.equal(await call('GET', '/orders/7'), 429, '"GET /orders/:id" is in the same server-wide budget');
    });

    test('health endpoints are served by the adapter, before protections', async () => {
      const reject: Protection = { name: 'reject-all', check: () => ({ status: 503, headers: {}, body: '' }) };
      const health = healthChecks({ checks: { always: () => undefined } });
      const app = await start(kind, [], { health, protections: [reject] });
      const live = await fetch(`${app.url}/health/live`);
      assert.equal(live.status, 200);
      assert.deepEqual(await live.json(), { status: 'pass' });
      const ready = await fetch(`${app.url}/health/ready`);
      assert.equal(ready.status, 200);
      assert.equal((await ready.json() as any).checks.always.status, 'pass');
      assert.equal((await fetch(`${app.url}/health/ready`, { method: 'HEAD' })).status, 200);
      assert.equal((await fetch(`${app.url}/other`)).status, 503, 'other routes go through protections');
    });
  });
}

test('a process that served requests with deadlines on every adapter exits by itself once its servers close', async () => {
  const { code, out } = await exitsByItself(fileURLToPath(new URL('./test/exit-check.ts', import.meta.url)), 'served');
  assert.equal(code, 0, `child ${code === 'leaked' ? 'did not exit after its servers closed (something leaked)' : `exited ${String(code)}`}: ${out}`);
});

test('fastify: ready() fails with INVALID_OPTIONS on a limits[].routes entry that matches no registered route', async () => {
  const { default: Fastify } = await import('fastify');
  const { fastifyBulwark } = await import('./fastify.js');
  const build = async (routes: string[]) => {
    const app = Fastify({ logger: false });
    await app.register(fastifyBulwark, { rateLimit: { limits: [{ name: 'login', key: 'ip', limit: 1, routes }] } });
    app.post('/login', async () => 'ok');
    app.get('/orders/:id', async () => 'ok');
    return app;
  };
  const typo = await build(['POST /login', 'POST /logn']);
  await assert.rejects(async () => { await typo.ready(); }, (error: any) => error.code === 'INVALID_OPTIONS' && /"POST \/logn" matches no route/.test(error.message));
  await typo.close().catch(() => undefined);
  for (const routes of [['POST /login', '/orders/:id', 'GET /orders/7', '/orders/*'], ['/login']]) {
    const fine = await build(routes);
    await fine.ready();
    await fine.close();
  }
  const wrongMethod = await build(['GET /login']);
  await assert.rejects(async () => { await wrongMethod.ready(); }, { code: 'INVALID_OPTIONS' });
  await wrongMethod.close().catch(() => undefined);
  // A shared guard may serve routes of another app: a warning in the app's log, not a failure.
  const warnings: string[] = [];
  const shared = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { warnings.push(line); } } } });
  await shared.register(fastifyBulwark, { guard: new HttpGuard({ rateLimit: { limits: [{ name: 'login', key: 'ip', limit: 1, routes: ['POST /logn'] }] } }) });
  shared.post('/login', async () => 'ok');
  await shared.ready();
  await shared.close();
  assert.ok(warnings.some((line) => line.includes('\\"POST /logn\\" matches no route')), warnings.join('\n'));
});
