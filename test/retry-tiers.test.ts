/**
 * Retries at two tiers across a real HTTP hop: A calls B (createFetch, 3 attempts), B calls a
 * dependency C that fails every request (a retry policy over fetch, 3 attempts). Without
 * budgets the attempts multiply (3 × 3 = 9 calls on C per request); a 10% retry budget at each
 * tier bounds each tier to 1.1× its incoming requests plus the budget's floor; and B answering
 * with `Bulwark-Retry: no` stops A from retrying at all (the Google SRE book, "Addressing
 * Cascading Failures": retry at one layer only).
 *
 * Sequential calls on loopback: slow enough to keep the counts small.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { VirtualClock } from '../src/core/clock.js';
import { ratioBudget, retry } from '../src/index.js';
import { createFetch } from '../src/fetch.js';
import { bulwarkHandler } from '../src/http.js';
import { reply, startServer } from '../src/fetch/test/server.js';

const NO_WAIT = { kind: 'constant', baseDelayMs: 0, jitter: 'none' } as const;

interface Tiers {
  /** Requests B received (A's attempts). */
  readonly b: number;
  /** Requests C received (B's attempts). */
  readonly c: number;
  /** A's answers, in order: status and the don't-retry header. */
  readonly answers: Array<[number, string | null]>;
}

/**
 * Runs `requests` calls from A, one after the other, and counts what reaches B and C.
 * `budgets`: a 10% ratio budget at both tiers, without the floor of retries a quiet client
 * always gets (`minRetriesPerSecond: 0`), so the ratio alone shows; time stands still on the
 * virtual clock, so every call falls in one window.
 * `noRetryHeader`: B lets its RETRIES_EXHAUSTED reach the adapter, which answers 503 with
 * `Bulwark-Retry: no`; otherwise B answers a bare 503, as a naive service would.
 */
async function runTiers(t: { after(fn: () => Promise<void>): void }, requests: number, budgets: boolean, noRetryHeader: boolean): Promise<Tiers> {
  const clock = new VirtualClock(1_700_000_000_000);
  const c = await startServer((_req, res) => reply(res, 503, 'C is down'));
  t.after(() => c.close());

  const budget = () => ratioBudget({ clock, ratio: 0.1, minRetriesPerSecond: 0 });
  const callC = retry({ maxAttempts: 3, backoff: NO_WAIT, clock, ...(budgets ? { budget: budget() } : {}) });
  let bHits = 0;
  const b: Server = createServer(bulwarkHandler(async (_req, res) => {
    bHits++;
    try {
      const body = await callC.execute(async ({ signal }) => {
        const response = await fetch(`${c.url}/data`, { signal });
        const text = await response.text();
        if (response.status >= 500) throw Object.assign(new Error(`C answered ${response.status}`), { status: response.status });
        return text;
      });
      res.end(body);
    } catch (error) {
      if (noRetryHeader) throw error; // the adapter answers 503 problem+json with Bulwark-Retry: no
      res.writeHead(503).end('upstream failed');
    }
  }));
  await new Promise<void>((resolve) => b.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => { b.closeAllConnections(); b.close(() => resolve()); }));
  const bUrl = `http://127.0.0.1:${(b.address() as AddressInfo).port}`;

  const a = createFetch({
    clock,
    budget: budgets ? budget() : false,
    defaults: { retry: { maxAttempts: 3, backoff: NO_WAIT }, breaker: false },
  });
  t.after(() => a.close());
  const answers: Array<[number, string | null]> = [];
  for (let i = 0; i < requests; i++) {
    const response = await a(`${bUrl}/page`);
    await response.arrayBuffer();
    answers.push([response.status, response.headers.get('bulwark-retry')]);
  }
  return { b: bHits, c: c.hits, answers };
}

test('two retry tiers without budgets: every request costs 3 calls on B and 3 × 3 = 9 on C', async (t) => {
  const { b, c, answers } = await runTiers(t, 20, false, false);
  assert.equal(b, 60);
  assert.equal(c, 180, '9× the 20 requests');
  assert.ok(answers.every(([status, hint]) => status === 503 && hint === null));
});

test('two retry tiers with a 10% budget each: each tier sends at most 1.1× its incoming requests', async (t) => {
  const REQUESTS = 100;
  const { b, c } = await runTiers(t, REQUESTS, true, false);
  assert.ok(b <= 1.1 * REQUESTS, `B received ${b} for ${REQUESTS} requests`);
  assert.ok(c <= 1.1 * b, `C received ${c} for B's ${b}`);
  assert.equal(b, 110, '100 requests + 10 retries');
  assert.equal(c, 121, "B's 110 + 11 retries: 1.1 × 1.1 = 1.21× the requests, against 9× without budgets");
});

test("B's Bulwark-Retry: no stops A's retries: C sees only B's own 3 attempts per request", async (t) => {
  const { b, c, answers } = await runTiers(t, 20, false, true);
  assert.equal(b, 20, 'A never retried');
  assert.equal(c, 60, '3× the 20 requests, not 9×');
  assert.ok(answers.every(([status, hint]) => status === 503 && hint === 'no'));
});
