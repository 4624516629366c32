import { InvalidInputError } from '../core/errors.js';
import type { BreakerWindowSnapshot } from './strategies.js';

/**
 * Breaker state as a discriminated union: each state carries exactly what it needs, so
 * "open without a reopen time" or "probes in flight while closed" cannot be expressed.
 */
export type CircuitState =
  | { readonly kind: 'closed'; readonly since: number }
  /** `trips`: consecutive trips without a successful close (drives the open-duration backoff). */
  | { readonly kind: 'open'; readonly openedAt: number; readonly reopensAt: number; readonly trips: number }
  | {
      readonly kind: 'half-open';
      readonly since: number;
      readonly trips: number;
      /** Probes admitted and not yet settled. */
      readonly inFlight: number;
      readonly successes: number;
      readonly failures: number;
    }
  /** Forced open by `isolate()` until `reset()`. */
  | { readonly kind: 'isolated'; readonly since: number };

export type CircuitStateKind = CircuitState['kind'];

/** The portable part of a state (no probes in flight: those belong to the process that ran them). */
export type SnapshotState =
  | { kind: 'closed' }
  | { kind: 'open'; openedAt: number; reopensAt: number; trips: number }
  | { kind: 'half-open'; trips: number }
  | { kind: 'isolated'; since: number };

/**
 * A JSON-serialisable breaker snapshot (`exportState()` / `importState()` / `initialState`).
 * Times are clock milliseconds; the system clock is epoch-aligned, so snapshots move between
 * processes (and through Redis or a file) as long as both use it.
 */
export interface BreakerSnapshot {
  version: 1;
  name: string;
  /** Clock time of the export. */
  at: number;
  state: SnapshotState;
  window: BreakerWindowSnapshot;
}

/** A snapshot that fails validation (code `INVALID_INPUT`). */
export class InvalidSnapshotError extends InvalidInputError {
  constructor(message: string) {
    super(`invalid breaker snapshot: ${message}`);
  }
}

const MAX_BUCKETS = 100_000;
const MAX_OUTCOMES = 10_000_000;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function finite(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidSnapshotError(`${what} must be a finite number, got ${String(value)}`);
  return value;
}

function count(value: unknown, what: string, min = 0): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) throw new InvalidSnapshotError(`${what} must be an integer >= ${min}, got ${String(value)}`);
  return value;
}

/**
 * Checks an untrusted value (parsed JSON from a file or Redis) and returns a well-formed
 * snapshot, or throws `InvalidSnapshotError`. Never trusts shapes: a corrupt snapshot must
 * not put a breaker into an impossible state.
 */
export function parseSnapshot(value: unknown): BreakerSnapshot {
  if (!isRecord(value)) throw new InvalidSnapshotError('expected an object');
  if (value.version !== 1) throw new InvalidSnapshotError(`unsupported version ${String(value.version)}`);
  const name = typeof value.name === 'string' ? value.name : '';
  const at = finite(value.at, 'at');
  return { version: 1, name, at, state: parseState(value.state), window: parseWindow(value.window) };
}

function parseState(value: unknown): SnapshotState {
  if (!isRecord(value)) throw new InvalidSnapshotError('state must be an object');
  switch (value.kind) {
    case 'closed':
      return { kind: 'closed' };
    case 'open': {
      const openedAt = finite(value.openedAt, 'state.openedAt');
      const reopensAt = finite(value.reopensAt, 'state.reopensAt');
      if (reopensAt < openedAt) throw new InvalidSnapshotError('state.reopensAt is before state.openedAt');
      return { kind: 'open', openedAt, reopensAt, trips: count(value.trips, 'state.trips', 1) };
    }
    case 'half-open':
      return { kind: 'half-open', trips: count(value.trips, 'state.trips', 1) };
    case 'isolated':
      return { kind: 'isolated', since: finite(value.since, 'state.since') };
    default:
      throw new InvalidSnapshotError(`unknown state kind ${String(value.kind)}`);
  }
}

function parseWindow(value: unknown): BreakerWindowSnapshot {
  if (!isRecord(value) || typeof value.kind !== 'string') throw new InvalidSnapshotError('window must be an object with a kind');
  switch (value.kind) {
    case 'consecutive':
      return { kind: 'consecutive', consecutiveFailures: count(value.consecutiveFailures, 'window.consecutiveFailures') };
    case 'count': {
      const outcomes = value.outcomes;
      if (typeof outcomes !== 'string' || outcomes.length > MAX_OUTCOMES || !/^[0-3]*$/.test(outcomes)) {
        throw new InvalidSnapshotError('window.outcomes must be a string of digits 0-3');
      }
      return { kind: 'count', outcomes };
    }
    case 'time': {
      const bucketMs = finite(value.bucketMs, 'window.bucketMs');
      if (bucketMs <= 0) throw new InvalidSnapshotError('window.bucketMs must be > 0');
      if (!Array.isArray(value.buckets) || value.buckets.length > MAX_BUCKETS) throw new InvalidSnapshotError('window.buckets must be an array');
      const buckets = value.buckets.map((b: unknown, i): [number, number, number, number] => {
        if (!Array.isArray(b) || b.length !== 4) throw new InvalidSnapshotError(`window.buckets[${i}] must be [start, calls, failures, slowCalls]`);
        const start = finite(b[0], `window.buckets[${i}][0]`);
        const calls = count(b[1], `window.buckets[${i}][1]`);
        const failures = count(b[2], `window.buckets[${i}][2]`);
        const slow = count(b[3], `window.buckets[${i}][3]`);
        if (failures > calls || slow > calls) throw new InvalidSnapshotError(`window.buckets[${i}] has more failures or slow calls than calls`);
        return [start, calls, failures, slow];
      });
      return { kind: 'time', bucketMs, buckets };
    }
    case 'failure-count': {
      if (!Array.isArray(value.failures) || value.failures.length > MAX_OUTCOMES) throw new InvalidSnapshotError('window.failures must be an array of times');
      const failures = value.failures.map((at: unknown, i) => finite(at, `window.failures[${i}]`));
      if (failures.some((at, i) => i > 0 && at < failures[i - 1]!)) throw new InvalidSnapshotError('window.failures must be oldest first');
      return { kind: 'failure-count', failures };
    }
    default:
      // A custom strategy's window: passed to that strategy, which validates its own fields.
      return { ...value, kind: value.kind };
  }
}
