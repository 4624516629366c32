import { Headers, Response } from 'undici';

/**
 * Response bodies are one-shot streams holding a connection until read to the end or
 * cancelled. Two consequences handled here:
 *
 * - An answer shared by several callers (coalesced, cached) is buffered once, up to a size
 *   cap, and every caller gets its own `Response` built from the bytes. `response.clone()`
 *   would not do: it tees the stream, and a clone nobody reads makes the tee buffer the whole
 *   body without bound; nor do we know how many callers will come for a cached answer.
 * - A response we throw away (a retried 503) is drained (small bodies: the connection goes
 *   back to the pool) or cancelled (large ones: the socket is closed). Left alone, undici keeps
 *   the connection busy until the garbage collector finds the response.
 */

/** Statuses whose responses never have a body (the `Response` constructor refuses one). */
const NULL_BODY_STATUSES: ReadonlySet<number> = new Set([101, 103, 204, 205, 304]);

/** A discarded body up to this size is read out so its connection can be reused; larger ones are cancelled. */
export const DRAIN_LIMIT_BYTES = 64 * 1024;

/**
 * One answer that several callers may receive. `take()` gives each its own `Response`.
 *
 * When the body was larger than the sharing cap it is not buffered: the first caller to
 * `take()` gets the original stream (nothing is lost), later ones get `undefined` and send their
 * own request.
 */
export class SharedResponse {
  #single: Response | undefined;

  constructor(
    readonly status: number,
    readonly statusText: string,
    readonly headers: Headers,
    readonly url: string,
    /** The whole body; undefined when it was too large to buffer. */
    readonly body: Uint8Array | undefined,
    single?: Response,
  ) {
    this.#single = single;
  }

  /** The body is buffered: any number of callers (and a cache) can have it. */
  get complete(): boolean {
    return this.body !== undefined;
  }

  /** A fresh `Response` for one caller, or undefined once a too-large answer was taken. */
  take(): Response | undefined {
    if (this.body === undefined) {
      const single = this.#single;
      this.#single = undefined;
      return single;
    }
    const response = new Response(NULL_BODY_STATUSES.has(this.status) ? null : this.body, {
      status: this.status,
      statusText: this.statusText,
      headers: this.headers,
    });
    if (this.url) Object.defineProperty(response, 'url', { value: this.url, enumerable: true });
    return response;
  }

  /** Releases an unbuffered body nobody will take. */
  dispose(): void {
    const single = this.#single;
    this.#single = undefined;
    if (single) discardBody(single);
  }
}

/**
 * Reads `response`'s body for sharing: wholly when it fits in `maxBytes`, else the first
 * `maxBytes` plus the rest as a stream for one caller.
 */
export async function shareResponse(response: Response, maxBytes: number): Promise<SharedResponse> {
  const { status, statusText, headers, url } = response;
  const stream = response.body;
  if (stream === null) return new SharedResponse(status, statusText, headers, url, EMPTY);
  const declared = contentLength(headers);
  if (declared !== undefined && declared > maxBytes) return new SharedResponse(status, statusText, headers, url, undefined, response);

  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
    if (size > maxBytes) {
      // Too big to share: hand the bytes read so far and the rest of the stream to one caller.
      const rest = new Response(resumeStream(chunks, reader), { status, statusText, headers });
      if (url) Object.defineProperty(rest, 'url', { value: url, enumerable: true });
      return new SharedResponse(status, statusText, headers, url, undefined, rest);
    }
  }
  return new SharedResponse(status, statusText, headers, url, concat(chunks, size));
}

/** Gets rid of a response nobody will read, without leaking its connection. */
export function discardResult(value: unknown): void {
  if (value instanceof SharedResponse) value.dispose();
  else if (value instanceof Response) discardBody(value);
}

function discardBody(response: Response): void {
  const stream = response.body;
  if (stream === null || response.bodyUsed || stream.locked) return;
  const declared = contentLength(response.headers);
  if (declared !== undefined && declared > DRAIN_LIMIT_BYTES) {
    stream.cancel().catch(noop);
    return;
  }
  drain(stream.getReader()).catch(noop);
}

async function drain(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    size += value.byteLength;
    if (size > DRAIN_LIMIT_BYTES) {
      await reader.cancel();
      return;
    }
  }
}

/** A stream that yields `buffered` first, then whatever `reader` still has. */
function resumeStream(buffered: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  let index = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index < buffered.length) {
        controller.enqueue(buffered[index]!);
        buffered[index++] = EMPTY; // let the bytes go once delivered
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}

function contentLength(headers: Headers): number | undefined {
  const value = headers.get('content-length');
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value);
}

function concat(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

const EMPTY = new Uint8Array(0);
const noop = (): void => {};

/**
 * A server error (5xx) thrown across the stale cache so that serve-stale-on-error applies to
 * it (fetch returns HTTP errors as responses; the cache only acts on thrown errors). The client
 * turns it back into the response when no stale answer replaced it.
 */
export class UpstreamStatusError extends Error {
  constructor(readonly response: SharedResponse) {
    super(`upstream answered ${response.status}`);
  }
  get status(): number {
    return this.response.status;
  }
}
