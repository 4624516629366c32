import { createHash } from 'node:crypto';
import { timeout, type TimeoutPolicy } from '../timeout/timeout.js';

/**
 * The little Bulwark needs from Redis: run a Lua script atomically. Works with ioredis and
 * node-redis (v4+) clients, so stores depend on this interface, never on a client library.
 */
export interface RedisScriptClient {
  /** EVALSHA, falling back to EVAL when the server does not have the script (NOSCRIPT). */
  run(script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown>;
  /**
   * Optional: `SET key value NX PX pxMs GET` (Redis >= 7.0), one plain command: null when the key
   * was absent and is now set, else the existing value (left unchanged). Stores use it where a
   * plain command is enough and fall back to a script when it is missing or the server rejects it.
   */
  setIfAbsentGet?(key: string, value: string, pxMs: number): Promise<string | null>;
  /** Which client library is behind it (for describe()/telemetry). */
  readonly flavour: 'ioredis' | 'node-redis' | 'custom';
}

/** A Lua script with its SHA1, computed once. */
export class RedisScript {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }
}

interface IoRedisLike {
  set(key: string, value: string, ...options: (string | number)[]): Promise<unknown>;
  evalsha(sha: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
  eval(script: string, numKeys: number, ...keysAndArgs: (string | number)[]): Promise<unknown>;
}

interface NodeRedisLike {
  set(key: string, value: string, options: { PX: number; NX: true; GET: true }): Promise<unknown>;
  evalSha(sha: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
  /** Standalone clients: `(args, options?)`; cluster and sentinel clients take routing arguments first. */
  sendCommand?(...args: unknown[]): Promise<unknown>;
  /** node-redis >= 5: a proxy of the client with other per-command options. */
  withCommandOptions?(options: { timeout: undefined }): NodeRedisLike;
}

/** Wraps an ioredis `Redis`/`Cluster` or a node-redis client (or anything already a RedisScriptClient). */
export function toRedisScriptClient(client: unknown): RedisScriptClient {
  if (isScriptClient(client)) return client;
  if (typeof (client as NodeRedisLike)?.evalSha === 'function') {
    const { c, bound } = withCheapCommandTimeout(client as NodeRedisLike);
    const send = rawCommand(c);
    const run = send === undefined
      ? async (script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> => {
        const options = { keys: keys as string[], arguments: args.map(String) };
        try {
          return await c.evalSha(script.sha, options);
        } catch (error) {
          if (!isNoScript(error)) throw error;
          return c.eval(script.source, options);
        }
      }
      : async (script: RedisScript, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> => {
        const command = ['EVALSHA', script.sha, String(keys.length), ...keys];
        for (const arg of args) command.push(String(arg));
        try {
          return await send(command);
        } catch (error) {
          if (!isNoScript(error)) throw error;
          return send(['EVAL', script.source, ...command.slice(2)]);
        }
      };
    const setIfAbsentGet = send === undefined
      ? async (key: string, value: string, pxMs: number): Promise<string | null> =>
        nullableString(await c.set(key, value, { PX: pxMs, NX: true, GET: true }))
      : async (key: string, value: string, pxMs: number): Promise<string | null> =>
        nullableString(await send(['SET', key, value, 'PX', String(pxMs), 'NX', 'GET']));
    return {
      flavour: 'node-redis',
      run: bound === undefined ? run : (script, keys, args) => bound.execute(() => run(script, keys, args)),
      setIfAbsentGet: bound === undefined ? setIfAbsentGet : (key, value, pxMs) => bound.execute(() => setIfAbsentGet(key, value, pxMs)),
    };
  }
  if (typeof (client as IoRedisLike)?.evalsha === 'function') {
    const c = client as IoRedisLike;
    return {
      flavour: 'ioredis',
      async run(script, keys, args) {
        try {
          return await c.evalsha(script.sha, keys.length, ...keys, ...args);
        } catch (error) {
          if (!isNoScript(error)) throw error;
          return c.eval(script.source, keys.length, ...keys, ...args);
        }
      },
      async setIfAbsentGet(key, value, pxMs) {
        return nullableString(await c.set(key, value, 'PX', pxMs, 'NX', 'GET'));
      },
    };
  }
  throw new TypeError('bulwark: expected an ioredis or node-redis client');
}

/**
 * node-redis (v5+) bounds every command with its own `AbortSignal.timeout(commandOptions.timeout)`
 * (5 s by default in v6): a timer, an AbortSignal and two listeners per command, a large share
 * of a whole idempotent request's CPU (docs/benchmarks.md). Bulwark's commands keep the client's bound but enforce it with one shared timer (a
 * `timeout` policy over a deadline queue): they go through a proxy of the client without the
 * per-command timer, and a command still pending after `timeout` ms rejects with TIMEOUT, as
 * node-redis's own timeout would. Other users of the client are not affected. A client without
 * a timeout, or of a version without `withCommandOptions`, is used as it is.
 */
function withCheapCommandTimeout(client: NodeRedisLike): { c: NodeRedisLike; bound: TimeoutPolicy | undefined } {
  const ms = nodeRedisCommandTimeout(client);
  if (ms === undefined || typeof client.withCommandOptions !== 'function') return { c: client, bound: undefined };
  return { c: client.withCommandOptions({ timeout: undefined }), bound: timeout({ ms, graceMs: 0, name: 'redis-command' }) };
}

/**
 * The per-command timeout a node-redis (v5+) client applies to every command with its own
 * `AbortSignal.timeout` (5000 ms by default in v6), or undefined when it applies none. Read from
 * the client's `_commandOptions`, where node-redis merges its default with the user's options.
 */
export function nodeRedisCommandTimeout(client: unknown): number | undefined {
  const ms = (client as { _commandOptions?: { timeout?: unknown } } | null)?._commandOptions?.timeout;
  return typeof ms === 'number' && ms > 0 ? ms : undefined;
}

/**
 * A standalone node-redis client's `sendCommand(args)`: the raw command, without the argument
 * parser, reply transform and reply tracing its typed methods add (CPU per command measured in
 * docs/benchmarks.md, on a path that runs twice per idempotent request). Cluster and sentinel clients
 * take other arguments (`sendCommand(firstKey, isReadonly, args)`, `sendCommand(isReadonly,
 * args)`), so they keep the typed methods, which route by key.
 */
function rawCommand(client: NodeRedisLike): ((args: string[]) => Promise<unknown>) | undefined {
  const { sendCommand } = client;
  if (typeof sendCommand !== 'function' || sendCommand.length > 2 || typeof (client as { getSlotMaster?: unknown }).getSlotMaster === 'function') return undefined;
  return (args) => sendCommand.call(client, args);
}

function nullableString(reply: unknown): string | null {
  return reply === null || reply === undefined ? null : String(reply);
}

function isScriptClient(value: unknown): value is RedisScriptClient {
  return typeof (value as RedisScriptClient)?.run === 'function' && typeof (value as RedisScriptClient)?.flavour === 'string';
}

function isNoScript(error: unknown): boolean {
  return error instanceof Error && /NOSCRIPT/i.test(error.message);
}

/**
 * Builds a Redis Cluster-safe key: everything that must live in one slot shares the
 * `{hashTag}` part, e.g. `clusterKey('bulwark:rl', 'user:42', 'tokens')` → `bulwark:rl:{user:42}:tokens`.
 */
export function clusterKey(prefix: string, hashTag: string, ...rest: string[]): string {
  // Built on every store call: skip the regex when there is no brace to replace (almost always).
  const tag = hashTag.includes('{') || hashTag.includes('}') ? hashTag.replace(/[{}]/g, '_') : hashTag;
  const key = `${prefix}:{${tag}}`;
  return rest.length === 0 ? key : `${key}:${rest.join(':')}`;
}
