/**
 * Test support (not shipped): tiny HTTP servers on loopback ports, which record what they saw
 * (requests, headers, bodies, sockets opened and still open, requests aborted by the client).
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  n: number;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** True once the client closed the connection before the response was complete. */
  aborted: boolean;
}

export type Handler = (req: SeenRequest, res: ServerResponse) => void | Promise<void>;

export interface TestServer {
  readonly url: string;
  readonly host: string;
  readonly requests: SeenRequest[];
  readonly hits: number;
  /** Sockets currently open / ever opened. */
  readonly openSockets: number;
  readonly totalSockets: number;
  handler: Handler;
  /** Resolves when the server has seen `n` requests. */
  waitForHits(n: number, timeoutMs?: number): Promise<void>;
  /** Resolves when request `n` (1-based) was aborted by the client. */
  waitForAbort(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startServer(handler: Handler): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  let total = 0;
  const waiters: Array<() => void> = [];
  const notify = (): void => { for (const w of waiters.splice(0)) w(); };

  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen: SeenRequest = {
        n: requests.length + 1,
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        aborted: false,
      };
      requests.push(seen);
      res.on('close', () => {
        if (!res.writableFinished) {
          seen.aborted = true;
          notify();
        }
      });
      notify();
      Promise.resolve(state.handler(seen, res)).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500);
        res.end(String(error));
      });
    });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (socket) => {
    total++;
    sockets.add(socket);
    socket.on('close', () => { sockets.delete(socket); notify(); });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const until = (done: () => boolean, what: string, timeoutMs: number): Promise<void> => new Promise((resolve, reject) => {
    if (done()) return resolve();
    const timer = setTimeout(() => reject(new Error(`test server: timed out waiting for ${what}`)), timeoutMs);
    const check = (): void => {
      if (done()) { clearTimeout(timer); resolve(); } else waiters.push(check);
    };
    waiters.push(check);
  });

  const state: TestServer = {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    get hits() { return requests.length; },
    get openSockets() { return sockets.size; },
    get totalSockets() { return total; },
    handler,
    waitForHits: (n, timeoutMs = 5000) => until(() => requests.length >= n, `${n} requests`, timeoutMs),
    waitForAbort: (n, timeoutMs = 5000) => until(() => requests[n - 1]?.aborted === true, `request ${n} to be aborted`, timeoutMs),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  return state;
}

/** A "dead" host: accepts TCP connections and resets them at once. Counts connection attempts. */
export async function startResetServer(): Promise<{ url: string; host: string; readonly connections: number; close(): Promise<void> }> {
  let connections = 0;
  const server = createNetServer((socket) => {
    connections++;
    socket.resetAndDestroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    get connections() { return connections; },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Replies with `status`, `body` and `headers`. */
export function reply(res: ServerResponse, status: number, body = '', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain', ...headers });
  res.end(body);
}

/** Polls `condition` on the real clock (for I/O the virtual clock does not drive). */
export async function eventually(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
