/**
 * Test helpers for the guarded clients: the shared services' URLs with clear failures, and a
 * throwaway `redis-server` on a free port for crash tests (the shared Redis is never touched).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Runs `probe`, turning a connection failure into an error that says which service is missing. */
export async function requireService<T>(what: string, url: string, probe: () => Promise<T>): Promise<T> {
  try {
    return await probe();
  } catch (error) {
    throw new Error(`${what} is required at ${url} (set ${what === 'PostgreSQL' ? 'DATABASE_URL' : 'REDIS_URL'}): ${(error as Error).message}`, { cause: error });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 20 ms until it returns true, or fails after `withinMs`. */
export async function eventually(what: string, check: () => Promise<boolean> | boolean, withinMs = 5000): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms waiting for: ${what}`);
    await sleep(20);
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

/** A private redis-server: started, SIGKILLed and restarted (same port) by the test itself. */
export class PrivateRedis {
  #child: ChildProcess | undefined;
  constructor(readonly port: number) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    this.#child = child;
    let failed: Error | undefined;
    child.once('error', (error) => { failed = error; });
    const deadline = Date.now() + 10_000;
    while (!(await canConnect(this.port))) {
      if (failed) throw new Error(`could not start redis-server (is it installed?): ${failed.message}`);
      if (Date.now() > deadline) throw new Error(`private redis-server on port ${this.port} did not start within 10 s`);
      await sleep(25);
    }
  }

  /** SIGKILL (a crash, not a clean shutdown); resolves once the process has exited. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}
