import { Redis } from 'ioredis';

/** The shared Redis for tests: fails loudly (never skips) when it is not there. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function connectShared(): Promise<Redis> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.disconnect();
    throw new Error(`Redis is required at ${REDIS_URL} (set REDIS_URL): ${(error as Error).message}`, { cause: error });
  }
  return client;
}

export { freePort, PrivateRedis } from '../../../test/support/private-redis.js';
