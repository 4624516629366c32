import Database from 'better-sqlite3';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../../core/clock.js';
import { InvalidInputError, InvalidOptionsError } from '../../core/errors.js';
import { positive, positiveInt } from '../../core/validate.js';
import { encodeResponse, normalizeResponse, type ResponseInput } from '../codec.js';
import type { Lease } from '../engine.js';
import { LeaseLostError } from '../errors.js';
import type {
  ClaimInput, ClaimResult, CompleteInput, IdempotencyStore, OwnerInput, RenewInput, StepInput, StoredRecord,
} from '../types.js';

/**
 * Idempotency records in SQLite (`better-sqlite3`): embedded and durable, the default durable
 * store for a single instance (several processes on one machine can share the file: claims run
 * in IMMEDIATE transactions). Statements are synchronous and take microseconds; results are
 * wrapped in resolved promises for the store interface.
 *
 * Like PostgreSQL, it can commit the completion together with your business write:
 * `transaction(lease, (db) => { ...writes...; return response })`.
 *
 * Times come from the injected clock (ms). The table is created by
 * `migrateSqliteIdempotency(db)` (or `sql/idempotency-sqlite.sql`), never implicitly.
 */

/** An open better-sqlite3 database. */
export type SqliteDatabase = Database.Database;

export interface SqliteTableOptions {
  /** Default 'bulwark_idempotency'. */
  table?: string;
}

export interface SqliteIdempotencyStoreOptions extends SqliteTableOptions {
  /**
   * An open better-sqlite3 Database (yours: not closed by the store, pragmas untouched), or a
   * file path / ':memory:' for the store to open (with WAL, synchronous=FULL, busy_timeout 5 s).
   */
  database: SqliteDatabase | string;
  /** With a path: create the table if missing. Default true for paths the store opens, ignored otherwise. */
  migrate?: boolean;
  /** Deletes expired records every this many ms (one unref'd timer). `false` disables it. Default 60 000. */
  sweepEveryMs?: number | false;
  /** Rows deleted per sweep statement. Default 1000. */
  sweepBatch?: number;
  clock?: Clock;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

function tableName(options: SqliteTableOptions): string {
  const table = options.table ?? 'bulwark_idempotency';
  if (!IDENTIFIER.test(table)) throw new InvalidOptionsError(`sqlite idempotency: table must match ${IDENTIFIER}, got ${String(table)}`);
  return table;
}

/** The schema DDL. `sql/idempotency-sqlite.sql` is this with the default name; a test keeps them identical. */
export function sqliteIdempotencySchema(options: SqliteTableOptions = {}): string {
  const t = tableName(options);
  return `CREATE TABLE IF NOT EXISTS "${t}" (
  id               TEXT    PRIMARY KEY,
  fingerprint      TEXT    NOT NULL,
  state            TEXT    NOT NULL CHECK (state IN ('in_progress', 'completed')),
  owner            TEXT    NOT NULL,
  fence            INTEGER NOT NULL,
  lease_expires_at INTEGER NOT NULL,
  response         TEXT,
  completed_at     INTEGER,
  steps            TEXT    NOT NULL DEFAULT '{}',
  created_at       INTEGER NOT NULL,
  expires_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "${t}_expires_at" ON "${t}" (expires_at);
`;
}

/** Creates the table and its index if missing. */
export function migrateSqliteIdempotency(db: SqliteDatabase, options: SqliteTableOptions = {}): void {
  db.exec(sqliteIdempotencySchema(options));
}

interface Row {
  fingerprint: string;
  state: 'in_progress' | 'completed';
  owner: string;
  fence: number;
  lease_expires_at: number;
  response: string | null;
  completed_at: number | null;
  steps: string;
  expires_at: number;
}

export class SqliteIdempotencyStore implements IdempotencyStore {
  readonly name = 'sqlite';
  readonly remote = false;
  readonly db: SqliteDatabase;
  readonly clock: Clock;
  readonly #owned: boolean;
  readonly #sweepBatch: number;
  readonly #sweepEveryMs: number | false;
  #sweepTimer: TimerHandle | undefined;
  #closed = false;
  readonly #claimTx: (input: ClaimInput) => ClaimResult;
  readonly #q: ReturnType<typeof prepareStatements>;

  constructor(options: SqliteIdempotencyStoreOptions) {
    const table = tableName(options ?? {});
    this.clock = options.clock ?? systemClock;
    if (typeof options?.database === 'string') {
      this.db = new Database(options.database);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      this.#owned = true;
      if (options.migrate ?? true) migrateSqliteIdempotency(this.db, { table });
    } else if (options?.database && typeof (options.database as SqliteDatabase).prepare === 'function') {
      this.db = options.database;
      this.#owned = false;
    } else {
      throw new InvalidOptionsError('sqliteIdempotencyStore: options.database must be a better-sqlite3 Database or a file path');
    }
    this.#sweepBatch = positiveInt('sqliteIdempotencyStore.sweepBatch', options.sweepBatch, 1000);
    this.#sweepEveryMs = options.sweepEveryMs === false ? false : positive('sqliteIdempotencyStore.sweepEveryMs', options.sweepEveryMs, 60_000);
    try {
      this.#q = prepareStatements(this.db, `"${table}"`);
    } catch (error) {
      if (this.#owned) this.db.close();
      throw new InvalidOptionsError(`sqliteIdempotencyStore: ${(error as Error).message} (create the table with migrateSqliteIdempotency(db) or sql/idempotency-sqlite.sql)`);
    }
    const claim = this.db.transaction((input: ClaimInput) => this.#claimIn(input));
    this.#claimTx = (input) => claim.immediate(input);
    this.#armSweep();
  }

  claim(input: ClaimInput): Promise<ClaimResult> {
    try {
      return Promise.resolve(this.#claimTx(input));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  #claimIn(input: ClaimInput): ClaimResult {
    const now = this.clock.now();
    const row = this.#q.get.get(input.id);
    if (row === undefined || row.expires_at <= now) {
      const lease = now + input.leaseMs;
      this.#q.insert.run({ id: input.id, fingerprint: input.fingerprint, owner: input.owner, lease, now, expires: now + Math.max(input.ttlMs, input.leaseMs) });
      return { kind: 'acquired', fence: 1, takeover: false, leaseExpiresAt: lease, steps: {} };
    }
    if (row.fingerprint !== input.fingerprint) return { kind: 'mismatch' };
    if (row.state === 'completed') return { kind: 'completed', response: row.response ?? '', completedAt: row.completed_at ?? 0 };
    if (row.lease_expires_at > now) return { kind: 'busy', retryAfterMs: row.lease_expires_at - now };
    const lease = now + input.leaseMs;
    this.#q.takeover.run({ id: input.id, owner: input.owner, lease });
    return { kind: 'acquired', fence: row.fence + 1, takeover: true, leaseExpiresAt: lease, steps: parseSteps(row.steps) };
  }

  complete(input: CompleteInput): Promise<boolean> {
    try {
      const now = this.clock.now();
      const params = { id: input.id, owner: input.owner, response: input.response, now, expires: now + input.ttlMs };
      if (this.#q.complete.run(params).changes === 1) return Promise.resolve(true);
      return Promise.resolve(this.#q.completedBy.get({ id: input.id, owner: input.owner, now }) !== undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `completeInTransaction` in the stores' common shape: `client` is this store's Database
   * (the one your `db.transaction(...)` runs on); any other database cannot share the transaction.
   */
  completeWithin(client: unknown, lease: Lease, response: ResponseInput): void {
    if (client !== this.db) throw new InvalidInputError('sqlite idempotency: complete(db, response) needs the store\'s own Database, inside db.transaction(...)');
    this.completeInTransaction(lease, response);
  }

  /**
   * Writes the completion; call it inside your own `db.transaction(...)` next to your business
   * write. Throws LEASE_LOST (rolling your transaction back) when this worker no longer owns the
   * record. After the transaction commits, call `lease.markCompleted()` — or use `transaction()`.
   */
  completeInTransaction(lease: Lease, response: ResponseInput): void {
    if (lease.status !== 'active') throw new LeaseLostError(lease.id, 'complete');
    if (!this.db.inTransaction) throw new InvalidInputError('completeInTransaction must run inside a transaction (db.transaction(...))');
    const now = this.clock.now();
    const encoded = encodeResponse(normalizeResponse(response));
    const changes = this.#q.complete.run({ id: lease.id, owner: lease.owner, response: encoded, now, expires: now + lease.ttlMs }).changes;
    if (changes !== 1) {
      lease.markLost();
      throw new LeaseLostError(lease.id, 'complete');
    }
  }

  /** Runs `work(db)` and the completion in one IMMEDIATE transaction: both commit or neither does. */
  transaction<R extends ResponseInput>(lease: Lease, work: (db: SqliteDatabase) => R): R {
    const tx = this.db.transaction(() => {
      const response = work(this.db);
      this.completeInTransaction(lease, response);
      return response;
    });
    const response = tx.immediate();
    lease.markCompleted();
    return response;
  }

  release(input: OwnerInput): Promise<boolean> {
    try {
      const params = { id: input.id, owner: input.owner };
      const n = this.#q.delete.run(params).changes + this.#q.disown.run(params).changes;
      return Promise.resolve(n > 0);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  renew(input: RenewInput): Promise<boolean> {
    try {
      const now = this.clock.now();
      return Promise.resolve(this.#q.renew.run({ id: input.id, owner: input.owner, lease: now + input.leaseMs, now }).changes === 1);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  saveStep(input: StepInput): Promise<boolean> {
    try {
      const params = { id: input.id, owner: input.owner, name: input.name, value: input.value, now: this.clock.now() };
      return Promise.resolve(this.#q.saveStep.run(params).changes === 1);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  inspect(id: string): Promise<StoredRecord | undefined> {
    const row = this.#q.get.get(id);
    if (row === undefined || row.expires_at <= this.clock.now()) return Promise.resolve(undefined);
    const common = { fingerprint: row.fingerprint, owner: row.owner, fence: row.fence, expiresAt: row.expires_at, steps: parseSteps(row.steps) };
    return Promise.resolve(row.state === 'completed'
      ? { state: 'completed', ...common, response: row.response ?? '', completedAt: row.completed_at ?? 0 }
      : { state: 'in_progress', ...common, leaseExpiresAt: row.lease_expires_at });
  }

  /** Deletes every expired record; returns how many. */
  sweep(): number {
    const now = this.clock.now();
    let total = 0;
    for (;;) {
      const n = this.#q.sweep.run(now, this.#sweepBatch).changes;
      total += n;
      if (n < this.#sweepBatch) return total;
    }
  }

  /** Stops the sweep timer; closes the database if the store opened it. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweepTimer !== undefined) this.clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    if (this.#owned && this.db.open) this.db.close();
  }

  #armSweep(): void {
    if (this.#sweepEveryMs === false || this.#closed) return;
    this.#sweepTimer = unrefTimer(this.clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      try {
        if (this.db.open) this.sweep();
      } catch {
        // A busy or closed database: try again next time.
      }
      this.#armSweep();
    }, this.#sweepEveryMs));
  }
}

/** The store's statements, compiled once. */
function prepareStatements(db: SqliteDatabase, t: string) {
  const owned = `id = @id AND owner = @owner AND @owner <> '' AND state = 'in_progress'`;
  return {
    get: db.prepare<[string], Row>(`SELECT fingerprint, state, owner, fence, lease_expires_at, response, completed_at, steps, expires_at FROM ${t} WHERE id = ?`),
    insert: db.prepare(`INSERT OR REPLACE INTO ${t} (id, fingerprint, state, owner, fence, lease_expires_at, response, completed_at, steps, created_at, expires_at)
      VALUES (@id, @fingerprint, 'in_progress', @owner, 1, @lease, NULL, NULL, '{}', @now, @expires)`),
    takeover: db.prepare(`UPDATE ${t} SET owner = @owner, fence = fence + 1, lease_expires_at = @lease, expires_at = max(expires_at, @lease) WHERE id = @id`),
    complete: db.prepare(`UPDATE ${t} SET state = 'completed', response = @response, completed_at = @now, lease_expires_at = 0, expires_at = @expires WHERE ${owned}`),
    completedBy: db.prepare(`SELECT 1 FROM ${t} WHERE id = @id AND owner = @owner AND @owner <> '' AND state = 'completed' AND expires_at > @now`),
    delete: db.prepare(`DELETE FROM ${t} WHERE ${owned} AND steps = '{}'`),
    disown: db.prepare(`UPDATE ${t} SET owner = '', lease_expires_at = 0 WHERE ${owned} AND steps <> '{}'`),
    renew: db.prepare(`UPDATE ${t} SET lease_expires_at = @lease, expires_at = max(expires_at, @lease) WHERE ${owned} AND expires_at > @now`),
    saveStep: db.prepare(`UPDATE ${t} SET steps = json_set(steps, '$.' || json_quote(@name), @value) WHERE ${owned} AND expires_at > @now`),
    sweep: db.prepare(`DELETE FROM ${t} WHERE id IN (SELECT id FROM ${t} WHERE expires_at <= ? LIMIT ?)`),
  };
}

function parseSteps(text: string): Record<string, string> {
  const parsed = JSON.parse(text) as Record<string, unknown>;
  const steps: Record<string, string> = {};
  for (const name in parsed) steps[name] = String(parsed[name]);
  return steps;
}

export function sqliteIdempotencyStore(options: SqliteIdempotencyStoreOptions): SqliteIdempotencyStore {
  return new SqliteIdempotencyStore(options);
}
