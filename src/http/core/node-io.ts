import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { RequestView } from './http-guard.js';
import { problemResponse, type HttpResponse } from './problem.js';
import {
  ClientDisconnectedError, type ProducedResponse, type RequestContext, type RequestOutcome, type ResponseChannel,
} from './request-context.js';

/**
 * Node `http` plumbing shared by the three adapters (they all sit on `IncomingMessage` /
 * `ServerResponse`). No framework imports here.
 */

const kContext = Symbol.for('bulwark.requestContext');
const kCapture = Symbol.for('bulwark.responseCapture');
const kHeld = Symbol.for('bulwark.heldResponse');

interface Carrier {
  [kContext]?: RequestContext;
  [kCapture]?: ResponseCapture;
  [kHeld]?: HeldResponse;
}

/** The Bulwark context of a request or response handled by an adapter (undefined for skipped routes). */
export function contextOf(message: IncomingMessage | ServerResponse): RequestContext | undefined {
  return (message as Carrier)[kContext];
}

/** Links a context to the request object so `bulwarkContext(req)` finds it. */
export function attachContext(req: IncomingMessage, context: RequestContext): void {
  (req as Carrier)[kContext] = context;
}

/** A recording of the response for `RequestOutcome` (idempotent replay needs status, headers, body). */
export class ResponseCapture {
  chunks: Buffer[] = [];
  size = 0;
  truncated = false;
  /** Headers passed to `writeHead` directly (they bypass `getHeaders()`). */
  headHeaders: Record<string, string | string[]> | undefined;
  /** Set by adapters that see the final headers themselves (Fastify's onSend). */
  finalHeaders: Record<string, string | string[]> | undefined;
  constructor(readonly maxBytes: number) {}

  add(chunk: unknown, encoding?: unknown): void {
    if (this.truncated || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    let buffer: Buffer;
    if (typeof chunk === 'string') buffer = Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) buffer = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    else return;
    if (this.size + buffer.length > this.maxBytes) {
      this.truncated = true;
      this.chunks = [];
      return;
    }
    this.chunks.push(Buffer.from(buffer)); // copy: the caller may reuse its buffer
    this.size += buffer.length;
  }

  /** The adapter could not see the body (a stream it does not buffer): record nothing rather than half. */
  giveUp(): void {
    this.truncated = true;
    this.chunks = [];
  }

  body(): Buffer | undefined {
    return this.truncated ? undefined : Buffer.concat(this.chunks, this.size);
  }
}

/** Tells the context its response is complete (status, final headers, captured body). */
export function produced(context: RequestContext | undefined, status: number, headers: Record<string, string | string[]>, capture: ResponseCapture): void {
  if (context === undefined) return;
  const response: ProducedResponse = { status, headers, body: capture.body(), bodyTruncated: capture.truncated };
  context.responseProduced(response);
}

export function captureOf(res: ServerResponse): ResponseCapture | undefined {
  return (res as Carrier)[kCapture];
}

/** Attaches an empty recording that the adapter fills itself (Fastify's onSend sees the final payload). */
export function ensureCapture(res: ServerResponse, maxBytes: number): ResponseCapture {
  const carrier = res as Carrier;
  return (carrier[kCapture] ??= new ResponseCapture(maxBytes));
}

/** Starts recording a response by wrapping this one response's writeHead/write/end. */
export function captureNodeResponse(res: ServerResponse, maxBytes: number, context?: RequestContext): ResponseCapture {
  const existing = captureOf(res);
  if (existing) return existing;
  const capture = new ResponseCapture(maxBytes);
  (res as Carrier)[kCapture] = capture;
  const writeHead = res.writeHead;
  const write = res.write;
  const end = res.end;
  res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
    const headers = args.find((a, i) => i > 0 && typeof a === 'object' && a !== null) as object | undefined;
    if (headers !== undefined) capture.headHeaders = normalizeHeaders(headers);
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  } as ServerResponse['writeHead'];
  res.write = function (this: ServerResponse, chunk: unknown, ...args: unknown[]) {
    capture.add(chunk, args[0]);
    return (write as (...a: unknown[]) => boolean).apply(this, [chunk, ...args]);
  } as ServerResponse['write'];
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    if (args.length > 0 && typeof args[0] !== 'function') capture.add(args[0], args[1]);
    const result = (end as (...a: unknown[]) => ServerResponse).apply(this, args);
    // The handler has produced its whole response, even if the client has already gone.
    produced(context, this.statusCode, sentHeaders(this, capture), capture);
    return result;
  } as ServerResponse['end'];
  return capture;
}

function normalizeHeaders(raw: object): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (Array.isArray(raw)) {
    // [name, value, name, value] or [[name, value], ...]
    const flat = raw.flat() as unknown[];
    for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i]).toLowerCase()] = String(flat[i + 1]);
    return out;
  }
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    out[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return out;
}

/** Response headers as sent, from `getHeaders()` plus anything given to `writeHead`. */
function sentHeaders(res: ServerResponse, capture: ResponseCapture): Record<string, string | string[]> {
  if (capture.finalHeaders) return capture.finalHeaders;
  // Added to the fresh object, not `{ ...a, ...b }`: in Node 20 that takes V8's generic copy
  // path (docs/benchmarks.md), once per response.
  return Object.assign(normalizeHeaders(res.getHeaders() as OutgoingHttpHeaders), capture.headHeaders);
}

/** The outcome of a closed response. */
export function outcomeOf(res: ServerResponse, context: RequestContext): RequestOutcome {
  const completed = res.writableFinished;
  // A held response keeps the handler's status on the object; the wire may have carried another.
  const status = (res as Carrier)[kHeld]?.sentStatus ?? res.statusCode;
  const outcome: RequestOutcome = { status, completed, durationMs: context.clock.now() - context.startedAt };
  const capture = captureOf(res);
  if (capture) {
    outcome.headers = sentHeaders(res, capture);
    if (capture.truncated) outcome.bodyTruncated = true;
    else outcome.body = Buffer.concat(capture.chunks, capture.size);
  }
  return outcome;
}

/** One shared listener for every response: `this` is the response (no per-request closure). */
function onResponseClose(this: ServerResponse): void {
  const context = (this as Carrier)[kContext];
  if (context === undefined) return;
  if (!this.writableFinished) context.abort(new ClientDisconnectedError());
  context.end(outcomeOf(this, context));
}

/** Ends the context when the response closes; aborts it when the client left first. */
export function watchNodeResponse(res: ServerResponse, context: RequestContext): void {
  (res as Carrier)[kContext] = context;
  // `on`, not `once`: 'close' fires once per response anyway, and `once` allocates a wrapper per call.
  res.on('close', onResponseClose);
}

/** Representation headers a handler may have set that would corrupt a replacement response. */
const REPRESENTATION_HEADERS = ['content-length', 'content-type', 'content-encoding', 'content-range', 'content-disposition', 'etag', 'last-modified', 'transfer-encoding'];

/** Removes the representation headers the handler set, before a replacement response goes out. */
export function dropRepresentationHeaders(res: { hasHeader(name: string): boolean; removeHeader(name: string): unknown }): void {
  for (const name of REPRESENTATION_HEADERS) if (res.hasHeader(name)) res.removeHeader(name);
}

/**
 * Whether `res` can still take a complete answer, cleared of the handler's representation
 * headers. A response already begun cannot be replaced: it is only ended, and one ended or
 * destroyed takes nothing more.
 */
export function readyForAnswer(res: ServerResponse): boolean {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return false;
  }
  if (res.writableEnded || res.destroyed) return false;
  dropRepresentationHeaders(res);
  return true;
}

/**
 * Sends a complete response on a Node `ServerResponse` (rejections, health reports, the 504 at
 * the deadline). If the response has already begun it is only ended: a half-written answer
 * cannot be replaced.
 */
export function sendNodeResponse(res: ServerResponse, response: HttpResponse): void {
  if (!readyForAnswer(res)) return;
  for (const [name, value] of Object.entries(response.headers)) res.setHeader(name, value);
  res.statusCode = response.status;
  res.end(response.body);
}

/** Sends an answer that may still be coming (a health report); one that fails is a bare 500. */
export function sendNodeAnswer(res: ServerResponse, answer: HttpResponse | Promise<HttpResponse>): void {
  if (answer instanceof Promise) {
    answer.then(
      (response) => sendNodeResponse(res, response),
      () => sendNodeResponse(res, problemResponse({ status: 500, title: 'Internal server error' })),
    );
  } else {
    sendNodeResponse(res, answer);
  }
}

/** Applies headers protections asked for (RateLimit-*) before the handler runs. */
export function applyNodeHeaders(res: ServerResponse, headers: Readonly<Record<string, string>> | undefined): void {
  if (headers === undefined || res.headersSent) return;
  for (const name in headers) res.setHeader(name, headers[name]!);
}

/** The channel for adapters whose response object is a Node `ServerResponse` (node:http, Express). */
export const nodeResponseChannel: ResponseChannel<ServerResponse> = {
  started: responseStarted,
  send: (res, response) => {
    const held = (res as Carrier)[kHeld];
    if (held === undefined) sendNodeResponse(res, response);
    else held.answer(response);
  },
  watch: watchNodeResponse,
  capture: (res, context, maxBytes) => { captureNodeResponse(res, maxBytes, context); },
  hold: (res, context, maxBytes) => { holdNodeResponse(res, context, maxBytes); },
};

// ---- Held responses ------------------------------------------------------------------------

type HeaderValue = number | string | readonly string[];

/** What a held response replaces on the `ServerResponse` instance while it records. */
const HELD_METHODS = ['setHeader', 'setHeaders', 'appendHeader', 'getHeader', 'getHeaders', 'getHeaderNames', 'hasHeader', 'removeHeader', 'writeHead', 'flushHeaders', 'write', 'end'] as const;
const HELD_GETTERS = ['headersSent', 'writableEnded'] as const;
const HELD_NAMES: readonly string[] = [...HELD_METHODS, ...HELD_GETTERS];

type Method = (this: ServerResponse, ...args: any[]) => any;

function heldOf(res: ServerResponse): HeldResponse {
  return (res as Carrier)[kHeld]!;
}

function toList(value: HeaderValue): string[] {
  return Array.isArray(value) ? value.map(String) : [String(value)];
}

/**
 * The replacements, shared by every held response (`this` is the response: no per-request
 * closures). They keep the `ServerResponse` contract as a handler, Express or Fastify use it,
 * but write into the recording instead of the socket.
 */
const heldMethods: Record<(typeof HELD_METHODS)[number], Method> = {
  setHeader(name: string, value: HeaderValue) {
    heldOf(this).headers.set(String(name).toLowerCase(), [String(name), value]);
    return this;
  },
  setHeaders(headers: Iterable<[string, HeaderValue]>) {
    for (const [name, value] of headers) heldMethods.setHeader.call(this, name, value);
    return this;
  },
  appendHeader(name: string, value: HeaderValue) {
    const headers = heldOf(this).headers;
    const lower = String(name).toLowerCase();
    const previous = headers.get(lower);
    headers.set(lower, previous === undefined ? [String(name), value] : [previous[0], [...toList(previous[1]), ...toList(value)]]);
    return this;
  },
  getHeader(name: string) {
    return heldOf(this).headers.get(String(name).toLowerCase())?.[1];
  },
  getHeaders() {
    const out: Record<string, HeaderValue> = Object.create(null) as Record<string, HeaderValue>;
    for (const [lower, entry] of heldOf(this).headers) out[lower] = entry[1];
    return out;
  },
  getHeaderNames() {
    return [...heldOf(this).headers.keys()];
  },
  hasHeader(name: string) {
    return heldOf(this).headers.has(String(name).toLowerCase());
  },
  removeHeader(name: string) {
    heldOf(this).headers.delete(String(name).toLowerCase());
  },
  writeHead(status: number, reason?: unknown, headers?: unknown) {
    const held = heldOf(this);
    this.statusCode = status;
    if (typeof reason === 'string') this.statusMessage = reason;
    else headers = reason;
    if (headers !== undefined && headers !== null && typeof headers === 'object') {
      const normalized = normalizeHeaders(headers);
      for (const lower in normalized) held.headers.set(lower, [lower, normalized[lower]!]);
    }
    held.headSent = true;
    return this;
  },
  flushHeaders() {
    heldOf(this).headSent = true;
  },
  write(chunk: unknown, encoding?: unknown, callback?: unknown) {
    const held = heldOf(this);
    if (typeof encoding === 'function') callback = encoding;
    held.headSent = true;
    held.add(chunk, encoding);
    if (typeof callback === 'function') process.nextTick(callback as () => void);
    return true;
  },
  end(chunk?: unknown, encoding?: unknown, callback?: unknown) {
    const held = heldOf(this);
    if (typeof chunk === 'function') {
      callback = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      callback = encoding;
    }
    if (held.ended) return this;
    held.add(chunk, encoding);
    // Grown too large while adding this last chunk: the real response is already under way.
    if (held.passthrough && !held.answered) return passthroughEnd.call(this, ...(typeof callback === 'function' ? [callback] : []));
    if (typeof callback === 'function') {
      // After the core's own answer this response has finished already: nothing more will.
      if (held.answered) process.nextTick(callback as () => void);
      else this.once('finish', callback as () => void);
    }
    held.finish();
    return this;
  },
};

function heldHeadersSent(this: ServerResponse): boolean {
  const held = heldOf(this);
  return held.headSent || held.ended;
}

function heldWritableEnded(this: ServerResponse): boolean {
  return heldOf(this).ended;
}

/** After a passthrough switch: the real `end`, then the (unstorable) response is reported. */
function passthroughEnd(this: ServerResponse, ...args: unknown[]): ServerResponse {
  const held = heldOf(this);
  const result = (held.real.end as Method).apply(this, args) as ServerResponse;
  held.finish();
  return result;
}

/**
 * A handler's response held back from the client: the handler (or Express, or Fastify) writes
 * into it as into the real response; once it ends, the context's holder decides (the
 * idempotency layer stores the completion), then `flush` sends it. The core may answer the
 * client meanwhile (`answer`: the 504 at the deadline) without disturbing the recording, so
 * the handler's own result is still seen. A body over `maxBytes` is not held: what was
 * recorded goes out and the rest follows as it is written (reported with no body).
 */
export class HeldResponse {
  /** Lower-case name → [name as given, value]. */
  readonly headers = new Map<string, [string, HeaderValue]>();
  chunks: Buffer[] = [];
  size = 0;
  /** The handler began its response (writeHead, write or flushHeaders). */
  headSent = false;
  /** The handler ended its response. */
  ended = false;
  /** The recording gave way to the real response (the body outgrew `maxBytes`). */
  passthrough = false;
  /** The core answered the client itself; the handler's response is recorded, never sent. */
  answered = false;
  /** The status that went out on the wire, once something did. */
  sentStatus: number | undefined;
  /** @internal The instance's methods as they were before the hold (they may be other wrappers). */
  readonly real: Record<string, Method> = {};
  /** The instance's own properties the hold replaced, to put back. */
  readonly #saved = new Map<string, PropertyDescriptor | undefined>();

  constructor(readonly res: ServerResponse, readonly context: RequestContext, readonly maxBytes: number) {
    for (const name of HELD_METHODS) this.real[name] = res[name] as Method;
    for (const name of res.getHeaderNames()) this.headers.set(name, [name, res.getHeader(name)!]);
  }

  /** True while the hold's methods stand in for the response's own. */
  get recording(): boolean {
    return this.#saved.size > 0;
  }

  install(): void {
    const res = this.res as unknown as Record<string, unknown>;
    for (const name of HELD_NAMES) this.#saved.set(name, Object.getOwnPropertyDescriptor(res, name));
    for (const name of HELD_METHODS) res[name] = heldMethods[name];
    Object.defineProperty(res, 'headersSent', { configurable: true, get: heldHeadersSent });
    Object.defineProperty(res, 'writableEnded', { configurable: true, get: heldWritableEnded });
  }

  restore(): void {
    const res = this.res as unknown as Record<string, unknown>;
    for (const [name, descriptor] of this.#saved) {
      if (descriptor === undefined) delete res[name];
      else Object.defineProperty(res, name, descriptor);
    }
    this.#saved.clear();
  }

  add(chunk: unknown, encoding?: unknown): void {
    if (chunk === undefined || chunk === null || typeof chunk === 'function') return;
    if (this.passthrough) {
      (this.real.write as Method).call(this.res, chunk, encoding);
      return;
    }
    let buffer: Buffer;
    if (typeof chunk === 'string') buffer = Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) buffer = Buffer.from(chunk); // a copy: the caller may reuse its buffer
    else return;
    if (this.size + buffer.length > this.maxBytes) {
      this.#giveWay();
      (this.real.write as Method).call(this.res, buffer);
      return;
    }
    this.chunks.push(buffer);
    this.size += buffer.length;
  }

  /** The handler ended its response: report it, then send it once the holder has decided. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    const res = this.res;
    const headers: Record<string, string | string[]> = {};
    for (const [lower, entry] of this.headers) headers[lower] = Array.isArray(entry[1]) ? entry[1].map(String) : String(entry[1]);
    const body = this.passthrough ? undefined : this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const decision = this.context.responseProduced({ status: res.statusCode, headers, body, bodyTruncated: body === undefined });
    if (this.passthrough) return; // already on its way
    if (decision === undefined) this.flush(undefined);
    else decision.then((replacement) => this.flush(replacement), () => this.flush(undefined));
  }

  /** Sends the recorded response (or `replacement`) unless the client has its answer or is gone. */
  flush(replacement: HttpResponse | undefined): void {
    this.restore();
    const res = this.res;
    if (this.answered || res.writableEnded || res.destroyed) return;
    if (replacement !== undefined) {
      this.sentStatus = replacement.status;
      sendNodeResponse(res, replacement);
      return;
    }
    this.#sendHead();
    const chunks = this.chunks;
    if (chunks.length === 1) {
      res.end(chunks[0]);
      return;
    }
    for (const chunk of chunks) res.write(chunk);
    res.end();
  }

  /** The core's own answer (the 504 at the deadline), sent past the recording. */
  answer(response: HttpResponse): void {
    if (this.answered || this.ended) return;
    const res = this.res;
    const status = res.statusCode;
    const message = res.statusMessage;
    this.restore();
    sendNodeResponse(res, response);
    this.install();
    this.answered = true;
    this.sentStatus = response.status;
    // The handler keeps writing its own response into the recording, status included.
    res.statusCode = status;
    res.statusMessage = message;
  }

  #sendHead(): void {
    const res = this.res;
    for (const name of res.getHeaderNames()) if (!this.headers.has(name)) res.removeHeader(name);
    for (const [, [name, value]] of this.headers) res.setHeader(name, value);
    this.sentStatus = res.statusCode;
  }

  /** Too large to hold: the recorded part goes out now and the rest as it is written. */
  #giveWay(): void {
    this.passthrough = true;
    if (this.answered) {
      // The client has the core's answer: the handler's bytes are dropped as they come.
      this.real.write = discardWrite;
      this.chunks = [];
      return;
    }
    this.restore();
    this.#sendHead();
    for (const chunk of this.chunks) (this.real.write as Method).call(this.res, chunk);
    this.chunks = [];
    (this.res as unknown as Record<string, unknown>).end = passthroughEnd;
  }
}

function discardWrite(this: ServerResponse): boolean {
  return true;
}

/** Holds `res` back from the client until its context's holder has dealt with the response. */
export function holdNodeResponse(res: ServerResponse, context: RequestContext, maxBytes: number): HeldResponse {
  const carrier = res as Carrier;
  const existing = carrier[kHeld];
  if (existing !== undefined) return existing;
  const held = new HeldResponse(res, context, maxBytes);
  carrier[kHeld] = held;
  held.install();
  return held;
}

/**
 * Whether anything went out to the client. While a response is held its own getters show the
 * handler's view (begun as soon as the handler wrote its head into the recording), which must
 * not stop the core's 504 at the deadline: only the core's own answer counts then.
 */
export function responseStarted(res: ServerResponse): boolean {
  const held = (res as Carrier)[kHeld];
  if (held !== undefined && held.recording) return held.answered;
  return res.headersSent || res.writableEnded;
}

/** The held response of `res`, if a protection holds it. */
export function heldResponseOf(res: ServerResponse): HeldResponse | undefined {
  return (res as Carrier)[kHeld];
}

/** The framework-neutral view of a Node request. */
export function nodeRequestView(req: IncomingMessage, url: string | undefined = req.url): RequestView {
  return { method: req.method, url, headers: req.headers, socketAddress: req.socket?.remoteAddress, native: req };
}
