/**
 * A throwaway `redis-server` on a free port for failure tests: started and killed by the test
 * itself (the shared Redis on 6379 is never touched).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect } from 'node:net';

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
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** SIGKILL: a crash, not a clean shutdown. Resolves once the port refuses connections. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }
}
