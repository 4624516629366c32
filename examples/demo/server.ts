/**
 * The demo's dependency: an HTTP server with a fixed capacity (a pool of workers, each request
 * holds one for WORK_MS) and an unbounded accept queue, like most real servers. It never checks
 * whether a queued client has already given up, so abandoned requests still cost work: the
 * ingredient of metastable failure (Bronson et al., "Metastable Failures in Distributed
 * Systems", HotOS 2021).
 *
 * Run by showdown.ts as a child process; reports counters over IPC.
 */
import { createServer } from 'node:http';

const WORKERS = Number(process.env.WORKERS ?? 10);
const WORK_MS = Number(process.env.WORK_MS ?? 20);

let outage = false;
let active = 0;
const queue: (() => void)[] = [];
const counters = { received: 0, ok: 0, failed: 0, maxQueue: 0 };

function acquire(): Promise<void> {
  if (active < WORKERS) {
    active++;
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    queue.push(resolve);
    counters.maxQueue = Math.max(counters.maxQueue, queue.length);
  });
}

function releaseWorker(): void {
  const next = queue.shift();
  if (next) next(); // hand the worker over
  else active--;
}

const server = createServer(async (req, res) => {
  counters.received++;
  req.resume();
  await acquire();
  await new Promise((r) => setTimeout(r, WORK_MS)); // the request's cost, paid even in an outage
  releaseWorker();
  if (outage) {
    counters.failed++;
    res.writeHead(503, { 'content-type': 'text/plain' }).end('dependency down');
  } else {
    counters.ok++;
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  }
});
server.keepAliveTimeout = 60_000;

process.on('message', (message: { type: string; value?: boolean }) => {
  if (message.type === 'outage') outage = Boolean(message.value);
  if (message.type === 'stats') process.send!({ type: 'stats', ...counters, queued: queue.length, active });
  if (message.type === 'reset') {
    Object.assign(counters, { received: 0, ok: 0, failed: 0, maxQueue: 0 });
  }
  if (message.type === 'stop') server.close(() => process.exit(0));
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send!({ type: 'ready', port: typeof address === 'object' && address ? address.port : 0, capacityRps: (WORKERS * 1000) / WORK_MS });
});
