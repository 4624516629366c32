import { createHash } from 'node:crypto';
import { InvalidInputError } from '../core/errors.js';
import { IdempotencyKeyInvalidError } from './errors.js';
import type { IdempotencyScope } from './types.js';

/** Record ids longer than this are hashed, so SQL primary keys and Redis keys stay bounded. */
const MAX_READABLE_ID = 512;

/**
 * Encodes a scope as a record id. Each part is percent-encoded, so the ':' separators
 * cannot occur inside a part: ('a:b', 'c') and ('a', 'b:c') give different ids, and no
 * principal can forge another's id. Braces are encoded too, which keeps the id usable as a
 * Redis Cluster hash tag. Very long ids become `sha256:<hex>` (still collision-free in practice).
 */
export function recordId(scope: IdempotencyScope): string {
  const method = typeof scope.method === 'string' ? scope.method.toUpperCase() : '';
  if (!/^[A-Z][A-Z0-9_-]{0,31}$/.test(method)) throw new InvalidInputError(`idempotency scope: method must be a token, got ${String(scope.method)}`);
  if (typeof scope.route !== 'string') throw new InvalidInputError('idempotency scope: route must be a string');
  if (typeof scope.key !== 'string' || scope.key.length === 0) throw new InvalidInputError('idempotency scope: key must be a non-empty string');
  const principal = scope.principal ?? '';
  if (typeof principal !== 'string') throw new InvalidInputError('idempotency scope: principal must be a string, null or undefined');
  const id = `${encodeURIComponent(principal)}:${method}:${encodeURIComponent(scope.route)}:${encodeURIComponent(scope.key)}`;
  return id.length <= MAX_READABLE_ID ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}

export const DEFAULT_MAX_KEY_LENGTH = 255;

/**
 * A regular expression rather than a `charCodeAt` loop: native, and not slowed down by the
 * String subclass that Redis clients declare (see ratelimit/key-index.ts).
 */
const VISIBLE_ASCII = /^[\x21-\x7e]*$/;

/**
 * Reads an Idempotency-Key header value: 1..maxLength visible ASCII characters (0x21-0x7E).
 * The IETF draft sends the key as a Structured Field string (`"abc"`); the quoted form is
 * accepted and unquoted, so `abc` and `"abc"` are the same key. Returns undefined when the
 * header is absent; throws IdempotencyKeyInvalidError (400) when it is present but invalid.
 */
export function parseIdempotencyKey(value: string | readonly string[] | undefined, maxLength = DEFAULT_MAX_KEY_LENGTH): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    if (value.length === 1) return parseIdempotencyKey(value[0], maxLength);
    throw new IdempotencyKeyInvalidError('multiple', 'send exactly one Idempotency-Key header');
  }
  let key = value;
  if (key.length >= 2 && key.charCodeAt(0) === 0x22 && key.charCodeAt(key.length - 1) === 0x22) {
    key = unquote(key);
  }
  if (key.length === 0) throw new IdempotencyKeyInvalidError('empty', 'the Idempotency-Key header is empty');
  if (key.length > maxLength) throw new IdempotencyKeyInvalidError('too-long', `the Idempotency-Key is longer than ${maxLength} characters`);
  if (!VISIBLE_ASCII.test(key)) throw new IdempotencyKeyInvalidError('invalid-characters', 'the Idempotency-Key must be visible ASCII characters (no spaces or control characters)');
  return key;
}

/** Structured Field string: "..." with \" and \\ escapes. */
function unquote(quoted: string): string {
  const inner = quoted.slice(1, -1);
  if (!inner.includes('\\')) return inner;
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const ch = inner[i]!;
    if (ch === '\\') {
      const next = inner[i + 1];
      if (next !== '"' && next !== '\\') throw new IdempotencyKeyInvalidError('invalid-characters', 'the Idempotency-Key has an invalid escape');
      out += next;
      i++;
    } else {
      out += ch;
    }
  }
  return out;
}
