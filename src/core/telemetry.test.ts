import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { VirtualClock } from './clock.js';
import { CircuitOpenError } from './errors.js';
import { BasePolicy, pipeline, type Next, type PolicyDescription } from './policy.js';
import { errorCode, PolicyRegistry, type PolicyEvent } from './telemetry.js';
import type { CallContext } from './context.js';
import type { PolicyIdentity } from './telemetry.js';

// A full collection on demand, without starting the test process with --expose-gc.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const wait = (clock: VirtualClock, ms: number): Promise<void> => new Promise((resolve) => clock.setTimeout(resolve, ms));

/** A policy with one typed event ('pass'), projected into the uniform stream. */
class Counting extends BasePolicy {
  readonly kind = 'counting';
  passes = 0;
  projections = 0;
  readonly #onPass = this.telemetry.emitter<{ n: number }>('pass', (e) => {
    this.projections++;
    return { outcome: 'success', attributes: { n: e.n, absent: undefined } };
  });
  readonly onPass = this.#onPass.event;

  constructor(clock: VirtualClock, identity?: PolicyIdentity) {
    super(clock, identity);
  }

  run<T>(context: CallContext, next: Next<T>): Promise<T> {
    this.passes++;
    if (this.#onPass.active) this.#onPass.emit({ n: this.passes });
    return next(context);
  }
  describe(): PolicyDescription {
    return { kind: this.kind, options: {} };
  }
  stats(): { passes: number } {
    return { passes: this.passes };
  }
}

test('a typed event is projected into the uniform shape with the policy kind and name; undefined attributes are left out', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = new Counting(clock, { name: 'inventory', registry });
  const seen: PolicyEvent[] = [];
  const typed: number[] = [];
  policy.onEvent((e) => seen.push(e));
  policy.onPass((e) => typed.push(e.n));
  await policy.execute(() => 1);
  assert.deepEqual(typed, [1]);
  assert.deepEqual(seen, [{ kind: 'counting', name: 'inventory', event: 'pass', outcome: 'success', attributes: { n: 1 } }]);
});

test('nobody listening: the uniform projection never runs', async () => {
  const clock = new VirtualClock();
  const policy = new Counting(clock, { name: 'quiet', registry: new PolicyRegistry() });
  await policy.execute(() => 1);
  await policy.execute(() => 2);
  assert.equal(policy.projections, 0);
  const sub = policy.onEvent(() => {});
  await policy.execute(() => 3);
  sub.dispose();
  await policy.execute(() => 4);
  assert.equal(policy.projections, 1);
});

test('the cached "anybody listening" follows every listener: on the policy, on the typed event, and on the registry (subscribed after the policy was built)', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = new Counting(clock, { name: 'watched', registry });
  const projected = async (): Promise<number> => {
    const before = policy.projections;
    await policy.execute(() => 1);
    return policy.projections - before;
  };
  assert.equal(await projected(), 0);
  const typed = policy.onPass(() => {});
  assert.equal(await projected(), 0, 'a typed listener alone builds the typed event, not the uniform one');
  typed.dispose();
  const fromRegistry: string[] = [];
  const viaRegistry = registry.onEvent((e) => fromRegistry.push(e.name));
  assert.equal(await projected(), 1, 'a registry listener that came after the policy was built is served');
  const second = registry.onEvent(() => {});
  viaRegistry.dispose();
  assert.equal(await projected(), 1, 'one registry listener is still there');
  second.dispose();
  assert.equal(await projected(), 0, 'the last registry listener left');
  assert.deepEqual(fromRegistry, ['watched']);
});

test('an unnamed policy uses its kind as its name and joins no registry', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const policy = new Counting(clock, { registry });
  const seen: PolicyEvent[] = [];
  registry.onEvent((e) => seen.push(e));
  const own: PolicyEvent[] = [];
  policy.onEvent((e) => own.push(e));
  await policy.execute(() => 1);
  assert.deepEqual(registry.policies(), []);
  assert.deepEqual(seen, []);
  assert.equal(own[0]?.name, 'counting');
});

test('the registry lists its named policies, tells of new ones and carries all their events', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const a = new Counting(clock, { name: 'a', registry });
  const joined: string[] = [];
  const seenWhole: unknown[] = [];
  registry.onRegister((p) => {
    joined.push(p.name ?? p.kind);
    seenWhole.push([p.kind, typeof p.onEvent, p.stats()]);
  });
  const events: string[] = [];
  registry.onEvent((e) => events.push(`${e.name}:${e.event}`));
  const b = new Counting(clock, { name: 'b', registry });
  assert.deepEqual(joined, [], 'told once the constructor has returned');
  await Promise.resolve();
  assert.deepEqual(joined, ['b']);
  assert.deepEqual(seenWhole, [['counting', 'function', { passes: 0 }]], 'a listener meets a whole policy: its own fields are set');
  const outsider = new Counting(clock, { name: 'c', registry: null });
  await a.execute(() => 1);
  await b.execute(() => 1);
  await outsider.execute(() => 1);
  assert.deepEqual(registry.policies().map((p) => p.name), ['a', 'b']);
  assert.deepEqual(joined, ['b']);
  assert.deepEqual(seenWhole, [['counting', 'function', { passes: 0 }]], 'a listener meets a whole policy: its own fields are set');
  assert.deepEqual(events, ['a:pass', 'b:pass']);
  assert.deepEqual(registry.policies().map((p) => p.stats()), [{ passes: 1 }, { passes: 1 }]);
});

test('a registered policy nobody references is collected and leaves the registry', async () => {
  const registry = new PolicyRegistry();
  const kept = new Counting(new VirtualClock(), { name: 'kept', registry });
  let ref: WeakRef<object> | undefined;
  (() => {
    ref = new WeakRef(new Counting(new VirtualClock(), { name: 'dropped', registry }));
  })();
  for (let i = 0; i < 10 && ref!.deref() !== undefined; i++) {
    await new Promise((resolve) => setImmediate(resolve)); // real I/O turn: lets the collector run
    gc();
  }
  assert.equal(ref!.deref(), undefined);
  assert.deepEqual(registry.policies(), [kept]);
});

test('a bad name is INVALID_OPTIONS', () => {
  assert.throws(() => new Counting(new VirtualClock(), { name: '' }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => new Counting(new VirtualClock(), { name: 7 as unknown as string }), { code: 'INVALID_OPTIONS' });
  assert.throws(() => pipeline({ name: '' }), { code: 'INVALID_OPTIONS' });
});

test('a named pipeline reports each call with its outcome and duration, and carries its policies\' events', async () => {
  const clock = new VirtualClock();
  const registry = new PolicyRegistry();
  const inner = new Counting(clock, { name: 'inner', registry });
  const stack = pipeline({ name: 'checkout', registry }, inner);
  const seen: PolicyEvent[] = [];
  stack.onEvent((e) => seen.push(e));
  const first = stack.execute(() => wait(clock, 30).then(() => 'ok'));
  await clock.advance(30);
  assert.equal(await first, 'ok');
  const pending = stack.execute(() => wait(clock, 5).then(() => { throw new Error('boom'); }));
  const failed = assert.rejects(pending, /boom/);
  await clock.advance(5);
  await failed;
  await assert.rejects(stack.execute(() => Promise.reject(new CircuitOpenError('db', 1000, 'open'))));
  assert.deepEqual(seen.filter((e) => e.kind === 'pipeline'), [
    { kind: 'pipeline', name: 'checkout', event: 'call', outcome: 'success', durationMs: 30, attributes: {} },
    { kind: 'pipeline', name: 'checkout', event: 'call', outcome: 'failure', durationMs: 5, attributes: {} },
    { kind: 'pipeline', name: 'checkout', event: 'call', outcome: 'rejected', durationMs: 0, attributes: { code: 'CIRCUIT_OPEN' } },
  ]);
  assert.equal(seen.filter((e) => e.name === 'inner').length, 3);
  assert.deepEqual(stack.stats(), { policies: [{ kind: 'counting', name: 'inner', stats: { passes: 3 } }] });
  assert.deepEqual(registry.policies().map((p) => p.name), ['inner', 'checkout']);
});

test('errorCode: a Bulwark code, a system or driver constant, else the error name; never the message', () => {
  assert.equal(errorCode(new CircuitOpenError('db', 1000, 'open')), 'CIRCUIT_OPEN');
  assert.equal(errorCode(Object.assign(new Error('connect ECONNREFUSED 10.0.0.7:5432'), { code: 'ECONNREFUSED' })), 'ECONNREFUSED');
  assert.equal(errorCode(Object.assign(new Error('terminating connection'), { code: '57P01' })), '57P01');
  assert.equal(errorCode(Object.assign(new Error('no such user 4711'), { code: 'user 4711 not found' })), 'Error', 'a code that is not a constant is left out');
  assert.equal(errorCode(Object.assign(new Error('x'), { code: 42 })), 'Error');
  assert.equal(errorCode(new TypeError('bad')), 'TypeError');
  assert.equal(errorCode('a string'), undefined);
});
