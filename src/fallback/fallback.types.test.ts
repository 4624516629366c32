// Type tests: `tsc` checks them (a broken promise about types fails the type-check in `npm test`);
// the runtime tests below make sure the values behind those types are the ones promised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { expectType } from '../../test/support/expect-type.js';
import { VirtualClock } from '../core/clock.js';
import { pipeline, type Pipeline, type Policy } from '../core/policy.js';
import { bulkhead } from '../bulkhead/bulkhead.js';
import { circuitBreaker } from '../breaker/breaker.js';
import { retry } from '../retry/retry.js';
import { timeout } from '../timeout/timeout.js';
import { fallback, type FallbackPolicy } from './fallback.js';

interface Stock {
  sku: string;
  count: number;
}
interface Degraded {
  items: never[];
  degraded: boolean;
}

const loadStock = (): Promise<Stock> => Promise.resolve({ sku: 'a', count: 1 });
const failing = (): Promise<Stock> => Promise.reject(Object.assign(new Error('open'), { code: 'CIRCUIT_OPEN' }));

test('a fallback answers T | R: its own value, not a T', async () => {
  const clock = new VirtualClock();
  const byValue = fallback({ clock, fallback: { items: [], degraded: true } });
  expectType<FallbackPolicy<{ items: never[]; degraded: boolean }>>()(byValue);
  expectType<Promise<Stock | Degraded>>()(byValue.execute(loadStock));

  const byFunction = fallback({ clock, fallback: async () => 'offline' as const });
  expectType<Promise<Stock | 'offline'>>()(byFunction.execute(loadStock));

  const served = await byValue.execute(failing);
  assert.deepEqual(served, { items: [], degraded: true });
  // @ts-expect-error the fallback value is not a Stock, so the result cannot be typed as one
  const stock: Stock = served;
  assert.equal('sku' in stock, false, 'and indeed it is not');
});

test('a pipeline carries its fallbacks\' values through: T | R, and T alone without a fallback', async () => {
  const clock = new VirtualClock();
  const inventory = pipeline(
    fallback({ clock, handle: ['CIRCUIT_OPEN'], fallback: { items: [], degraded: true } }),
    retry({ clock, maxAttempts: 1 }),
    circuitBreaker({ clock }),
    bulkhead({ clock, maxConcurrent: 2 }),
    timeout({ clock, ms: 100 }),
  );
  expectType<Pipeline<Degraded>>()(inventory);
  expectType<Promise<Stock | Degraded>>()(inventory.execute(loadStock));
  // @ts-expect-error not a Promise<Stock>
  const typedAsStock: Promise<Stock> = inventory.execute(failing);
  assert.deepEqual(await typedAsStock, { items: [], degraded: true });

  const plain = pipeline(retry({ clock, maxAttempts: 1 }), timeout({ clock, ms: 100 }));
  expectType<Pipeline<never>>()(plain);
  expectType<Promise<Stock>>()(plain.execute(loadStock));
  assert.deepEqual(await plain.execute(loadStock), { sku: 'a', count: 1 });
});

test('several fallbacks and nested pipelines add up to a union', async () => {
  const clock = new VirtualClock();
  const inner = pipeline(fallback({ clock, handle: ['TIMEOUT'], fallback: () => 0 }), timeout({ clock, ms: 100 }));
  const outer = pipeline(fallback({ clock, fallback: null }), inner);
  expectType<Promise<Stock | number | null>>()(outer.execute(loadStock));
  assert.equal(await outer.execute(failing), null, 'the outer fallback took the breaker error the inner one left');
});

test('a policy that substitutes is not a plain Policy (its calls do not resolve to T)', () => {
  const clock = new VirtualClock();
  // @ts-expect-error Policy (R = never) promises T; a fallback does not keep that promise
  const plain: Policy = fallback({ clock, fallback: 'cached' });
  const any: Policy<unknown> = fallback({ clock, fallback: 'cached' });
  const narrow: Policy<string> = fallback({ clock, fallback: 'cached' });
  assert.equal(plain.kind, 'fallback');
  assert.equal(any.kind, narrow.kind);
});
