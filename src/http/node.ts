import type { IncomingMessage, ServerResponse } from 'node:http';
import { HttpGuard, pathOf, type GuardDecision, type HttpGuardOptions } from './core/http-guard.js';
import type { HealthChecks } from './core/health.js';
import {
  applyNodeHeaders, attachContext, contextOf, nodeRequestView, nodeResponseChannel, sendNodeAnswer, sendNodeResponse,
} from './core/node-io.js';
import { problemForError } from './core/problem.js';
import { DEFAULT_MAX_BODY_BYTES, readBody } from './core/read-body.js';
import type { RequestContext } from './core/request-context.js';

export { readBody, readJson, type ReadBodyOptions } from './core/read-body.js';

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

  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

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
          sendNodeAnswer(res, answer);
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
