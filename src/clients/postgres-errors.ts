/**
 * How PostgreSQL errors are judged (SQLSTATE codes:
 * https://www.postgresql.org/docs/current/errcodes-appendix.html).
 *
 * Breaker failure = the database (or the way to it) is unwell: lost connections, timeouts,
 * resource exhaustion, shutdowns, internal errors. An error about the statement or the data
 * (constraint violations 23xxx, syntax and access errors 42xxx, data exceptions 22xxx,
 * serialization conflicts 40xxx) proves the server is up and answering: not a failure.
 *
 * Transient = worth another attempt for an operation marked safe: lost connections, timeouts,
 * serialization failures and deadlocks (the standard "retry the transaction" cases), restarts.
 */
import { BulwarkError } from '../core/errors.js';
import { findInCauses, isNetworkError } from './dependency-pipeline.js';

/** A SQLSTATE: class (2 chars) + subclass (3 chars). Node's own codes (EPIPE...) never match: no class starts with E. */
const SQLSTATE = /^(?:[0-5][0-9A-Z]|F0|HV|P0|XX)[0-9A-Z]{3}$/;

/** The SQLSTATE of a PostgreSQL error anywhere in the cause chain (a TimeoutError wraps the cancelled query's 57014). */
export function sqlStateOf(error: unknown): string | undefined {
  return findInCauses(error, (e) => {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && SQLSTATE.test(code) ? code : undefined;
  });
}

/** Classes of SQLSTATE that say "the database is unwell", not "your statement is wrong". */
const FAILURE_CLASSES: ReadonlySet<string> = new Set([
  '08', // connection exception
  '53', // insufficient resources: 53300 too many connections, disk full, out of memory
  '57', // operator intervention: 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 57014 query canceled (statement_timeout)
  '58', // system error (I/O)
  'XX', // internal error, data corrupted
]);

/** SQLSTATEs worth a retry of a safe operation. */
export const TRANSIENT_SQLSTATES: ReadonlySet<string> = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available (lock_timeout)
  '57014', // query_canceled (statement_timeout): a timeout, retried like one
  '57P01', // admin_shutdown (e.g. pg_terminate_backend, a restart)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, failover)
  '53300', // too_many_connections
]);

/**
 * `pg` reports a lost connection with plain Errors that carry no code; these messages are
 * stable across pg 8.x.
 */
const CONNECTION_LOST = /connection terminated|timeout exceeded when trying to connect|not queryable|query read timeout|server closed the connection|connection error/i;

function isConnectionLoss(error: unknown): boolean {
  if (isNetworkError(error)) return true;
  return findInCauses(error, (e) => (e instanceof Error && sqlStateOf(e) === undefined && CONNECTION_LOST.test(e.message) ? true : undefined)) === true;
}

function isBulwarkTimeout(error: unknown): boolean {
  return error instanceof BulwarkError && error.code === 'TIMEOUT';
}

/**
 * The breaker's `isFailure` for PostgreSQL. Errors that did not come from the database or the
 * connection (an exception thrown by your own `withClient` callback) are not failures either.
 */
export function isPostgresFailure(error: unknown): boolean {
  if (error instanceof BulwarkError) return error.code === 'TIMEOUT' || error.code === 'STORE_UNAVAILABLE';
  const state = sqlStateOf(error);
  if (state !== undefined) return FAILURE_CLASSES.has(state.slice(0, 2));
  return isConnectionLoss(error);
}

/**
 * The session behind the connection is gone (its backend was terminated, the server is shutting
 * down or restarting, or the socket broke): the connection must be discarded, not returned to
 * the pool, or the next checkout gets a dead connection. pg notices on its own only when the
 * socket's close is processed, which under load can come after that next checkout.
 */
export function isConnectionFatal(error: unknown): boolean {
  const state = sqlStateOf(error);
  if (state !== undefined) return state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03';
  return isConnectionLoss(error);
}

/** The retry classification for safe PostgreSQL operations. Constraint and syntax errors are never retried. */
export function isPostgresTransient(error: unknown): boolean {
  if (isBulwarkTimeout(error)) return true;
  if (error instanceof BulwarkError) return false;
  const state = sqlStateOf(error);
  if (state !== undefined) return TRANSIENT_SQLSTATES.has(state) || state.startsWith('08');
  return isConnectionLoss(error);
}
