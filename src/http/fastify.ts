import { InvalidOptionsError } from '../core/errors.js';
import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import { HttpGuard, type GuardDecision, type HttpGuardOptions } from './core/http-guard.js';
import type { HealthChecks } from './core/health.js';
import {
  attachContext, captureOf, dropRepresentationHeaders, ensureCapture, heldResponseOf, holdNodeResponse, produced, responseStarted, watchNodeResponse,
} from './core/node-io.js';
import { problemForError, type HttpResponse } from './core/problem.js';
import type { RequestContext, ResponseChannel } from './core/request-context.js';
import type { RouteConfig } from './core/routes.js';

/**
 * Fastify 5 plugin (`bulwark/fastify`):
 *
 *   await app.register(fastifyBulwark, { health, routes: {...} });
 *   app.get('/search', { config: { bulwark: { deadlineMs: 800, priority: 'high' } } },
 *     async (request) => search(request.query, { signal: request.bulwark!.signal }));
 *
 * Marked the way `fastify-plugin` marks plugins (`Symbol.for('skip-override')`), so its hooks
 * apply to the whole application rather than only to routes registered inside the plugin,
 * without making fastify-plugin a runtime dependency.
 */

declare module 'fastify' {
  interface FastifyRequest {
    /** Bulwark's view of this request (deadline, signal, client IP, route); null on skipped routes. */
    bulwark: RequestContext | null;
  }
  interface FastifyContextConfig {
    /** Per-route Bulwark settings (most specific: beats the `routes` table and `defaults`). */
    bulwark?: RouteConfig;
  }
}

export interface BulwarkFastifyOptions extends HttpGuardOptions {
  /** Share one guard (its options then replace the ones here). */
  guard?: HttpGuard;
  /** Registers GET (and HEAD) routes at `health.paths` for live/ready/deep. */
  health?: HealthChecks;
}

function sendReply(reply: FastifyReply, response: HttpResponse): void {
  if (reply.sent || reply.raw.headersSent) return;
  dropRepresentationHeaders(reply);
  // A Buffer, so Fastify sends the content type as given (it appends a charset to strings):
  // every adapter answers with identical bytes.
  reply.code(response.status).headers(response.headers).send(Buffer.from(response.body));
}

const fastifyChannel: ResponseChannel<FastifyReply> = {
  started: (reply) => (heldResponseOf(reply.raw)?.recording ? responseStarted(reply.raw) : reply.sent || reply.raw.headersSent),
  send: (reply, response) => {
    // A held response is answered past Fastify's reply, which stays the handler's to use.
    const held = heldResponseOf(reply.raw);
    if (held === undefined) sendReply(reply, response);
    else held.answer(response);
  },
  watch: (reply, context) => watchNodeResponse(reply.raw, context),
  // Filled by the onSend hook, which sees Fastify's final payload and headers.
  capture: (reply, _context, maxBytes) => { ensureCapture(reply.raw, maxBytes); },
  // Fastify writes through `reply.raw` (writeHead, write, end): the hold records it there.
  hold: (reply, context, maxBytes) => { holdNodeResponse(reply.raw, context, maxBytes); },
};

const CRITICAL_BYPASS: RouteConfig = Object.freeze({ bypass: true, critical: true, priority: 'critical' });

const plugin: FastifyPluginCallback<BulwarkFastifyOptions> = (fastify: FastifyInstance, options, done) => {
  let guard: HttpGuard;
  try {
    guard = options.guard ?? new HttpGuard(options);
  } catch (error) {
    done(error as Error);
    return;
  }
  const health = options.health;

  fastify.decorateRequest('bulwark', null);

  // Route lists (`limits[].routes`) are checked against the routes the app registers: an entry
  // that matches none would silently never apply. With a guard of its own the plugin fails
  // `ready()`; a shared guard may serve routes of other apps, so then it only warns.
  const registered: { method: string; url: string; name: string }[] = [];
  fastify.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const name = (route.config as { bulwark?: RouteConfig } | undefined)?.bulwark?.name ?? route.url;
    for (const method of methods) registered.push({ method: String(method).toUpperCase(), url: route.url, name });
  });
  fastify.addHook('onReady', (ready) => {
    const problems = guard.unmatchedRouteEntries(registered);
    registered.length = 0;
    if (problems.length === 0) ready();
    else if (options.guard === undefined) ready(new InvalidOptionsError(`bulwark: ${problems.join('; ')} (register the plugin before the routes it names)`));
    else {
      fastify.log.warn(`bulwark: ${problems.join('; ')}`);
      ready();
    }
  });

  if (health !== undefined) {
    // GET routes; Fastify adds HEAD for them. Marked critical and skipped by the guard.
    fastify.get(health.paths.live, { config: { bulwark: CRITICAL_BYPASS } }, (_request, reply) => {
      sendReply(reply, health.live());
    });
    fastify.get(health.paths.ready, { config: { bulwark: CRITICAL_BYPASS } }, async (_request, reply) => {
      sendReply(reply, await health.ready());
      return reply;
    });
    fastify.get(health.paths.deep, { config: { bulwark: CRITICAL_BYPASS } }, async (_request, reply) => {
      sendReply(reply, await health.deep());
      return reply;
    });
  }

  const act = (admission: GuardDecision, request: FastifyRequest, reply: FastifyReply, next: (error?: Error) => void): void => {
    if (admission.kind === 'proceed') {
      const context = admission.context;
      if (request.bulwark !== context) {
        request.bulwark = context;
        attachContext(request.raw, context);
        if (context.responseHeaders) reply.headers(context.responseHeaders);
      }
      next();
    } else if (admission.kind === 'reject') {
      sendReply(reply, admission.response); // answered: the handler does not run
    } else {
      next();
    }
  };

  fastify.addHook('onRequest', (request, reply, next) => {
    // `routeOptions` is a getter that builds a fresh object on every read: read it once.
    // `config.url` is the route pattern (what `routeOptions.url` returns).
    const config = request.routeOptions.config;
    const admission = guard.admit({
      method: request.raw.method,
      url: request.raw.url,
      headers: request.headers,
      socketAddress: request.raw.socket?.remoteAddress,
      route: config?.bulwark,
      routeName: config?.url,
      native: request,
    }, fastifyChannel, reply);
    if (admission instanceof Promise) admission.then((a) => act(a, request, reply, next), next);
    else act(admission, request, reply, next);
  });

  if (guard.hasBodyPhase) {
    // Steps that need the body (idempotency) run once Fastify has parsed and validated it.
    fastify.addHook('preHandler', (request, reply, next) => {
      const context = request.bulwark;
      if (context === null || !guard.needsBody(context)) {
        next();
        return;
      }
      context.setBody(request.body);
      const admission = guard.admitBody(context);
      if (admission instanceof Promise) admission.then((a) => act(a, request, reply, next), next);
      else act(admission, request, reply, next);
    });
  }

  if (guard.hasBodyPhase) {
    // A handler that threw: the error page that follows is not its answer (a held response
    // must not be stored as one).
    fastify.addHook('onError', (request, _reply, error, next) => {
      request.bulwark?.handlerFailed(error);
      next();
    });
  }

  // Only when a step may record responses: an onSend hook costs every request a hook run.
  if (guard.mayCaptureResponses) fastify.addHook('onSend', (request, reply, payload, next) => {
    const context = request.bulwark;
    const capture = context?.capturing ? captureOf(reply.raw) : undefined;
    if (capture !== undefined) {
      if (typeof payload === 'string' || payload instanceof Uint8Array) capture.add(payload);
      else if (payload !== null && payload !== undefined) capture.giveUp(); // a stream: not buffered here
      const headers: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(reply.getHeaders())) {
        if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.map(String) : String(value);
      }
      capture.finalHeaders = headers;
      // The final payload and headers: the response is complete, whether or not the client is still there.
      produced(context!, reply.statusCode, headers, capture);
    }
    next(null, payload);
  });

  done();
};

export interface BulwarkFastifyErrorHandlerOptions {
  /** Told about every error that reaches the handler (log it here). */
  onError?: (error: unknown, request: FastifyRequest) => void;
}

/**
 * Answers thrown errors as `application/problem+json`, the way the Express and node:http
 * adapters do: Bulwark errors by code (a full bulkhead → 503 + Retry-After; CIRCUIT_OPEN → 503
 * + Retry-After; a handler aborted at its deadline → 504), errors with a 4xx `statusCode`
 * (Fastify's validation, body parsing) keep it, anything else is a 500 without internals.
 * Fastify's own handler would answer a Bulwark error 500.
 *
 *   app.setErrorHandler(fastifyErrorHandler());
 */
export function fastifyErrorHandler(options: BulwarkFastifyErrorHandlerOptions = {}): (error: unknown, request: FastifyRequest, reply: FastifyReply) => void {
  return function bulwarkErrors(error, request, reply): void {
    // Before answering: the error page is not the handler's answer (Fastify runs onError hooks
    // only after this handler).
    request.bulwark?.handlerFailed(error);
    if (options.onError) {
      try {
        options.onError(error, request);
      } catch {
        // a failing reporter must not change the response
      }
    }
    sendReply(reply, problemForError(error));
  };
}

/** The Fastify plugin (also the default export). */
export const fastifyBulwark = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'bulwark',
  [Symbol.for('plugin-meta')]: { name: 'bulwark', fastify: '5.x' },
});
export default fastifyBulwark;
