import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryIdempotencyStore } from '../idempotency/stores/memory.js';
import { IdempotencyProtection } from './core/idempotency.js';
import { ADAPTERS, startApp, type AppRoute, type RunningApp } from './test/apps.js';

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

async function start(...args: Parameters<typeof startApp>): Promise<RunningApp> {
  const app = await startApp(...args);
  running.push(app);
  return app;
}

const principal = (request: { headers: Record<string, unknown> }) => (request.headers['x-user'] as string | undefined) ?? null;

function post(app: RunningApp, key: string | undefined, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }), ...headers },
    body,
  });
}

for (const kind of ADAPTERS) {
  describe(`${kind}: idempotency keys`, () => {
    test('a sequential duplicate POST is replayed through the reply path with Idempotent-Replayed: true; the handler runs once', async () => {
      let runs = 0;
      const routes: AppRoute[] = [{
        method: 'POST', path: '/orders', config: { name: 'orders' },
        handler: (_r, req) => {
          runs++;
          return { status: 201, body: { order: runs, sku: (req.body as any)?.sku }, headers: { location: `/orders/${runs}`, 'x-internal': 'no-replay' } };
        },
      }];
      const app = await start(kind, routes, {
        idempotency: { store: new MemoryIdempotencyStore(), principal },
        rateLimit: { limits: [{ name: 'per-ip', key: 'ip', limit: 100, intervalMs: 60_000 }] },
      });
      const first = await post(app, 'key-1', '{"sku":"a","qty":2}');
      assert.equal(first.status, 201);
      assert.equal(first.headers.get('idempotent-replayed'), null);
      const firstBody = await first.text();
      assert.deepEqual(JSON.parse(firstBody), { order: 1, sku: 'a' });

      // Same key, same body with its keys in another order: the canonical fingerprint matches.
      const again = await post(app, 'key-1', '{"qty":2,"sku":"a"}');
      assert.equal(again.status, 201);
      assert.equal(again.headers.get('idempotent-replayed'), 'true');
      assert.ok(again.headers.get('idempotent-original-date')?.endsWith('GMT'));
      assert.equal(again.headers.get('location'), '/orders/1');
      assert.match(String(again.headers.get('content-type')), /application\/json/);
      assert.equal(again.headers.get('x-internal'), null, 'only allow-listed headers are replayed');
      assert.ok(again.headers.get('ratelimit-remaining') !== null, 'the replay still passed the rate limit');
      assert.equal(await again.text(), firstBody, 'the same bytes');
      assert.equal(runs, 1);

      // Keys are scoped to the principal: another user's identical key runs on its own.
      const other = await post(app, 'key-1', '{"sku":"a","qty":2}', { 'x-user': 'mallory' });
      assert.equal(other.status, 201);
      assert.equal(other.headers.get('idempotent-replayed'), null);
      assert.equal(runs, 2);
      // No key: runs every time (not required here).
      await post(app, undefined, '{"sku":"a"}');
      await post(app, undefined, '{"sku":"a"}');
      assert.equal(runs, 4);
    });

    test('a concurrent duplicate gets 409 with Retry-After; a reused key with another body 422; a bad key 400', async () => {
      let runs = 0;
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let entered!: () => void;
      const inHandler = new Promise<void>((resolve) => { entered = resolve; });
      const routes: AppRoute[] = [{
        method: 'POST', path: '/orders', config: { name: 'orders' },
        handler: async () => {
          runs++;
          entered();
          await gate;
          return { status: 201, body: { order: runs } };
        },
      }];
      const app = await start(kind, routes, { idempotency: { store: new MemoryIdempotencyStore(), principal } });
      const first = post(app, 'slow-key', '{"sku":"a"}');
      await inHandler;
      const duplicate = await post(app, 'slow-key', '{"sku":"a"}');
      assert.equal(duplicate.status, 409);
      assert.equal(duplicate.headers.get('retry-after'), '1');
      assert.match(String(duplicate.headers.get('content-type')), /application\/problem\+json/);
      assert.equal((await duplicate.json() as any).code, 'IDEMPOTENCY_CONFLICT');
      release();
      assert.equal((await first).status, 201);

      const mismatch = await post(app, 'slow-key', '{"sku":"b"}');
      assert.equal(mismatch.status, 422);
      assert.equal((await mismatch.json() as any).code, 'IDEMPOTENCY_MISMATCH');

      for (const bad of ['x'.repeat(300), 'has space', '']) {
        const res = await post(app, bad, '{"sku":"a"}');
        assert.equal(res.status, 400, `key ${JSON.stringify(bad.slice(0, 10))}`);
        assert.equal((await res.json() as any).code, 'IDEMPOTENCY_KEY_INVALID');
      }
      assert.equal(runs, 1);
    });

    test('a 5xx answer releases the key (the retry runs); a required key that is missing is 400', async () => {
      let runs = 0;
      const routes: AppRoute[] = [
        { method: 'POST', path: '/orders', config: { name: 'orders' }, handler: () => (++runs === 1 ? { status: 503, body: 'try again' } : { status: 201, body: { order: runs } }) },
        { method: 'POST', path: '/payments', config: { name: 'payments' }, handler: () => ({ status: 201, body: 'paid' }) },
      ];
      const app = await start(kind, routes, {
        idempotency: { store: new MemoryIdempotencyStore(), principal, required: true, routes: ['payments', 'orders'] },
      });
      assert.equal((await post(app, 'k', '{}')).status, 503);
      // The record is released when the response is produced; give the store a moment.
      let second: Response | undefined;
      for (let i = 0; i < 50; i++) {
        second = await post(app, 'k', '{}');
        if (second.status !== 409) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(second!.status, 201);
      assert.equal(runs, 2);
      const missing = await fetch(`${app.url}/payments`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      assert.equal(missing.status, 400);
      assert.equal((await missing.json() as any).code, 'IDEMPOTENCY_KEY_INVALID');
    });
  });
}

test('the protection needs the body only for guarded methods on its routes with a key (or a required one)', () => {
  const protection = new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal: () => null, routes: ['orders'] });
  const request = (method: string, route: string, key?: string) => ({ method, route: { name: route }, headers: key ? { 'idempotency-key': key } : {} }) as never;
  assert.equal(protection.needsBody(request('POST', 'orders', 'k')), true);
  assert.equal(protection.needsBody(request('POST', 'orders')), false);
  assert.equal(protection.needsBody(request('GET', 'orders', 'k')), false);
  assert.equal(protection.needsBody(request('POST', 'other', 'k')), false);
});
