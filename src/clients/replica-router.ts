/**
 * Reads from PostgreSQL streaming replicas, with two guarantees (entry point `bulwark/postgres`):
 *
 * - Bounded staleness: a replica serves a read only while what it shows is at most `maxLagMs`
 *   behind the primary; otherwise the read goes to the primary.
 * - Read-your-writes: a session that wrote is served by a replica only once that replica has
 *   replayed the session's writes; until then, by the primary.
 *
 * How staleness is measured: a periodic probe reads the primary's WAL position
 * (`pg_current_wal_lsn()`) and each replica's replayed position (`pg_last_wal_replay_lsn()`).
 * Each primary reading is stamped with our clock's time *before* it was sent: everything
 * committed before that instant lies at or below the position read. A replica whose replayed
 * position has reached that reading therefore holds every commit up to that instant, so its
 * staleness is at most `now - instant`. Only our own clock is involved (no comparison of two
 * servers' clocks), and an idle primary needs no special case: its position stands still, the
 * replica reaches it, and the bound stays within one probe interval. (The replay-timestamp
 * measure, `now() - pg_last_xact_replay_timestamp()`, grows without end on an idle primary and
 * compares clocks of two machines.) Between probes the bound only grows, so it never flatters.
 */
import type { QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../core/clock.js';
import { markDegraded } from '../core/degraded.js';
import { hasCode, InvalidInputError, InvalidOptionsError } from '../core/errors.js';
import type { Event } from '../core/events.js';
import { errorCode, PolicyTelemetry, type Instrumented, type PolicyEmitter, type PolicyEvent, type PolicyIdentity } from '../core/telemetry.js';
import { nonNegative, positive } from '../core/validate.js';
import type { GuardedCallOptions } from './dependency-pipeline.js';
import { isPostgresFailure } from './postgres-errors.js';

/** What the router needs of a server: a guarded pool (`guardPool(...)`) has it. */
export interface ReadTarget {
  /** Names the server in `stats()`, routes and events. */
  readonly name?: string;
  query<R extends QueryResultRow = any>(text: string | QueryConfig, values?: readonly unknown[], options?: GuardedCallOptions): Promise<QueryResult<R>>;
}

export interface ReplicaRouterOptions extends PolicyIdentity {
  /** The primary: writes, and reads no replica may serve. A `guardPool(...)`. */
  primary: ReadTarget;
  /** One or more streaming replicas of it, each a `guardPool(...)`. */
  replicas: readonly ReadTarget[];
  /** The most a replica's data may lag the primary's for it to serve a read, in ms. Required. */
  maxLagMs: number;
  /**
   * How often the WAL positions are read, in ms. Must be below `maxLagMs`: a caught-up replica
   * shows up to one interval (plus the probe's own time) of lag. Default `min(1000, maxLagMs / 4)`.
   */
  probeIntervalMs?: number;
  /**
   * When a read had to go to the primary because the replicas lagged, and the primary is
   * unavailable (down, breaker open, bulkhead full, timed out), a replica lagging less than
   * `maxLagMs + staleIfErrorMs` answers instead, its result marked degraded
   * (`degradation(result)`: source 'stale-replica', `ageMs` its lag). Never for a session's
   * own unreplayed writes. The idea is HTTP's stale-if-error (RFC 5861). Default 0: the
   * primary's error. `Infinity`: any replica.
   */
  staleIfErrorMs?: number;
  /** Names the router in its events, its stats and the policy registry (default 'replica-router', unregistered). */
  name?: string;
  clock?: Clock;
}

export interface RoutedReadOptions extends GuardedCallOptions {
  /** Read-your-writes: the read must see this session's writes. */
  session?: ReadSession;
}

/** Where a read goes now, and why. */
export type ReadRoute =
  | { to: 'replica'; replica: string; lagMs: number }
  | {
      to: 'primary';
      /**
       * - `lag-unknown`: no probe has measured any replica yet (or they all failed so far).
       * - `replicas-lagging`: every measured replica lags `maxLagMs` or more.
       * - `session-behind`: a replica is fresh enough, but has not replayed this session's writes.
       */
      reason: 'lag-unknown' | 'replicas-lagging' | 'session-behind';
    };

export interface ReplicaStats {
  name: string;
  /** The bound on how far its data is behind the primary's, in ms; undefined until measured. */
  lagMs: number | undefined;
  /** Its replayed WAL position at the last successful probe. */
  replayed: string | undefined;
  /** The last probe's error, undefined once a probe succeeds. */
  lastError: unknown;
}

export interface ReplicaRouterStats {
  name: string;
  reads: { replica: number; primary: number; staleOnError: number; replicaFailedOver: number };
  /** The primary's WAL position at the last successful probe. */
  primaryPosition: string | undefined;
  replicas: ReplicaStats[];
}

export interface ProbeErrorEvent {
  router: string;
  /** The server the probe could not read: the primary's or a replica's name. */
  target: string;
  error: unknown;
}

/** A primary WAL position read at `at` (our clock, before the query was sent). */
interface Sample {
  at: number;
  position: bigint;
}

interface Replica {
  name: string;
  target: ReadTarget;
  replayed: bigint | undefined;
  /** Every commit made on the primary before this instant has been replayed. */
  coveredUntil: number | undefined;
  lastError: unknown;
  /** Its probe under way. */
  probe: Promise<void> | undefined;
}

/** Primary readings kept for replicas still behind them; beyond this the oldest go (the bound then only coarsens). */
const MAX_SAMPLES = 1024;
const PRIMARY_POSITION = 'SELECT pg_current_wal_lsn()::text AS lsn';
const REPLAY_POSITION = 'SELECT pg_last_wal_replay_lsn()::text AS lsn';
/** Above any position a server reports: a session that must read from the primary. */
const UNREACHABLE_POSITION = 2n ** 64n;
const WAL_POSITION = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i;

/** A WAL position (`pg_lsn` text, e.g. `16/B374D848`) as a number, for comparison. */
export function parseWalPosition(text: string): bigint | undefined {
  const match = typeof text === 'string' ? WAL_POSITION.exec(text) : null;
  if (match === null) return undefined;
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** The `pg_lsn` text of a position. */
export function formatWalPosition(position: bigint): string {
  return `${(position >> 32n).toString(16).toUpperCase()}/${(position & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * The primary is unavailable (as opposed to the statement being wrong): the database or the
 * way to it failed, or the primary's own guard turned the call away.
 */
function isUnavailable(error: unknown): boolean {
  return isPostgresFailure(error) || hasCode(error, 'CIRCUIT_OPEN', 'BULKHEAD_FULL', 'BULKHEAD_QUEUE_TIMEOUT', 'SHED', 'RETRIES_EXHAUSTED', 'RETRY_BUDGET_EXHAUSTED');
}

function checkTarget(what: string, target: unknown): ReadTarget {
  if (typeof target !== 'object' || target === null || typeof (target as ReadTarget).query !== 'function') {
    throw new InvalidOptionsError(`${what} must be a guarded pool (guardPool(pool)), got ${String(target)}`);
  }
  if (typeof (target as { connect?: unknown }).connect === 'function') {
    // A plain pg Pool would take our call options (the third argument) for a callback.
    throw new InvalidOptionsError(`${what} is a plain pg Pool: wrap it with guardPool(pool)`);
  }
  return target as ReadTarget;
}

export class ReplicaRouter implements Instrumented {
  readonly kind = 'replica-router';
  readonly name: string;
  readonly primary: ReadTarget;
  readonly maxLagMs: number;
  readonly probeIntervalMs: number;
  readonly staleIfErrorMs: number;
  readonly clock: Clock;
  readonly #replicas: Replica[];
  readonly #primaryName: string;
  /** Primary readings, oldest first. */
  readonly #samples: Sample[] = [];
  #primaryProbe: Promise<void> | undefined;
  #timer: TimerHandle | undefined;
  #closed = false;
  #next = 0;
  readonly #reads = { replica: 0, primary: 0, staleOnError: 0, replicaFailedOver: 0 };

  readonly #onProbeError: PolicyEmitter<ProbeErrorEvent>;
  /** A probe could not read a server's WAL position (the server then ages until a probe succeeds). */
  readonly onProbeError: Event<ProbeErrorEvent>;
  /** `probe-error` in the uniform shape (attributes: the server's name and the error's code). */
  readonly onEvent: Event<PolicyEvent>;

  constructor(options: ReplicaRouterOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidOptionsError('replicaRouter needs { primary, replicas, maxLagMs }');
    if (options.name !== undefined && (typeof options.name !== 'string' || options.name === '')) {
      throw new InvalidOptionsError('replicaRouter.name must be a non-empty string');
    }
    this.name = options.name ?? 'replica-router';
    this.primary = checkTarget('replicaRouter.primary', options.primary);
    if (!Array.isArray(options.replicas) || options.replicas.length === 0) {
      throw new InvalidOptionsError('replicaRouter.replicas must be a non-empty array of guarded pools');
    }
    this.#primaryName = this.primary.name ?? 'primary';
    this.#replicas = options.replicas.map((target, i) => ({
      name: checkTarget(`replicaRouter.replicas[${i}]`, target).name ?? `replica-${i}`,
      target,
      replayed: undefined,
      coveredUntil: undefined,
      lastError: undefined,
      probe: undefined,
    }));
    const names = [this.#primaryName, ...this.#replicas.map((r) => r.name)];
    if (new Set(names).size !== names.length) {
      throw new InvalidOptionsError(`replicaRouter: the primary and replicas need distinct names (guardPool(pool, { name })), got ${names.join(', ')}`);
    }
    if (options.maxLagMs === undefined) throw new InvalidOptionsError('replicaRouter needs maxLagMs');
    this.maxLagMs = positive('replicaRouter.maxLagMs', options.maxLagMs, NaN);
    this.probeIntervalMs = positive('replicaRouter.probeIntervalMs', options.probeIntervalMs, Math.min(1000, this.maxLagMs / 4));
    if (!(this.probeIntervalMs < this.maxLagMs)) {
      throw new InvalidOptionsError(
        `replicaRouter.probeIntervalMs (${this.probeIntervalMs}) must be below maxLagMs (${this.maxLagMs}): a caught-up replica shows up to one probe interval of lag`,
      );
    }
    this.staleIfErrorMs = nonNegative('replicaRouter.staleIfErrorMs', options.staleIfErrorMs, 0);
    this.clock = options.clock ?? systemClock;
    // Built once the options are known to be good: a named router joins the registry here.
    const telemetry = new PolicyTelemetry(this, { name: options.name, registry: options.registry });
    this.onEvent = telemetry.onEvent;
    this.#onProbeError = telemetry.emitter<ProbeErrorEvent>('probe-error', (e) => ({
      outcome: 'failure',
      attributes: { target: e.target, code: errorCode(e.error) },
    }));
    this.onProbeError = this.#onProbeError.event;
    this.#tick();
  }

  /**
   * A read-only statement, on a replica fresh enough (that has replayed `session`'s writes, if
   * given) or else on the primary. The other options go to the guarded pool that runs it
   * (`safe: true` lets it retry, `context` bounds it).
   */
  async read<R extends QueryResultRow = any>(text: string | QueryConfig, values?: readonly unknown[], options?: RoutedReadOptions): Promise<QueryResult<R>> {
    const { session, ...call } = options ?? {};
    const choice = this.#choose(session);
    if ('replica' in choice) {
      const { replica } = choice;
      this.#next = (this.#replicas.indexOf(replica) + 1) % this.#replicas.length;
      try {
        const result = await replica.target.query<R>(text, values, call);
        this.#reads.replica++;
        return result;
      } catch (error) {
        if (!isUnavailable(error)) throw error;
        this.#reads.replicaFailedOver++; // the replica is down or overloaded: the primary has the same data
      }
    }
    try {
      const result = await this.primary.query<R>(text, values, call);
      this.#reads.primary++;
      return result;
    } catch (error) {
      if ('reason' in choice && isUnavailable(error)) {
        const stale = await this.#staleRead<R>(session, text, values, call);
        if (stale !== undefined) return markDegraded(stale.result, { source: 'stale-replica', ageMs: stale.lagMs, reason: error });
      }
      throw error;
    }
  }

  /**
   * A session for read-your-writes: `token` is the value of an earlier session's `token`
   * (carried by the client between requests, e.g. in a cookie). Rejects a malformed token with
   * INVALID_INPUT.
   */
  session(token?: string): ReadSession {
    if (token === undefined) return new ReadSession(this, undefined);
    const position = parseWalPosition(token);
    if (position === undefined) throw new InvalidInputError(`a replica session token is a WAL position like '0/16B3748', got ${JSON.stringify(token)}`);
    return new ReadSession(this, position);
  }

  /** Where a read would go now (for the session's writes, if given), and why. */
  route(session?: ReadSession): ReadRoute {
    const choice = this.#choose(session);
    if ('reason' in choice) return { to: 'primary', reason: choice.reason };
    return { to: 'replica', replica: choice.replica.name, lagMs: choice.lagMs };
  }

  /** The next fresh replica (in turn) that has the session's writes, or why there is none. */
  #choose(session: ReadSession | undefined): { replica: Replica; lagMs: number } | { reason: 'lag-unknown' | 'replicas-lagging' | 'session-behind' } {
    const after = session?.position;
    const now = this.clock.now();
    let measured = false;
    let fresh = false;
    for (let i = 0; i < this.#replicas.length; i++) {
      const replica = this.#replicas[(this.#next + i) % this.#replicas.length]!;
      if (replica.coveredUntil === undefined) continue;
      measured = true;
      const lagMs = now - replica.coveredUntil;
      if (lagMs >= this.maxLagMs) continue;
      fresh = true;
      if (after !== undefined && !(replica.replayed! >= after)) continue;
      return { replica, lagMs };
    }
    return { reason: !measured ? 'lag-unknown' : fresh ? 'session-behind' : 'replicas-lagging' };
  }

  /**
   * Reads every WAL position now (joining any server's probe still under way). The router
   * probes on its own every `probeIntervalMs`; await this at start-up to serve the first reads
   * from replicas.
   */
  probe(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const primary = (this.#primaryProbe ??= this.#probePrimary().finally(() => {
      this.#primaryProbe = undefined;
    }));
    const replicas = this.#replicas.map((r) => (r.probe ??= this.#probeReplica(r).finally(() => {
      r.probe = undefined;
    })));
    return Promise.all([primary, ...replicas]).then(() => undefined);
  }

  /** Stops probing (the pools are yours to end). */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  stats(): ReplicaRouterStats {
    const now = this.clock.now();
    const last = this.#samples.at(-1);
    return {
      name: this.name,
      reads: { ...this.#reads },
      primaryPosition: last === undefined ? undefined : formatWalPosition(last.position),
      replicas: this.#replicas.map((r) => ({
        name: r.name,
        lagMs: r.coveredUntil === undefined ? undefined : now - r.coveredUntil,
        replayed: r.replayed === undefined ? undefined : formatWalPosition(r.replayed),
        lastError: r.lastError,
      })),
    };
  }

  /** The primary's current WAL position (what a session's token records after a write). */
  async primaryPosition(options?: GuardedCallOptions): Promise<bigint> {
    const { rows } = await this.primary.query<{ lsn: string | null }>(PRIMARY_POSITION, undefined, { ...options, safe: true });
    return this.#positionOf(this.#primaryName, rows[0]?.lsn);
  }

  /** The least-lagging replica within `maxLagMs + staleIfErrorMs` that has the session's writes answers, or undefined. */
  async #staleRead<R extends QueryResultRow>(session: ReadSession | undefined, text: string | QueryConfig, values: readonly unknown[] | undefined, options: GuardedCallOptions | undefined): Promise<{ result: QueryResult<R>; lagMs: number } | undefined> {
    if (this.staleIfErrorMs === 0) return undefined;
    const after = session?.position;
    const now = this.clock.now();
    let best: Replica | undefined;
    for (const r of this.#replicas) {
      if (r.coveredUntil === undefined || now - r.coveredUntil >= this.maxLagMs + this.staleIfErrorMs) continue;
      if (after !== undefined && !(r.replayed! >= after)) continue;
      if (best === undefined || r.coveredUntil > best.coveredUntil!) best = r;
    }
    if (best === undefined) return undefined;
    try {
      const result = await best.target.query<R>(text, values, options);
      this.#reads.staleOnError++;
      return { result, lagMs: now - best.coveredUntil! };
    } catch {
      return undefined; // the caller gets the primary's error, the one that matters
    }
  }

  /**
   * Starts a probe every interval. Each server's probe runs on its own: one that hangs (until
   * its pool's timeout) skips its own turns but never delays the others' readings.
   */
  readonly #tick = (): void => {
    if (this.#closed) return;
    void this.probe();
    this.#timer = unrefTimer(this.clock.setTimeout(this.#tick, this.probeIntervalMs));
  };

  async #probePrimary(): Promise<void> {
    const at = this.clock.now();
    try {
      this.#samples.push({ at, position: await this.primaryPosition() });
    } catch (error) {
      this.#probeFailed(this.#primaryName, error);
      return;
    }
    for (const r of this.#replicas) this.#cover(r);
    this.#prune();
  }

  async #probeReplica(replica: Replica): Promise<void> {
    try {
      const { rows } = await replica.target.query<{ lsn: string | null }>(REPLAY_POSITION, undefined, { safe: true });
      replica.replayed = this.#positionOf(replica.name, rows[0]?.lsn);
      replica.lastError = undefined;
    } catch (error) {
      replica.lastError = error;
      this.#probeFailed(replica.name, error);
      return;
    }
    this.#cover(replica);
    this.#prune();
  }

  /**
   * Finds the newest primary reading the replica's replayed position has reached: the replica
   * holds every commit made before it was taken. Holds whichever was read first.
   */
  #cover(replica: Replica): void {
    const replayed = replica.replayed;
    if (replayed === undefined) return;
    for (let j = this.#samples.length - 1; j >= 0; j--) {
      const sample = this.#samples[j]!;
      if (sample.position <= replayed) {
        if (replica.coveredUntil === undefined || sample.at > replica.coveredUntil) replica.coveredUntil = sample.at;
        return;
      }
    }
  }

  /** Drops readings every replica has passed (they can no longer improve a bound), and the oldest beyond MAX_SAMPLES. */
  #prune(): void {
    let oldestCovered = Infinity;
    for (const r of this.#replicas) oldestCovered = Math.min(oldestCovered, r.coveredUntil ?? -Infinity);
    let drop = 0;
    while (drop < this.#samples.length - 1 && this.#samples[drop]!.at < oldestCovered) drop++;
    drop = Math.max(drop, this.#samples.length - MAX_SAMPLES);
    if (drop > 0) this.#samples.splice(0, drop);
  }

  #probeFailed(target: string, error: unknown): void {
    if (this.#onProbeError.active) this.#onProbeError.emit({ router: this.name, target, error });
  }

  #positionOf(server: string, text: string | null | undefined): bigint {
    const position = text === null || text === undefined ? undefined : parseWalPosition(text);
    if (position === undefined) {
      // pg_last_wal_replay_lsn() is NULL on a server that is not a standby.
      throw new Error(`${server} reported no WAL position (${String(text)}): is it a primary / a streaming replica as configured?`);
    }
    return position;
  }
}

/**
 * Read-your-writes for one client: its writes go to the primary and advance its token (the
 * primary's WAL position after the write); its reads go to a replica only once that replica
 * has replayed up to the token. Carry `token` to the client and back (a cookie, a header) to
 * keep the guarantee across requests and service instances.
 */
export class ReadSession {
  readonly #router: ReplicaRouter;
  #position: bigint | undefined;
  /** A write's position could not be read: only the primary is sure to have it. */
  #pinned = false;

  constructor(router: ReplicaRouter, position: bigint | undefined) {
    this.#router = router;
    this.#position = position;
  }

  /** The WAL position the session's reads must see, undefined before any write. */
  get position(): bigint | undefined {
    return this.#pinned ? UNREACHABLE_POSITION : this.#position;
  }

  /** The position as text (`pg_lsn` form), to hand back to `router.session(token)` later. */
  get token(): string | undefined {
    return this.#position === undefined ? undefined : formatWalPosition(this.#position);
  }

  /** A read that sees this session's writes: on a replica that has replayed them, else the primary. */
  read<R extends QueryResultRow = any>(text: string | QueryConfig, values?: readonly unknown[], options?: GuardedCallOptions): Promise<QueryResult<R>> {
    return this.#router.read<R>(text, values, { ...options, session: this });
  }

  /**
   * A statement on the primary; once it has returned, the token covers it. Should reading the
   * primary's position fail after the write succeeded (the primary went away in between), the
   * write's result is still returned and this session reads from the primary alone until a
   * later `recordWrite` succeeds; its token then does not cover that write.
   */
  async write<R extends QueryResultRow = any>(text: string | QueryConfig, values?: readonly unknown[], options?: GuardedCallOptions): Promise<QueryResult<R>> {
    const result = await this.#router.primary.query<R>(text, values, options);
    try {
      await this.recordWrite(options);
    } catch {
      this.#pinned = true;
    }
    return result;
  }

  /**
   * Advances the token to the primary's position now: call it after writes made another way
   * (a `transaction` on the primary pool). Positions only move forward.
   */
  async recordWrite(options?: GuardedCallOptions): Promise<void> {
    const position = await this.#router.primaryPosition(options);
    if (this.#position === undefined || position > this.#position) this.#position = position;
    this.#pinned = false;
  }
}

/** Routes reads between a primary and its replicas. See `ReplicaRouterOptions`. */
export function replicaRouter(options: ReplicaRouterOptions): ReplicaRouter {
  return new ReplicaRouter(options);
}
