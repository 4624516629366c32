/**
 * A guarded Redis client (part of entry point `bulwark/redis`): calls run under
 * `retry (safe calls only) → circuit breaker → bulkhead → timeout`, for an ioredis client
 * (Redis or Cluster) or a node-redis client, told apart by shape. No client library is imported.
 *
 *   const cache = guardRedis(new Redis({ enableOfflineQueue: false, commandTimeout: 500 }), { name: 'cache', timeoutMs: 250 });
 *   const value = await cache.run((redis) => redis.get(key), { safe: true });
 *   const same = await cache.command('GET', [key]); // read-only commands are safe by default
 *
 * Redis commands cannot be cancelled once sent. On timeout the caller gets TIMEOUT at once with
 * `abandoned: true`: the command may still run (a write may still happen). Configure the client
 * so abandoned work ends soon: ioredis `commandTimeout` and `enableOfflineQueue: false`,
 * node-redis `disableOfflineQueue: true` (see docs/patterns/guarded-clients.md).
 */
import type { CallContext, CallOptions } from '../core/context.js';
import { InvalidInputError, InvalidOptionsError } from '../core/errors.js';
import type { PolicyDescription } from '../core/policy.js';
import type { BreakerStats, CircuitBreakerPolicy } from '../breaker/breaker.js';
import type { BulkheadPolicy, BulkheadStats } from '../bulkhead/bulkhead.js';
import type { RetryPolicy } from '../retry/retry.js';
import type { TimeoutPolicy } from '../timeout/timeout.js';
import { buildGuard, callOptionsOf, describeGuard, executeGuarded, pipelineFor, type Guard, type GuardOptions, type GuardedCallOptions } from './dependency-pipeline.js';
import { isRedisFailure, isRedisTransient, READ_ONLY_COMMANDS } from './redis-errors.js';
import { nodeRedisCommandTimeout } from '../redis-client/script-client.js';


export type RedisFlavour = 'ioredis' | 'node-redis' | 'custom';
export type RedisArgument = string | number | Buffer;

export interface GuardRedisOptions extends GuardOptions {
  /** Default 'redis'. */
  name?: string;
  /** Timeout of one attempt, ms. Default 1000. */
  timeoutMs?: number;
  /** Default `{ maxConcurrent: 100, maxQueue: 100, queueTimeoutMs: min(1000, timeoutMs) }`. */
  bulkhead?: GuardOptions['bulkhead'];
}

export interface GuardedRedisStats {
  name: string;
  flavour: RedisFlavour;
  breaker: BreakerStats;
  bulkhead: BulkheadStats;
  /** Attempts running under the timeout now. */
  inFlight: number;
  /** Timed-out calls whose command may still be queued or running in the client (cannot be cancelled). */
  abandoned: number;
  /** The client's own connection state: ioredis `status`, node-redis 'ready' / 'open' / 'closed'. */
  connection: string | undefined;
}

interface IoRedisShape {
  status: string;
  call(command: string, ...args: RedisArgument[]): Promise<unknown>;
  options?: { commandTimeout?: number; enableOfflineQueue?: boolean; maxRetriesPerRequest?: number | null; connectTimeout?: number };
}

interface NodeRedisShape {
  isOpen: boolean;
  isReady?: boolean;
  sendCommand(args: readonly RedisArgument[], options?: { abortSignal?: AbortSignal; timeout?: number }): Promise<unknown>;
  options?: { disableOfflineQueue?: boolean; socket?: { connectTimeout?: number } };
}

/** Which client library `client` comes from, by shape. */
export function redisFlavourOf(client: unknown): RedisFlavour {
  if (typeof client !== 'object' || client === null) return 'custom';
  const c = client as Partial<IoRedisShape & NodeRedisShape>;
  if (typeof c.status === 'string' && typeof c.call === 'function') return 'ioredis';
  if (typeof c.sendCommand === 'function' && typeof c.isOpen === 'boolean') return 'node-redis';
  return 'custom';
}

export class GuardedRedis<C extends object> {
  readonly kind = 'guarded-redis';
  readonly name: string;
  readonly client: C;
  readonly flavour: RedisFlavour;
  readonly breaker: CircuitBreakerPolicy;
  readonly bulkhead: BulkheadPolicy;
  readonly timeout: TimeoutPolicy;
  /** Applied to calls marked `safe` only; undefined with `retry: false`. */
  readonly retry: RetryPolicy | undefined;
  /** Client settings that let abandoned or offline commands linger (also in `describe()`). */
  readonly warnings: readonly string[];
  readonly #guard: Guard;
  /**
   * node-redis (v5+) gives every command its own `AbortSignal.timeout` (costly, docs/benchmarks.md).
   * When that timeout is no shorter than the guard's, the guard always answers first, so
   * `command()` turns it off for its commands.
   */
  readonly #clientTimerRedundant: boolean;
  #abandoned = 0;

  constructor(client: C, options: GuardRedisOptions = {}) {
    if (typeof client !== 'object' || client === null) throw new InvalidOptionsError('guardRedis() needs an ioredis or node-redis client');
    this.#guard = buildGuard(options, {
      kind: 'guardRedis',
      name: 'redis',
      timeoutMs: 1000,
      graceMs: 0, // a sent command cannot be cancelled: report the timeout at once, marked abandoned
      maxConcurrent: 100,
      isFailure: isRedisFailure,
      isTransient: isRedisTransient,
    });
    this.client = client;
    this.flavour = redisFlavourOf(client);
    this.name = this.#guard.name;
    this.breaker = this.#guard.breaker;
    this.bulkhead = this.#guard.bulkhead;
    this.timeout = this.#guard.timeout;
    this.retry = this.#guard.retry;
    this.warnings = clientWarnings(client, this.flavour, this.#guard.timeoutMs);
    const clientTimeout = this.flavour === 'node-redis' ? nodeRedisCommandTimeout(client) : undefined;
    this.#clientTimerRedundant = clientTimeout !== undefined && clientTimeout >= this.#guard.timeoutMs;
    this.timeout.onTimeout((event) => {
      if (event.abandoned) this.#abandoned++;
    });
  }

  /**
   * Runs `fn` with the client under the guard. Keep your own logic (parsing, business rules)
   * outside `fn`: whatever it throws is judged as a Redis outcome. Mark `safe` only when `fn`
   * may run twice (reads, idempotent writes such as SET of a fixed value).
   */
  run<T>(fn: (client: C, context: CallContext) => Promise<T> | T, options?: GuardedCallOptions): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidInputError('run(fn): fn must be a function'));
    const client = this.client;
    let call: CallOptions | undefined;
    try {
      call = callOptionsOf(this.#guard.timeout.clock, options);
    } catch (error) {
      return Promise.reject(error);
    }
    return executeGuarded(pipelineFor(this.#guard, options), (ctx) => fn(client, ctx), call);
  }

  /**
   * One raw command, e.g. `command('HGET', ['user:1', 'name'])`. Read-only commands
   * (`READ_ONLY_COMMANDS`) are safe (retried) unless `safe: false`; others only with `safe: true`.
   * With node-redis, a command still waiting to be written when its timeout fires is dropped.
   */
  command<T = unknown>(command: string, args: readonly RedisArgument[] = [], options?: GuardedCallOptions): Promise<T> {
    if (typeof command !== 'string' || command === '') {
      return Promise.reject(new InvalidInputError('command(name, args): name must be a non-empty string'));
    }
    if (this.flavour === 'custom') {
      return Promise.reject(new InvalidInputError('command() needs an ioredis or node-redis client; use run() with other clients'));
    }
    const safe = options?.safe ?? READ_ONLY_COMMANDS.has(command.toUpperCase());
    const pipeline = safe ? this.#guard.safe : this.#guard.unsafe;
    let call: CallOptions | undefined;
    try {
      call = callOptionsOf(this.#guard.timeout.clock, options);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.flavour === 'ioredis') {
      const client = this.client as unknown as IoRedisShape;
      return executeGuarded(pipeline, () => client.call(command, ...args) as Promise<T>, call);
    }
    const client = this.client as unknown as NodeRedisShape;
    const noTimer = this.#clientTimerRedundant;
    return executeGuarded(
      pipeline,
      (ctx) => client.sendCommand([command, ...args], noTimer ? { abortSignal: ctx.signal, timeout: undefined } : { abortSignal: ctx.signal }) as Promise<T>,
      call,
    );
  }

  stats(): GuardedRedisStats {
    return {
      name: this.name,
      flavour: this.flavour,
      breaker: this.breaker.stats(),
      bulkhead: this.bulkhead.stats(),
      inFlight: this.timeout.inFlight,
      abandoned: this.#abandoned,
      connection: connectionState(this.client, this.flavour),
    };
  }

  describe(): PolicyDescription {
    return describeGuard(this.#guard, this.kind, { timeoutMs: this.#guard.timeoutMs, flavour: this.flavour, warnings: this.warnings });
  }
}

/** Wraps an ioredis or node-redis client. See `GuardRedisOptions` for the defaults. */
export function guardRedis<C extends object>(client: C, options?: GuardRedisOptions): GuardedRedis<C> {
  return new GuardedRedis<C>(client, options);
}

function connectionState(client: object, flavour: RedisFlavour): string | undefined {
  if (flavour === 'ioredis') return (client as IoRedisShape).status;
  if (flavour === 'node-redis') {
    const c = client as NodeRedisShape;
    return c.isReady ? 'ready' : c.isOpen ? 'open' : 'closed';
  }
  return undefined;
}

function clientWarnings(client: object, flavour: RedisFlavour, timeoutMs: number): string[] {
  const warnings: string[] = [];
  if (flavour === 'ioredis') {
    const o = (client as IoRedisShape).options ?? {};
    if (o.enableOfflineQueue !== false) {
      warnings.push('ioredis enableOfflineQueue is on: commands issued while disconnected are queued and sent after reconnecting, even after Bulwark reported them as timed out; set enableOfflineQueue: false');
    }
    if (o.commandTimeout === undefined) {
      warnings.push(`ioredis commandTimeout is not set: an abandoned command waits for its reply for ever; set it near timeoutMs (${timeoutMs} ms)`);
    }
    if (o.maxRetriesPerRequest === null) {
      warnings.push('ioredis maxRetriesPerRequest is null: queued commands are retried on every reconnect without limit');
    }
  } else if (flavour === 'node-redis') {
    const o = (client as NodeRedisShape).options ?? {};
    if (o.disableOfflineQueue !== true) {
      warnings.push('node-redis disableOfflineQueue is off: commands issued while disconnected are queued and sent after reconnecting; set disableOfflineQueue: true');
    }
  }
  return warnings;
}
