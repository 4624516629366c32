/**
 * A private, throwaway redis-server for crash tests: started, SIGKILLed and restarted on its
 * own free port by the test itself, never the shared server on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A TCP port nobody listens on right now (on 127.0.0.1). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** True when a redis-server on `port` answers PING (not merely accepts connections: it may be loading its AOF). */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
    socket.setTimeout(1000, () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.once('error', () => done(false));
  });
}

export interface PrivateRedisOptions {
  /**
   * Keep data across restarts (append-only file, fsync always, in a temp dir removed by
   * `stop()`), for tests that claim durability. Default false: an ephemeral server.
   */
  durable?: boolean;
  /**
   * A command that runs redis-server, e.g. `['valgrind', '--tool=callgrind', ...]` (the
   * redis-server command line is appended). Default none: redis-server itself.
   */
  launcher?: string[];
  /** More redis-server arguments, e.g. `['--hz', '1']`. */
  args?: string[];
  /** How long `start()` waits for PING to answer. Default 10 s (a launcher like valgrind needs more). */
  startTimeoutMs?: number;
}

export class PrivateRedis {
  readonly #durable: boolean;
  readonly #launcher: string[];
  readonly #args: string[];
  readonly #startTimeoutMs: number;
  #dir: string | undefined;
  #child: ChildProcess | undefined;

  /** `port` 0 picks a free port at the first `start()`. */
  constructor(public port = 0, options: PrivateRedisOptions = {}) {
    this.#durable = options.durable ?? false;
    this.#launcher = options.launcher ?? [];
    this.#args = options.args ?? [];
    this.#startTimeoutMs = options.startTimeoutMs ?? 10_000;
  }

  /** The server's process id while it runs (with a launcher: the launcher's, which valgrind shares). */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', ''];
    if (this.#durable) {
      this.#dir ??= mkdtempSync(join(tmpdir(), 'bulwark-redis-'));
      args.push('--dir', this.#dir, '--appendonly', 'yes', '--appendfsync', 'always');
    } else {
      args.push('--appendonly', 'no');
    }
    args.push(...this.#args);
    const [command, ...prefix] = [...this.#launcher, 'redis-server'];
    const child = spawn(command!, [...prefix, ...args], { stdio: 'ignore' });
    this.#child = child;
    let failed: Error | undefined;
    child.once('error', (error) => { failed = error; });
    const deadline = Date.now() + this.#startTimeoutMs;
    while (!(await answersPing(this.port))) {
      if (failed) throw new Error(`could not start ${command} (is it installed?): ${failed.message}`, { cause: failed });
      if (child.exitCode !== null) throw new Error(`${command} exited with code ${child.exitCode} before redis-server answered on port ${this.port}`);
      if (Date.now() > deadline) throw new Error(`private redis-server on port ${this.port} did not start within ${this.#startTimeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** SIGKILL (a crash, not a clean shutdown); resolves once the process has exited. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP: the server stays up (connections open) but answers nothing, like a hung host. */
  freeze(): void {
    this.#child?.kill('SIGSTOP');
  }

  /** SIGCONT after `freeze()`: queued commands are answered. */
  thaw(): void {
    this.#child?.kill('SIGCONT');
  }

  /** Crash and come back on the same port (and, if durable, the same data). */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** Kill and remove its data directory. */
  async stop(): Promise<void> {
    await this.kill();
    if (this.#dir) rmSync(this.#dir, { recursive: true, force: true });
    this.#dir = undefined;
  }
}
