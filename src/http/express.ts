import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import { HttpGuard, pathOf, type Admission, type HttpGuardOptions } from './core/guard.js';
import type { HealthChecks } from './core/health.js';
import { applyNodeHeaders, attachContext, nodeRequestView, nodeResponseChannel, sendNodeResponse } from './core/node-io.js';
import { problemForError, problemResponse, type HttpResponse } from './core/problem.js';
import type { RequestContext } from './core/request-context.js';

/**
 * Express 5 / Connect adapter (`bulwark/express`):
 *
 *   app.use(bulwarkMiddleware({ health, routes: { 'GET /search': { deadlineMs: 800 } } }));
 *   app.get('/search', async (req, res) => { ... req.bulwark.signal ... });
 *   app.use(bulwarkErrorHandler());
 *
 * Mount it first: it answers health probes, rejects malformed or expired deadlines before any
 * body parsing, and exposes the context as `req.bulwark` and `res.locals.bulwark`.
 */

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Bulwark's view of this request (deadline, signal, client IP, route); unset on skipped routes. */
      bulwark?: RequestContext;
    }
    interface Locals {
      bulwark?: RequestContext;
    }
  }
}

export interface BulwarkExpressOptions extends HttpGuardOptions {
  /** Share one guard (its options then replace the ones here). */
  guard?: HttpGuard;
  /** Serves `health.paths` (live/ready/deep) before anything else. */
  health?: HealthChecks;
}

export function bulwarkMiddleware(options: BulwarkExpressOptions = {}): RequestHandler {
  const guard = options.guard ?? new HttpGuard(options);
  const health = options.health;

  const act = (admission: Admission, req: Request, res: Response, next: NextFunction): void => {
    if (admission.kind === 'proceed') {
      const request = admission.context;
      req.bulwark = request;
      res.locals.bulwark = request;
      attachContext(req, request);
      applyNodeHeaders(res, request.responseHeaders);
      next();
    } else if (admission.kind === 'reject') {
      sendNodeResponse(res, admission.response);
    } else {
      next();
    }
  };

  return function bulwark(req: Request, res: Response, next: NextFunction): void {
    try {
      // originalUrl: the full target even when mounted under a path prefix.
      const url = req.originalUrl ?? req.url;
      if (health !== undefined) {
        const answer = health.handle(req.method, pathOf(url));
        if (answer !== undefined) {
          sendAnswer(res, answer);
          return;
        }
      }
      const admission = guard.admit(nodeRequestView(req, url), nodeResponseChannel, res);
      if (admission instanceof Promise) admission.then((a) => act(a, req, res, next), next);
      else act(admission, req, res, next);
    } catch (error) {
      next(error);
    }
  };
}

function sendAnswer(res: Response, answer: HttpResponse | Promise<HttpResponse>): void {
  if (answer instanceof Promise) {
    answer.then(
      (response) => sendNodeResponse(res, response),
      () => sendNodeResponse(res, problemResponse({ status: 500, title: 'Internal server error' })),
    );
  } else {
    sendNodeResponse(res, answer);
  }
}

export interface BulwarkErrorHandlerOptions {
  /** Told about every error that reaches the handler (log it here). */
  onError?: (error: unknown, req: Request) => void;
}

/**
 * Answers errors as `application/problem+json`: Bulwark errors by code (a handler aborted at
 * its deadline → 504; CIRCUIT_OPEN → 503 + Retry-After; ...), body-parser/http-errors by their
 * 4xx status (bad JSON → 400, too large → 413), anything else 500 without internals. Mount last.
 */
export function bulwarkErrorHandler(options: BulwarkErrorHandlerOptions = {}): ErrorRequestHandler {
  return function bulwarkErrors(error: unknown, req: Request, res: Response, next: NextFunction): void {
    if (options.onError) {
      try {
        options.onError(error, req);
      } catch {
        // a failing reporter must not change the response
      }
    }
    if (res.headersSent) {
      // Already answered (e.g. the 504 at the deadline): nothing to add. Half-sent: let Express cut it.
      if (!res.writableEnded) next(error);
      return;
    }
    sendNodeResponse(res, problemForError(error));
  };
}

export { bulwarkContext } from './node.js';
export { healthChecks, HealthChecks, type HealthOptions, type HealthCheckDefinition } from './core/health.js';
export { deadlineHeaders, type DeadlineHeadersOptions } from './core/deadline.js';
export { HttpGuard, httpGuard, type HttpGuardOptions, type Protection, type ProtectionVerdict } from './core/guard.js';
export { RequestContext, type RequestOutcome } from './core/request-context.js';
export type { RouteConfig, RouteTable } from './core/routes.js';
export type { TrustProxy } from './core/client-ip.js';
