import express, { type ErrorRequestHandler, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { HttpGuard, pathOf, type GuardDecision, type HttpGuardOptions } from './core/http-guard.js';
import type { HealthChecks } from './core/health.js';
import {
  applyNodeHeaders, attachContext, nodeRequestView, nodeResponseChannel, readyForAnswer, sendNodeAnswer, sendNodeResponse,
} from './core/node-io.js';
import { InvalidOptionsError } from '../core/errors.js';
import { problemForError, type HttpResponse } from './core/problem.js';
import { DEFAULT_MAX_BODY_BYTES, readBody } from './core/read-body.js';
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
  /**
   * Body parser(s) run for requests a body step (idempotency) must see, after admission and
   * rate limiting and before the step. Default `express.json()`. A body already parsed by a
   * parser mounted earlier is used as is; a body no parser took is read raw and given to the
   * handler as a Buffer in `req.body`.
   */
  bodyParser?: RequestHandler | readonly RequestHandler[];
  /** Largest raw body read for a body step when no parser took it (bytes). Default 1 MiB. */
  maxBodyBytes?: number;
}

export function bulwarkMiddleware(options: BulwarkExpressOptions = {}): RequestHandler {
  const guard = options.guard ?? new HttpGuard(options);
  const health = options.health;
  const parsers: readonly RequestHandler[] = options.bodyParser === undefined
    ? (guard.hasBodyPhase ? [express.json()] : [])
    : Array.isArray(options.bodyParser) ? options.bodyParser : [options.bodyParser as RequestHandler];
  if (parsers.some((p) => typeof p !== 'function')) throw new InvalidOptionsError('bodyParser must be Express middleware (or a list of them)');
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;

  /** The body phase: parse, hand the body to the steps that need it, then continue or answer. */
  const bodyPhase = (request: RequestContext, req: Request, res: Response, next: NextFunction, parser = 0): void => {
    if (req.body === undefined && parser < parsers.length) {
      parsers[parser]!(req, res, (error?: unknown) => {
        if (error !== undefined && error !== null && error !== 'route' && error !== 'router') next(error);
        else bodyPhase(request, req, res, next, parser + 1);
      });
      return;
    }
    if (req.body === undefined && !req.complete) {
      // No parser took it (another content type): the step still needs the exact bytes.
      readBody(req, { limitBytes: maxBodyBytes }).then((raw) => {
        req.body = raw;
        bodyPhase(request, req, res, next, parsers.length);
      }, next);
      return;
    }
    request.setBody(req.body);
    const admission = guard.admitBody(request);
    if (admission instanceof Promise) admission.then((a) => afterBody(a, res, next), next);
    else afterBody(admission, res, next);
  };

  const afterBody = (admission: GuardDecision, res: Response, next: NextFunction): void => {
    if (admission.kind === 'reject') sendExpressResponse(res, admission.response); // replays, 409, 422, 400
    else next();
  };

  const act = (admission: GuardDecision, req: Request, res: Response, next: NextFunction): void => {
    if (admission.kind === 'proceed') {
      const request = admission.context;
      req.bulwark = request;
      res.locals.bulwark = request;
      attachContext(req, request);
      applyNodeHeaders(res, request.responseHeaders);
      if (guard.hasBodyPhase && guard.needsBody(request)) bodyPhase(request, req, res, next);
      else next();
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
          sendNodeAnswer(res, answer);
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

/**
 * Answers through Express's own reply path (`res.status().send()`: HEAD, freshness, length), so
 * an idempotent replay goes out the way the handler's original response did. Headers are set
 * as given (Express would add a charset to some content types).
 */
function sendExpressResponse(res: Response, response: HttpResponse): void {
  if (!readyForAnswer(res)) return;
  for (const name in response.headers) res.setHeader(name, response.headers[name]!);
  res.status(response.status).send(Buffer.from(response.body));
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
    req.bulwark?.handlerFailed(error); // the error page that follows is not the handler's answer
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
