/**
 * Test support (not shipped): the idempotency cases the stores must pass through every adapter,
 * registered by the unit tests (SQLite, memory) and the integration tests (PostgreSQL, Redis)
 * alike: a key stays held while its handler runs past a 504, and the transactional path, where
 * the handler writes its business row and the completion in one database transaction
 * (`request.idempotency.complete(...)`), or is told clearly that its store cannot.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { eventually } from '../../fetch/test/server.js';
import type { IdempotencyStore } from '../../idempotency/types.js';
import { IdempotencyProtection, type IdempotencyOutcomeEvent } from '../core/idempotency.js';
import type { RequestContext } from '../core/request-context.js';
import { startApp, type AdapterKind, type AppResult, type AppRoute, type RunningApp } from './apps.js';
import { post as postOrder, slowOrders } from './idempotency-app.js';

/** What a test asks of the handler for one request. */
export interface Plan {
  /** Roll the transaction back after `complete` (the handler then throws). */
  rollBack?: boolean;
}

/** One database behind the same order-taking handler: the business insert and the completion in one transaction. */
export interface Backend {
  name: string;
  store: IdempotencyStore;
  /** BEGIN, insert an order for `key`, complete, COMMIT (or roll back); the response. */
  order(run: NonNullable<RequestContext['idempotency']>, plan: Plan): Promise<AppResult> | AppResult;
  orders(key: string): Promise<number>;
}

/** Every request from one tenant. */
export const singleTenant = () => 'tenant-1';

async function orderApp(kind: AdapterKind, backend: Backend, running: RunningApp[]) {
  const plans = new Map<string, Plan>();
  const outcomes: IdempotencyOutcomeEvent[] = [];
  let runs = 0;
  // The handler completed inside its transaction: the adapter must not store the answer again.
  const store = backend.store;
  const storeComplete = store.complete.bind(store);
  let adapterCompletions = 0;
  store.complete = (input) => { adapterCompletions++; return storeComplete(input); };
  const protection = new IdempotencyProtection({ store, principal: singleTenant });
  protection.onOutcome((event) => outcomes.push(event));
  const routes: AppRoute[] = [{
    method: 'POST', path: '/orders', config: { name: 'orders' },
    handler: (request) => {
      runs++;
      const run = request!.idempotency!;
      return backend.order(run, plans.get(run.key) ?? {});
    },
  }];
  const app = await startApp(kind, routes, { idempotency: protection });
  running.push(app);
  const post = (key: string) => fetch(`${app.url}/orders`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': key }, body: '{"amount":5}',
  });
  return { post, plans, outcomes, runs: () => runs, adapterCompletions: () => adapterCompletions };
}

/** Registers the transactional-completion tests of `backend` behind `kind`; apps started go into `running`. */
export function transactionalCompletionTests(kind: AdapterKind, backend: Backend, running: RunningApp[]): void {
  describe(`${kind} + ${backend.name}: completion in the handler's transaction`, () => {
    test('the business row and the completion commit together; a duplicate replays the completed response', async () => {
      const { post, outcomes, runs, adapterCompletions } = await orderApp(kind, backend, running);
      const key = `order-${randomUUID()}`;
      const first = await post(key);
      assert.equal(first.status, 201);
      const created = await first.json() as { id: number };
      assert.equal(await backend.orders(key), 1);
      const duplicate = await post(key);
      assert.equal(duplicate.status, 201);
      assert.equal(duplicate.headers.get('idempotent-replayed'), 'true');
      assert.deepEqual(await duplicate.json(), created);
      assert.equal(runs(), 1);
      assert.equal(await backend.orders(key), 1);
      await eventually(() => outcomes.length > 0, 'the outcome');
      assert.deepEqual(outcomes.map((o) => [o.kind, o.status]), [['stored', 201]]);
      assert.equal(adapterCompletions(), 0, 'stored once, by the handler');
    });

    test('a transaction rolled back after complete: no row, no completion, the key is released and the retry runs', async () => {
      const { post, plans, outcomes, runs } = await orderApp(kind, backend, running);
      const key = `order-${randomUUID()}`;
      plans.set(key, { rollBack: true });
      const failed = await post(key);
      assert.equal(failed.status, 500);
      assert.equal(await backend.orders(key), 0);
      await eventually(() => outcomes.some((o) => o.kind === 'released'), 'the key to be released');
      plans.delete(key);
      const retry = await post(key);
      assert.equal(retry.status, 201);
      assert.equal(retry.headers.get('idempotent-replayed'), null);
      assert.equal(runs(), 2);
      assert.equal(await backend.orders(key), 1);
    });
  });
}

/** Registers the "504 at the deadline keeps the key held" test for the store `makeStore` builds. */
export function heldPastDeadlineTest(kind: AdapterKind, name: string, makeStore: () => IdempotencyStore, running: RunningApp[]): void {
  test(`${kind} + ${name}: a 504 at the deadline leaves the key held until the handler settles; its result replays`, async () => {
    const slow = await slowOrders(kind, { store: makeStore() });
    running.push(slow.app);
    const { app, clock, outcomes, release, entered, state } = slow;
    const key = `deadline-${randomUUID()}`;
    const first = postOrder(app, key, '{"sku":"a"}', { 'x-request-timeout-ms': '200' });
    await entered.wait;
    await clock.advance(200);
    assert.equal((await first).status, 504);
    assert.equal((await postOrder(app, key, '{"sku":"a"}')).status, 409);
    release.open();
    await eventually(() => outcomes.some((o) => o.kind === 'stored'), 'the handler\'s result to be stored');
    const replay = await postOrder(app, key, '{"sku":"a"}');
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get('idempotent-replayed'), 'true');
    assert.deepEqual(await replay.json(), { order: 1 });
    assert.equal(state.runs, 1);
  });
}

/** Registers the test that a store without transactions refuses `complete()` from the handler with a clear INVALID_INPUT. */
export function transactionRefusedTest(kind: AdapterKind, makeStore: () => IdempotencyStore, running: RunningApp[]): void {
  const store = makeStore();
  test(`${kind}: complete() on the ${store.name} store is a clear INVALID_INPUT error`, async () => {
    const routes: AppRoute[] = [{
      method: 'POST', path: '/orders',
      handler: (request) => {
        try {
          request!.idempotency!.complete(undefined, { status: 201 });
          return { status: 201, body: 'completed?' };
        } catch (error) {
          return { status: 200, body: { code: (error as { code?: string }).code, message: (error as Error).message } };
        }
      },
    }];
    const app = await startApp(kind, routes, { idempotency: new IdempotencyProtection({ store, principal: singleTenant }) });
    running.push(app);
    const res = await fetch(`${app.url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' }, body: '{}' });
    const answer = await res.json() as { code: string; message: string };
    assert.equal(answer.code, 'INVALID_INPUT', store.name);
    assert.match(answer.message, new RegExp(`the ${store.name} store cannot write a completion inside your transaction`));
  });
}
