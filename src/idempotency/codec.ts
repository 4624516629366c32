import { InvalidInputError } from '../core/errors.js';

/**
 * What a completed request stored, and what a replay returns: the status, the headers that
 * passed the allow-list, and the body with its type preserved (JSON value, string or bytes).
 */
export interface StoredResponse {
  status: number;
  headers: Readonly<Record<string, string>>;
  body: unknown;
}

/** The serialized form (a string, so every store can keep it as text). */
interface Encoded {
  s: number;
  h: Record<string, string>;
  /** Body kind: none, string, bytes (base64), JSON. */
  k: 'n' | 's' | 'b' | 'j';
  b?: unknown;
}

export function encodeResponse(response: StoredResponse): string {
  const { body, status } = response;
  if (!Number.isInteger(status)) throw new InvalidInputError(`idempotency: response status must be an integer, got ${String(status)}`);
  let kind: Encoded['k'];
  let encodedBody: string | undefined;
  try {
    if (body === undefined || body === null) {
      kind = 'n';
    } else if (typeof body === 'string') {
      kind = 's';
      encodedBody = JSON.stringify(body);
    } else if (body instanceof Uint8Array) {
      kind = 'b';
      encodedBody = `"${Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('base64')}"`;
    } else {
      kind = 'j';
      encodedBody = JSON.stringify(body);
      if (encodedBody === undefined) kind = 'n'; // a function or symbol: nothing to store, like JSON.stringify
    }
    // Built by hand: one JSON.stringify of the body, no intermediate object.
    const head = `{"s":${status},"h":${JSON.stringify(response.headers)},"k":"${kind}"`;
    return encodedBody === undefined ? `${head}}` : `${head},"b":${encodedBody}}`;
  } catch (error) {
    throw new InvalidInputError(`idempotency: the response body cannot be stored as JSON: ${(error as Error).message}`, { cause: error });
  }
}

export function decodeResponse(text: string): StoredResponse {
  const encoded = JSON.parse(text) as Encoded;
  let body: unknown;
  switch (encoded.k) {
    case 'n': body = undefined; break;
    case 's': body = encoded.b as string; break;
    case 'b': body = Buffer.from(encoded.b as string, 'base64'); break;
    default: body = encoded.b;
  }
  return { status: encoded.s, headers: encoded.h, body };
}

/** Step results are JSON values; wrapping keeps `undefined` distinguishable and round-trippable. */
export function encodeStep(value: unknown): string {
  try {
    return value === undefined ? '{}' : JSON.stringify({ v: value });
  } catch (error) {
    throw new InvalidInputError(`idempotency: a step result must be JSON-serializable: ${(error as Error).message}`, { cause: error });
  }
}

export function decodeStep<T>(text: string): T {
  return (JSON.parse(text) as { v?: T }).v as T;
}

/** What a finished operation leaves behind. Defaults: status 200, no headers. */
export interface ResponseInput {
  status?: number;
  headers?: Readonly<Record<string, string>>;
  body?: unknown;
}

export function normalizeResponse(response: ResponseInput): StoredResponse {
  const status = response?.status ?? 200;
  if (!Number.isInteger(status) || status < 100 || status > 999) throw new InvalidInputError(`idempotency: response status must be an integer 100..999, got ${String(status)}`);
  return { status, headers: response.headers ?? {}, body: response.body };
}
