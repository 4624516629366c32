import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { boundedQueue } from '../backpressure/bounded-queue.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { fallback } from '../fallback/fallback.js';
import { degradedHeaders, DEGRADED_HEADER } from './core/degraded-headers.js';
import { BUSY_RETRY_AFTER_MS } from './core/problem.js';
import { ADAPTERS, gate, startApp, type AppRoute, type RunningApp } from './test/apps.js';

const running: RunningApp[] = [];
after(async () => {
  await Promise.all(running.map((app) => app.close()));
});

/**
 * What a client sees when a local guard says no, or a fallback answers: the same bytes from
 * every adapter. The rejections are produced by the real policies (nothing is faked), and the
 * handler just lets them propagate.
 */
for (const kind of ADAPTERS) {
  describe(`${kind}: local rejections and degraded answers at the edge`, () => {
    test('BULKHEAD_FULL, BULKHEAD_QUEUE_TIMEOUT and QUEUE_FULL answer 503 + Retry-After: 1 + Bulwark-Retry: no', async () => {
      const busy = gate();
      const noQueue = bulkhead({ maxConcurrent: 1 });                                 // full: rejected at once
      const noWait = bulkhead({ maxConcurrent: 1, maxQueue: 5, queueTimeoutMs: 0 });  // queue timeout at once
      const queue = boundedQueue<string>({ capacity: 1, policy: 'reject' });
      const held = [noQueue.execute(() => busy.wait), noWait.execute(() => busy.wait)];
      await queue.push('first');
      let handled = 0;
      const routes: AppRoute[] = [
        { method: 'GET', path: '/full', handler: async () => { handled++; return { body: await noQueue.execute(async () => 'never') }; } },
        { method: 'GET', path: '/wait', handler: async () => { handled++; return { body: await noWait.execute(async () => 'never') }; } },
        { method: 'POST', path: '/enqueue', handler: async () => { handled++; await queue.push('second'); return { status: 202 }; } },
      ];
      const app = await startApp(kind, routes);
      running.push(app);

      const expected = [['/full', 'GET', 'BULKHEAD_FULL'], ['/wait', 'GET', 'BULKHEAD_QUEUE_TIMEOUT'], ['/enqueue', 'POST', 'QUEUE_FULL']] as const;
      for (const [path, method, code] of expected) {
        const res = await fetch(`${app.url}${path}`, { method, ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}) });
        assert.equal(res.status, 503, path);
        assert.equal(res.headers.get('retry-after'), String(BUSY_RETRY_AFTER_MS / 1000), path);
        assert.equal(res.headers.get('retry-after'), '1');
        assert.equal(res.headers.get('bulwark-retry'), 'no', `${path}: retried by the original caller only`);
        assert.equal(res.headers.get('content-type'), 'application/problem+json');
        const problem = await res.json() as { code: string; status: number; title: string };
        assert.equal(problem.code, code);
        assert.equal(problem.status, 503);
        assert.equal(problem.title, 'Too busy');
      }
      assert.equal(handled, 3);
      assert.equal(noQueue.stats().rejected, 1);
      assert.equal(noWait.stats().queueTimeouts, 1);
      assert.equal(queue.size, 1, 'the refused item was not added');
      busy.open();
      await Promise.all(held);
    });

    test('a fallback answer goes out as 200 with its body and Bulwark-Degraded: fallback; a normal answer has no marker', async () => {
      let healthy = false;
      let dependencyCalls = 0;
      const recommendations = fallback({ handle: ['ECONNREFUSED'], fallback: () => ({ items: ['popular-1', 'popular-2'] }) });
      const load = async (): Promise<{ items: string[] }> => {
        dependencyCalls++;
        if (!healthy) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
        return { items: ['for-you'] };
      };
      const routes: AppRoute[] = [{
        method: 'GET', path: '/recommendations',
        handler: async () => {
          const items = await recommendations.execute(load);
          return { body: items, headers: degradedHeaders(items) };
        },
      }];
      const app = await startApp(kind, routes);
      running.push(app);

      const degraded = await fetch(`${app.url}/recommendations`);
      assert.equal(degraded.status, 200);
      assert.equal(degraded.headers.get(DEGRADED_HEADER), 'fallback');
      assert.deepEqual(await degraded.json(), { items: ['popular-1', 'popular-2'] }, 'the mark is not part of the body');
      assert.equal(dependencyCalls, 1);

      healthy = true;
      const fresh = await fetch(`${app.url}/recommendations`);
      assert.equal(fresh.status, 200);
      assert.equal(fresh.headers.get(DEGRADED_HEADER), null);
      assert.deepEqual(await fresh.json(), { items: ['for-you'] });
      assert.equal(dependencyCalls, 2);
    });
  });
}
