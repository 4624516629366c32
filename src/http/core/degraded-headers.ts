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
 * into the response headers of any framework. A stale value (one whose mark has `ageMs`) also
 * gets `Age`, its age in whole seconds, the header caches and clients already read for how old
 * an answer is (RFC 9111 §5.1).
 *
 *   reply.headers(degradedHeaders(items)).send(items);           // Fastify
 *   res.set(degradedHeaders(items)).json(items);                 // Express
 *   res.writeHead(200, { ...degradedHeaders(items), ... });      // node:http
 */
export function degradedHeaders(value: unknown): Record<string, string> {
  const mark = degradation(value);
  if (mark === undefined) return {};
  const source = String(mark.source).replace(NOT_TOKEN, '-');
  const headers: Record<string, string> = { [DEGRADED_HEADER]: source === '' ? 'degraded' : source };
  if (typeof mark.ageMs === 'number' && Number.isFinite(mark.ageMs)) headers.age = String(Math.floor(Math.max(0, mark.ageMs) / 1000));
  return headers;
}
