/**
 * Lease trials (see lease-trials.ts) on the in-process stores, in virtual time: one answer per
 * key under concurrent duplicates, slow and dying workers and (SQLite) the file reopened; one
 * effect per key where the effect commits with the completion. Redis and PostgreSQL:
 * lease-trials.integration.test.ts. The full run (any count; a failure prints its seed):
 *   IDEMPOTENCY_LEASE_TRIALS=1000 node --import tsx --test --test-timeout=0 src/idempotency/lease-trials*.test.ts
 */
import { after, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VirtualClock } from '../core/clock.js';
import { StoreUnavailableError, hasCode } from '../core/errors.js';
import { IdempotencyEngine } from './engine.js';
import { MemoryIdempotencyStore } from './stores/memory-store.js';
import { SqliteIdempotencyStore } from './stores/sqlite-store.js';
import { CrashedInside, runIdempotencyTrials, type TrialKit } from './lease-trials.js';
import { checkTrials, completingKit, trialCount, trialOptions } from './test/lease-trial-kits.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => { for (const fn of cleanup.reverse()) await fn(); });

test('lease trials: memory store, one answer per key (virtual time; not durable, so no restarts)', async () => {
  const clock = new VirtualClock(1_700_000_000_000);
  const store = new MemoryIdempotencyStore({ clock });
  const engines = Array.from({ length: 3 }, () => new IdempotencyEngine({ store, clock, leaseMs: 200, renewEveryMs: false }));
  const kit = completingKit('memory', { clock, advance: (ms) => clock.advance(ms), engine: (n) => engines[n]! });
  checkTrials(await runIdempotencyTrials(kit, trialOptions(trialCount(300), 200, { parallel: 16 })));
});

test('lease trials: SQLite store, one answer and one effect per key (virtual time; transactional effects; the file is reopened at random)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bulwark-trials-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'idem.db');
  const clock = new VirtualClock(1_700_000_000_000);
  let store!: SqliteIdempotencyStore;
  let engines: IdempotencyEngine[] = [];
  const open = () => {
    store = new SqliteIdempotencyStore({ database: path, clock, sweepEveryMs: false });
    store.db.exec('CREATE TABLE IF NOT EXISTS effects (idem_key TEXT NOT NULL, body TEXT NOT NULL)');
    engines = Array.from({ length: 3 }, () => new IdempotencyEngine({ store, clock, leaseMs: 200, renewEveryMs: false }));
  };
  open();
  cleanup.push(() => store.close());
  const kit: TrialKit = {
    name: 'sqlite',
    clock,
    advance: (ms) => clock.advance(ms),
    engine: (n) => engines[n]!,
    async commit(engine, lease, key, body, crashInside) {
      const s = engine.store as SqliteIdempotencyStore;
      try {
        s.transaction(lease, (db) => {
          db.prepare('INSERT INTO effects (idem_key, body) VALUES (?, ?)').run(key, body);
          if (crashInside) throw new CrashedInside(); // rolled back, like a process dying mid-transaction
          return { status: 201, body };
        });
      } catch (error) {
        if (error instanceof CrashedInside || hasCode(error, 'LEASE_LOST')) throw error;
        throw new StoreUnavailableError('sqlite', error); // closed by a restart
      }
    },
    effects: async (key) => (store.db.prepare('SELECT body FROM effects WHERE idem_key = ?').all(key) as { body: string }[]).map((r) => r.body),
    async restart() {
      await store.close();
      open();
    },
  };
  checkTrials(await runIdempotencyTrials(kit, trialOptions(trialCount(150), 200, { parallel: 16, restartEveryMs: 300 })));
});
