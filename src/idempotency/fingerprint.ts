import * as crypto from 'node:crypto';
import type { Hash } from 'node:crypto';
import { InvalidInputError } from '../core/errors.js';

/**
 * Request fingerprints: what makes two requests "the same request" for an idempotency key.
 * Method + path + body, hashed with SHA-256 into 43 base64url characters.
 *
 * - Parsed JSON bodies (objects, arrays, numbers, ...) are hashed as canonical JSON: object
 *   keys sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` are the same request.
 * - Raw bodies (Buffer/Uint8Array/string) and streamed bodies are hashed as bytes.
 * - Streamed bodies are fed to the hash chunk by chunk: a 10 MB upload is never concatenated
 *   for hashing (and kept at most once, for the handler).
 */

/** A body that can be fingerprinted without I/O. */
export type FingerprintBody = undefined | null | string | Uint8Array | ArrayBuffer | number | boolean | object;

export type BodyChunk = Uint8Array | string;

const VERSION = 'bulwark-fp/1\n';

/** Starts a fingerprint hash for a request line. */
function begin(method: string, path: string, kind: 'none' | 'bytes' | 'json'): Hash {
  return crypto.createHash('sha256').update(header(method, path, kind));
}

function header(method: string, path: string, kind: 'none' | 'bytes' | 'json'): string {
  return `${VERSION}${method.toUpperCase()}\n${path}\n${kind}\n`;
}

/**
 * One-shot hashing (`crypto.hash`, Node >= 20.12) costs about a third less than
 * createHash/update/digest for the small bodies most requests have.
 */
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'base64url') => string }).hash;
function hashText(text: string): string {
  return oneShot !== undefined ? oneShot('sha256', text, 'base64url') : crypto.createHash('sha256').update(text).digest('base64url');
}

function finish(hash: Hash): string {
  return hash.digest('base64url');
}

/** Fingerprint of a request whose body is already in memory (parsed JSON, bytes or a string). */
export function fingerprintRequest(method: string, path: string, body?: FingerprintBody): string {
  if (body === undefined || body === null || isEmptyBytes(body)) return hashText(header(method, path, 'none'));
  if (typeof body === 'string') return hashText(header(method, path, 'bytes') + body);
  if (body instanceof Uint8Array) return finish(begin(method, path, 'bytes').update(body));
  if (body instanceof ArrayBuffer) return finish(begin(method, path, 'bytes').update(new Uint8Array(body)));
  return hashText(header(method, path, 'json') + canonicalJson(body));
}

function isEmptyBytes(body: FingerprintBody): boolean {
  return body === '' || ((body instanceof Uint8Array || body instanceof ArrayBuffer) && body.byteLength === 0);
}

/**
 * Fingerprint of a streamed body: each chunk goes into the hash as it arrives and is not
 * kept. `onChunk` sees every chunk (an HTTP adapter can keep them for the handler, so the
 * body is buffered at most once).
 */
export async function fingerprintStream(
  method: string,
  path: string,
  chunks: AsyncIterable<BodyChunk> | Iterable<BodyChunk>,
  onChunk?: (chunk: BodyChunk) => void,
): Promise<{ fingerprint: string; byteLength: number }> {
  const hash = begin(method, path, 'bytes');
  let byteLength = 0;
  for await (const chunk of chunks) {
    if (typeof chunk === 'string') {
      hash.update(chunk, 'utf8');
      byteLength += Buffer.byteLength(chunk);
    } else if (chunk instanceof Uint8Array) {
      hash.update(chunk);
      byteLength += chunk.byteLength;
    } else {
      throw new InvalidInputError('fingerprintStream: chunks must be Uint8Array or string');
    }
    onChunk?.(chunk);
  }
  // An empty body and no body are the same request (frameworks disagree on which they report).
  if (byteLength === 0) return { fingerprint: finish(begin(method, path, 'none')), byteLength };
  return { fingerprint: finish(hash), byteLength };
}

/**
 * Canonical JSON: JSON.stringify with every object's keys sorted, so two objects with the same
 * keys and values give the same text whatever order they were built in. Integer-like keys
 * ("2", "10") come first in ascending numeric order, as JavaScript always orders them; other
 * keys in code unit order. Everything else follows JSON.stringify (toJSON() honoured,
 * undefined/functions skipped in objects and null in arrays, non-finite numbers null).
 * Cycles, BigInt and absurd nesting fail with INVALID_INPUT.
 *
 * The native serializer writes the text. A JavaScript pass first puts keys in order, copying
 * only the objects that are not (most parsed bodies need few or no copies); the serializer then
 * runs without a replacer, which costs a native-to-JavaScript call per value (several times this
 * way's cost, see docs/benchmarks.md). Values with a toJSON other than Date's (the
 * serializer would replace them first) and deep nesting take the replacer path, which gives
 * the same text.
 */
export function canonicalJson(value: unknown): string {
  try {
    const ordered = inKeyOrder(value, 0);
    return (ordered === REPLACER ? JSON.stringify(value, sortKeys) : JSON.stringify(ordered)) ?? 'null';
  } catch (error) {
    throw new InvalidInputError(`fingerprint: the body cannot be serialized as JSON: ${(error as Error).message}`, { cause: error });
  }
}

/** Returned by `inKeyOrder` for values only the replacer path handles. */
const REPLACER = Symbol('replacer');
const dateToJSON = Date.prototype.toJSON;

/**
 * `value` with every object's keys in sorted order: the value itself where it already is,
 * shallow copies (no prototype, as `sortKeys` makes) only where something changed. Arrays keep
 * their holes (the serializer writes null, as it would anyway).
 */
function inKeyOrder(value: unknown, depth: number): unknown {
  if (value === null || typeof value !== 'object') return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  // A Date's own toJSON gives a string (or null): a leaf the serializer writes by itself.
  if (toJSON === dateToJSON && value instanceof Date) return value;
  if (depth > 64 || typeof toJSON === 'function') return REPLACER;
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const ordered = inKeyOrder(item, depth + 1);
      if (ordered === REPLACER) return REPLACER;
      if (ordered !== item) (copy ??= value.slice())[i] = ordered;
    }
    return copy ?? value;
  }
  const keys = Object.keys(value);
  let copy: Record<string, unknown> | undefined;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      keys.sort();
      copy = Object.create(null) as Record<string, unknown>;
      break;
    }
  }
  const source = value as Record<string, unknown>;
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    const item = source[key];
    const ordered = inKeyOrder(item, depth + 1);
    if (ordered === REPLACER) return REPLACER;
    if (copy === undefined && ordered !== item) {
      copy = Object.create(null) as Record<string, unknown>;
      for (let j = 0; j < i; j++) copy[keys[j]!] = source[keys[j]!];
    }
    if (copy !== undefined) copy[key] = ordered;
  }
  return copy ?? value;
}

/** The replacer path's sorting (and the reference the JavaScript pass must agree with). */
export function sortKeys(this: unknown, _key: string, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  let sorted = true;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      sorted = false;
      break;
    }
  }
  if (sorted) return value; // the common case: no copy
  keys.sort();
  // No prototype: a "__proto__" key (JSON.parse makes it an own property) must stay a key,
  // not become the copy's prototype and vanish from the fingerprint.
  const copy = Object.create(null) as Record<string, unknown>;
  for (const key of keys) copy[key] = (value as Record<string, unknown>)[key];
  return copy;
}
