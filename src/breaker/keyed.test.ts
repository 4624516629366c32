import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VirtualClock } from '../core/clock.js';
import { pipeline } from '../core/policy.js';
import { keyedBreaker, type KeyedStateChange } from './keyed.js';
import { consecutive } from './strategies.js';

const down = () => { throw new Error('down'); };
const up = () => 'ok';

test('keyed breakers are independent per key and share one options object safely', async () => {
  const clock = new VirtualClock();
  const hosts = keyedBreaker({ clock, options: { name: 'api', strategy: consecutive({ threshold: 2 }), openMs: 1000 } });
  for (let i = 0; i < 2; i++) await assert.rejects(hosts.execute('a.example', down), /down/);
  await assert.rejects(hosts.execute('a.example', up), (e: any) => e.code === 'CIRCUIT_OPEN' && e.breaker === 'api:a.example');
  assert.equal(await hosts.execute('b.example', up), 'ok');
  await assert.rejects(hosts.execute('b.example', down), /down/);
  assert.equal(hosts.get('b.example').state.kind, 'closed', 'one failure on b; a\'s failures are not b\'s');
  assert.equal(hosts.size, 2);
  assert.equal(clock.pendingTimers, 0, 'no timers per key');
});

test('bounded: the least recently used closed breaker is evicted', async () => {
  const hosts = keyedBreaker<string>({ clock: new VirtualClock(), maxKeys: 3 });
  const a = hosts.get('a');
  hosts.get('b');
  hosts.get('c');
  assert.equal(hosts.get('a'), a, 'same breaker on reuse (and a becomes most recent)');
  hosts.get('d');
  assert.deepEqual(hosts.keys().sort(), ['a', 'c', 'd']);
  assert.equal(hosts.has('b'), false);
  assert.equal(hosts.stats().evictions, 1);
  for (let i = 0; i < 10_000; i++) hosts.get(`host-${i}`);
  assert.equal(hosts.size, 3, 'memory stays bounded by maxKeys');
});

test('open breakers are never evicted; when every slot is open, new keys share an overflow breaker', async () => {
  const clock = new VirtualClock();
  const hosts = keyedBreaker<string>({ clock, maxKeys: 2, name: 'hosts', options: { strategy: consecutive({ threshold: 1 }), openMs: 1000 } });
  await assert.rejects(hosts.execute('a', down));
  hosts.get('b');
  hosts.get('c'); // evicts b (closed), never a (open)
  assert.deepEqual(hosts.keys().sort(), ['a', 'c']);
  assert.equal(hosts.get('a').state.kind, 'open', 'a kept its open state');
  await assert.rejects(hosts.execute('c', down));
  assert.equal(hosts.stats().notClosed, 2);

  const overflow = hosts.get('d');
  assert.equal(overflow.name, 'hosts:overflow');
  assert.equal(hosts.get('e'), overflow, 'new keys share it');
  assert.equal(hosts.size, 2);
  assert.equal(hosts.stats().overflowed, 2);
  await assert.rejects(hosts.execute('d', down));
  await assert.rejects(hosts.execute('e', up), { code: 'CIRCUIT_OPEN' }, 'unknown keys stay protected together');

  // When a slot frees up (a closes again), a new key gets its own breaker.
  await clock.advance(1000);
  assert.equal(await hosts.execute('a', up), 'ok');
  assert.equal(hosts.get('a').state.kind, 'closed');
  const f = hosts.get('f');
  assert.notEqual(f, overflow);
  assert.deepEqual(hosts.keys().sort(), ['c', 'f'], 'a (closed, least recently used) made room');
});

test('per-key options from a function, and key-annotated state events', async () => {
  const clock = new VirtualClock();
  const seen: string[] = [];
  const hosts = keyedBreaker<string>({
    clock,
    options: (key) => ({ name: `svc-${key}`, strategy: consecutive({ threshold: key === 'fragile' ? 1 : 3 }) }),
  });
  hosts.onStateChange((e: KeyedStateChange<string>) => seen.push(`${e.key}:${e.from}->${e.to}`));
  await assert.rejects(hosts.execute('fragile', down));
  await assert.rejects(hosts.execute('sturdy', down));
  assert.equal(hosts.get('fragile').state.kind, 'open');
  assert.equal(hosts.get('sturdy').state.kind, 'closed');
  assert.equal(hosts.get('fragile').name, 'svc-fragile');
  assert.deepEqual(seen, ['fragile:closed->open']);
});

test('as a pipeline policy: the key is read from the call (tags)', async () => {
  const clock = new VirtualClock();
  const hosts = keyedBreaker<string>({ clock, options: { strategy: consecutive({ threshold: 1 }) } });
  const client = pipeline(hosts.policy((ctx) => String(ctx.tags.host)));
  await assert.rejects(client.execute(down, { tags: { host: 'x' } }), /down/);
  await assert.rejects(client.execute(up, { tags: { host: 'x' } }), { code: 'CIRCUIT_OPEN' });
  assert.equal(await client.execute(up, { tags: { host: 'y' } }), 'ok');
  assert.equal(client.describe().policies?.[0]?.kind, 'keyed-circuit-breaker');
});

test('bad options: fixed ones fail at build time, per-key ones fail the call with INVALID_OPTIONS', async () => {
  assert.throws(() => keyedBreaker({ maxKeys: 0 }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => keyedBreaker({ options: { openMs: -1 } }), { code: 'INVALID_OPTIONS' });
  const hosts = keyedBreaker<string>({ options: () => ({ openMs: -1 }) });
  await assert.rejects(hosts.execute('a', up), { code: 'INVALID_OPTIONS' });
  assert.equal(hosts.size, 0);
  assert.throws(() => hosts.policy(undefined as any), { code: 'INVALID_OPTIONS', message: 'keyedBreaker.policy(keyOf) is required: a function of the call context' });
});

test('delete and clear forget breakers', async () => {
  const hosts = keyedBreaker<string>({ clock: new VirtualClock(), options: { strategy: consecutive({ threshold: 1 }) } });
  await assert.rejects(hosts.execute('a', down));
  assert.equal(hosts.delete('a'), true);
  assert.equal(hosts.delete('a'), false);
  assert.equal(hosts.peek('a'), undefined);
  assert.equal(await hosts.execute('a', up), 'ok', 'a fresh, closed breaker');
  hosts.clear();
  assert.equal(hosts.size, 0);
});
