import type { Clock } from '../../core/clock.js';
import { CALL_SOURCE, type Priority } from '../../core/context.js';
import { AbortedError, DeadlineExceededError } from '../../core/errors.js';
import { DeadlineEntry, type DeadlineQueue } from '../../core/deadline-queue.js';
import type { ResponseInput } from '../../idempotency/codec.js';
import type { Lease } from '../../idempotency/engine.js';
import type { DeadlineOrigin } from './deadline.js';
import type { HttpResponse } from './problem.js';
import type { ResolvedRoute } from './routes.js';

export type RequestHeaders = Readonly<Record<string, string | readonly string[] | undefined>>;

/**
 * The first execution of an idempotency key, as the handler sees it (`request.idempotency`).
 * For exactly-once effects, write the completion in the same transaction as the business
 * write: `complete(client, response)` inside it, COMMIT, then answer with that same response
 * (duplicates replay the stored one). The adapter then does not store the answer again; a
 * handler that rolls back throws (or answers 5xx) and the key is released.
 */
export interface IdempotentRun {
  readonly key: string;
  readonly lease: Lease;
  /**
   * Writes the completion inside your open transaction. PostgreSQL: `client` is the pg
   * client that ran BEGIN; await the promise before COMMIT. SQLite: `client` is the store's
   * Database; call it inside `db.transaction(...)` (synchronous). Throws LEASE_LOST when
   * another worker owns the key now (roll back), INVALID_OPTIONS on a store that cannot
   * write inside your transaction (memory, Redis).
   */
  complete(client: unknown, response: ResponseInput): Promise<void> | void;
}

/** How a request ended, given to `onEnd` listeners (protections release permits, record outcomes). */
export interface RequestOutcome {
  status: number;
  /** False when the client went away before the response was complete. */
  completed: boolean;
  durationMs: number;
  /** Response headers as sent (only when a protection asked for `captureResponse()`). */
  headers?: Record<string, string | string[]>;
  /** Response body as sent (only with `captureResponse()`, up to its byte limit). */
  body?: Buffer;
  /** True when the body exceeded the capture limit (then `body` is undefined). */
  bodyTruncated?: boolean;
}

/**
 * What the framework-neutral core needs from an adapter to act on a response it does not own.
 * One constant object per adapter (no per-request closures); `target` is the adapter's own
 * response object (a `ServerResponse`, a Fastify `reply`).
 */
export interface ResponseChannel<T> {
  /** True once the response has begun (the handler or someone else answered). */
  started(target: T): boolean;
  /** Sends a complete response; used for the 504 at the deadline. */
  send(target: T, response: HttpResponse): void;
  /** Arranges `context.end(outcome)` when the response closes, and `context.abort()` on client disconnect. */
  watch(target: T, context: RequestContext): void;
  /** Starts recording the response (status, headers, body) for `RequestOutcome`. */
  capture(target: T, context: RequestContext, maxBytes: number): void;
  /**
   * Holds the handler's response back from the client: the handler writes as usual, the
   * adapter records it (up to `maxBytes`; a larger one goes out as it comes), reports it with
   * `context.responseProduced()` and sends it when the promise that returns settles. While it
   * is held, `send` answers the client directly and the handler's own response is still recorded.
   */
  hold(target: T, context: RequestContext, maxBytes: number): void;
}

/** The deadline was reached while the request was being handled (code DEADLINE_EXCEEDED). */
export class RequestDeadlineExceededError extends DeadlineExceededError {
  constructor(deadline: number, readonly budgetMs: number) {
    super(deadline, `request deadline reached (budget ${Math.round(budgetMs)} ms)`);
  }
}

/** The client closed the connection before the response was complete (code ABORTED). */
export class ClientDisconnectedError extends AbortedError {
  constructor() {
    super();
    this.message = 'client closed the connection before the response was complete';
  }
}

/** The request's entry in the server's shared deadline queue (one timer for all requests). */
export class RequestDeadline extends DeadlineEntry {
  constructor(deadline: number, onExpire: (entry: DeadlineEntry) => void, readonly request: RequestContext) {
    super(deadline, onExpire);
  }
}

type Phase = 'admitting' | 'handling' | 'ended';

export interface RequestContextInit {
  clock: Clock;
  method: string;
  url: string;
  path: string;
  headers: RequestHeaders;
  clientIp: string;
  route: ResolvedRoute;
  startedAt: number;
  deadline: number;
  deadlineSource: DeadlineOrigin;
  channel: ResponseChannel<unknown>;
  target: unknown;
  /** The framework's own request object (Fastify request, Express req, IncomingMessage). */
  native?: unknown;
}

/**
 * The response as the server produced it (the handler called `end()` / Fastify's `onSend`),
 * whether or not the client was still there to receive it: what an idempotency layer stores.
 */
export interface ProducedResponse {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string | string[]>;
  /** Undefined when the body was larger than the capture limit or a stream the adapter did not buffer. */
  body: Buffer | undefined;
  bodyTruncated: boolean;
}

/**
 * A protection that holds the handler's response until it has done something with it (the
 * idempotency layer stores the completion first, then the client gets the answer).
 */
export interface ResponseHold {
  /**
   * The handler produced its complete response. The adapter sends it when the promise
   * settles: as produced (undefined) or replaced (the idempotency layer's 409 when its lease
   * was taken over). Not called for responses the core sent itself (the 504 at the deadline).
   */
  produced(response: ProducedResponse, request: RequestContext): Promise<HttpResponse | undefined>;
  /**
   * The handler threw: its error page will follow, and must not be treated as its answer. The
   * adapter sends that page once the returned promise settles (the idempotency layer frees the
   * key first, so a retry sent on the error runs instead of meeting 409).
   */
  failed(error: unknown, request: RequestContext): Promise<void> | void;
}

/** Told once when a request ends, with how it ended. */
export type RequestEndListener = (outcome: RequestOutcome, request: RequestContext) => void;

/**
 * One inbound request as Bulwark sees it: who sent it, which route, how long it may take, and a
 * signal that aborts at the deadline or when the client disconnects.
 *
 * It is shaped like Bulwark's `CallOptions` (`signal`, `deadline`, `priority`, `tags`), so the
 * request's budget flows into outbound policies directly: `policy.execute(op, request)`.
 * Handlers read `remaining()` for the budget left and pass `signal` to their own I/O.
 *
 * The signal is created lazily (an AbortController only when someone reads it), the deadline
 * shares one timer per server, and nothing is listened to per request except the response's
 * own `close` event, which the adapter needs anyway.
 */
export class RequestContext {
  readonly clock: Clock;
  readonly method: string;
  /** Request target as received (path and query). */
  readonly url: string;
  /** Path without the query string, not percent-decoded. */
  readonly path: string;
  /** Lower-case request headers (as Node gives them). */
  readonly headers: RequestHeaders;
  /** The client's address: the socket peer, or the trusted `X-Forwarded-For` hop (see `trustProxy`). */
  readonly clientIp: string;
  readonly route: ResolvedRoute;
  readonly priority: Priority;
  readonly critical: boolean;
  /** Clock time when the request was admitted. */
  readonly startedAt: number;
  /** Absolute deadline on `clock` (epoch-aligned ms with the system clock); Infinity without one. */
  readonly deadline: number;
  readonly deadlineSource: DeadlineOrigin;
  /** The budget the request arrived with (ms; Infinity without a deadline). */
  readonly budgetMs: number;
  /**
   * The first execution of an idempotency key, when this request carries one on a guarded
   * route (undefined otherwise): its key, its lease, and `complete(client, response)` to write
   * the completion inside your own database transaction.
   */
  idempotency: IdempotentRun | undefined = undefined;
  /**
   * The framework's request object (Fastify `request`, Express `req`, node `IncomingMessage`),
   * for key functions that need more than headers (e.g. `request.user` set by an auth hook).
   */
  readonly native: unknown;
  /** Itself: a spread copy (`{ ...request.bulwark, safe: true }`) leads back here, signal included. */
  readonly [CALL_SOURCE]: RequestContext;

  #phase: Phase = 'admitting';
  #controller: AbortController | undefined;
  #aborted = false;
  #abortReason: unknown;
  #entry: RequestDeadline | undefined;
  #queue: DeadlineQueue | undefined;
  #endListeners: RequestEndListener[] | undefined;
  #responseHeaders: Record<string, string> | undefined;
  #tags: Readonly<Record<string, unknown>> | undefined;
  #captureLimit = -1;
  #hold: ResponseHold | undefined;
  /** What the error page waits for after the handler threw (see `ResponseHold.failed`). */
  #failing: Promise<void> | undefined;
  #produced = false;
  #body: unknown;
  #hasBody = false;
  readonly #channel: ResponseChannel<unknown>;
  readonly #target: unknown;

  constructor(init: RequestContextInit) {
    this.clock = init.clock;
    this.method = init.method;
    this.url = init.url;
    this.path = init.path;
    this.headers = init.headers;
    this.clientIp = init.clientIp;
    this.route = init.route;
    this.priority = init.route.priority;
    this.critical = init.route.critical;
    this.startedAt = init.startedAt;
    this.deadline = init.deadline;
    this.deadlineSource = init.deadlineSource;
    this.budgetMs = init.deadline - init.startedAt;
    this.#channel = init.channel;
    this.#target = init.target;
    this.native = init.native;
    this[CALL_SOURCE] = this;
  }

  /** Milliseconds left before the deadline (Infinity without one; negative once past). */
  remaining(): number {
    return this.deadline === Infinity ? Infinity : this.deadline - this.clock.now();
  }

  /** Aborts at the deadline (reason: DEADLINE_EXCEEDED) or on client disconnect (reason: ABORTED). */
  get signal(): AbortSignal {
    if (this.#controller) return this.#controller.signal;
    const controller = (this.#controller = new AbortController());
    if (this.#aborted) controller.abort(this.#abortReason);
    return controller.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get abortReason(): unknown {
    return this.#abortReason;
  }

  /** Tags for outbound calls made on behalf of this request (CallOptions.tags). */
  get tags(): Readonly<Record<string, unknown>> {
    return (this.#tags ??= Object.freeze({ route: this.route.name, method: this.method, clientIp: this.clientIp }));
  }

  /** True once the response closed (or the request was rejected). */
  get ended(): boolean {
    return this.#phase === 'ended';
  }

  /** True while the handler runs (after admission, before the response closes). */
  get handling(): boolean {
    return this.#phase === 'handling';
  }

  /** Aborts the request's work. Adapters call it on disconnect; the server at the deadline. */
  abort(reason: unknown = new AbortedError()): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
  }

  // ---- For protections (rate limit, idempotency, admission control) -------------------------

  /** Adds a header to the eventual response (e.g. RateLimit-* on an allowed request). */
  setHeader(name: string, value: string): void {
    (this.#responseHeaders ??= {})[name.toLowerCase()] = value;
  }

  /** Headers protections asked to add; adapters set them before the handler runs. */
  get responseHeaders(): Readonly<Record<string, string>> | undefined {
    return this.#responseHeaders;
  }

  /** Runs once when the request ends (response closed, client gone, or rejected). */
  onEnd(listener: RequestEndListener): void {
    if (this.#phase === 'ended') throw new Error('bulwark: onEnd() after the request ended');
    (this.#endListeners ??= []).push(listener);
  }

  /**
   * Asks the adapter to record the response (status, headers, body up to `maxBytes`) into the
   * `RequestOutcome` given to `onEnd` listeners.
   */
  captureResponse(maxBytes = 1_048_576): void {
    if (this.#captureLimit >= 0) return;
    this.#captureLimit = maxBytes;
    this.#channel.capture(this.#target, this, maxBytes);
  }

  /**
   * Holds the handler's response until `hold.produced` has settled (see `ResponseHold`).
   * One protection per request; call it before the handler runs.
   */
  holdResponse(maxBytes: number, hold: ResponseHold): void {
    if (this.#hold !== undefined) throw new Error('bulwark: only one protection may hold the response');
    this.#hold = hold;
    this.#channel.hold(this.#target, this, maxBytes);
  }

  /**
   * @internal Adapters: the handler produced its complete response (it called `end()`, or its
   * error was answered), whether or not the client is still there. Returns the holder's
   * decision to wait for (undefined when nothing holds the response). Once per request.
   */
  responseProduced(response: ProducedResponse): Promise<HttpResponse | undefined> | undefined {
    if (this.#produced) return undefined;
    this.#produced = true;
    const hold = this.#hold;
    if (hold === undefined) return this.#failing?.then(() => undefined, () => undefined);
    this.#hold = undefined;
    try {
      return hold.produced(response, this);
    } catch (error) {
      process.emitWarning(`bulwark: response hold threw: ${error instanceof Error ? error.message : String(error)}`);
      return undefined;
    }
  }

  /**
   * @internal Adapters: the handler threw (before its error is answered). The holder learns
   * that the response which follows is an error page, not the handler's answer.
   */
  handlerFailed(error: unknown): void {
    const hold = this.#hold;
    if (hold === undefined || this.#produced) return;
    this.#hold = undefined;
    try {
      this.#failing = hold.failed(error, this) ?? undefined;
    } catch (failure) {
      process.emitWarning(`bulwark: response hold threw: ${failure instanceof Error ? failure.message : String(failure)}`);
    }
  }

  /** The request body, once the adapter has it (parsed by the framework, or raw bytes for node:http). */
  get body(): unknown {
    return this.#body;
  }

  /** True once the adapter has read (or the framework has parsed) the body. */
  get hasBody(): boolean {
    return this.#hasBody;
  }

  /** @internal Adapters: the body as the framework parsed it (or the raw bytes). */
  setBody(body: unknown): void {
    this.#body = body;
    this.#hasBody = true;
  }

  get capturing(): boolean {
    return this.#captureLimit >= 0;
  }

  // ---- Lifecycle (called by the server core and adapters) ------------------------------------

  /** @internal Puts the deadline in the server's shared queue (one timer for every request). */
  armDeadline(queue: DeadlineQueue, onExpire: (entry: DeadlineEntry) => void): void {
    if (this.deadline === Infinity || this.#phase === 'ended' || this.#entry) return;
    const entry = new RequestDeadline(this.deadline, onExpire, this);
    this.#entry = entry;
    this.#queue = queue;
    queue.add(entry);
  }

  /** The server admitted the request: the handler runs now. */
  markHandling(): void {
    if (this.#phase === 'admitting') this.#phase = 'handling';
  }

  /** Sends `response` if the handler is running and has not started answering (the 504 at the deadline). */
  respondIfIdle(response: HttpResponse): boolean {
    if (this.#phase !== 'handling' || this.#channel.started(this.#target)) return false;
    this.#channel.send(this.#target, response);
    return true;
  }

  /** Starts watching the response (adapter side effect through the channel). */
  watchResponse(): void {
    this.#channel.watch(this.#target, this);
  }

  /** Ends the request: releases the deadline entry and tells `onEnd` listeners. Idempotent. */
  end(outcome: RequestOutcome): void {
    if (this.#phase === 'ended') return;
    this.#phase = 'ended';
    if (this.#entry) {
      this.#queue!.remove(this.#entry);
      this.#entry = undefined;
    }
    const listeners = this.#endListeners;
    if (listeners === undefined) return;
    this.#endListeners = undefined;
    for (const listener of listeners) {
      try {
        listener(outcome, this);
      } catch (error) {
        // A broken listener must not break the response path or the other listeners.
        process.emitWarning(`bulwark: request onEnd listener threw: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }
}
