import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../../core/clock.js';
import { InvalidInputError, InvalidOptionsError } from '../../core/errors.js';
import { nonNegative, positive, positiveInt } from '../../core/validate.js';
import { cancelTargetOf, sendCancelRequest } from '../../clients/pg-cancel.js';
import { isConnectionFatal } from '../../clients/postgres-errors.js';
import { encodeResponse, normalizeResponse, type ResponseInput } from '../codec.js';
import type { Lease } from '../engine.js';
import { LeaseLostError } from '../errors.js';
import type {
  ClaimInput, ClaimResult, CompleteInput, IdempotencyStore, OwnerInput, RenewInput, StepInput, StoredRecord,
} from '../types.js';

/**
 * Idempotency records in PostgreSQL (`pg`). Every decision uses the database clock (`now()`),
 * so worker clocks never matter. Claim is one statement (INSERT ... ON CONFLICT DO NOTHING,
 * then a conditional UPDATE for takeovers, then the existing row, as CTEs): one round trip
 * for a new request, a replay, a conflict or a takeover.
 *
 * The reason to use PostgreSQL: `completeInTransaction` writes the completion inside your own
 * transaction, next to the business write, fenced by the owner token. Either both commit or
 * neither does, so a crash at any point cannot leave an effect without its record (or the
 * reverse), and a worker whose lease was taken over cannot commit its effect.
 *
 * A call the engine gives up on (its store timeout) is stopped on the server, as `guardPool`
 * does it: the statement is cancelled with a protocol CancelRequest and its connection
 * discarded, so a statement stuck behind a lock neither holds a pool connection nor commits
 * after the caller was told to retry.
 *
 * The table is created by `migratePostgresIdempotency(pool)` (or `sql/idempotency-postgres.sql`),
 * never implicitly.
 */

/** The part of a `pg` Pool/Client the store uses. */
export interface PgQueryable {
  query(text: string, values?: any[]): Promise<{ rows: any[]; rowCount: number | null }>;
}

/** A checked-out connection (pg's PoolClient). */
export interface PgPoolClientLike extends PgQueryable {
  release(error?: any): void;
  on?(event: 'error', listener: (error: Error) => void): unknown;
  removeListener?(event: 'error', listener: (error: Error) => void): unknown;
}

export interface IdempotencyPgPool extends PgQueryable {
  /** The callback form: it lets the store attach its error listener before anything else can run. */
  connect(callback: (error: Error | undefined, client: PgPoolClientLike | undefined, done: (release?: any) => void) => void): void;
}

export interface PostgresTableOptions {
  /** Schema of the table. Default: unqualified (the connection's search_path). */
  schema?: string;
  /** Default 'bulwark_idempotency'. */
  table?: string;
}

export interface PostgresIdempotencyStoreOptions extends PostgresTableOptions {
  /** A `pg` Pool (or anything with `query` and `connect`). Not closed by the store. */
  pool: IdempotencyPgPool;
  /**
   * Deletes expired records every this many ms (one unref'd timer; batches of `sweepBatch`).
   * `false` disables it (run `sweep()` from your own scheduler). Default 60 000.
   */
  sweepEveryMs?: number | false;
  /** Rows deleted per sweep statement. Default 1000. */
  sweepBatch?: number;
  /**
   * After cancelling a statement the engine gave up on, how long to wait for it to end before
   * closing its connection anyway (the backstop when the CancelRequest cannot reach the
   * server). Default 500.
   */
  cancelTimeoutMs?: number;
  /** Clock for the sweep and cancel timers only (records use the database clock). */
  clock?: Clock;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Quoted, schema-qualified table name (validated: lower-case identifiers only). */
export function postgresTableName(options: PostgresTableOptions = {}): string {
  const table = options.table ?? 'bulwark_idempotency';
  if (!IDENTIFIER.test(table)) throw new InvalidOptionsError(`postgres idempotency: table must match ${IDENTIFIER}, got ${String(table)}`);
  if (options.schema === undefined) return `"${table}"`;
  if (!IDENTIFIER.test(options.schema)) throw new InvalidOptionsError(`postgres idempotency: schema must match ${IDENTIFIER}, got ${String(options.schema)}`);
  return `"${options.schema}"."${table}"`;
}

/**
 * The schema DDL (idempotent: IF NOT EXISTS). `sql/idempotency-postgres.sql` is this with the
 * default names; a test keeps the two identical.
 */
export function postgresIdempotencySchema(options: PostgresTableOptions = {}): string {
  const t = postgresTableName(options);
  const index = `"${(options.table ?? 'bulwark_idempotency')}_expires_at"`;
  return `CREATE TABLE IF NOT EXISTS ${t} (
  id               text        PRIMARY KEY,
  fingerprint      text        NOT NULL,
  state            text        NOT NULL CHECK (state IN ('in_progress', 'completed')),
  owner            text        NOT NULL,
  fence            integer     NOT NULL,
  lease_expires_at timestamptz,
  response         text,
  completed_at     timestamptz,
  steps            jsonb       NOT NULL DEFAULT '{}'::jsonb,
  created_at       timestamptz NOT NULL,
  expires_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ${index} ON ${t} (expires_at);
`;
}

/** Creates the table and its index if missing. Run it at deploy time (or from your migration tool). */
export async function migratePostgresIdempotency(db: PgQueryable, options: PostgresTableOptions = {}): Promise<void> {
  await db.query(postgresIdempotencySchema(options));
}

const MS = `* interval '1 millisecond'`;
const EPOCH_MS = (column: string): string => `round(extract(epoch from ${column}) * 1000)::float8`;

export class PostgresIdempotencyStore implements IdempotencyStore {
  readonly name = 'postgres';
  readonly remote = true;
  readonly cancellable = true;
  readonly table: string;
  readonly #pool: IdempotencyPgPool;
  readonly #sql: ReturnType<typeof statements>;
  readonly #sweepBatch: number;
  readonly #clock: Clock;
  readonly #sweepEveryMs: number | false;
  readonly #cancelTimeoutMs: number;
  #sweepTimer: TimerHandle | undefined;
  #closed = false;
  /** The last background sweep failure, if any (diagnostics). */
  lastSweepError: unknown;

  constructor(options: PostgresIdempotencyStoreOptions) {
    if (!options?.pool || typeof options.pool.query !== 'function') throw new InvalidOptionsError('postgresIdempotencyStore: options.pool (a pg Pool) is required');
    this.#pool = options.pool;
    this.table = postgresTableName(options);
    this.#sql = statements(this.table);
    this.#sweepBatch = positiveInt('postgresIdempotencyStore.sweepBatch', options.sweepBatch, 1000);
    this.#clock = options.clock ?? systemClock;
    this.#sweepEveryMs = options.sweepEveryMs === false ? false : positive('postgresIdempotencyStore.sweepEveryMs', options.sweepEveryMs, 60_000);
    this.#cancelTimeoutMs = nonNegative('postgresIdempotencyStore.cancelTimeoutMs', options.cancelTimeoutMs, 500);
    this.#armSweep();
  }

  async claim(input: ClaimInput, signal?: AbortSignal): Promise<ClaimResult> {
    const values = [input.id, input.fingerprint, input.owner, input.leaseMs, Math.max(input.ttlMs, input.leaseMs)];
    // Under READ COMMITTED a row committed by a concurrent claim after this statement's
    // snapshot is seen by ON CONFLICT but not by the other parts: the statement then returns
    // nothing (or kind 0) and is simply run again with a fresh snapshot.
    for (let attempt = 0; attempt < 10; attempt++) {
      const { rows } = await this.#query(this.#sql.claim, values, signal);
      const row = rows[0];
      if (row === undefined) continue;
      switch (Number(row.kind)) {
        case 1: return { kind: 'acquired', fence: Number(row.fence), takeover: Number(row.fence) > 1, leaseExpiresAt: Number(row.at), steps: row.steps ?? {} };
        case 2: return { kind: 'busy', retryAfterMs: Math.max(0, Number(row.at)) };
        case 3: return { kind: 'completed', response: String(row.response), completedAt: Number(row.at) };
        case 4: return { kind: 'mismatch' };
        default: continue;
      }
    }
    throw new Error(`postgres idempotency: claim of ${input.id} kept racing with concurrent writers`);
  }

  async complete(input: CompleteInput, signal?: AbortSignal): Promise<boolean> {
    const { rows } = await this.#query(this.#sql.complete, [input.id, input.owner, input.response, input.ttlMs], signal);
    return rows[0]?.ok === true;
  }

  /**
   * Writes the completion with `client` — a connection inside your open transaction (after
   * BEGIN, with your business write). Throws LEASE_LOST when this worker no longer owns the
   * record: roll back, your effect must not commit. After COMMIT call `lease.markCompleted()`
   * (or use `transaction()`, which does all of this).
   */
  async completeInTransaction(client: PgQueryable, lease: Lease, response: ResponseInput): Promise<void> {
    if (lease.status !== 'active') throw new LeaseLostError(lease.id, 'complete');
    const encoded = encodeResponse(normalizeResponse(response));
    const result = await client.query(this.#sql.completeStrict, [lease.id, lease.owner, encoded, lease.ttlMs]);
    if (result.rowCount !== 1) {
      lease.markLost();
      throw new LeaseLostError(lease.id, 'complete');
    }
  }

  /** `completeInTransaction` in the stores' common shape: `client` is the pg client that ran BEGIN. */
  completeWithin(client: unknown, lease: Lease, response: ResponseInput): Promise<void> {
    if (client === null || typeof client !== 'object' || typeof (client as PgQueryable).query !== 'function') {
      return Promise.reject(new InvalidInputError('postgres idempotency: complete(client, response) needs the pg client your transaction runs on (the one that ran BEGIN)'));
    }
    return this.completeInTransaction(client as PgQueryable, lease, response);
  }

  /**
   * BEGIN; `work(client)` (your business writes, returning the response); the completion;
   * COMMIT — so the effect and the idempotency record commit or roll back together. If the
   * lease was lost, rolls back and throws LEASE_LOST; if `work` throws, rolls back and rethrows
   * (release the lease, or let it expire, so a retry runs again).
   */
  async transaction<R extends ResponseInput>(lease: Lease, work: (client: PgQueryable) => Promise<R>): Promise<R> {
    let broken: unknown;
    // A checked-out pg client emits 'error' if its connection dies between queries; without a
    // listener that would crash the process (the failing query rejects anyway). The listener
    // goes on inside the connect callback: with `await pool.connect()` there is a window, before
    // the continuation runs, in which an error arriving with the hand-over is unhandled.
    const onError = (error: Error): void => { broken = error; };
    const client = await new Promise<PgPoolClientLike>((resolve, reject) => {
      this.#pool.connect((error, checkedOut) => {
        if (error !== undefined && error !== null) reject(error);
        else {
          checkedOut!.on?.('error', onError);
          resolve(checkedOut!);
        }
      });
    });
    try {
      await client.query('BEGIN');
      const response = await work(client);
      await this.completeInTransaction(client, lease, response);
      await client.query('COMMIT');
      lease.markCompleted();
      return response;
    } catch (error) {
      await client.query('ROLLBACK').catch((rollbackError: unknown) => { broken = rollbackError; });
      throw error;
    } finally {
      client.removeListener?.('error', onError);
      client.release(broken);
    }
  }

  async release(input: OwnerInput, signal?: AbortSignal): Promise<boolean> {
    const { rows } = await this.#query(this.#sql.release, [input.id, input.owner], signal);
    return Number(rows[0]?.n ?? 0) > 0;
  }

  async renew(input: RenewInput, signal?: AbortSignal): Promise<boolean> {
    const result = await this.#query(this.#sql.renew, [input.id, input.owner, input.leaseMs], signal);
    return result.rowCount === 1;
  }

  async saveStep(input: StepInput, signal?: AbortSignal): Promise<boolean> {
    const result = await this.#query(this.#sql.saveStep, [input.id, input.owner, input.name, input.value], signal);
    return result.rowCount === 1;
  }

  async inspect(id: string): Promise<StoredRecord | undefined> {
    const { rows } = await this.#pool.query(this.#sql.inspect, [id]);
    const r = rows[0];
    if (r === undefined) return undefined;
    const common = { fingerprint: r.fingerprint, owner: r.owner, fence: Number(r.fence), expiresAt: Number(r.expires_ms), steps: r.steps ?? {} };
    return r.state === 'completed'
      ? { state: 'completed', ...common, response: r.response, completedAt: Number(r.completed_ms) }
      : { state: 'in_progress', ...common, leaseExpiresAt: Number(r.lease_ms) };
  }

  /** Deletes every expired record (in batches); returns how many. */
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const result = await this.#pool.query(this.#sql.sweep, [this.#sweepBatch]);
      const n = result.rowCount ?? 0;
      total += n;
      if (n < this.#sweepBatch) return total;
    }
  }

  /** Stops the sweep timer. The pool is yours to close. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweepTimer !== undefined) this.#clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
  }

  /**
   * One statement. Without a signal, `pool.query`. With one, on a connection of its own, so
   * that an abort can stop it: while waiting for a connection the call is rejected at once
   * (a connection arriving later goes straight back, unused); while the statement runs it is
   * cancelled (a CancelRequest to its backend, see `pg-cancel.ts`) and the connection
   * discarded, as a late cancel could hit the next statement on it. If the statement has not
   * ended `cancelTimeoutMs` after the cancel, its connection is closed anyway.
   */
  #query(text: string, values: unknown[], signal: AbortSignal | undefined): Promise<{ rows: any[]; rowCount: number | null }> {
    if (signal === undefined) return this.#pool.query(text, values);
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason);
        return;
      }
      let phase: 'checkout' | 'running' | 'done' = 'checkout';
      let client: PgPoolClientLike | undefined;
      let done: ((release?: any) => void) | undefined;
      let discard = false;
      let backstop: TimerHandle | undefined;
      const onClientError = (): void => { discard = true; }; // the statement fails too; without a listener pg would crash the process
      const release = (): void => {
        if (done === undefined) return;
        const giveBack = done;
        done = undefined;
        if (backstop !== undefined) this.#clock.clearTimeout(backstop);
        client!.removeListener?.('error', onClientError);
        giveBack(discard ? true : undefined);
      };
      const onAbort = (): void => {
        if (phase === 'checkout') {
          phase = 'done';
          reject(signal.reason);
          return;
        }
        if (phase !== 'running') return;
        discard = true;
        const target = cancelTargetOf(client!);
        if (target === undefined) {
          release(); // no cancel key (pg-native): closing the connection is all that is left
          return;
        }
        sendCancelRequest(target, this.#cancelTimeoutMs).catch(release);
        backstop = unrefTimer(this.#clock.setTimeout(release, this.#cancelTimeoutMs));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#pool.connect((error, checkedOut, giveBack) => {
        if (phase !== 'checkout') {
          if (checkedOut !== undefined && checkedOut !== null) giveBack(); // abandoned while waiting: nothing ran on it
          return;
        }
        if ((error !== undefined && error !== null) || checkedOut === undefined || checkedOut === null) {
          phase = 'done';
          signal.removeEventListener('abort', onAbort);
          reject(error ?? new Error('postgres idempotency: the pool handed over no connection'));
          return;
        }
        phase = 'running';
        client = checkedOut;
        done = giveBack;
        client.on?.('error', onClientError);
        client.query(text, values).then(
          (result) => {
            phase = 'done';
            signal.removeEventListener('abort', onAbort);
            release();
            resolve(result);
          },
          (failure: unknown) => {
            phase = 'done';
            signal.removeEventListener('abort', onAbort);
            if (isConnectionFatal(failure)) discard = true;
            release();
            reject(failure);
          },
        );
      });
    });
  }

  #armSweep(): void {
    if (this.#sweepEveryMs === false || this.#closed) return;
    this.#sweepTimer = unrefTimer(this.#clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      this.sweep().then(
        () => { this.lastSweepError = undefined; },
        (error: unknown) => { this.lastSweepError = error; },
      ).finally(() => this.#armSweep());
    }, this.#sweepEveryMs));
  }
}

function statements(t: string) {
  const owned = `id = $1 AND owner = $2 AND $2 <> '' AND state = 'in_progress'`;
  return {
    claim: `WITH ins AS (
  INSERT INTO ${t} AS r (id, fingerprint, state, owner, fence, lease_expires_at, created_at, expires_at)
  VALUES ($1, $2, 'in_progress', $3, 1, now() + $4::float8 ${MS}, now(), now() + $5::float8 ${MS})
  ON CONFLICT (id) DO NOTHING
  RETURNING r.fence, r.lease_expires_at, r.steps
), upd AS (
  UPDATE ${t} AS r SET
    owner = $3,
    fence = CASE WHEN r.expires_at <= now() THEN 1 ELSE r.fence + 1 END,
    fingerprint = $2,
    state = 'in_progress',
    response = NULL,
    completed_at = NULL,
    steps = CASE WHEN r.expires_at <= now() THEN '{}'::jsonb ELSE r.steps END,
    created_at = CASE WHEN r.expires_at <= now() THEN now() ELSE r.created_at END,
    lease_expires_at = now() + $4::float8 ${MS},
    expires_at = CASE WHEN r.expires_at <= now() THEN now() + $5::float8 ${MS}
                      ELSE greatest(r.expires_at, now() + $4::float8 ${MS}) END
  WHERE r.id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
    AND (r.expires_at <= now() OR (r.state = 'in_progress' AND r.lease_expires_at <= now() AND r.fingerprint = $2))
  RETURNING r.fence, r.lease_expires_at, r.steps
)
SELECT 1 AS kind, fence, ${EPOCH_MS('lease_expires_at')} AS at, steps, NULL::text AS response FROM ins
UNION ALL
SELECT 1, fence, ${EPOCH_MS('lease_expires_at')}, steps, NULL FROM upd
UNION ALL
SELECT CASE
         WHEN r.expires_at <= now() THEN 0
         WHEN r.fingerprint <> $2 THEN 4
         WHEN r.state = 'completed' THEN 3
         WHEN r.lease_expires_at <= now() THEN 0
         ELSE 2
       END,
       r.fence,
       CASE WHEN r.state = 'completed' THEN ${EPOCH_MS('r.completed_at')}
            ELSE ${EPOCH_MS('r.lease_expires_at')} - ${EPOCH_MS('now()')} END,
       NULL::jsonb,
       CASE WHEN r.state = 'completed' AND r.fingerprint = $2 THEN r.response END
FROM ${t} AS r
WHERE r.id = $1 AND NOT EXISTS (SELECT 1 FROM ins) AND NOT EXISTS (SELECT 1 FROM upd)`,
    complete: `WITH u AS (
  UPDATE ${t} SET state = 'completed', response = $3, completed_at = now(), lease_expires_at = NULL,
    expires_at = now() + $4::float8 ${MS}
  WHERE ${owned}
  RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM u)
    OR EXISTS (SELECT 1 FROM ${t} WHERE id = $1 AND owner = $2 AND $2 <> '' AND state = 'completed') AS ok`,
    completeStrict: `UPDATE ${t} SET state = 'completed', response = $3, completed_at = now(), lease_expires_at = NULL,
  expires_at = now() + $4::float8 ${MS}
WHERE ${owned}`,
    release: `WITH d AS (
  DELETE FROM ${t} WHERE ${owned} AND steps = '{}'::jsonb RETURNING 1
), u AS (
  UPDATE ${t} SET owner = '', lease_expires_at = 'epoch'::timestamptz WHERE ${owned} AND steps <> '{}'::jsonb RETURNING 1
)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM u) AS n`,
    renew: `UPDATE ${t} SET lease_expires_at = now() + $3::float8 ${MS},
  expires_at = greatest(expires_at, now() + $3::float8 ${MS})
WHERE ${owned}`,
    saveStep: `UPDATE ${t} SET steps = steps || jsonb_build_object($3::text, $4::text) WHERE ${owned}`,
    inspect: `SELECT state, fingerprint, owner, fence, response, steps,
  ${EPOCH_MS('lease_expires_at')} AS lease_ms, ${EPOCH_MS('completed_at')} AS completed_ms, ${EPOCH_MS('expires_at')} AS expires_ms
FROM ${t} WHERE id = $1 AND expires_at > now()`,
    sweep: `DELETE FROM ${t} WHERE id IN (SELECT id FROM ${t} WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
  };
}

export function postgresIdempotencyStore(options: PostgresIdempotencyStoreOptions): PostgresIdempotencyStore {
  return new PostgresIdempotencyStore(options);
}
