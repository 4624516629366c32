/**
 * Test support (not shipped): an order-taking app guarded by idempotency keys, whose first run
 * waits until the test lets it finish, for the "handler still running" cases on every adapter.
 */
import { systemClock, VirtualClock, type Clock } from '../../core/clock.js';
import { MemoryIdempotencyStore } from '../../idempotency/stores/memory-store.js';
import type { IdempotencyStore } from '../../idempotency/types.js';
import { HttpGuard } from '../core/http-guard.js';
import { IdempotencyProtection, type IdempotencyOutcomeEvent } from '../core/idempotency.js';
import { gate, startApp, type AdapterKind, type AppRoute, type Gate, type RunningApp } from './apps.js';

export const principal = (request: { headers: Record<string, unknown> }) => (request.headers['x-user'] as string | undefined) ?? null;

export function post(app: RunningApp, key: string | undefined, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${app.url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }), ...headers },
    body,
  });
}

export interface SlowOrders {
  app: RunningApp;
  /** Drives the guard's deadlines and the lease renewals (unless `realClock`). */
  clock: VirtualClock;
  store: IdempotencyStore;
  guard: HttpGuard;
  outcomes: IdempotencyOutcomeEvent[];
  /** Lets the first run finish. */
  release: Gate;
  /** Opens when the first run has started. */
  entered: Gate;
  state: { runs: number; settled: number };
}

export interface SlowOrdersOptions {
  leaseMs?: number;
  /** The first run gives up (throws) when the request's signal aborts. */
  honourSignal?: boolean;
  /** Default: a memory store on the test's clock. */
  store?: IdempotencyStore;
  /** The system clock instead of a virtual one (for waits inside the engine). */
  realClock?: boolean;
}

/** A guarded /orders app on a virtual clock whose first run waits for `release` (runs are counted). */
export async function slowOrders(kind: AdapterKind, options: SlowOrdersOptions = {}): Promise<SlowOrders> {
  const virtualClock = new VirtualClock(Date.now());
  const clock: Clock = options.realClock ? systemClock : virtualClock;
  const store = options.store ?? new MemoryIdempotencyStore({ clock });
  const protection = new IdempotencyProtection({ store, principal, clock, ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }) });
  const outcomes: IdempotencyOutcomeEvent[] = [];
  protection.onOutcome((event) => outcomes.push(event));
  const guard = new HttpGuard({ clock, idempotency: protection });
  const release = gate();
  const entered = gate();
  const state = { runs: 0, settled: 0 };
  const routes: AppRoute[] = [{
    method: 'POST', path: '/orders', config: { name: 'orders' },
    handler: async (request) => {
      const run = ++state.runs;
      if (run > 1) return { status: 201, body: { order: run } }; // a second run is the bug under test: do not block it
      entered.open();
      try {
        if (options.honourSignal) await Promise.race([release.wait, new Promise((_, reject) => request!.signal.addEventListener('abort', () => reject(request!.signal.reason)))]);
        else await release.wait;
      } finally {
        state.settled++;
      }
      return { status: 201, body: { order: run } };
    },
  }];
  const app = await startApp(kind, routes, { guard });
  return { app, clock: virtualClock, store, guard, outcomes, release, entered, state };
}

