import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { StoreUnavailableError } from '../core/errors.js';
import { eventually } from '../fetch/test/server.js';
import { MemoryIdempotencyStore } from '../idempotency/stores/memory-store.js';
import type { CompleteInput } from '../idempotency/types.js';
import { IdempotencyProtection, type IdempotencyOutcomeEvent } from './core/idempotency.js';
import { ADAPTERS, gate, sleep, startApp, type AppRoute, type Gate, type RunningApp } from './test/apps.js';
import { post, principal, slowOrders, type SlowOrders } from './test/idempotency-app.js';

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

async function start(...args: Parameters<typeof startApp>): Promise<RunningApp> {
  const app = await startApp(...args);
  running.push(app);
  return app;
}

async function startSlow(...args: Parameters<typeof slowOrders>): Promise<SlowOrders> {
  const slow = await slowOrders(...args);
  running.push(slow.app);
  return slow;
}

/** A memory store whose completions wait for a gate, or fail, as a test needs. */
class ControlledStore extends MemoryIdempotencyStore {
  completeGate: Gate | undefined;
  failCompletions = 0;
  /** Completions rejected as if another worker had taken the lease over. */
  fenceCompletions = false;
  completeCalls = 0;

  override async complete(input: CompleteInput): Promise<boolean> {
    this.completeCalls++;
    if (this.completeGate !== undefined) await this.completeGate.wait;
    if (this.failCompletions > 0) {
      this.failCompletions--;
      throw new StoreUnavailableError(this.name, new Error('injected store failure'), 1000);
    }
    if (this.fenceCompletions) return false;
    return super.complete(input);
  }
}

for (const kind of ADAPTERS) {
  describe(`${kind}: idempotency keys`, () => {
    test('a 504 at the deadline does not free the key: a duplicate gets 409 until the handler settles, then its own result replays', async () => {
      const { app, clock, outcomes, release, entered, state } = await startSlow(kind);
      const first = post(app, 'deadline-key', '{"sku":"a"}', { 'x-request-timeout-ms': '200' });
      await entered.wait;
      await clock.advance(200);
      const answered = await first;
      assert.equal(answered.status, 504);
      assert.equal((await answered.json() as any).code, 'DEADLINE_EXCEEDED');
      await clock.advance(300);
      const duplicate = await post(app, 'deadline-key', '{"sku":"a"}');
      assert.equal(duplicate.status, 409, 'the handler still runs: the key is still held');
      assert.equal(duplicate.headers.get('retry-after'), '1');
      assert.equal(state.runs, 1);
      release.open();
      await eventually(() => outcomes.some((o) => o.kind === 'stored'), 'the handler\'s own result to be stored');
      const replay = await post(app, 'deadline-key', '{"sku":"a"}');
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(await replay.json(), { order: 1 });
      assert.equal(state.runs, 1);
      assert.deepEqual(outcomes.map((o) => [o.kind, o.status]), [['detached', 504], ['stored', 201]]);
    });

    test('a handler that gives up at the deadline (throws) releases the key once it has settled', async () => {
      const { app, clock, outcomes, entered, state } = await startSlow(kind, { honourSignal: true });
      const first = post(app, 'gives-up', '{"sku":"a"}', { 'x-request-timeout-ms': '200' });
      await entered.wait;
      await clock.advance(200);
      assert.equal((await first).status, 504);
      await eventually(() => outcomes.some((o) => o.kind === 'released'), 'the key to be released');
      assert.equal(state.settled, 1);
      assert.equal(outcomes.at(-1)!.kind, 'released');
    });

    test('a client that leaves while a slow handler runs past several lease periods: the key stays held, then the result is stored', async () => {
      const { app, clock, guard, outcomes, release, entered, state } = await startSlow(kind, { leaseMs: 300 });
      const controller = new AbortController();
      const first = fetch(`${app.url}/orders`, {
        method: 'POST', signal: controller.signal,
        headers: { 'content-type': 'application/json', 'idempotency-key': 'gone-key', 'x-request-timeout-ms': '60000' },
        body: '{"sku":"a"}',
      }).catch(() => 'aborted');
      await entered.wait;
      controller.abort();
      assert.equal(await first, 'aborted');
      await eventually(() => guard.pendingDeadlines === 0, 'the server to see the client leave');
      for (let i = 0; i < 5; i++) await clock.advance(300); // five lease periods, renewed meanwhile
      const duplicate = await post(app, 'gone-key', '{"sku":"a"}');
      assert.equal(duplicate.status, 409);
      assert.equal(state.runs, 1);
      release.open();
      await eventually(() => outcomes.some((o) => o.kind === 'stored'), 'the result to be stored');
      const replay = await post(app, 'gone-key', '{"sku":"a"}');
      assert.equal(replay.status, 201);
      assert.deepEqual(await replay.json(), { order: 1 });
      assert.equal(state.runs, 1);
      assert.deepEqual(outcomes.map((o) => [o.kind, o.status]), [['detached', undefined], ['stored', 201]]);
    });

    test('the handler\'s response is held until its completion is stored', async () => {
      const store = new ControlledStore();
      const { app, outcomes, release } = await startSlow(kind, { store });
      release.open();
      store.completeGate = gate();
      const first = post(app, 'held-key', '{"sku":"a"}');
      await eventually(() => store.completeCalls === 1, 'the completion to be written');
      const early = await Promise.race([first.then(() => 'answered'), sleep(200).then(() => 'held')]);
      assert.equal(early, 'held', 'no answer before the completion is stored');
      store.completeGate.open();
      const answered = await first;
      assert.equal(answered.status, 201);
      assert.deepEqual(await answered.json(), { order: 1 });
      assert.deepEqual(outcomes.map((o) => o.kind), ['stored']);
    });

    test('a completion the store keeps failing: the response is still sent, store-error is reported and the key is not released', async () => {
      const store = new ControlledStore();
      // The real clock: the engine waits between its attempts.
      const { app, outcomes, release, state } = await startSlow(kind, { store, realClock: true });
      release.open();
      store.failCompletions = 100;
      const first = await post(app, 'failing-store', '{"sku":"a"}');
      assert.equal(first.status, 201);
      assert.deepEqual(await first.json(), { order: 1 });
      assert.ok(store.completeCalls >= 2, `the completion was retried (${store.completeCalls} attempts)`);
      await eventually(() => outcomes.length > 0, 'the outcome');
      assert.deepEqual(outcomes.map((o) => o.kind), ['store-error']);
      const duplicate = await post(app, 'failing-store', '{"sku":"a"}');
      assert.equal(duplicate.status, 409, 'its work has run: the key is not given back');
      assert.equal(state.runs, 1);
      // One failure then success: retried within the bound, stored, replayed.
      store.failCompletions = 1;
      assert.equal((await post(app, 'flaky-store', '{"sku":"b"}')).status, 201);
      const replay = await post(app, 'flaky-store', '{"sku":"b"}');
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal(state.runs, 2);
    });

    test('a completion fenced off (the lease was taken over): the client gets 409 instead of the handler\'s answer', async () => {
      const store = new ControlledStore();
      const { app, outcomes, release } = await startSlow(kind, { store });
      release.open();
      store.fenceCompletions = true;
      const first = await post(app, 'fenced', '{"sku":"a"}');
      assert.equal(first.status, 409);
      assert.equal(first.headers.get('retry-after'), '1');
      assert.equal((await first.json() as any).code, 'IDEMPOTENCY_CONFLICT');
      assert.deepEqual(outcomes.map((o) => [o.kind, o.status]), [['lease-lost', 201]]);
    });

    test('a handler that throws an error mapped to a 4xx releases the key: its error page is not its answer', async () => {
      let runs = 0;
      const routes: AppRoute[] = [{
        method: 'POST', path: '/orders',
        handler: () => {
          if (++runs === 1) throw Object.assign(new Error('upstream said the card is invalid'), { status: 400, statusCode: 400 });
          return { status: 201, body: { order: runs } };
        },
      }];
      const protection = new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal });
      const outcomes: IdempotencyOutcomeEvent[] = [];
      protection.onOutcome((event) => outcomes.push(event));
      const app = await start(kind, routes, { idempotency: protection });
      assert.equal((await post(app, 'throws', '{}')).status, 400);
      await eventually(() => outcomes.length > 0, 'the outcome');
      assert.deepEqual(outcomes.map((o) => o.kind), ['released']);
      const retry = await post(app, 'throws', '{}');
      assert.equal(retry.status, 201);
      assert.equal(retry.headers.get('idempotent-replayed'), null);
      assert.equal(runs, 2);
    });

    test('a handler that throws answers only once its key is free: a retry sent on the error runs', async () => {
      let runs = 0;
      const routes: AppRoute[] = [{
        method: 'POST', path: '/orders',
        handler: () => {
          if (++runs === 1) throw new Error('the database went away');
          return { status: 201, body: { order: runs } };
        },
      }];
      // A store whose release takes a while, as a remote one can.
      class SlowRelease extends MemoryIdempotencyStore {
        override async release(input: Parameters<MemoryIdempotencyStore['release']>[0]) {
          await sleep(200);
          return super.release(input);
        }
      }
      const app = await start(kind, routes, { idempotency: { store: new SlowRelease(), principal } });
      assert.equal((await post(app, 'fails-once', '{}')).status, 500);
      const retry = await post(app, 'fails-once', '{}');
      assert.equal(retry.status, 201, 'the key was free when the error arrived');
      assert.equal(runs, 2);
    });

    test('a response larger than maxResponseBytes is sent whole and the key released', async () => {
      let runs = 0;
      const big = 'x'.repeat(5000);
      const routes: AppRoute[] = [{ method: 'POST', path: '/orders', handler: () => ({ status: 201, body: { n: ++runs, big } }) }];
      const protection = new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal, maxResponseBytes: 1000 });
      const outcomes: IdempotencyOutcomeEvent[] = [];
      protection.onOutcome((event) => outcomes.push(event));
      const app = await start(kind, routes, { idempotency: protection });
      const first = await post(app, 'big', '{}');
      assert.equal(first.status, 201);
      assert.deepEqual(await first.json(), { n: 1, big });
      await eventually(() => outcomes.length > 0, 'the outcome');
      assert.equal(outcomes[0]!.kind, 'not-stored-too-large');
      const again = await post(app, 'big', '{}');
      assert.deepEqual(await again.json(), { n: 2, big });
    });

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

    test('routes written like route-table keys ("POST /orders") select the guarded routes', async () => {
      let orders = 0;
      let payments = 0;
      const routes: AppRoute[] = [
        { method: 'POST', path: '/orders', handler: () => ({ status: 201, body: { order: ++orders } }) },
        { method: 'POST', path: '/payments', handler: () => ({ status: 201, body: { payment: ++payments } }) },
      ];
      const app = await start(kind, routes, { idempotency: { store: new MemoryIdempotencyStore(), principal, routes: ['POST /orders'] } });
      for (let i = 0; i < 2; i++) assert.equal((await post(app, 'same', '{}')).status, 201);
      assert.equal(orders, 1, 'POST /orders is guarded: the duplicate replays');
      const pay = () => fetch(`${app.url}/payments`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'same' }, body: '{}' });
      for (let i = 0; i < 2; i++) assert.equal((await pay()).status, 201);
      assert.equal(payments, 2, 'POST /payments is not in the list: both run');
    });
  });
}

test('idempotency routes entries that can never match fail at build with INVALID_OPTIONS', () => {
  for (const entry of ['POST orders', '', 42]) {
    assert.throws(() => new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal: () => null, routes: [entry as string] }), { code: 'INVALID_OPTIONS' });
  }
});

test('the protection needs the body only for guarded methods on its routes with a key (or a required one)', () => {
  const protection = new IdempotencyProtection({ store: new MemoryIdempotencyStore(), principal: () => null, routes: ['orders'] });
  const request = (method: string, route: string, key?: string) => ({ method, path: `/${route}`, route: { name: route }, headers: key ? { 'idempotency-key': key } : {} }) as never;
  assert.equal(protection.needsBody(request('POST', 'orders', 'k')), true);
  assert.equal(protection.needsBody(request('POST', 'orders')), false);
  assert.equal(protection.needsBody(request('GET', 'orders', 'k')), false);
  assert.equal(protection.needsBody(request('POST', 'other', 'k')), false);
});
