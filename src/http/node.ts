import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpGuard, pathOf, type GuardDecision, type HttpGuardOptions } from './core/http-guard.js';
import type { HealthChecks } from './core/health.js';
import {
  applyNodeHeaders, attachContext, contextOf, nodeRequestView, nodeResponseChannel, sendNodeResponse,
} from './core/node-io.js';
import { InvalidRequestError, problemForError, problemResponse, type HttpResponse } from './core/problem.js';
import type { RequestContext } from './core/request-context.js';

/**
 * `node:http` adapter: wraps a request listener so every request gets Bulwark's deadline,
 * client IP and (phase 2) protections before the handler runs.
 *
 *   http.createServer(bulwarkHandler(async (req, res, request) => { ... }, { health }))
 */

/** The handler receives the Bulwark context as a third argument (undefined on skipped routes). */
export type BulwarkNodeHandler = (req: IncomingMessage, res: ServerResponse, request: RequestContext | undefined) => unknown;

export interface BulwarkNodeOptions extends HttpGuardOptions {
  /** Share one guard between servers (its options then replace the ones here). */
  guard?: HttpGuard;
  /** Serves `health.paths` (live/ready/deep) before anything else. */
  health?: HealthChecks;
  /** Told about errors the handler threw (after Bulwark answered them: 5xx problem, or socket cut). */
  onError?: (error: unknown, req: IncomingMessage) => void;
  /**
   * Largest body read for a step that needs it (idempotency), in bytes (413 beyond). The body
   * is then kept: `readBody(req)` / `readJson(req)` in the handler return it. Default 1 MiB.
   */
  maxBodyBytes?: number;
}

/** The Bulwark context of a request handled by `bulwarkHandler` (or the Express middleware). */
export function bulwarkContext(req: IncomingMessage): RequestContext | undefined {
  return contextOf(req);
}

export function bulwarkHandler(handler: BulwarkNodeHandler, options: BulwarkNodeOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  if (typeof handler !== 'function') throw new TypeError('bulwarkHandler(handler): handler must be a function');
  const guard = options.guard ?? new HttpGuard(options);
  const health = options.health;
  const onError = options.onError;

  const fail = (error: unknown, req: IncomingMessage, res: ServerResponse): void => {
    contextOf(req)?.handlerFailed(error); // the error page that follows is not the handler's answer
    if (!res.headersSent && !res.writableEnded) sendNodeResponse(res, problemForError(error));
    else if (!res.writableEnded) res.destroy(); // half-sent: cut it rather than pass a truncated body as complete
    if (onError) {
      try {
        onError(error, req);
      } catch {
        // an error reporter that throws must not take the server down
      }
    }
  };

  const run = (req: IncomingMessage, res: ServerResponse, request: RequestContext | undefined): void => {
    let result: unknown;
    try {
      result = handler(req, res, request);
    } catch (error) {
      fail(error, req, res);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
      (result as Promise<unknown>).then(undefined, (error: unknown) => fail(error, req, res));
    }
  };

  const maxBodyBytes = options.maxBodyBytes ?? 1_048_576;

  const afterBody = (admission: GuardDecision, req: IncomingMessage, res: ServerResponse): void => {
    if (admission.kind === 'reject') sendNodeResponse(res, admission.response);
    else run(req, res, admission.kind === 'proceed' ? admission.context : undefined);
  };

  const act = (admission: GuardDecision, req: IncomingMessage, res: ServerResponse): void => {
    if (admission.kind === 'proceed') {
      const request = admission.context;
      attachContext(req, request);
      applyNodeHeaders(res, request.responseHeaders);
      if (guard.hasBodyPhase && guard.needsBody(request)) {
        // A step needs the body (idempotency): read it once; the handler's readBody() gets the same bytes.
        readBody(req, { limitBytes: maxBodyBytes }).then((body) => {
          request.setBody(body);
          const next = guard.admitBody(request);
          if (next instanceof Promise) next.then((a) => afterBody(a, req, res), (error: unknown) => fail(error, req, res));
          else afterBody(next, req, res);
        }, (error: unknown) => fail(error, req, res));
        return;
      }
      run(req, res, request);
    } else if (admission.kind === 'reject') {
      sendNodeResponse(res, admission.response);
    } else {
      run(req, res, undefined);
    }
  };

  return function bulwarkRequestListener(req: IncomingMessage, res: ServerResponse): void {
    try {
      if (health !== undefined) {
        const answer = health.handle(req.method, pathOf(req.url ?? '/'));
        if (answer !== undefined) {
          sendAnswer(res, answer);
          return;
        }
      }
      const admission = guard.admit(nodeRequestView(req), nodeResponseChannel, res);
      if (admission instanceof Promise) admission.then((a) => act(a, req, res), (error: unknown) => fail(error, req, res));
      else act(admission, req, res);
    } catch (error) {
      fail(error, req, res);
    }
  };
}

function sendAnswer(res: ServerResponse, answer: HttpResponse | Promise<HttpResponse>): void {
  if (answer instanceof Promise) {
    answer.then(
      (response) => sendNodeResponse(res, response),
      () => sendNodeResponse(res, problemResponse({ status: 500, title: 'Internal server error' })),
    );
  } else {
    sendNodeResponse(res, answer);
  }
}

export interface ReadBodyOptions {
  /** Largest body accepted, in bytes (413 beyond). Default 1 MiB. */
  limitBytes?: number;
}

/**
 * Reads a request body with a size limit. Rejects with `InvalidRequestError` (code INVALID_INPUT):
 * 413 when too large (checked against Content-Length first, then while reading), 400 when the
 * client aborts mid-body. `bulwarkHandler` answers those as problem+json.
 */
export function readBody(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<Buffer> {
  const kept = contextOf(req);
  if (kept?.hasBody && Buffer.isBuffer(kept.body)) return Promise.resolve(kept.body); // read already, for a protection
  const limit = options.limitBytes ?? 1_048_576;
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    req.resume(); // drain so the connection can answer
    return Promise.reject(new InvalidRequestError(`request body larger than ${limit} bytes`, 413));
  }
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (error: Error | undefined): void => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.resume();
        finish(new InvalidRequestError(`request body larger than ${limit} bytes`, 413));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => finish(undefined);
    const onError = (error: Error): void => finish(new InvalidRequestError('request body could not be read', 400, error));
    const onClose = (): void => {
      if (!req.complete) finish(new InvalidRequestError('request body incomplete: the client aborted', 400));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** `readBody` + `JSON.parse`; malformed JSON is a 400 `InvalidRequestError`, never a 500. */
export async function readJson(req: IncomingMessage, options: ReadBodyOptions = {}): Promise<unknown> {
  const body = await readBody(req, options);
  if (body.length === 0) throw new InvalidRequestError('request body is empty; JSON expected', 400);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new InvalidRequestError('request body is not valid JSON', 400, error);
  }
}
