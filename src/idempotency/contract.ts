/**
 * The behaviour every IdempotencyStore must have, as a test suite that any runner can run. Each of
 * our store's test files runs it (`idempotencyStoreContract('redis', setup)`); a third-party store
 * runs it from `bulwark/testing`, with node:test by default or with its own runner's functions.
 * Stores timed by an injected clock get a VirtualClock (instant); Redis and PostgreSQL are timed
 * by the server, so their harness waits for real with short leases.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Clock } from '../core/clock.js';
import { decodeResponse, encodeResponse } from './codec.js';
import { IdempotencyEngine } from './engine.js';
import { IdempotencyHttp, type IdempotencyHttpResponse, type IdempotentRequest } from './http.js';
import type { ClaimInput, ClaimResult, IdempotencyStore, StoredRecord } from './types.js';

export interface IdempotencyStoreHarness {
  store: IdempotencyStore;
  /** Clock for engines built on this store (the store's own clock when it has one). */
  clock: Clock;
  /** Lets `ms` of store time pass (advance a virtual clock, or wait for real). */
  elapse(ms: number): Promise<void>;
  /** A lease long enough for a few store round trips. Virtual: anything; real: a few hundred ms. */
  leaseMs: number;
  /** Called once after the suite. */
  close(): Promise<void>;
}

/**
 * The four functions of a test runner the contract registers its suite with. node:test's own
 * (`describe`, `test`, `before`, `after`) fit as they are; vitest and jest pass `beforeAll` and
 * `afterAll` as `before` and `after`; mocha passes `it` as `test`. Failures are thrown
 * `node:assert` errors, which every runner on Node reports as failed tests.
 */
export interface ContractRunner {
  describe(name: string, body: () => void): unknown;
  test(name: string, body: () => Promise<void>): unknown;
  before(hook: () => Promise<void>): unknown;
  after(hook: () => Promise<void>): unknown;
}

/**
 * Registers the contract suite for the store that `setup` builds (called once, before the
 * tests). Without `runner` it uses node:test, loaded only then: importing this module never
 * loads a test runner, so shipping it costs the core nothing.
 */
export function idempotencyStoreContract(name: string, setup: () => Promise<IdempotencyStoreHarness>, runner: ContractRunner = nodeTestRunner()): void {
  const { describe, test, before, after } = runner;
  describe(`idempotency store contract: ${name}`, () => {
    let h: IdempotencyStoreHarness;
    const run = randomUUID().slice(0, 8);
    let n = 0;
    const id = (): string => `contract-${run}:${++n}`;
    const claimInput = (recordId: string, overrides: Partial<ClaimInput> = {}): ClaimInput => ({
      id: recordId, fingerprint: 'fp-a', owner: randomUUID(), leaseMs: h.leaseMs, ttlMs: 60_000, ...overrides,
    });
    const response = (body: unknown) => encodeResponse({ status: 201, headers: { 'content-type': 'application/json' }, body });

    before(async () => { h = await setup(); });
    after(async () => { await h?.close(); });

    test('a first claim acquires; a duplicate is busy; a different fingerprint is a mismatch', async () => {
      const key = id();
      const first = await h.store.claim(claimInput(key));
      assert.equal(first.kind, 'acquired');
      assert.deepEqual(pick(first, 'fence', 'takeover', 'steps'), { fence: 1, takeover: false, steps: {} });
      const again = await h.store.claim(claimInput(key));
      assert.equal(again.kind, 'busy');
      assert.ok(again.kind === 'busy' && again.retryAfterMs > 0 && again.retryAfterMs <= h.leaseMs, `retryAfterMs within the lease, got ${JSON.stringify(again)}`);
      assert.deepEqual(await h.store.claim(claimInput(key, { fingerprint: 'fp-b' })), { kind: 'mismatch' });
    });

    test('complete stores the response for replay; only the owner may complete, idempotently', async () => {
      const key = id();
      const owner = randomUUID();
      const claimed = await h.store.claim(claimInput(key, { owner }));
      assert.equal(claimed.kind, 'acquired');
      const version = versionOf(claimed);
      assert.equal(await h.store.complete({ id: key, owner: randomUUID(), response: response('intruder'), ttlMs: 60_000 }), false);
      assert.equal(await h.store.complete({ id: key, owner: randomUUID(), response: response('intruder'), ttlMs: 60_000, version }), false, 'the owner\'s version does not make someone else the owner');
      assert.equal(await h.store.complete({ id: key, owner, response: response({ orderId: 7 }), ttlMs: 60_000, version }), true);
      assert.equal(await h.store.complete({ id: key, owner, response: response({ orderId: 7 }), ttlMs: 60_000, version }), true, 'a retried completion by the same owner succeeds');
      assert.equal(await h.store.complete({ id: key, owner, response: response({ orderId: 7 }), ttlMs: 60_000 }), true, 'with or without the version');
      const replay = await h.store.claim(claimInput(key));
      assert.equal(replay.kind, 'completed');
      if (replay.kind !== 'completed') return;
      assert.deepEqual(decodeResponse(replay.response), { status: 201, headers: { 'content-type': 'application/json' }, body: { orderId: 7 } });
      assert.ok(Number.isFinite(replay.completedAt) && replay.completedAt > 0, 'the original completion time comes back');
      assert.deepEqual(await h.store.claim(claimInput(key, { fingerprint: 'fp-b' })), { kind: 'mismatch' });
      assert.equal(await h.store.complete({ id: id(), owner, response: response(1), ttlMs: 60_000 }), false, 'no record, no completion');
    });

    test('one lease expiry: busy until it passes, then taken over; the old owner is fenced off', async () => {
      const key = id();
      const oldOwner = randomUUID();
      const oldVersion = versionOf(await h.store.claim(claimInput(key, { owner: oldOwner })));
      await h.elapse(h.leaseMs / 2);
      assert.equal((await h.store.claim(claimInput(key))).kind, 'busy', 'half-way through the lease a duplicate is still busy');
      await h.elapse(h.leaseMs / 2 + Math.min(100, h.leaseMs / 4));
      const newOwner = randomUUID();
      const takeover = await h.store.claim(claimInput(key, { owner: newOwner }));
      assert.equal(takeover.kind, 'acquired');
      assert.deepEqual(pick(takeover, 'fence', 'takeover'), { fence: 2, takeover: true });
      assert.equal((await h.store.claim(claimInput(key))).kind, 'busy', 'exactly one owner after a takeover');
      assert.equal(await h.store.complete({ id: key, owner: oldOwner, response: response('late'), ttlMs: 60_000, version: oldVersion }), false, 'late completion rejected');
      assert.equal(await h.store.complete({ id: key, owner: oldOwner, response: response('late'), ttlMs: 60_000 }), false, 'with or without its version');
      assert.equal(await h.store.renew({ id: key, owner: oldOwner, leaseMs: h.leaseMs }), false);
      assert.equal(await h.store.saveStep({ id: key, owner: oldOwner, name: 's', value: '{}' }), false);
      assert.equal(await h.store.release({ id: key, owner: oldOwner }), false);
      assert.equal(await h.store.complete({ id: key, owner: newOwner, response: response('winner'), ttlMs: 60_000, version: versionOf(takeover) }), true);
      const replay = await h.store.claim(claimInput(key));
      assert.equal(replay.kind === 'completed' && decodeResponse(replay.response).body, 'winner');
    });

    test('an owner whose lease ran out may still complete while nobody took over', async () => {
      const key = id();
      const owner = randomUUID();
      const version = versionOf(await h.store.claim(claimInput(key, { owner })));
      await h.elapse(h.leaseMs + Math.min(100, h.leaseMs / 4));
      assert.equal(await h.store.complete({ id: key, owner, response: response('slow but sole'), ttlMs: 60_000, version }), true);
      assert.equal((await h.store.claim(claimInput(key))).kind, 'completed');
    });

    test('renew extends the lease on the store clock', async () => {
      const key = id();
      const owner = randomUUID();
      await h.store.claim(claimInput(key, { owner }));
      await h.elapse(h.leaseMs * 0.6);
      assert.equal(await h.store.renew({ id: key, owner, leaseMs: h.leaseMs }), true);
      await h.elapse(h.leaseMs * 0.6);
      assert.equal((await h.store.claim(claimInput(key))).kind, 'busy', '1.2 leases after the claim, but 0.6 after the renewal');
      assert.equal(await h.store.renew({ id: key, owner: randomUUID(), leaseMs: h.leaseMs }), false);
    });

    test('release without steps forgets the request; release with steps keeps them for the retry', async () => {
      const plain = id();
      const owner = randomUUID();
      await h.store.claim(claimInput(plain, { owner }));
      assert.equal(await h.store.release({ id: plain, owner }), true);
      assert.equal(await h.store.inspect(plain), undefined);
      const fresh = await h.store.claim(claimInput(plain, { fingerprint: 'fp-other' }));
      assert.deepEqual(pick(fresh, 'kind', 'fence', 'takeover'), { kind: 'acquired', fence: 1, takeover: false });

      const multi = id();
      const first = randomUUID();
      await h.store.claim(claimInput(multi, { owner: first }));
      assert.equal(await h.store.saveStep({ id: multi, owner: first, name: 'reserve', value: '{"v":1}' }), true);
      assert.equal(await h.store.saveStep({ id: multi, owner: first, name: 'charge "card"', value: '{"v":"ch_1"}' }), true);
      assert.equal(await h.store.saveStep({ id: multi, owner: randomUUID(), name: 'x', value: '{}' }), false);
      assert.equal(await h.store.release({ id: multi, owner: first }), true);
      assert.equal(await h.store.saveStep({ id: multi, owner: first, name: 'late', value: '{}' }), false, 'released owner is fenced off');
      assert.deepEqual(await h.store.claim(claimInput(multi, { fingerprint: 'fp-other' })), { kind: 'mismatch' }, 'saved steps belong to the original request');
      const retry = await h.store.claim(claimInput(multi));
      assert.deepEqual(pick(retry, 'kind', 'fence', 'takeover', 'steps'), {
        kind: 'acquired', fence: 2, takeover: true, steps: { reserve: '{"v":1}', 'charge "card"': '{"v":"ch_1"}' },
      });
    });

    test('records expire after their TTL and the key runs again from scratch', async () => {
      const key = id();
      const ttlMs = h.leaseMs * 2;
      const owner = randomUUID();
      await h.store.claim(claimInput(key, { owner, ttlMs }));
      await h.store.saveStep({ id: key, owner, name: 'a', value: '{}' });
      assert.equal(await h.store.complete({ id: key, owner, response: response('old'), ttlMs }), true);
      await h.elapse(ttlMs / 2);
      assert.equal((await h.store.claim(claimInput(key, { ttlMs }))).kind, 'completed');
      await h.elapse(ttlMs / 2 + Math.min(100, h.leaseMs / 4));
      assert.equal(await h.store.inspect(key), undefined);
      const again = await h.store.claim(claimInput(key, { fingerprint: 'fp-new', ttlMs }));
      assert.deepEqual(pick(again, 'kind', 'fence', 'takeover', 'steps'), { kind: 'acquired', fence: 1, takeover: false, steps: {} });
    });

    test('50 concurrent claims of one key: exactly one acquires', async () => {
      const key = id();
      // A lease that cannot run out while the claims are answered (a slow machine would otherwise see a takeover).
      const results = await Promise.all(Array.from({ length: 50 }, () => h.store.claim(claimInput(key, { leaseMs: 30_000 }))));
      assert.equal(results.filter((r) => r.kind === 'acquired').length, 1);
      assert.equal(results.filter((r) => r.kind === 'busy').length, 49);
    });

    test('calls given a signal that never fires behave as calls without one', async () => {
      // The engine passes one with every guarded call to a `cancellable` store; any store may be given one.
      const signal = new AbortController().signal;
      const key = id();
      const owner = randomUUID();
      assert.equal((await h.store.claim(claimInput(key, { owner }), signal)).kind, 'acquired');
      assert.equal((await h.store.claim(claimInput(key), signal)).kind, 'busy');
      assert.equal(await h.store.saveStep({ id: key, owner, name: 'a', value: '1' }, signal), true);
      assert.equal(await h.store.renew({ id: key, owner, leaseMs: h.leaseMs }, signal), true);
      assert.equal(await h.store.complete({ id: key, owner, response: response('done'), ttlMs: 60_000 }, signal), true);
      assert.equal(await h.store.renew({ id: key, owner, leaseMs: h.leaseMs }, signal), false, 'fencing still applies');
      const other = id();
      const otherOwner = randomUUID();
      assert.equal((await h.store.claim(claimInput(other, { owner: otherOwner }), signal)).kind, 'acquired');
      assert.equal(await h.store.release({ id: other, owner: otherOwner }, signal), true);
      assert.equal(await h.store.inspect(other), undefined);
    });

    test('inspect shows the record', async () => {
      const key = id();
      const owner = randomUUID();
      const version = versionOf(await h.store.claim(claimInput(key, { owner })));
      const inProgress = await h.store.inspect(key);
      assert.equal(inProgress?.state, 'in_progress');
      assert.equal(inProgress?.owner, owner);
      assert.equal(await h.store.complete({ id: key, owner, response: response('x'), ttlMs: 60_000, version }), true);
      const done = await h.store.inspect(key);
      assert.deepEqual(pick(done, 'state', 'owner', 'fence', 'fingerprint', 'steps'), { state: 'completed', owner, fence: 1, fingerprint: 'fp-a', steps: {} });
      assert.equal(done?.state === 'completed' && decodeResponse(done.response).body, 'x');
    });

    test('a completion keeps the record\'s own fields: after a renewal, after steps, after a takeover (also given the claim\'s stale version)', async () => {
      const renewed = id();
      const a = randomUUID();
      const stale = versionOf(await h.store.claim(claimInput(renewed, { owner: a })));
      assert.equal(await h.store.renew({ id: renewed, owner: a, leaseMs: h.leaseMs }), true);
      assert.equal(await h.store.complete({ id: renewed, owner: a, response: response('renewed'), ttlMs: 60_000, version: stale }), true);
      assert.deepEqual(pick(await h.store.inspect(renewed), 'state', 'owner', 'fence', 'fingerprint', 'steps'), { state: 'completed', owner: a, fence: 1, fingerprint: 'fp-a', steps: {} });

      const stepped = id();
      const b = randomUUID();
      const staleB = versionOf(await h.store.claim(claimInput(stepped, { owner: b })));
      assert.equal(await h.store.saveStep({ id: stepped, owner: b, name: 'reserve', value: '{"v":1}' }), true);
      assert.equal(await h.store.release({ id: stepped, owner: b }), true);
      assert.equal(await h.store.complete({ id: stepped, owner: b, response: response('released'), ttlMs: 60_000, version: staleB }), false, 'released: fenced off, version or not');
      const c = randomUUID();
      const retry = await h.store.claim(claimInput(stepped, { owner: c }));
      assert.deepEqual(pick(retry, 'kind', 'fence'), { kind: 'acquired', fence: 2 });
      assert.equal(await h.store.saveStep({ id: stepped, owner: c, name: 'charge', value: '{"v":2}' }), true);
      assert.equal(await h.store.complete({ id: stepped, owner: c, response: response('stepped'), ttlMs: 60_000, version: versionOf(retry) }), true);
      const done = await h.store.inspect(stepped);
      assert.deepEqual(pick(done, 'state', 'owner', 'fence', 'fingerprint', 'steps'), {
        state: 'completed', owner: c, fence: 2, fingerprint: 'fp-a', steps: { reserve: '{"v":1}', charge: '{"v":2}' },
      });
      assert.equal(done?.state === 'completed' && decodeResponse(done.response).body, 'stepped');
      const replay = await h.store.claim(claimInput(stepped));
      assert.equal(replay.kind === 'completed' && decodeResponse(replay.response).body, 'stepped');
    });

    // ---- the same scenarios end to end, through the engine and the HTTP semantics ----------

    const http = (options: Partial<ConstructorParameters<typeof IdempotencyHttp>[0]> = {}) => new IdempotencyHttp({
      store: h.store, clock: h.clock, leaseMs: h.leaseMs, renewEveryMs: false, ...options,
    });
    const post = (key: string | undefined, body: unknown, principal: string | null = 'alice', path = '/orders'): IdempotentRequest => ({
      method: 'POST', path, headers: key === undefined ? {} : { 'idempotency-key': key }, body: body as object, principal,
    });

    test('HTTP: a sequential duplicate runs once and replays the identical response, marked as replayed', async () => {
      const idem = http();
      const key = `k-${id()}`;
      let effects = 0;
      const handler = async (): Promise<IdempotencyHttpResponse> => {
        effects++;
        return { status: 201, headers: { 'content-type': 'application/json', location: '/orders/1', 'set-cookie': 'secret=1' }, body: { orderId: effects } };
      };
      const first = await idem.handle(post(key, { sku: 'a', qty: 1 }), handler);
      const second = await idem.handle(post(key, { qty: 1, sku: 'a' }), handler);
      assert.equal(effects, 1);
      assert.equal(first.status, 201);
      assert.deepEqual(first.body, { orderId: 1 });
      assert.equal(second.status, 201);
      assert.deepEqual(second.body, first.body);
      assert.equal(second.headers['idempotent-replayed'], 'true');
      assert.equal(second.headers.location, '/orders/1');
      assert.equal(second.headers['content-type'], 'application/json');
      assert.equal(second.headers['set-cookie'], undefined, 'only allow-listed headers are stored');
      assert.ok(!Number.isNaN(Date.parse(second.headers['idempotent-original-date']!)));
    });

    test('HTTP: 50 concurrent requests with one key run the handler exactly once', async () => {
      const idem = http();
      const key = `k-${id()}`;
      let executions = 0;
      const handler = async (): Promise<IdempotencyHttpResponse> => {
        executions++;
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve)); // let the duplicates arrive
        return { status: 200, headers: {}, body: { ok: true } };
      };
      const responses = await Promise.all(Array.from({ length: 50 }, () => idem.handle(post(key, { n: 1 }), handler)));
      assert.equal(executions, 1);
      for (const r of responses) {
        assert.ok(r.status === 409 || r.status === 200, `got ${r.status}`);
        if (r.status === 409) assert.equal(r.headers['retry-after'], '1');
      }
      assert.equal(responses.filter((r) => r.status === 200 && r.headers['idempotent-replayed'] === undefined).length, 1);
    });

    test('HTTP: after the TTL the same key runs again', async () => {
      const ttlMs = h.leaseMs * 2;
      const idem = http({ ttlMs });
      const key = `k-${id()}`;
      let effects = 0;
      const handler = async (): Promise<IdempotencyHttpResponse> => ({ status: 200, headers: {}, body: ++effects });
      await idem.handle(post(key, {}), handler);
      assert.equal((await idem.handle(post(key, {}), handler)).headers['idempotent-replayed'], 'true');
      await h.elapse(ttlMs + Math.min(100, h.leaseMs / 4));
      const again = await idem.handle(post(key, {}), handler);
      assert.equal(effects, 2);
      assert.equal(again.body, 2);
      assert.equal(again.headers['idempotent-replayed'], undefined);
    });

    test('HTTP: partial failure — steps 1 and 2 succeed, step 3 fails; the retry runs only step 3', async () => {
      const idem = http();
      const key = `k-${id()}`;
      const calls: string[] = [];
      let failStep3 = true;
      const handler = async ({ lease }: { lease: import('./engine.js').Lease | undefined }): Promise<IdempotencyHttpResponse> => {
        const reservation = await lease!.step('reserve-inventory', () => { calls.push('reserve'); return { reservation: 'r-1' }; });
        const charge = await lease!.step('charge-payment', () => { calls.push('charge'); return { charge: 'ch-1' }; });
        const email = await lease!.step('send-confirmation', () => {
          calls.push('email');
          if (failStep3) throw new Error('smtp timeout');
          return { sent: true };
        });
        return { status: 201, headers: {}, body: { ...reservation, ...charge, ...email } };
      };
      await assert.rejects(idem.handle(post(key, { cart: 1 }), handler), /smtp timeout/);
      failStep3 = false;
      const retry = await idem.handle(post(key, { cart: 1 }), handler);
      assert.deepEqual(calls, ['reserve', 'charge', 'email', 'email']);
      assert.equal(retry.status, 201);
      assert.deepEqual(retry.body, { reservation: 'r-1', charge: 'ch-1', sent: true });
    });

    test('HTTP: different principals with the same key string never see each other\'s records', async () => {
      const idem = http();
      const key = `k-${id()}`;
      const handler = (who: string) => async (): Promise<IdempotencyHttpResponse> => ({ status: 200, headers: {}, body: { owner: who } });
      const alice = await idem.handle(post(key, { same: true }, 'alice'), handler('alice'));
      const bob = await idem.handle(post(key, { same: true }, 'bob'), handler('bob'));
      const anonymous = await idem.handle(post(key, { same: true }, null), handler('anonymous'));
      assert.deepEqual(alice.body, { owner: 'alice' });
      assert.deepEqual(bob.body, { owner: 'bob' }, 'bob runs his own request, never replays alice\'s');
      assert.equal(bob.headers['idempotent-replayed'], undefined);
      assert.deepEqual(anonymous.body, { owner: 'anonymous' });
      const aliceAgain = await idem.handle(post(key, { same: true }, 'alice'), handler('alice-2'));
      assert.deepEqual(aliceAgain.body, { owner: 'alice' });
      // Same principal, same key, different route: a different record too.
      const otherRoute = await idem.handle(post(key, { same: true }, 'alice', '/payments'), handler('alice-payments'));
      assert.deepEqual(otherRoute.body, { owner: 'alice-payments' });
    });

    test('HTTP: reusing a key with a different body is 422 IDEMPOTENCY_MISMATCH', async () => {
      const idem = http();
      const key = `k-${id()}`;
      await idem.handle(post(key, { amount: 100 }), async () => ({ status: 201, headers: {}, body: 'ok' }));
      const reused = await idem.handle(post(key, { amount: 999 }), async () => { throw new Error('must not run'); });
      assert.equal(reused.status, 422);
      assert.equal(reused.headers['content-type'], 'application/problem+json');
      assert.equal(JSON.parse(reused.body as string).code, 'IDEMPOTENCY_MISMATCH');
    });

    test('engine: a crashed owner\'s key is taken over after the lease, and its late completion is rejected', async () => {
      const engine = new IdempotencyEngine({ store: h.store, clock: h.clock, leaseMs: h.leaseMs, renewEveryMs: false });
      const scope = { principal: 'p', method: 'POST', route: '/x', key: `k-${id()}` };
      const crashed = await engine.claim(scope, 'fp');
      assert.equal(crashed.kind, 'new');
      // The worker "dies": no completion, no release, no renewal.
      assert.equal((await engine.claim(scope, 'fp')).kind, 'in-progress');
      await h.elapse(h.leaseMs + Math.min(100, h.leaseMs / 4));
      const retry = await engine.claim(scope, 'fp');
      assert.equal(retry.kind, 'new');
      if (retry.kind !== 'new' || crashed.kind !== 'new') return;
      assert.equal(retry.lease.takeover, true);
      await assert.rejects(crashed.lease.complete({ body: 'zombie' }), { code: 'LEASE_LOST' });
      await retry.lease.complete({ body: 'retry' });
      const replay = await engine.claim(scope, 'fp');
      assert.equal(replay.kind === 'completed' && replay.response.body, 'retry');
    });
  });
}

function nodeTestRunner(): ContractRunner {
  return createRequire(import.meta.url)('node:test') as typeof import('node:test');
}

/** The claim's version (see ClaimResult), as the engine hands it back to `complete`. */
function versionOf(result: ClaimResult): string | undefined {
  return result.kind === 'acquired' ? result.version : undefined;
}

function pick(result: ClaimResult | StoredRecord | undefined, ...keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = (result as Record<string, unknown> | undefined)?.[k];
  return out;
}
