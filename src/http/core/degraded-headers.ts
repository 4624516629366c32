import { degradation } from '../../core/degraded.js';

/**
 * The response header that tells a client it got a degraded answer: a fallback value, a stale
 * cache entry. Its value is what produced it (`fallback`, `stale-cache`, or the `source` you
 * gave `markDegraded`). A degraded answer is still a correct answer, so it goes out with its
 * normal status (200) and body; the header is how clients, logs and support tell it apart
 * (graceful degradation: the Google SRE book, "Addressing Cascading Failures").
 */
export const DEGRADED_HEADER = 'bulwark-degraded';

/** Characters allowed in a header token (RFC 9110 §5.6.2). */
const NOT_TOKEN = /[^!#$%&'*+\-.^_`|~0-9A-Za-z]+/g;

/**
 * `{ 'bulwark-degraded': source }` when `value` carries a degradation mark, else `{}`: spread it
 * into the response headers of any framework.
 *
 *   reply.headers(degradedHeaders(items)).send(items);           // Fastify
 *   res.set(degradedHeaders(items)).json(items);                 // Express
 *   res.writeHead(200, { ...degradedHeaders(items), ... });      // node:http
 */
export function degradedHeaders(value: unknown): Record<string, string> {
  const mark = degradation(value);
  if (mark === undefined) return {};
  const source = String(mark.source).replace(NOT_TOKEN, '-');
  return { [DEGRADED_HEADER]: source === '' ? 'degraded' : source };
}
