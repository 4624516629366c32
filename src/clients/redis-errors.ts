/**
 * How Redis errors are judged, for ioredis and node-redis alike.
 *
 * Breaker failure = Redis (or the way to it) is unwell: lost or refused connections, timeouts,
 * a server loading its dataset, a busy script, a failover in progress, out of memory. A reply
 * error about the command itself (WRONGTYPE, ERR syntax, NOSCRIPT...) proves Redis is up and
 * answering: not a failure. Exceptions thrown by your own code inside `run()` are not either.
 *
 * Transient = worth another attempt for an operation marked safe.
 */
import { BulwarkError } from '../core/errors.js';
import { findInCauses, isNetworkError } from './dependency-pipeline.js';

/** Reply-error prefixes that mean "Redis cannot serve right now". */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN|READONLY|NOREPLICAS|OOM)\b/;
/** Of those, the ones a retry can get past (OOM and a BUSY script usually outlast a retry). */
const TRANSIENT_REPLIES = /^(LOADING|TRYAGAIN|MASTERDOWN|CLUSTERDOWN|READONLY|NOREPLICAS)\b/;

/** Client-library errors of a connection that is closed, refused, offline or timing out. */
const CONNECTION_ERROR_NAMES: ReadonlySet<string> = new Set([
  // ioredis
  'MaxRetriesPerRequestError', 'ClusterAllFailedError',
  // node-redis
  'ConnectionTimeoutError', 'SocketTimeoutError', 'ClientClosedError', 'ClientOfflineError',
  'SocketClosedUnexpectedlyError', 'DisconnectsClientError', 'ReconnectStrategyError', 'RootNodesUnavailableError',
  'SocketTimeoutDuringMaintenanceError', 'CommandTimeoutDuringMaintenanceError',
  // node-redis per-command `timeout`, AbortSignal.timeout()
  'TimeoutError',
]);

const CONNECTION_ERROR_MESSAGES = /^(Connection is closed|Stream isn't writeable|Command timed out|connect ETIMEDOUT|Reached the max retries per request limit|The client is (closed|offline)|Socket closed unexpectedly|Connection timeout)/;

/** The constructor names along an error's prototype chain (node-redis classes do not set `name`). */
function classNames(error: object): string[] {
  const names: string[] = [];
  let proto: unknown = Object.getPrototypeOf(error);
  for (let i = 0; i < 6 && proto !== null && proto !== Object.prototype; i++) {
    const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === 'string') names.push(name);
    proto = Object.getPrototypeOf(proto);
  }
  const own = (error as { name?: unknown }).name;
  if (typeof own === 'string') names.push(own);
  return names;
}

/** The text of a Redis reply error (ioredis ReplyError, node-redis ErrorReply) in the cause chain. */
export function redisReplyOf(error: unknown): string | undefined {
  return findInCauses(error, (e) => {
    if (!(e instanceof Error)) return undefined;
    const names = classNames(e);
    return names.includes('ReplyError') || names.includes('ErrorReply') ? e.message : undefined;
  });
}

function isConnectionError(error: unknown): boolean {
  if (isNetworkError(error)) return true;
  return findInCauses(error, (e) => {
    if (!(e instanceof Error)) return undefined;
    if (CONNECTION_ERROR_MESSAGES.test(e.message)) return true;
    return classNames(e).some((n) => CONNECTION_ERROR_NAMES.has(n)) ? true : undefined;
  }) === true;
}

/** The breaker's `isFailure` for Redis. */
export function isRedisFailure(error: unknown): boolean {
  if (error instanceof BulwarkError) return error.code === 'TIMEOUT' || error.code === 'STORE_UNAVAILABLE';
  const reply = redisReplyOf(error);
  if (reply !== undefined) return UNAVAILABLE_REPLIES.test(reply);
  return isConnectionError(error);
}

/** The retry classification for safe Redis operations. */
export function isRedisTransient(error: unknown): boolean {
  if (error instanceof BulwarkError) return error.code === 'TIMEOUT' || error.code === 'STORE_UNAVAILABLE';
  const reply = redisReplyOf(error);
  if (reply !== undefined) return TRANSIENT_REPLIES.test(reply);
  return isConnectionError(error);
}

/**
 * Commands that only read: `command()` treats them as safe to retry unless told otherwise.
 * Anything else (SET, INCR, LPUSH, EVAL...) is retried only with `safe: true`.
 */
export const READ_ONLY_COMMANDS: ReadonlySet<string> = new Set([
  'GET', 'MGET', 'GETRANGE', 'STRLEN', 'EXISTS', 'TTL', 'PTTL', 'EXPIRETIME', 'PEXPIRETIME', 'TYPE',
  'HGET', 'HMGET', 'HGETALL', 'HKEYS', 'HVALS', 'HLEN', 'HEXISTS', 'HSTRLEN', 'HSCAN', 'HRANDFIELD',
  'LRANGE', 'LLEN', 'LINDEX', 'LPOS',
  'SMEMBERS', 'SISMEMBER', 'SMISMEMBER', 'SCARD', 'SSCAN', 'SRANDMEMBER', 'SINTER', 'SUNION', 'SDIFF', 'SINTERCARD',
  'ZRANGE', 'ZRANGEBYSCORE', 'ZRANGEBYLEX', 'ZREVRANGE', 'ZREVRANGEBYSCORE', 'ZREVRANGEBYLEX', 'ZSCORE', 'ZMSCORE',
  'ZCARD', 'ZCOUNT', 'ZLEXCOUNT', 'ZRANK', 'ZREVRANK', 'ZSCAN', 'ZRANDMEMBER',
  'XRANGE', 'XREVRANGE', 'XLEN', 'BITCOUNT', 'BITPOS', 'GETBIT', 'PFCOUNT', 'GEOPOS', 'GEODIST', 'GEOHASH', 'GEOSEARCH',
  'SCAN', 'DBSIZE', 'PING', 'ECHO', 'EVAL_RO', 'EVALSHA_RO', 'FCALL_RO',
]);
