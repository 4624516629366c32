import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalJson, fingerprintRequest, fingerprintStream, sortKeys } from './fingerprint.js';
import { parseIdempotencyKey, recordId } from './scope.js';

/** Rebuilds an object with its keys in another order (recursively). */
function shuffled(value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map((v, i) => shuffled(v, seed + i));
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value);
    const order = keys.map((k, i) => ({ k, r: Math.sin(seed * 9301 + i * 49297) })).sort((a, b) => a.r - b.r).map((x) => x.k);
    return Object.fromEntries(order.map((k) => [k, shuffled((value as Record<string, unknown>)[k], seed + 1)]));
  }
  return value;
}

test('JSON key order does not matter; canonical JSON is JSON and means the same value', () => {
  fc.assert(fc.property(fc.jsonValue(), fc.integer(), (value, seed) => {
    const a = fingerprintRequest('POST', '/orders', value as object);
    const b = fingerprintRequest('post', '/orders', shuffled(value, seed) as object);
    assert.equal(a, b);
    assert.deepEqual(JSON.parse(canonicalJson(value)), JSON.parse(JSON.stringify(value)));
  }), { numRuns: 1000, seed: 20250102 });
  assert.equal(canonicalJson({ b: 1, a: [true, null, 'x'], c: { z: 1, y: undefined } }), '{"a":[true,null,"x"],"b":1,"c":{"z":1}}');
  assert.equal(canonicalJson({ b: 1, 10: 2, 2: 3, a: 0 }), canonicalJson({ a: 0, 2: 3, b: 1, 10: 2 }), 'integer-like keys too');
  assert.equal(canonicalJson({ d: new Date(0), f: () => 1, arr: [undefined, () => 1] }), '{"arr":[null,null],"d":"1970-01-01T00:00:00.000Z"}');
});

test('canonical JSON is the same text as the replacer-only path, for any value', () => {
  const reference = (value: unknown): string | Error => {
    try {
      return JSON.stringify(value, sortKeys) ?? 'null';
    } catch (error) {
      return error as Error;
    }
  };
  const anything = fc.anything({
    withBoxedValues: true, withDate: true, withMap: true, withSet: true, withTypedArray: true,
    withNullPrototype: true, withSparseArray: true, withObjectString: true, maxDepth: 4,
  });
  const withToJSON = fc.record({ a: anything, b: fc.constant({ toJSON: () => ({ z: 1, y: 2 }) }) });
  // Dates are leaves unless their toJSON is not Date's own.
  const dates = fc.record({
    z: fc.date(), a: anything,
    own: fc.constant(Object.assign(new Date(0), { toJSON: () => ({ z: 1, y: 2 }) })),
  });
  fc.assert(fc.property(fc.oneof(anything, withToJSON, dates, fc.jsonValue()), (value) => {
    const expected = reference(value);
    if (expected instanceof Error) assert.throws(() => canonicalJson(value), { code: 'INVALID_INPUT' });
    else assert.equal(canonicalJson(value), expected);
  }), { numRuns: 3000, seed: 20261203 });
  // Already in order: the value is serialized as it is; out of order anywhere: copies only there.
  const nested = { a: 1, b: { d: 1, c: [{ f: 1, e: 2 }] }, z: [3, { y: 1, x: 2 }] };
  assert.equal(canonicalJson(nested), '{"a":1,"b":{"c":[{"e":2,"f":1}],"d":1},"z":[3,{"x":2,"y":1}]}');
  assert.deepEqual(nested, { a: 1, b: { d: 1, c: [{ f: 1, e: 2 }] }, z: [3, { y: 1, x: 2 }] }, 'the body itself is not touched');
  let deep: unknown = { b: 1, a: 2 };
  for (let i = 0; i < 100; i++) deep = { k: deep };
  assert.equal(canonicalJson(deep), reference(deep), 'past 64 levels the replacer path takes over');
});

test('a "__proto__" key is part of the fingerprint like any other key', () => {
  const a = JSON.parse('{"b":1,"__proto__":{"x":1}}');
  const b = JSON.parse('{"b":1,"__proto__":{"x":2}}');
  assert.equal(canonicalJson(a), '{"__proto__":{"x":1},"b":1}');
  assert.notEqual(fingerprintRequest('POST', '/', a), fingerprintRequest('POST', '/', b));
});

test('method, path and body all distinguish requests', () => {
  const base = fingerprintRequest('POST', '/orders', { amount: 100 });
  assert.match(base, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(fingerprintRequest('PATCH', '/orders', { amount: 100 }), base);
  assert.notEqual(fingerprintRequest('POST', '/orders/1', { amount: 100 }), base);
  assert.notEqual(fingerprintRequest('POST', '/orders', { amount: 101 }), base);
  assert.notEqual(fingerprintRequest('POST', '/orders', { amount: '100' }), base);
  assert.notEqual(fingerprintRequest('POST', '/orders', '{"amount":100}'), base, 'raw bytes and parsed JSON are different kinds');
  assert.equal(fingerprintRequest('POST', '/o', 'héllo'), fingerprintRequest('POST', '/o', Buffer.from('héllo')), 'strings are hashed as their UTF-8 bytes');
  assert.equal(fingerprintRequest('POST', '/o', ''), fingerprintRequest('POST', '/o'), 'empty body = no body');
  assert.equal(fingerprintRequest('POST', '/o', new Uint8Array(0)), fingerprintRequest('POST', '/o', null));
});

test('bad bodies fail with INVALID_INPUT, not a crash', () => {
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  assert.throws(() => fingerprintRequest('POST', '/', cyclic), { code: 'INVALID_INPUT' });
  assert.throws(() => fingerprintRequest('POST', '/', { n: 1n }), { code: 'INVALID_INPUT' });
  let deep: unknown = 1;
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.throws(() => fingerprintRequest('POST', '/', deep as object), { code: 'INVALID_INPUT' });
  const shared = { x: 1 };
  assert.doesNotThrow(() => fingerprintRequest('POST', '/', { a: shared, b: shared }), 'a shared (non-cyclic) object is fine');
});

test('a 10 MB streamed body is hashed chunk by chunk, never concatenated', async () => {
  // The generator reuses ONE 64 KB buffer, overwriting it for every chunk: an implementation
  // that kept chunks and hashed (or concatenated) them later would hash garbage. Only a true
  // incremental hash gets the right answer.
  const chunkSize = 64 * 1024;
  const chunks = 160; // 10 MiB
  const reused = Buffer.alloc(chunkSize);
  async function* body() {
    for (let i = 0; i < chunks; i++) {
      reused.fill(i % 251);
      yield reused;
    }
  }
  const result = await fingerprintStream('POST', '/upload', body());
  assert.equal(result.byteLength, chunkSize * chunks);
  const whole = Buffer.concat(Array.from({ length: chunks }, (_, i) => Buffer.alloc(chunkSize, i % 251)));
  assert.equal(result.fingerprint, fingerprintRequest('POST', '/upload', whole), 'same fingerprint as the buffered body');
  // A big parsed body: key order still does not matter.
  const big = { rows: Array.from({ length: 50_000 }, (_, i) => ({ i, name: `row-${i}`, tags: ['a', 'b'] })) };
  assert.equal(fingerprintRequest('POST', '/bulk', big), fingerprintRequest('POST', '/bulk', shuffled(big, 3) as object));
});

test('Idempotency-Key validation: 1..255 visible ASCII, quoted form accepted', () => {
  assert.equal(parseIdempotencyKey(undefined), undefined);
  assert.equal(parseIdempotencyKey('550e8400-e29b-41d4-a716-446655440000'), '550e8400-e29b-41d4-a716-446655440000');
  assert.equal(parseIdempotencyKey('"8e03978e-40d5"'), '8e03978e-40d5', 'IETF draft sends a Structured Field string');
  assert.equal(parseIdempotencyKey('"a\\"b"'), 'a"b');
  assert.equal(parseIdempotencyKey(['single']), 'single');
  assert.equal(parseIdempotencyKey('x'.repeat(255)), 'x'.repeat(255));
  const problem = (value: string | string[]) => {
    try {
      parseIdempotencyKey(value);
    } catch (error) {
      assert.equal((error as { code: string }).code, 'IDEMPOTENCY_KEY_INVALID');
      return (error as { problem: string }).problem;
    }
    return 'accepted';
  };
  assert.equal(problem('x'.repeat(256)), 'too-long');
  assert.equal(problem(''), 'empty');
  assert.equal(problem('""'), 'empty');
  assert.equal(problem('abc\u0000def'), 'invalid-characters');
  assert.equal(problem('abc\ndef'), 'invalid-characters');
  assert.equal(problem('has space'), 'invalid-characters');
  assert.equal(problem('caf\u00e9'), 'invalid-characters');
  assert.equal(problem('del\u007f'), 'invalid-characters');
  assert.equal(problem('trailing\n'), 'invalid-characters');
  assert.equal(problem(['a', 'b']), 'multiple');
  assert.equal(problem('"bad\\escape"'), 'invalid-characters');
});

test('record ids: parts cannot bleed into each other, and long ids are hashed', () => {
  const a = recordId({ principal: 'a:b', method: 'post', route: '/x', key: 'k' });
  const b = recordId({ principal: 'a', method: 'POST', route: 'b:/x', key: 'k' });
  assert.notEqual(a, b);
  assert.equal(a, 'a%3Ab:POST:%2Fx:k');
  assert.equal(recordId({ principal: null, method: 'POST', route: '/x', key: 'k' }), recordId({ principal: '', method: 'POST', route: '/x', key: 'k' }));
  assert.ok(!/[{}]/.test(recordId({ principal: '{tag}', method: 'POST', route: '/{id}', key: '{k}' })), 'no braces: safe as a Redis hash tag');
  const long = recordId({ principal: 'p'.repeat(600), method: 'POST', route: '/x', key: 'k' });
  assert.match(long, /^sha256:[0-9a-f]{64}$/);
  assert.throws(() => recordId({ principal: 5 as never, method: 'POST', route: '/', key: 'k' }), { code: 'INVALID_INPUT' });
});
