import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { deadlineHeaders } from '../core/deadline-headers.js';
import { HttpGuard } from './core/http-guard.js';
import { sleep, startApp, type AdapterKind, type RunningApp } from './test/apps.js';

/**
 * Deadline propagation over real HTTP (as gRPC propagates deadlines, and as "The Tail at Scale" argues for cancelling work nobody waits for):
 * client → service A → service B with a 1 s budget. B must see less than A; A's handler must be
 * aborted at the deadline and the client answered 504 then, not when A's work would finish.
 * Each chain mixes two adapters, so the wire format is checked between them.
 */

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

interface ChainObservation {
  aBudget?: number;
  aRemainingAtCall?: number;
  bBudget?: number;
  bHeader?: string;
  aAbortCode?: string;
  aAbortedAfterMs?: number;
  aHandlerRuns: number;
  bHandlerRuns: number;
}

async function chain(aKind: AdapterKind, bKind: AdapterKind): Promise<{ observed: ChainObservation; guardA: HttpGuard; a: RunningApp }> {
  const observed: ChainObservation = { aHandlerRuns: 0, bHandlerRuns: 0 };
  const b = await startApp(bKind, [{
    method: 'GET',
    path: '/b',
    handler: async (request, req) => {
      observed.bHandlerRuns++;
      observed.bBudget = request!.budgetMs;
      observed.bHeader = String(req.headers['x-request-timeout-ms']);
      await sleep(50, request!.signal);
      return { body: { inventory: 3 } };
    },
  }]);
  running.push(b);
  const guardA = new HttpGuard();
  const a = await startApp(aKind, [{
    method: 'GET',
    path: '/a',
    handler: async (request) => {
      observed.aHandlerRuns++;
      const started = performance.now();
      observed.aBudget = request!.budgetMs;
      await sleep(100, request!.signal); // some local work before the downstream call
      observed.aRemainingAtCall = request!.remaining();
      const res = await fetch(`${b.url}/b`, { headers: deadlineHeaders(request!), signal: request!.signal });
      await res.json();
      try {
        await sleep(60_000, request!.signal); // then work that would overrun the budget by far
      } catch (error) {
        observed.aAbortCode = (error as any).code;
        observed.aAbortedAfterMs = performance.now() - started;
        throw error;
      }
      return { body: 'finished (should not happen)' };
    },
  }], { guard: guardA });
  running.push(a);
  return { observed, guardA, a };
}

for (const [aKind, bKind] of [['fastify', 'express'], ['express', 'node'], ['node', 'fastify']] as const) {
  test(`chain client → ${aKind} A → ${bKind} B with a 1 s budget`, async () => {
    const { observed, guardA, a } = await chain(aKind, bKind);
    const started = performance.now();
    const res = await fetch(`${a.url}/a`, { headers: { 'x-request-timeout-ms': '1000' } });
    const elapsed = performance.now() - started;
    assert.equal(res.status, 504);
    assert.equal((await res.json() as any).code, 'DEADLINE_EXCEEDED');
    // Never before the deadline. The upper bound only has to tell "at the deadline" from "when A's
    // 60 s of work would end", so it is generous: on a loaded machine a 1 s timer and two HTTP hops
    // can take a few hundred ms longer. The deadline's exact timing is checked on virtual time in
    // the guard's own tests.
    assert.ok(elapsed >= 990 && elapsed < 3000, `client answered after ${elapsed} ms (deadline 1000 ms)`);

    assert.equal(observed.aBudget, 1000);
    assert.ok(observed.bBudget !== undefined, 'B ran');
    assert.match(observed.bHeader!, /^[0-9]+$/, 'A sent a numeric X-Request-Timeout-Ms');
    assert.ok(observed.bBudget! < observed.aRemainingAtCall!, `B saw ${observed.bBudget} ms, less than A's ${observed.aRemainingAtCall} ms left`);
    assert.ok(observed.bBudget! <= 900 && observed.bBudget! > 0, `B budget ${observed.bBudget}: at most 1000 − 100 ms of A's work`);

    for (let i = 0; i < 100 && observed.aAbortCode === undefined; i++) await sleep(10);
    assert.equal(observed.aAbortCode, 'DEADLINE_EXCEEDED', "A's handler was aborted by its deadline");
    assert.ok(observed.aAbortedAfterMs! < 3000, `A aborted after ${observed.aAbortedAfterMs} ms, at its deadline, not after its 60 s of work`);
    assert.equal(guardA.pendingDeadlines, 0);
  });
}

test('an expired header at A gives 504 and neither A nor B runs', async () => {
  const { observed, a } = await chain('fastify', 'node');
  const expired: Record<string, string>[] = [{ 'x-request-timeout-ms': '0' }, { 'x-request-deadline': String(Date.now() - 5) }];
  for (const headers of expired) {
    const res = await fetch(`${a.url}/a`, { headers });
    assert.equal(res.status, 504);
  }
  assert.equal(observed.aHandlerRuns, 0);
  assert.equal(observed.bHandlerRuns, 0);
});

test('without a deadline A sends no deadline header at all to B (never "None")', async () => {
  let seen: Record<string, unknown> | undefined;
  const b = await startApp('express', [{ method: 'GET', path: '/b', handler: (_r, req) => { seen = req.headers; return { body: 1 }; } }]);
  running.push(b);
  const a = await startApp('node', [{
    method: 'GET',
    path: '/a',
    handler: async (request) => {
      await (await fetch(`${b.url}/b`, { headers: deadlineHeaders(request) })).json();
      return { body: 'ok' };
    },
  }]);
  running.push(a);
  assert.equal((await fetch(`${a.url}/a`)).status, 200);
  assert.ok(seen);
  assert.equal(seen!['x-request-timeout-ms'], undefined);
  assert.equal(seen!['x-request-deadline'], undefined);
  assert.equal(seen!['x-deadline'], undefined);
});
