/**
 * Test helpers for the guarded clients: the shared services' URLs with clear failures, and a
 * throwaway `redis-server` on a free port for crash tests (the shared Redis is never touched).
 */

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

export { freePort, PrivateRedis } from '../../../test/support/private-redis.js';
