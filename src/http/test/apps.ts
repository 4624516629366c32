/**
 * Test support (not shipped: `src/**\/test/**` is excluded from the build): the same tiny app
 * on each adapter, served over real loopback HTTP, so one test body checks all three.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { bulwarkErrorHandler, bulwarkMiddleware } from '../express.js';
import { fastifyBulwark, fastifyErrorHandler } from '../fastify.js';
import { bulwarkHandler, readJson, type BulwarkNodeOptions } from '../node.js';
import type { RequestContext } from '../core/request-context.js';
import type { RouteConfig } from '../core/routes.js';

export type AdapterKind = 'node' | 'express' | 'fastify';
export const ADAPTERS: readonly AdapterKind[] = ['node', 'express', 'fastify'];

export interface AppRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export interface AppResult {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type AppHandler = (request: RequestContext | undefined, req: AppRequest) => Promise<AppResult> | AppResult;

export interface AppRoute {
  method: 'GET' | 'POST';
  path: string;
  handler: AppHandler;
  /** Per-route Bulwark config the framework way (Fastify `config.bulwark`); the others use `routes`. */
  config?: RouteConfig;
}

export interface RunningApp {
  kind: AdapterKind;
  url: string;
  port: number;
  close(): Promise<void>;
}

function send(result: AppResult): { status: number; body: string; headers: Record<string, string> } {
  return {
    status: result.status ?? 200,
    body: JSON.stringify(result.body ?? null),
    headers: { 'content-type': 'application/json', ...result.headers },
  };
}

/** Starts the app on an ephemeral loopback port. `options` are the adapter's Bulwark options. */
export async function startApp(kind: AdapterKind, routes: AppRoute[], options: BulwarkNodeOptions = {}): Promise<RunningApp> {
  // Framework route config is only a Fastify feature; the other adapters get the same settings through the table.
  const table: Record<string, RouteConfig> = { ...(options.routes && typeof options.routes === 'object' ? options.routes : {}) };
  if (kind !== 'fastify') for (const r of routes) if (r.config) table[`${r.method} ${r.path}`] = r.config;
  const adapterOptions: BulwarkNodeOptions = { ...options, ...(Object.keys(table).length > 0 || options.routes ? { routes: typeof options.routes === 'function' ? options.routes : table } : {}) };

  if (kind === 'fastify') {
    const app: FastifyInstance = Fastify({ logger: false });
    await app.register(fastifyBulwark, adapterOptions);
    app.setErrorHandler(fastifyErrorHandler()); // thrown errors answered as the other adapters do
    for (const r of routes) {
      app.route({
        method: r.method,
        url: r.path,
        config: r.config ? { bulwark: r.config } : {},
        handler: async (request, reply) => {
          const out = send(await r.handler(request.bulwark ?? undefined, {
            method: request.method, path: r.path, headers: request.headers, body: request.body,
          }));
          return reply.code(out.status).headers(out.headers).send(out.body);
        },
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    return { kind, port, url: `http://127.0.0.1:${port}`, close: () => app.close() };
  }

  let server: Server;
  if (kind === 'express') {
    const app = express();
    app.use(bulwarkMiddleware(adapterOptions));
    app.use(express.json());
    for (const r of routes) {
      const register = r.method === 'GET' ? app.get.bind(app) : app.post.bind(app);
      register(r.path, async (req, res) => {
        const out = send(await r.handler(req.bulwark, { method: req.method, path: r.path, headers: req.headers, body: req.body }));
        res.status(out.status).set(out.headers).send(out.body);
      });
    }
    app.use(bulwarkErrorHandler());
    server = createServer(app);
  } else {
    server = createServer(bulwarkHandler(async (req, res, request) => {
      const path = (req.url ?? '/').split('?')[0];
      const route = routes.find((r) => r.method === req.method && r.path === path);
      if (!route) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
        return;
      }
      const body = req.method === 'POST' && String(req.headers['content-type'] ?? '').startsWith('application/json') ? await readJson(req) : undefined;
      const out = send(await route.handler(request, { method: req.method ?? 'GET', path: route.path, headers: req.headers, body }));
      res.writeHead(out.status, out.headers).end(out.body);
    }, adapterOptions));
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    kind,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** Sleeps `ms` of real time unless `signal` aborts first (then rejects with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A promise the test settles by hand: `open()` lets whoever awaits `wait` continue. */
export interface Gate {
  wait: Promise<void>;
  open(): void;
}

export function gate(): Gate {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => { open = resolve; });
  return { wait, open };
}
