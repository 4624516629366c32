import { createHash } from 'node:crypto';

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
}

/** Wraps an ioredis `Redis`/`Cluster` or a node-redis client (or anything already a RedisScriptClient). */
export function toRedisScriptClient(client: unknown): RedisScriptClient {
  if (isScriptClient(client)) return client;
  if (typeof (client as NodeRedisLike)?.evalSha === 'function') {
    const c = client as NodeRedisLike;
    return {
      flavour: 'node-redis',
      async run(script, keys, args) {
        const options = { keys: keys as string[], arguments: args.map(String) };
        try {
          return await c.evalSha(script.sha, options);
        } catch (error) {
          if (!isNoScript(error)) throw error;
          return c.eval(script.source, options);
        }
      },
      async setIfAbsentGet(key, value, pxMs) {
        return nullableString(await c.set(key, value, { PX: pxMs, NX: true, GET: true }));
      },
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
  const tag = hashTag.replace(/[{}]/g, '_');
  return [prefix, `{${tag}}`, ...rest].join(':');
}
