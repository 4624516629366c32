import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { PolicyRegistry } from '../core/telemetry.js';
import { createFetch } from './client.js';
import { reply, startServer } from './test/server.js';

test('fetch: each dependency is Instrumented under its name; its policies are named after it (timeouts also say which); stats per dependency', async (t) => {
  const server = await startServer((_req, res) => reply(res, 200, 'ok'));
  t.after(() => server.close());
  const registry = new PolicyRegistry();
  const fetch = createFetch({
    clock: new VirtualClock(1_700_000_000_000),
    registry,
    budget: false,
    defaults: false,
    dependencies: {
      inventory: { hosts: [new URL(server.url).host], timeoutMs: 500, totalTimeoutMs: 2000, retry: { maxAttempts: 2 }, bulkhead: { maxConcurrent: 4 }, hedge: false, coalesce: true },
    },
  });
  t.after(() => fetch.close());
  const dependency = fetch.dependency('inventory').dependency;
  assert.equal(dependency.kind, 'fetch-dependency');
  // The per-host breakers are the keyed breaker's, named after it.
  assert.equal(dependency.breakers?.name, 'inventory');
  assert.deepEqual(dependency.pipeline.policies.filter((p) => p.kind !== 'keyed-circuit-breaker').map((p) => [p.kind, p.name]), [
    ['timeout', 'inventory/caller-deadline'],
    ['coalesce', 'inventory'],
    ['timeout', 'inventory/total'],
    ['retry', 'inventory'],
    ['bulkhead', 'inventory'],
    ['timeout', 'inventory/attempt'],
  ]);
  const dependencies = registry.policies().filter((p) => p.kind === 'fetch-dependency');
  assert.deepEqual(dependencies, [dependency]);
  assert.ok(registry.policies().every((p) => p.name === 'inventory' || p.name?.startsWith('inventory/')), 'every registered policy names the dependency');

  const response = await fetch(`${server.url}/stock/1`);
  assert.equal(await response.text(), 'ok');
  assert.equal(dependency.stats().requests, 1);
  assert.deepEqual(dependency.stats(), fetch.stats().dependencies['inventory']);
});
